/* test-tokenizer-load.c — the fast reading of model.vocab and model.merges
 * (json-scan.c): the tables it builds hold exactly what json-glib reads from
 * the same file (the golden tokenizer.json, and a small file full of string
 * escapes and odd whitespace), and malformed input (bad escapes, wrong
 * types, truncation at every offset, random byte changes) is refused with
 * an error, never loaded wrong and never a crash. */
#include <string.h>

#include "test-util.h"
#include "nextstep.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer-private.h"

/* A tokenizer.json around the given model.vocab and model.merges texts. */
static char *
tokenizer_json (const char *vocab, const char *merges)
{
  return g_strdup_printf (
    "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [],\n"
    " \"normalizer\": null,\n"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
    " \"trim_offsets\": false, \"use_regex\": false},\n"
    " \"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"},\n"
    " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null,\n"
    "  \"vocab\": %s,\n"
    "  \"merges\": %s}}\n", vocab, merges);
}

/* The tables json-tables.c builds from a whole tokenizer.json. */
static NsBpe *
fast_tables (const char *json, gsize size, GError **error)
{
  NsJsonTables tables;
  NsBpeOptions options = { 0 };
  NsBpe *bpe = ns_bpe_new ();
  if (ns_json_find_tables (json, size, "test", &tables, error)
      && ns_json_read_vocab (bpe, json, tables.vocab, "test", error)
      && ns_bpe_finish_vocab (bpe, &options, "test", error)
      && ns_json_read_merges (bpe, json, tables.merges, "test", error))
    return bpe;
  ns_bpe_free (bpe);
  return NULL;
}

/* Left and right of a merge as json-glib reads it (pair or "a b"). */
static void
merge_parts (JsonNode *node, char **left, char **right)
{
  if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *pair = json_node_get_array (node);
      *left = g_strdup (json_array_get_string_element (pair, 0));
      *right = g_strdup (json_array_get_string_element (pair, 1));
      return;
    }
  g_auto (GStrv) parts = g_strsplit (json_node_get_string (node), " ", -1);
  g_assert_cmpuint (g_strv_length (parts), ==, 2);
  *left = g_strdup (parts[0]);
  *right = g_strdup (parts[1]);
}

/* Every merge json-glib reads has the same rank (the last one for a
 * repeated pair) and result in `bpe`. */
static void
assert_same_merges (NsBpe *bpe, JsonArray *merges)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_autofree gint64 *keys = g_new (gint64, json_array_get_length (merges) + 1);
  for (guint i = json_array_get_length (merges); i-- > 0;)
    {
      g_autofree char *left = NULL, *right = NULL;
      merge_parts (json_array_get_element (merges, i), &left, &right);
      g_autofree char *joined = g_strconcat (left, right, NULL);
      int32_t a = ns_bpe_token_id (bpe, left), b = ns_bpe_token_id (bpe, right), rank = -1;
      g_assert_cmpint (a, >=, 0);
      g_assert_cmpint (b, >=, 0);
      keys[i] = (gint64) a << 32 | b;
      if (!g_hash_table_add (seen, &keys[i]))
        continue;
      g_assert_cmpint (ns_bpe_merge (bpe, a, b, &rank), ==, ns_bpe_token_id (bpe, joined));
      g_assert_cmpint (rank, ==, i);
    }
}

/* The fast tables of `json` hold exactly what json-glib reads from it. */
static void
assert_same_tables (const char *json, gsize size)
{
  g_autoptr (GError) error = NULL;
  NsBpe *bpe = fast_tables (json, size, &error);
  g_assert_no_error (error);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, json, size, NULL));
  JsonObject *model = json_object_get_object_member (
    json_node_get_object (json_parser_get_root (parser)), "model");
  JsonObject *vocab = json_object_get_object_member (model, "vocab");
  g_autoptr (GList) names = json_object_get_members (vocab);
  g_assert_cmpuint (ns_bpe_vocab_len (bpe), ==, json_object_get_size (vocab));
  for (GList *l = names; l != NULL; l = l->next)
    g_assert_cmpint (ns_bpe_token_id (bpe, l->data), ==,
                     json_object_get_int_member (vocab, l->data));
  assert_same_merges (bpe, json_object_get_array_member (model, "merges"));
  ns_bpe_free (bpe);
}

