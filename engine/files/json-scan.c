/* json-scan.c — see json-scan.h.
 *
 * The grammar is RFC 8259 as serde_json applies it: no comments, single
 * quotes, hex or leading-zero numbers, raw control characters or unknown
 * escapes in strings, and \uXXXX surrogates must pair. */
#include <math.h>
#include <string.h>

#include "nextstep.h"
#include "files/json-scan.h"

void
ns_json_scan_init (NsJsonScan *s, const char *json, gsize size, const char *label,
                   GError **error)
{
  *s = (NsJsonScan) { json, json, json + size, label, NULL, error, g_malloc (256), 0, 256 };
}

void
ns_json_scan_clear (NsJsonScan *s)
{
  g_clear_pointer (&s->buf, g_free);
}

/* The line and column are counted only now: this is the rare path. */
gboolean
ns_json_scan_fail_at (NsJsonScan *s, const char *at, const char *fmt, ...)
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
               "%s: line %u, column %u (byte offset %" G_GSIZE_FORMAT "): %s%s%s", s->label,
               line, (guint) (at - line_start + 1), (gsize) (at - s->doc), msg,
               s->hint != NULL ? "; " : "", s->hint != NULL ? s->hint : "");
  return FALSE;
}

void
ns_json_scan_skip_ws (NsJsonScan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
    s->p++;
}

gboolean
ns_json_scan_unexpected (NsJsonScan *s, const char *wanted)
{
  char what[32];
  if (s->p >= s->end)
    g_strlcpy (what, "the end of the data", sizeof what);
  else if (g_ascii_isprint (*s->p))
    g_snprintf (what, sizeof what, "'%c'", *s->p);
  else
    g_snprintf (what, sizeof what, "byte 0x%02x", (guchar) *s->p);
  return ns_json_scan_fail_at (s, s->p, "expected %s, found %s", wanted, what);
}

gboolean
ns_json_scan_next_is (NsJsonScan *s, char c)
{
  ns_json_scan_skip_ws (s);
  return ns_json_scan_peek (s) == (guchar) c;
}

gboolean
ns_json_scan_accept (NsJsonScan *s, char c)
{
  if (!ns_json_scan_next_is (s, c))
    return FALSE;
  s->p++;
  return TRUE;
}

void
ns_json_scan_skip_bom (NsJsonScan *s)
{
  if (s->p == s->doc && s->end - s->p >= 3 && memcmp (s->p, "\xEF\xBB\xBF", 3) == 0)
    s->p += 3;
}

/* Two documents back to back are what a re-download appended to an older
 * file leaves. */
gboolean
ns_json_scan_expect_end (NsJsonScan *s)
{
  ns_json_scan_skip_ws (s);
  return s->p == s->end
         || ns_json_scan_unexpected (s, "nothing after the first JSON value (is a second "
                                     "document or the rest of an older file appended?)");
}

/* ---- strings ---- */

static void
buf_reserve (NsJsonScan *s, gsize more)
{
  if (s->len + more + 1 > s->cap)
    {
      s->cap = MAX (s->cap * 2, s->len + more + 1);
      s->buf = g_realloc (s->buf, s->cap);
    }
}

static void
buf_append (NsJsonScan *s, const char *bytes, gsize n)
{
  buf_reserve (s, n);
  memcpy (s->buf + s->len, bytes, n);
  s->len += n;
}

static gboolean
read_hex4 (NsJsonScan *s, const char *escape, gunichar *out)
{
  *out = 0;
  for (int i = 0; i < 4; i++, s->p++)
    {
      int d = s->p < s->end ? g_ascii_xdigit_value (*s->p) : -1;
      if (d < 0)
        return ns_json_scan_fail_at (s, escape, "\\u must be followed by four hex digits");
      *out = *out << 4 | (gunichar) d;
    }
  return TRUE;
}

