/* json-scan.c — the two huge members of tokenizer.json, model.vocab and
 * model.merges (150k entries each in Qwen2's 11 MB file), read straight
 * into the BPE tables. A json-glib tree of them took most of the load time
 * (one node, one hash entry and several allocations per entry, then freeing
 * it all); the rest of the file is small and still goes through json-glib.
 *
 * The grammar is RFC 8259 as serde_json (which HF reads the file with)
 * applies it: no comments, single quotes, hex or leading-zero numbers, raw
 * control characters or unknown escapes in strings, and \uXXXX surrogates
 * must pair. json-glib 1.6 accepts all of those and turns some into wrong
 * text, so the whole file is checked here first. One more refusal: \u0000,
 * at which json-glib silently cuts strings and C strings end. */
#include <string.h>

#include "nextstep.h"
#include "tokenizer-private.h"

/* serde_json's recursion limit: HF refuses anything deeper. */
#define MAX_DEPTH 128

typedef struct {
  const char *doc;              /* the whole file: positions in messages count from here */
  const char *p, *end;
  const char *label;
  GError **error;
  char *buf;                    /* the last string read, decoded, NUL-terminated */
  gsize len, cap;
} Scan;

static void
scan_init (Scan *s, const char *json, gsize size, const char *label, GError **error)
{
  *s = (Scan) { json, json, json + size, label, error, g_malloc (256), 0, 256 };
}

static void
scan_clear (Scan *s)
{
  g_free (s->buf);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Scan, scan_clear)