static void
test_golden_tables (void)
{
  g_autofree char *path = ns_test_golden_path ("tokenizer", "tokenizer.json", NULL);
  g_autofree char *json = NULL;
  gsize size;
  if (path == NULL)
    {
      g_test_skip ("no golden data (NS_GOLDEN_DIR)");
      return;
    }
  g_assert_true (g_file_get_contents (path, &json, &size, NULL));
  assert_same_tables (json, size);
}

/* Every escape JSON has, surrogate pairs, raw UTF-8, whitespace everywhere,
 * a repeated key and a repeated merge, and both merge forms. */
static const char escapes_vocab[] =
  "{ \"A\" : 0 ,\"\\u0041b\":1,\n\t\"b\"\r\n:\t2, \"\\\\\": 3, \"\\\"\": 4, \"\\/x\": 5,"
  " \"\\b\\f\\n\\r\\t\": 6, \"\\ud83d\\ude00\": 7, \"\\uD83D\\uDE00!\": 8, \"\xc3\xa9\": 9,"
  " \"\\u00e9\\u00E9\": 10, \"\\uffff\": 11, \"\\\\\\\"\": 12, \"\\ud83d\\ude00\\ud83d\\ude00!\": 13,"
  " \"\xc3\xa9\\u00e9\": 14, \"b\": 15 }";
static const char escapes_merges[] =
  "[ [\"A\", \"b\"], \"\\u0041 b\" ,[\"\\\\\",\"\\\"\"],\n"
  " [ \"\\ud83d\\ude00\" , \"\\ud83d\\ude00!\" ], \"\xc3\xa9 \\u00e9\", \"\\u00e9 \\u00e9\" ]";

static void
test_escapes (void)
{
  g_autofree char *json = tokenizer_json (escapes_vocab, escapes_merges);
  assert_same_tables (json, strlen (json));
  /* A few decodings spelled out, in case json-glib and the scanner agreed on
   * something wrong. */
  g_autoptr (GError) error = NULL;
  g_autoptr (NsTokenizer) tok = ns_tokenizer_new_from_json (json, strlen (json), NULL, 0,
                                                            "escapes", &error);
  g_assert_no_error (error);
  g_assert_cmpint (ns_tokenizer_token_id (tok, "Ab"), ==, 1);
  g_assert_cmpint (ns_tokenizer_token_id (tok, "b"), ==, 15);
  g_assert_cmpint (ns_tokenizer_token_id (tok, "\b\f\n\r\t"), ==, 6);
  g_assert_cmpint (ns_tokenizer_token_id (tok, "\xf0\x9f\x98\x80"), ==, 7);
  g_assert_cmpint (ns_tokenizer_token_id (tok, "\xef\xbf\xbf"), ==, 11);
  g_assert_cmpint (ns_tokenizer_token_id (tok, "\\\""), ==, 12);
}

/* ---- refusals ---- */

static const char good_vocab[] = "{\"a\": 0, \"b\": 1, \"ab\": 2}";
static const char good_merges[] = "[[\"a\", \"b\"]]";

/* Loading `json` fails with NS_ERROR_FORMAT and a message naming the file. */
static void
assert_refused (const char *json, gsize size, const char *what)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (NsTokenizer) tok = ns_tokenizer_new_from_json (json, size, NULL, 0, "bad.json",
                                                            &error);
  g_test_message ("%s: %s", what, error ? error->message : "(accepted)");
  g_assert_null (tok);
  g_assert_error (error, NS_ERROR, NS_ERROR_FORMAT);
  g_assert_true (g_str_has_prefix (error->message, "bad.json: "));
}