/* \uXXXX at s->p - 2, with the low half when it is a high surrogate. */
static gboolean
read_unicode_escape (NsJsonScan *s, const char *escape, gunichar *out)
{
  gunichar low;
  if (!read_hex4 (s, escape, out))
    return FALSE;
  if (*out >= 0xDC00 && *out <= 0xDFFF)
    return ns_json_scan_fail_at (s, escape, "\\u%04X is the second half of a surrogate pair "
                                 "without its first half", *out);
  if (*out >= 0xD800 && *out <= 0xDBFF)
    {
      if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
        return ns_json_scan_fail_at (s, escape, "\\u%04X (first half of a surrogate pair) "
                                     "must be followed by a \\uDC00..\\uDFFF escape", *out);
      s->p += 2;
      if (!read_hex4 (s, escape, &low))
        return FALSE;
      if (low < 0xDC00 || low > 0xDFFF)
        return ns_json_scan_fail_at (s, escape, "\\u%04X (first half of a surrogate pair) is "
                                     "followed by \\u%04X, not by a second half", *out, low);
      *out = 0x10000 + ((*out - 0xD800) << 10) + (low - 0xDC00);
    }
  if (*out == 0)
    return ns_json_scan_fail_at (s, escape, "\\u0000 (NUL) is not supported in strings");
  return TRUE;
}

/* The escape at s->p (a backslash), decoded into the buffer. */
static gboolean
append_escape (NsJsonScan *s)
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
    return ns_json_scan_fail_at (s, escape, "invalid escape in a string: a backslash must be "
                                 "followed by one of \" \\ / b f n r t u");
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

gboolean
ns_json_scan_append_string (NsJsonScan *s)
{
  if (!ns_json_scan_next_is (s, '"'))
    return ns_json_scan_unexpected (s, "a string");
  const char *start = s->p++;
  gsize from = s->len;
  for (;;)
    {
      const char *run = s->p;
      while (s->p < s->end && plain_char (*s->p))
        s->p++;
      buf_append (s, run, s->p - run);
      if (s->p >= s->end)
        return ns_json_scan_fail_at (s, start, "the string that starts here is not closed");
      if (*s->p == '"')
        break;
      if (*s->p != '\\')
        return ns_json_scan_fail_at (s, s->p, "control character 0x%02x inside a string "
                                     "(JSON needs it written as \\u%04x)", (guchar) *s->p,
                                     (guchar) *s->p);
      if (!append_escape (s))
        return FALSE;
    }
  s->p++;
  s->buf[s->len] = '\0';
  if (!g_utf8_validate_len (s->buf + from, s->len - from, NULL))
    return ns_json_scan_fail_at (s, start, "the string that starts here is not valid UTF-8");
  return TRUE;
}

gboolean
ns_json_scan_read_string (NsJsonScan *s)
{
  s->len = 0;
  return ns_json_scan_append_string (s);
}

gboolean
ns_json_scan_key_is (const NsJsonScan *s, const char *name)
{
  return s->len == strlen (name) && memcmp (s->buf, name, s->len) == 0;
}

/* ---- other values ---- */

static gboolean
skip_digits (NsJsonScan *s)
{
  const char *from = s->p;
  while (ns_json_is_digit (ns_json_scan_peek (s)))
    s->p++;
  return s->p > from || ns_json_scan_unexpected (s, "a digit");
}

/* The digits at s->p as a magnitude; FALSE when it exceeds `limit`. */
static gboolean
read_magnitude (NsJsonScan *s, guint64 limit, guint64 *out)
{
  gboolean fits = TRUE;
  *out = 0;
  for (; ns_json_is_digit (ns_json_scan_peek (s)); s->p++)
    {
      guint d = (guint) (*s->p - '0');
      fits = fits && *out <= (limit - d) / 10;
      *out = fits ? *out * 10 + d : *out;
    }
  return fits;
}

/* Whether the number text [start, s->p) is finite as a double. */
static gboolean
finite_double (const NsJsonScan *s, const char *start)
{
  g_autofree char *text = g_strndup (start, s->p - start);
  return isfinite (g_ascii_strtod (text, NULL));
}

