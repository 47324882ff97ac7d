/* json-load.c — see json-load.h. */
#include "nextstep.h"
#include "files/json-load.h"
#include "files/json-scan.h"

/* ---- the check before json-glib ---- */

static gboolean check_value (NsJsonScan *s, guint depth, gboolean unique);

/* json-glib keeps only the last of duplicate members, silently: a file that
 * says two things would mean the second. `keys` is NULL where that is
 * allowed. */
static gboolean
check_member (NsJsonScan *s, guint depth, gpointer keys)
{
  if (keys != NULL && !g_hash_table_add (keys, g_strndup (s->buf, s->len)))
    return ns_json_scan_fail_at (s, s->p, "the object has the key '%s' twice; keys must be "
                                 "unique", s->buf);
  return check_value (s, depth, keys != NULL);
}

static gboolean
check_array (NsJsonScan *s, guint depth, gboolean unique)
{
  gboolean more = FALSE;
  if (!ns_json_scan_open (s, ']', depth, &more))
    return FALSE;
  while (more)
    if (!check_value (s, depth, unique) || !ns_json_scan_after_item (s, ']', &more))
      return FALSE;
  return TRUE;
}

/* ns_json_scan_skip_value, with the keys of each object checked when
 * `unique`. */
static gboolean
check_value (NsJsonScan *s, guint depth, gboolean unique)
{
  ns_json_scan_skip_ws (s);
  int c = ns_json_scan_peek (s);
  if (c == '[')
    return check_array (s, depth + 1, unique);
  if (c != '{' || !unique)
    return ns_json_scan_skip_value (s, depth);
  g_autoptr (GHashTable) keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return ns_json_scan_object (s, depth + 1, check_member, keys);
}

/* Where the single value of json[0, size) starts and ends (a byte order
 * mark and surrounding whitespace left out), or FALSE. */
static gboolean
check_document (const char *json, gsize size, const char *label, const char *hint,
                NsJsonFlags flags, const char **start, const char **end, GError **error)
{
  g_autofree char *what = g_strdup_printf ("%s: not valid JSON", label);
  g_auto (NsJsonScan) s;
  ns_json_scan_init (&s, json, size, what, error);
  s.hint = hint;
  ns_json_scan_skip_bom (&s);
  ns_json_scan_skip_ws (&s);
  *start = s.p;
  if (!check_value (&s, 0, (flags & NS_JSON_UNIQUE_KEYS) != 0))
    return FALSE;
  *end = s.p;
  return ns_json_scan_expect_end (&s);
}

/* ---- the tree ---- */

JsonNode *
ns_json_load (const char *json, gsize size, const char *label, const char *hint,
              NsJsonFlags flags, GError **error)
{
  const char *start, *end;
  if (json == NULL)     /* empty: refused below, with a message */
    json = "", size = 0;
  if (!check_document (json, size, label, hint, flags, &start, &end, error))
    return NULL;
  /* A mutable parser: json-glib 1.10 asserts on some immutable-parser
   * states, and nothing here shares the tree. */
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  JsonNode *root = NULL;
  if (json_parser_load_from_data (parser, start, end - start, &local))
    root = json_parser_steal_root (parser);
  if (root == NULL)
    g_set_error (error, NS_ERROR, NS_ERROR_FORMAT, "%s: json-glib cannot read this JSON (%s)%s%s",
                 label, local != NULL ? local->message : "no value", hint != NULL ? "; " : "",
                 hint != NULL ? hint : "");
  return root;
}

JsonObject *
ns_json_load_object (const char *json, gsize size, const char *label, const char *hint,
                     NsJsonFlags flags, GError **error)
{
  JsonNode *root = ns_json_load (json, size, label, hint, flags, error);
  if (root == NULL)
    return NULL;
  JsonObject *object = JSON_NODE_HOLDS_OBJECT (root)
                       ? json_object_ref (json_node_get_object (root)) : NULL;
  if (object == NULL)
    g_set_error (error, NS_ERROR, NS_ERROR_FORMAT, "%s: not a JSON object (it must start "
                 "with '{')%s%s", label, hint != NULL ? "; " : "", hint != NULL ? hint : "");
  json_node_unref (root);
  return object;
}