static void
test_refusals (void)
{
  static const struct { const char *vocab, *merges; } cases[] = {
    /* escapes and characters in strings */
    { "{\"\\x41\": 0}", "[]" }, { "{\"\\'\": 0}", "[]" }, { "{\"\\u12\": 0}", "[]" },
    { "{\"\\u12g4\": 0}", "[]" }, { "{\"\\ud800\": 0}", "[]" }, { "{\"\\udc00\": 0}", "[]" },
    { "{\"\\ud800\\u0041\": 0}", "[]" }, { "{\"\\ud800x\": 0}", "[]" },
    { "{\"\\u0000\": 0}", "[]" }, { "{\"a\\u0000b\": 0}", "[]" }, { "{\"\x01\": 0}", "[]" },
    { "{\"\t\": 0}", "[]" }, { "{\"\n\": 0}", "[]" }, { "{\"\xff\": 0}", "[]" },
    { "{\"\xed\xa0\x80\": 0}", "[]" }, { "{\"\xc0\xaf\": 0}", "[]" }, { "{\"a\\", "[]" },
    /* ids */
    { "{\"a\": \"1\"}", "[]" }, { "{\"a\": 1.5}", "[]" }, { "{\"a\": 1e2}", "[]" },
    { "{\"a\": 1E+2}", "[]" }, { "{\"a\": -1}", "[]" }, { "{\"a\": 01}", "[]" },
    { "{\"a\": 0x10}", "[]" }, { "{\"a\": true}", "[]" }, { "{\"a\": null}", "[]" },
    { "{\"a\": 99999999999999999999}", "[]" }, { "{\"a\": 16777216}", "[]" },
    { "{\"a\": +1}", "[]" }, { "{\"a\": []}", "[]" }, { "{\"a\": {}}", "[]" },
    { "{\"a\": -}", "[]" }, { "{\"a\": 1.}", "[]" }, { "{\"a\": .5}", "[]" },
    { "{\"a\": 0, \"b\": 0}", "[]" },
    /* the vocab object */
    { "{\"a\": 0,}", "[]" }, { "{\"a\" 0}", "[]" }, { "{\"a\": 0 \"b\": 1}", "[]" },
    { "{'a': 0}", "[]" }, { "{a: 0}", "[]" }, { "{\"a\": 0 /* c */}", "[]" },
    { "[]", "[]" }, { "\"a\"", "[]" }, { "1", "[]" }, { "null", "[]" },
    { "{\"a\": 0}, \"vocab\": {\"a\": 0}", "[]" },
    /* merges */
    { good_vocab, "[5]" }, { good_vocab, "[[\"a\"]]" }, { good_vocab, "[[\"a\", \"b\", \"ab\"]]" },
    { good_vocab, "[[\"a\", 1]]" }, { good_vocab, "[[1, \"a\"]]" }, { good_vocab, "[\"ab\"]" },
    { good_vocab, "[\"a  b\"]" }, { good_vocab, "[\"a b ab\"]" }, { good_vocab, "[\"a b\",]" },
    { good_vocab, "[[\"a\", \"c\"]]" }, { good_vocab, "[\"b a\"]" }, { good_vocab, "{}" },
    { good_vocab, "\"a b\"" }, { good_vocab, "null" }, { good_vocab, "[[\"a\", \"b\"] \"a b\"]" },
    { good_vocab, "[[\"a\\u0000\", \"b\"]]" }, { good_vocab, "[[\"a\", \"b\"]], \"merges\": []" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *json = tokenizer_json (cases[i].vocab, cases[i].merges);
      g_autofree char *what = g_strdup_printf ("vocab %s, merges %s", cases[i].vocab,
                                               cases[i].merges);
      assert_refused (json, strlen (json), what);
    }
  g_autofree char *good = tokenizer_json (good_vocab, good_merges);
  g_autoptr (GString) no_vocab = g_string_new (good), no_merges = g_string_new (good);
  g_string_replace (no_vocab, "\"vocab\"", "\"Vocab\"", 1);
  g_string_replace (no_merges, "\"merges\"", "\"Merges\"", 1);
  g_autofree char *twice = g_strdup_printf ("%.*s, \"model\": {}}", (int) strlen (good) - 2, good);
  g_autoptr (GString) deep = g_string_new ("{\"post_processor\": ");
  for (int i = 0; i < 200; i++)
    g_string_append_c (deep, '[');
  for (int i = 0; i < 200; i++)
    g_string_append_c (deep, ']');
  g_string_append (deep, "}");
  const char *const docs[] = { "", " ", "{", "[]", no_vocab->str, no_merges->str, twice, deep->str,
                               "{\"version\": \"1.0\"} x" };
  for (guint i = 0; i < G_N_ELEMENTS (docs); i++)
    assert_refused (docs[i], strlen (docs[i]), docs[i]);
}

/* Messages say where the problem is. */
static void
test_error_position (void)
{
  g_autofree char *json = tokenizer_json ("{\"a\": 0,\n   \"\\q\": 1}", "[]");
  g_autoptr (GError) error = NULL;
  g_assert_null (ns_tokenizer_new_from_json (json, strlen (json), NULL, 0, "pos.json", &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_FORMAT);
  g_test_message ("%s", error->message);
  /* the template puts the vocab on line 6, so the bad escape is on line 7 */
  g_assert_nonnull (strstr (error->message, "line 7, column 5 "));
}

/* ---- arbitrary input ---- */

static void
test_truncated (void)
{
  g_autofree char *json = tokenizer_json (escapes_vocab, escapes_merges);
  gsize size = strlen (json);
  /* (json ends with "}\n": only the last cut is whole) */
  for (gsize cut = 0; cut + 1 < size; cut++)
    {
      /* a copy of exactly `cut` bytes: no NUL after it to stop at */
      g_autofree char *part = g_malloc (cut + 1);
      memcpy (part, json, cut);
      g_autofree char *what = g_strdup_printf ("cut at %" G_GSIZE_FORMAT, cut);
      assert_refused (part, cut, what);
    }
  g_autofree char *path = ns_test_golden_path ("tokenizer", "tokenizer.json", NULL);
  g_autofree char *golden = NULL;
  if (path == NULL || !g_file_get_contents (path, &golden, &size, NULL))
    return;
  for (int k = 1; k < 24; k++)
    {
      gsize cut = size / 24 * k + k;
      g_autofree char *what = g_strdup_printf ("golden cut at %" G_GSIZE_FORMAT, cut);
      assert_refused (golden, cut, what);
    }
}

/* Random byte changes: loaded or refused, never a crash (run under ASan or
 * valgrind for the full meaning). */
static void
test_mutations (void)
{
  static const char alphabet[] = "\"\\{}[],: \n0123456789-+.eEtrufalsn\x01\x80\xc3\xed";
  g_autofree char *json = tokenizer_json (escapes_vocab, escapes_merges);
  gsize size = strlen (json);
  g_autoptr (GRand) rng = g_rand_new_with_seed (11);
  for (int k = 0; k < 3000; k++)
    {
      g_autofree char *copy = g_memdup2 (json, size);
      for (int n = g_rand_int_range (rng, 1, 4); n > 0; n--)
        copy[g_rand_int_range (rng, 0, size)] =
          alphabet[g_rand_int_range (rng, 0, sizeof alphabet - 1)];
      g_autoptr (GError) error = NULL;
      g_autoptr (NsTokenizer) tok = ns_tokenizer_new_from_json (copy, size, NULL, 0, "mutant",
                                                                &error);
      g_assert_true ((tok == NULL) != (error == NULL));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tokenizer/load/golden-tables", test_golden_tables);
  g_test_add_func ("/tokenizer/load/escapes", test_escapes);
  g_test_add_func ("/tokenizer/load/refusals", test_refusals);
  g_test_add_func ("/tokenizer/load/error-position", test_error_position);
  g_test_add_func ("/tokenizer/load/truncated", test_truncated);
  g_test_add_func ("/tokenizer/load/mutations", test_mutations);
  return g_test_run ();
}