gboolean
ns_json_scan_read_number (NsJsonScan *s, gint64 *value, gboolean *integer)
{
  const char *start = s->p;
  gboolean negative = ns_json_scan_peek (s) == '-';
  s->p += negative;
  if (ns_json_scan_peek (s) == '0' && s->end - s->p >= 2 && ns_json_is_digit (s->p[1]))
    return ns_json_scan_fail_at (s, start, "numbers cannot start with 0 (no leading zeros "
                                 "in JSON)");
  if (!ns_json_is_digit (ns_json_scan_peek (s)))
    return ns_json_scan_unexpected (s, "a digit");
  guint64 magnitude;
  gboolean fits = read_magnitude (s, (guint64) G_MAXINT64 + negative, &magnitude);
  *integer = TRUE;
  if (ns_json_scan_peek (s) == '.')
    {
      s->p++;
      *integer = FALSE;
      if (!skip_digits (s))
        return FALSE;
    }
  if (ns_json_scan_peek (s) == 'e' || ns_json_scan_peek (s) == 'E')
    {
      s->p++;
      *integer = FALSE;
      s->p += ns_json_scan_peek (s) == '+' || ns_json_scan_peek (s) == '-';
      if (!skip_digits (s))
        return FALSE;
    }
  if (*integer && !fits)
    return ns_json_scan_fail_at (s, start, "the integer %.*s is outside the 64-bit range",
                                 (int) MIN (s->p - start, 40), start);
  if (!*integer && !finite_double (s, start))
    return ns_json_scan_fail_at (s, start, "the number %.*s is too large for a double",
                                 (int) MIN (s->p - start, 40), start);
  *value = negative ? (gint64) (0 - magnitude) : (gint64) magnitude;
  return TRUE;
}

static gboolean
read_literal (NsJsonScan *s)
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
  return ns_json_scan_unexpected (s, "a value");
}

/* ---- containers ---- */

gboolean
ns_json_scan_open (NsJsonScan *s, char close, guint depth, gboolean *more)
{
  if (depth > NS_JSON_MAX_DEPTH)
    return ns_json_scan_fail_at (s, s->p, "the JSON nests objects and arrays more than %d "
                                 "deep", NS_JSON_MAX_DEPTH);
  s->p++;
  *more = !ns_json_scan_accept (s, close);
  return TRUE;
}

gboolean
ns_json_scan_after_item (NsJsonScan *s, char close, gboolean *more)
{
  *more = ns_json_scan_accept (s, ',');
  return *more || ns_json_scan_accept (s, close)
         || ns_json_scan_unexpected (s, close == '}' ? "',' or '}'" : "',' or ']'");
}

gboolean
ns_json_scan_object (NsJsonScan *s, guint depth, NsJsonMemberFunc member, gpointer data)
{
  gboolean more = FALSE;
  if (!ns_json_scan_open (s, '}', depth, &more))
    return FALSE;
  while (more)
    if (!ns_json_scan_read_string (s)
        || !(ns_json_scan_accept (s, ':') || ns_json_scan_unexpected (s, "':'"))
        || !member (s, depth, data) || !ns_json_scan_after_item (s, '}', &more))
      return FALSE;
  return TRUE;
}

static gboolean
skip_member (NsJsonScan *s, guint depth, gpointer data)
{
  (void) data;
  return ns_json_scan_skip_value (s, depth);
}

static gboolean
skip_array (NsJsonScan *s, guint depth)
{
  gboolean more = FALSE;
  if (!ns_json_scan_open (s, ']', depth, &more))
    return FALSE;
  while (more)
    if (!ns_json_scan_skip_value (s, depth) || !ns_json_scan_after_item (s, ']', &more))
      return FALSE;
  return TRUE;
}

gboolean
ns_json_scan_skip_value (NsJsonScan *s, guint depth)
{
  gint64 unused_value;
  gboolean unused_integer;
  ns_json_scan_skip_ws (s);
  int c = ns_json_scan_peek (s);
  if (c == '{')
    return ns_json_scan_object (s, depth + 1, skip_member, NULL);
  if (c == '[')
    return skip_array (s, depth + 1);
  if (c == '"')
    return ns_json_scan_read_string (s);
  if (c == '-' || ns_json_is_digit (c))
    return ns_json_scan_read_number (s, &unused_value, &unused_integer);
  return read_literal (s);
}