static gboolean
fail_at (Scan *s, const char *at, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

/* Sets the error with the line and column of `at` (counted only now: this
 * is the rare path). */
static gboolean
fail_at (Scan *s, const char *at, const char *fmt, ...)
{
  guint line = 1;
  const char *line_start = s->doc;
  for (const char *q = s->doc; (q = memchr (q, '\n', at - q)) != NULL; line_start = ++q)
    line++;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (s->error, NS_ERROR, NS_ERROR_FORMAT,
               "%s: line %u, column %u (byte offset %" G_GSIZE_FORMAT "): %s", s->label, line,
               (guint) (at - line_start + 1), (gsize) (at - s->doc), msg);
  return FALSE;
}

static inline int
peek (const Scan *s)
{
  return s->p < s->end ? (guchar) *s->p : -1;
}

static inline gboolean
is_digit (int c)
{
  return c >= '0' && c <= '9';
}

static inline void
skip_ws (Scan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
    s->p++;
}

static gboolean
unexpected (Scan *s, const char *wanted)
{
  char what[32];
  if (s->p >= s->end)
    g_strlcpy (what, "the end of the data", sizeof what);
  else if (g_ascii_isprint (*s->p))
    g_snprintf (what, sizeof what, "'%c'", *s->p);
  else
    g_snprintf (what, sizeof what, "byte 0x%02x", (guchar) *s->p);
  return fail_at (s, s->p, "expected %s, found %s", wanted, what);
}

/* Whether `c` comes next (after whitespace); it is not consumed. */
static gboolean
next_is (Scan *s, char c)
{
  skip_ws (s);
  return peek (s) == (guchar) c;
}

/* Consumes `c` when it comes next. */
static gboolean
accept (Scan *s, char c)
{
  if (!next_is (s, c))
    return FALSE;
  s->p++;
  return TRUE;
}

/* ---- strings ---- */

static void
buf_reserve (Scan *s, gsize more)
{
  if (s->len + more + 1 > s->cap)
    {
      s->cap = MAX (s->cap * 2, s->len + more + 1);
      s->buf = g_realloc (s->buf, s->cap);
    }
}

static void
buf_append (Scan *s, const char *bytes, gsize n)
{
  buf_reserve (s, n);
  memcpy (s->buf + s->len, bytes, n);
  s->len += n;
}

static gboolean
read_hex4 (Scan *s, const char *escape, gunichar *out)
{
  *out = 0;
  for (int i = 0; i < 4; i++, s->p++)
    {
      int d = s->p < s->end ? g_ascii_xdigit_value (*s->p) : -1;
      if (d < 0)
        return fail_at (s, escape, "\\u must be followed by four hex digits");
      *out = *out << 4 | (gunichar) d;
    }
  return TRUE;
}

/* \uXXXX at s->p - 2, with the low half when it is a high surrogate. */
static gboolean
read_unicode_escape (Scan *s, const char *escape, gunichar *out)
{
  gunichar low;
  if (!read_hex4 (s, escape, out))
    return FALSE;
  if (*out >= 0xDC00 && *out <= 0xDFFF)
    return fail_at (s, escape, "\\u%04X is the second half of a surrogate pair "
                    "without its first half", *out);
  if (*out >= 0xD800 && *out <= 0xDBFF)
    {
      if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
        return fail_at (s, escape, "\\u%04X (first half of a surrogate pair) must be "
                        "followed by a \\uDC00..\\uDFFF escape", *out);
      s->p += 2;
      if (!read_hex4 (s, escape, &low))
        return FALSE;
      if (low < 0xDC00 || low > 0xDFFF)
        return fail_at (s, escape, "\\u%04X (first half of a surrogate pair) is followed "
                        "by \\u%04X, not by a second half", *out, low);
      *out = 0x10000 + ((*out - 0xD800) << 10) + (low - 0xDC00);
    }
  if (*out == 0)
    return fail_at (s, escape, "\\u0000 (NUL) is not supported in tokenizer.json strings");
  return TRUE;
}

/* The escape at s->p (a backslash), decoded into the buffer. */
static gboolean
append_escape (Scan *s)
{
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *escape = s->p;
  int c = s->end - s->p >= 2 ? (guchar) s->p[1] : -1;
  const char *k = c > 0 ? strchr (from, c) : NULL;
  s->p += 2;
  if (k != NULL)
    {
      buf_append (s, &to[k - from], 1);
      return TRUE;
    }
  gunichar u;
  if (c != 'u')
    return fail_at (s, escape, "invalid escape in a string: a backslash must be followed by "
                    "one of \" \\ / b f n r t u");
  if (!read_unicode_escape (s, escape, &u))
    return FALSE;
  buf_reserve (s, 4);
  s->len += g_unichar_to_utf8 (u, s->buf + s->len);
  return TRUE;
}

/* Bytes copied as they are: not the end, not an escape, not a control char. */
static inline gboolean
plain_char (char c)
{
  return (guchar) c >= 0x20 && c != '"' && c != '\\';
}

/* Appends the string that comes next, decoded, to the buffer. */
static gboolean
append_string (Scan *s)
{
  if (!next_is (s, '"'))
    return unexpected (s, "a string");
  const char *start = s->p++;
  gsize from = s->len;
  for (;;)
    {
      const char *run = s->p;
      while (s->p < s->end && plain_char (*s->p))
        s->p++;
      buf_append (s, run, s->p - run);
      if (s->p >= s->end)
        return fail_at (s, start, "the string that starts here is not closed");
      if (*s->p == '"')
        break;
      if (*s->p != '\\')
        return fail_at (s, s->p, "control character 0x%02x inside a string (JSON needs it "
                        "written as \\u%04x)", (guchar) *s->p, (guchar) *s->p);
      if (!append_escape (s))
        return FALSE;
    }
  s->p++;
  s->buf[s->len] = '\0';
  if (!g_utf8_validate_len (s->buf + from, s->len - from, NULL))
    return fail_at (s, start, "the string that starts here is not valid UTF-8");
  return TRUE;
}

static gboolean
read_string (Scan *s)
{
  s->len = 0;
  return append_string (s);
}

static gboolean
key_is (const Scan *s, const char *name)
{
  return s->len == strlen (name) && memcmp (s->buf, name, s->len) == 0;
}

/* ---- other values ---- */

static gboolean
skip_digits (Scan *s)
{
  const char *from = s->p;
  while (is_digit (peek (s)))
    s->p++;
  return s->p > from || unexpected (s, "a digit");
}

/* The number at s->p. *value: its integer part (saturated at G_MAXINT64
 * in magnitude); *integer: whether it has no fraction and no exponent. */
static gboolean
read_number (Scan *s, gint64 *value, gboolean *integer)
{
  const char *start = s->p;
  gboolean negative = peek (s) == '-';
  gint64 v = 0;
  s->p += negative;
  if (peek (s) == '0' && s->end - s->p >= 2 && is_digit (s->p[1]))
    return fail_at (s, start, "numbers cannot start with 0 (no leading zeros in JSON)");
  if (!is_digit (peek (s)))
    return unexpected (s, "a digit");
  for (; is_digit (peek (s)); s->p++)
    v = v > (G_MAXINT64 - 9) / 10 ? G_MAXINT64 : v * 10 + (*s->p - '0');
  *integer = TRUE;
  if (peek (s) == '.')
    {
      s->p++;
      *integer = FALSE;
      if (!skip_digits (s))
        return FALSE;
    }
  if (peek (s) == 'e' || peek (s) == 'E')
    {
      s->p++;
      *integer = FALSE;
      s->p += peek (s) == '+' || peek (s) == '-';
      if (!skip_digits (s))
        return FALSE;
    }
  *value = negative ? -v : v;
  return TRUE;
}

static gboolean
read_literal (Scan *s)
{
  static const char *const words[] = { "true", "false", "null" };
  for (guint i = 0; i < G_N_ELEMENTS (words); i++)
    {
      gsize n = strlen (words[i]);
      if ((gsize) (s->end - s->p) >= n && memcmp (s->p, words[i], n) == 0)
        {
          s->p += n;
          return TRUE;
        }
    }
  return unexpected (s, "a value");
}

/* ---- containers ---- */

/* Past the opening char; *more is FALSE (and the closing char consumed)
 * when the container is empty. */
static gboolean
open_container (Scan *s, char close, guint depth, gboolean *more)
{
  if (depth > MAX_DEPTH)
    return fail_at (s, s->p, "objects and arrays are nested more than %d deep", MAX_DEPTH);
  s->p++;
  *more = !accept (s, close);
  return TRUE;
}

/* After an item: *more tells whether a ',' (consumed) or the closing char
 * (consumed) came. */
static gboolean
after_item (Scan *s, char close, gboolean *more)
{
  *more = accept (s, ',');
  return *more || accept (s, close)
         || unexpected (s, close == '}' ? "',' or '}'" : "',' or ']'");
}

static gboolean skip_value (Scan *s, guint depth);

/* Reads the value of a member whose key is in s->buf. */
typedef gboolean (*MemberFunc) (Scan *s, guint depth, gpointer data);

/* The object at s->p, one member() call per member. */
static gboolean
walk_object (Scan *s, guint depth, MemberFunc member, gpointer data)
{
  gboolean more = FALSE;
  if (!open_container (s, '}', depth, &more))
    return FALSE;
  while (more)
    if (!read_string (s) || !(accept (s, ':') || unexpected (s, "':'"))
        || !member (s, depth, data) || !after_item (s, '}', &more))
      return FALSE;
  return TRUE;
}

static gboolean
skip_member (Scan *s, guint depth, gpointer data)
{
  (void) data;
  return skip_value (s, depth);
}

static gboolean
skip_array (Scan *s, guint depth)
{
  gboolean more = FALSE;
  if (!open_container (s, ']', depth, &more))
    return FALSE;
  while (more)
    if (!skip_value (s, depth) || !after_item (s, ']', &more))
      return FALSE;
  return TRUE;
}

/* Checks the value that comes next and moves past it. */
static gboolean
skip_value (Scan *s, guint depth)
{
  gint64 unused_value;
  gboolean unused_integer;
  skip_ws (s);
  int c = peek (s);
  if (c == '{')
    return walk_object (s, depth + 1, skip_member, NULL);
  if (c == '[')
    return skip_array (s, depth + 1);
  if (c == '"')
    return read_string (s);
  if (c == '-' || is_digit (c))
    return read_number (s, &unused_value, &unused_integer);
  return read_literal (s);
}

/* ---- finding the tables ---- */

typedef struct {
  NsJsonTables *tables;
  gboolean model_seen;
} Found;

static gboolean
model_member (Scan *s, guint depth, gpointer data)
{
  NsJsonTables *t = data;
  NsJsonSpan *span = key_is (s, "vocab") ? &t->vocab : key_is (s, "merges") ? &t->merges : NULL;
  skip_ws (s);
  if (span == NULL)
    return skip_value (s, depth);
  if (span->end != 0)
    return fail_at (s, s->p, "model.%s is given twice", s->buf);
  span->start = s->p - s->doc;
  if (!skip_value (s, depth))
    return FALSE;
  span->end = s->p - s->doc;
  return TRUE;
}

static gboolean
top_member (Scan *s, guint depth, gpointer data)
{
  Found *f = data;
  if (!key_is (s, "model"))
    return skip_value (s, depth);
  if (f->model_seen)
    return fail_at (s, s->p, "the top-level member \"model\" is given twice");
  f->model_seen = TRUE;
  /* A model of another type is reported by the json-glib checks. */
  return next_is (s, '{') ? walk_object (s, depth + 1, model_member, f->tables)
                          : skip_value (s, depth);
}

gboolean
ns_json_find_tables (const char *json, gsize size, const char *label, NsJsonTables *tables,
                     GError **error)
{
  g_auto (Scan) s;
  Found found = { tables, FALSE };
  scan_init (&s, json, size, label, error);
  *tables = (NsJsonTables) { { 0, 0 }, { 0, 0 } };
  /* json-glib accepts a UTF-8 byte order mark, so this does too. */
  if (size >= 3 && memcmp (json, "\xEF\xBB\xBF", 3) == 0)
    s.p += 3;
  if (!(next_is (&s, '{') ? walk_object (&s, 1, top_member, &found) : skip_value (&s, 0)))
    return FALSE;
  skip_ws (&s);
  return s.p == s.end || fail_at (&s, s.p, "there is more after the end of the JSON value");
}

char *
ns_json_without_tables (const char *json, gsize size, const NsJsonTables *tables, gsize *len)
{
  NsJsonSpan cut[2] = { tables->vocab, tables->merges };
  if (cut[1].start < cut[0].start)
    cut[0] = tables->merges, cut[1] = tables->vocab;
  GString *out = g_string_sized_new (4096);
  gsize pos = 0;
  for (int i = 0; i < 2; i++)
    if (cut[i].end != 0)
      {
        g_string_append_len (out, json + pos, cut[i].start - pos);
        g_string_append (out, "null");
        pos = cut[i].end;
      }
  g_string_append_len (out, json + pos, size - pos);
  *len = out->len;
  return g_string_free (out, FALSE);
}

/* ---- reading the tables ---- */

/* Sets s to read `span`, whose value must open with `open`. */
static gboolean
scan_span (Scan *s, NsJsonSpan span, char open, const char *what)
{
  s->p = s->doc + span.start;
  s->end = s->doc + span.end;
  if (span.end == 0 || *s->p != open)
    {
      g_set_error (s->error, NS_ERROR, NS_ERROR_FORMAT, "%s: %s", s->label, what);
      return FALSE;
    }
  return TRUE;
}

static gboolean
vocab_member (Scan *s, guint depth, gpointer data)
{
  gint64 id = -1;
  gboolean integer = FALSE;
  (void) depth;
  skip_ws (s);
  const char *at = s->p;
  if ((peek (s) == '-' || is_digit (peek (s))) && !read_number (s, &id, &integer))
    return FALSE;
  if (!integer)
    return fail_at (s, at, "model.vocab[\"%s\"] must be an integer id", s->buf);
  return ns_bpe_add_token (data, s->buf, s->len, id, s->label, s->error);
}

gboolean
ns_json_read_vocab (NsBpe *bpe, const char *json, NsJsonSpan span, const char *label,
                    GError **error)
{
  g_auto (Scan) s;
  scan_init (&s, json, 0, label, error);
  if (!scan_span (&s, span, '{', "model.vocab must be an object"))
    return FALSE;
  /* The texts are shorter than their JSON. */
  ns_bpe_reserve_text (bpe, span.end - span.start);
  return walk_object (&s, 1, vocab_member, bpe);
}

static gboolean
merge_shape_error (Scan *s, const char *at, guint rank)
{
  return fail_at (s, at, "model.merges[%u] must be a pair of strings or a \"left right\" "
                  "string", rank);
}

/* The merge that comes next, into the buffer as "leftright"; *left_len is
 * the length of left. */
static gboolean
read_merge (Scan *s, guint rank, gsize *left_len)
{
  skip_ws (s);
  const char *at = s->p;
  if (peek (s) == '"')
    {
      if (!read_string (s))
        return FALSE;
      char *space = memchr (s->buf, ' ', s->len);
      if (space == NULL || memchr (space + 1, ' ', s->buf + s->len - (space + 1)) != NULL)
        return fail_at (s, at, "model.merges[%u] \"%s\" must be two tokens separated by "
                        "one space", rank, s->buf);
      *left_len = space - s->buf;
      memmove (space, space + 1, s->len - *left_len);   /* with the NUL */
      s->len--;
      return TRUE;
    }
  s->len = 0;
  if (!accept (s, '[') || !next_is (s, '"'))
    return merge_shape_error (s, at, rank);
  if (!append_string (s))
    return FALSE;
  *left_len = s->len;
  if (!accept (s, ',') || !next_is (s, '"'))
    return merge_shape_error (s, at, rank);
  return append_string (s) && (accept (s, ']') || merge_shape_error (s, at, rank));
}

gboolean
ns_json_read_merges (NsBpe *bpe, const char *json, NsJsonSpan span, const char *label,
                     GError **error)
{
  g_auto (Scan) s;
  gboolean more = FALSE;
  scan_init (&s, json, 0, label, error);
  if (!scan_span (&s, span, '[', "model.merges must be an array")
      || !open_container (&s, ']', 1, &more))
    return FALSE;
  /* A hint (the table still grows): there are about as many merges as
   * tokens, and a long list of junk cannot size a huge table up front. */
  ns_bpe_reserve_merges (bpe, ns_bpe_vocab_len (bpe));
  for (guint rank = 0; more; rank++)
    {
      gsize left_len = 0;
      if (!read_merge (&s, rank, &left_len)
          || !ns_bpe_add_merge (bpe, s.buf, left_len, s.len - left_len, rank, label, error)
          || !after_item (&s, ']', &more))
        return FALSE;
    }
  return TRUE;
}
