/* json-tables.c — the two huge members of tokenizer.json, model.vocab and
 * model.merges (150k entries each in Qwen2's 11 MB file), read straight
 * into the BPE tables with the engine's strict scanner (files/json-scan.h).
 * A json-glib tree of them took most of the load time (one node, one hash
 * entry and several allocations per entry, then freeing it all); the rest
 * of the file is small and goes through ns_json_load. The whole file is
 * checked here first, as HF's serde_json reads it. */
#include <string.h>

#include "nextstep.h"
#include "files/json-scan.h"
#include "tokenizer-private.h"

/* ---- finding the tables ---- */

typedef struct {
  NsJsonTables *tables;
  gboolean model_seen;
} Found;

static gboolean
model_member (NsJsonScan *s, guint depth, gpointer data)
{
  NsJsonTables *t = data;
  NsJsonSpan *span = ns_json_scan_key_is (s, "vocab")    ? &t->vocab
                     : ns_json_scan_key_is (s, "merges") ? &t->merges
                                                         : NULL;
  ns_json_scan_skip_ws (s);
  if (span == NULL)
    return ns_json_scan_skip_value (s, depth);
  if (span->end != 0)
    return ns_json_scan_fail_at (s, s->p, "model.%s is given twice", s->buf);
  span->start = s->p - s->doc;
  if (!ns_json_scan_skip_value (s, depth))
    return FALSE;
  span->end = s->p - s->doc;
  return TRUE;
}

static gboolean
top_member (NsJsonScan *s, guint depth, gpointer data)
{
  Found *f = data;
  if (!ns_json_scan_key_is (s, "model"))
    return ns_json_scan_skip_value (s, depth);
  if (f->model_seen)
    return ns_json_scan_fail_at (s, s->p, "the top-level member \"model\" is given twice");
  f->model_seen = TRUE;
  /* A model of another type is reported by the json-glib checks. */
  if (!ns_json_scan_next_is (s, '{'))
    return ns_json_scan_skip_value (s, depth);
  return ns_json_scan_object (s, depth + 1, model_member, f->tables);
}

gboolean
ns_json_find_tables (const char *json, gsize size, const char *label, NsJsonTables *tables,
                     GError **error)
{
  g_auto (NsJsonScan) s;
  Found found = { tables, FALSE };
  ns_json_scan_init (&s, json, size, label, error);
  s.hint = "the file is damaged: download it again";
  *tables = (NsJsonTables) { { 0, 0 }, { 0, 0 } };
  ns_json_scan_skip_bom (&s);
  gboolean object = ns_json_scan_next_is (&s, '{');
  if (!(object ? ns_json_scan_object (&s, 1, top_member, &found)
               : ns_json_scan_skip_value (&s, 0)))
    return FALSE;
  return ns_json_scan_expect_end (&s);
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
scan_span (NsJsonScan *s, NsJsonSpan span, char open, const char *what)
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
vocab_member (NsJsonScan *s, guint depth, gpointer data)
{
  gint64 id = -1;
  gboolean integer = FALSE;
  (void) depth;
  ns_json_scan_skip_ws (s);
  const char *at = s->p;
  int c = ns_json_scan_peek (s);
  if ((c == '-' || ns_json_is_digit (c)) && !ns_json_scan_read_number (s, &id, &integer))
    return FALSE;
  if (!integer)
    return ns_json_scan_fail_at (s, at, "model.vocab[\"%s\"] must be an integer id", s->buf);
  return ns_bpe_add_token (data, s->buf, s->len, id, s->label, s->error);
}

gboolean
ns_json_read_vocab (NsBpe *bpe, const char *json, NsJsonSpan span, const char *label,
                    GError **error)
{
  g_auto (NsJsonScan) s;
  ns_json_scan_init (&s, json, 0, label, error);
  if (!scan_span (&s, span, '{', "model.vocab must be an object"))
    return FALSE;
  /* The texts are shorter than their JSON. */
  ns_bpe_reserve_text (bpe, span.end - span.start);
  return ns_json_scan_object (&s, 1, vocab_member, bpe);
}

static gboolean
merge_shape_error (NsJsonScan *s, const char *at, guint rank)
{
  return ns_json_scan_fail_at (s, at, "model.merges[%u] must be a pair of strings or a "
                               "\"left right\" string", rank);
}

/* The merge that comes next, into the buffer as "leftright"; *left_len is
 * the length of left. */
static gboolean
read_merge (NsJsonScan *s, guint rank, gsize *left_len)
{
  ns_json_scan_skip_ws (s);
  const char *at = s->p;
  if (ns_json_scan_peek (s) == '"')
    {
      if (!ns_json_scan_read_string (s))
        return FALSE;
      char *space = memchr (s->buf, ' ', s->len);
      if (space == NULL || memchr (space + 1, ' ', s->buf + s->len - (space + 1)) != NULL)
        return ns_json_scan_fail_at (s, at, "model.merges[%u] \"%s\" must be two tokens "
                                     "separated by one space", rank, s->buf);
      *left_len = space - s->buf;
      memmove (space, space + 1, s->len - *left_len);   /* with the NUL */
      s->len--;
      return TRUE;
    }
  s->len = 0;
  if (!ns_json_scan_accept (s, '[') || !ns_json_scan_next_is (s, '"'))
    return merge_shape_error (s, at, rank);
  if (!ns_json_scan_append_string (s))
    return FALSE;
  *left_len = s->len;
  if (!ns_json_scan_accept (s, ',') || !ns_json_scan_next_is (s, '"'))
    return merge_shape_error (s, at, rank);
  return ns_json_scan_append_string (s)
         && (ns_json_scan_accept (s, ']') || merge_shape_error (s, at, rank));
}

gboolean
ns_json_read_merges (NsBpe *bpe, const char *json, NsJsonSpan span, const char *label,
                     GError **error)
{
  g_auto (NsJsonScan) s;
  gboolean more = FALSE;
  ns_json_scan_init (&s, json, 0, label, error);
  if (!scan_span (&s, span, '[', "model.merges must be an array")
      || !ns_json_scan_open (&s, ']', 1, &more))
    return FALSE;
  /* A hint (the table still grows): there are about as many merges as
   * tokens, and a long list of junk cannot size a huge table up front. */
  ns_bpe_reserve_merges (bpe, ns_bpe_vocab_len (bpe));
  for (guint rank = 0; more; rank++)
    {
      gsize left_len = 0;
      if (!read_merge (&s, rank, &left_len)
          || !ns_bpe_add_merge (bpe, s.buf, left_len, s.len - left_len, rank, label, error)
          || !ns_json_scan_after_item (&s, ']', &more))
        return FALSE;
    }
  return TRUE;
}
