/* json-scan.h — a strict RFC 8259 scanner over JSON text in memory, with
 * messages that give the line, column and byte offset of the problem.
 *
 * json-glib is lenient and its leniency changes between versions (1.6
 * accepts comments, single quotes and `var x = …;`, silently cuts strings at
 * \u0000; 1.10 aborts on two documents back to back in an immutable
 * parser), so every JSON text the engine reads is checked by this scanner
 * first (json-load.c), and the tokenizer reads its two huge tables with it
 * directly. Engine-private; not part of any contract. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* serde_json's recursion limit (HF reads tokenizer.json with it); far
 * below what would overflow json-glib's recursive parser. */
#define NS_JSON_MAX_DEPTH 128

typedef struct {
  const char *doc;              /* the whole text: positions in messages count from here */
  const char *p, *end;
  const char *label;            /* names the text in messages */
  const char *hint;             /* appended to messages ("download it again"), or NULL */
  GError **error;
  char *buf;                    /* the last string read, decoded, NUL-terminated */
  gsize len, cap;
} NsJsonScan;

void     ns_json_scan_init (NsJsonScan *s, const char *json, gsize size, const char *label,
                            GError **error);
void     ns_json_scan_clear (NsJsonScan *s);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (NsJsonScan, ns_json_scan_clear)

/* Sets the NS_ERROR_FORMAT error "LABEL: line L, column C (byte offset O):
 * MESSAGE[; HINT]" for the position `at`; returns FALSE. */
gboolean ns_json_scan_fail_at (NsJsonScan *s, const char *at, const char *fmt, ...)
                               G_GNUC_PRINTF (3, 4);
/* "expected WANTED, found …" at the current position; returns FALSE. */
gboolean ns_json_scan_unexpected (NsJsonScan *s, const char *wanted);

static inline int
ns_json_scan_peek (const NsJsonScan *s)
{
  return s->p < s->end ? (guchar) *s->p : -1;
}

static inline gboolean
ns_json_is_digit (int c)
{
  return c >= '0' && c <= '9';
}

void     ns_json_scan_skip_ws (NsJsonScan *s);
/* Whether `c` comes next (after whitespace); it is not consumed. */
gboolean ns_json_scan_next_is (NsJsonScan *s, char c);
/* Consumes `c` when it comes next. */
gboolean ns_json_scan_accept (NsJsonScan *s, char c);

/* The string that comes next, decoded into s->buf (read: replacing it;
 * append: after what s->buf holds). \u0000 is refused: json-glib cuts
 * strings there and C strings end there. */
gboolean ns_json_scan_read_string (NsJsonScan *s);
gboolean ns_json_scan_append_string (NsJsonScan *s);
/* Whether the string in s->buf is `name`. */
gboolean ns_json_scan_key_is (const NsJsonScan *s, const char *name);

/* Moves past a UTF-8 byte order mark at the start (json-glib 1.6 accepts
 * one, and so do Python's and serde's readers of files that have it). */
void     ns_json_scan_skip_bom (NsJsonScan *s);
/* After the value: only whitespace may follow. */
gboolean ns_json_scan_expect_end (NsJsonScan *s);

/* The number at s->p. *value: its integer part; *integer: whether it has
 * no fraction and no exponent. Integers outside the 64-bit range and
 * numbers that are not finite as doubles (1e999) are refused: readers
 * differ on what they become. */
gboolean ns_json_scan_read_number (NsJsonScan *s, gint64 *value, gboolean *integer);

/* Past the opening char (s->p is on it); *more is FALSE (and the closing
 * char consumed) when the container is empty. `depth` counts this one. */
gboolean ns_json_scan_open (NsJsonScan *s, char close, guint depth, gboolean *more);
/* After an item: *more tells whether a ',' (consumed) or the closing char
 * (consumed) came. */
gboolean ns_json_scan_after_item (NsJsonScan *s, char close, gboolean *more);

/* Called for each member of an object, with the key in s->buf and s->p
 * after the ':'; it must read the value. */
typedef gboolean (*NsJsonMemberFunc) (NsJsonScan *s, guint depth, gpointer data);
/* The object at s->p, one member() call per member; `depth` counts it. */
gboolean ns_json_scan_object (NsJsonScan *s, guint depth, NsJsonMemberFunc member,
                              gpointer data);
/* Checks the value that comes next and moves past it; `depth` counts the
 * containers around it. */
gboolean ns_json_scan_skip_value (NsJsonScan *s, guint depth);

G_END_DECLS
