/* test-json-load.c — the one JSON loader (files/json-load.h) and every
 * engine reader that goes through it: two documents back to back, trailing
 * bytes, json-glib's leniencies, nesting and number limits must all be
 * clean refusals naming the text, the same with any json-glib version. */
#include <string.h>

#include "files-test-util.h"
#include "files/config.h"
#include "files/json-load.h"
#include "files/json-scan.h"
#include "files/safetensors.h"
#include "tokenizer/tokenizer.h"

static const char good[] = "{\"a\": [1, -2, 3.5e2, true, null, \"x\\u00e9\\ud83d\\ude00\"], "
                           "\"b\": {\"c\": \"\"}}";

static void
assert_json_refused (const char *text, gsize size, const char *mention)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) root = ns_json_load (text, size, "t.json", "try again", 0, &error);
  g_assert_null (root);
  g_test_message ("%s", error->message);
  ns_files_test_assert_error (error, "t.json", "try again", mention, NULL);
}

static void
test_accepts (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *bom = g_strconcat ("\xEF\xBB\xBF \n", good, "\r\n\t ", NULL);
  g_autoptr (JsonObject) o = ns_json_load_object (bom, strlen (bom), "t.json", NULL,
                                                  NS_JSON_UNIQUE_KEYS, &error);
  g_assert_no_error (error);
  JsonArray *a = json_object_get_array_member (o, "a");
  g_assert_cmpuint (json_array_get_length (a), ==, 6);
  g_assert_cmpint (json_array_get_int_element (a, 1), ==, -2);
  g_assert_cmpfloat (json_array_get_double_element (a, 2), ==, 350.0);
  g_assert_cmpstr (json_array_get_string_element (a, 5), ==, "x\xc3\xa9\xf0\x9f\x98\x80");
  const char *ends[] = { "-9223372036854775808", "9223372036854775807", "1e308", "[]", "\"\"" };
  for (guint i = 0; i < G_N_ELEMENTS (ends); i++)
    {
      g_autoptr (JsonNode) n = ns_json_load (ends[i], strlen (ends[i]), "t.json", NULL, 0, &error);
      g_assert_no_error (error);
      g_assert_nonnull (n);
    }
  /* Without NS_JSON_UNIQUE_KEYS the last of two members counts, as in Python. */
  const char *twice = "{\"k\": 1, \"k\": 2}";
  g_autoptr (JsonObject) t = ns_json_load_object (twice, strlen (twice), "t.json", NULL, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (json_object_get_int_member (t, "k"), ==, 2);
}

/* The case: a second document after the first (a re-download
 * appended to an old file), whole or cut short, and other trailing bytes. */
static void
test_trailing (void)
{
  g_autofree char *doubled = g_strconcat (good, "\n", good, "\n", NULL);
  g_autofree char *cut = g_strndup (doubled, strlen (doubled) - 10);
  const char *const cases[] = { doubled, cut, "{} x", "{}}", "{},", "[1] [2]", "1 2", "{}\n\0" };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_json_refused (cases[i], strlen (cases[i]) + (i == 7 ? 1 : 0),
                         "nothing after the first JSON value");
  assert_json_refused ("{}\xff", 3, "0xff");
}

/* What json-glib accepts (or treats differently between versions) and a
 * strict reader refuses. */
static void
test_grammar (void)
{
  static const struct {
    const char *text, *mention;
  } cases[] = {
    { "", "end of the data" }, { "  \n", "end of the data" }, { "{", "end of the data" },
    { "{\"a\": 1,}", "a string" }, { "[1,]", "a value" }, { "{'a': 1}", "a string" },
    { "/* c */ {}", "a value" }, { "{} // c", "nothing after" }, { "var x = {};", "a value" },
    { "{\"a\": 01}", "leading zeros" }, { "{\"a\": 0x10}", "',' or '}'" },
    { "{\"a\": .5}", "a value" }, { "{\"a\": 1.}", "a digit" }, { "{\"a\": NaN}", "a value" },
    { "{\"a\": \"\\q\"}", "invalid escape" }, { "{\"a\": \"\\u0000\"}", "NUL" },
    { "{\"a\": \"\\ud800\"}", "surrogate" }, { "{\"a\": \"\t\"}", "control character" },
    { "{\"a\": \"\xc3\"}", "UTF-8" }, { "{\"a\": \"x", "not closed" },
    { "9223372036854775808", "64-bit range" }, { "-9223372036854775809", "64-bit range" },
    { "99999999999999999999999", "64-bit range" }, { "1e309", "too large" },
    { "-1e999", "too large" }, { "{\"a\" 1}", "':'" }, { "tru", "a value" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_json_refused (cases[i].text, strlen (cases[i].text), cases[i].mention);
  /* NUL bytes inside the text (json-glib would stop reading there) */
  assert_json_refused ("{\"a\": \"x\0y\"}", 12, "control character");
  assert_json_refused ("{\"a\":\0 1}", 9, "a value");
}

static void
test_depth_and_keys (void)
{
  g_autoptr (GString) deep = g_string_new (NULL);
  for (int i = 0; i < 100000; i++)
    g_string_append (deep, "[{\"a\":");
  assert_json_refused (deep->str, deep->len, "more than 128 deep");
  g_autoptr (GString) ok = g_string_new (NULL);
  for (int i = 0; i < NS_JSON_MAX_DEPTH; i++)
    g_string_append_c (ok, '[');
  for (int i = 0; i < NS_JSON_MAX_DEPTH; i++)
    g_string_append_c (ok, ']');
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) n = ns_json_load (ok->str, ok->len, "t.json", NULL, 0, &error);
  g_assert_no_error (error);
  /* keys: unique per object, checked at every level */
  const char *nested = "{\"o\": [{\"k\": 1, \"j\": {\"k\": 2}, \"k\": 3}]}";
  g_assert_null (ns_json_load (nested, strlen (nested), "t.json", NULL, NS_JSON_UNIQUE_KEYS,
                               &error));
  ns_files_test_assert_error (error, "t.json", "'k' twice", NULL);
  g_clear_error (&error);
  g_assert_null (ns_json_load_object ("[1]", 3, "t.json", "try again", 0, &error));
  ns_files_test_assert_error (error, "t.json", "not a JSON object", "try again", NULL);
}

/* ---- every engine reader ---- */

typedef gboolean (*ReadFunc) (const char *json, gsize size, const char *label, GError **error);

/* The three config readers, by the file name they read. */
static gboolean
read_config (const char *json, gsize size, const char *label, GError **error)
{
  NsModelConfig model = { 0 };
  NsVaeConfig vae = { 0 };
  NsTokenizerConfig tok = { 0 };
  gboolean ok;
  if (g_str_has_prefix (label, "vae/"))
    return ns_vae_config_parse (&vae, json, size, label, error);
  if (g_str_has_prefix (label, "tokenizer"))
    {
      ok = ns_tokenizer_config_parse (&tok, json, size, label, error);
      ns_tokenizer_config_clear (&tok);
      return ok;
    }
  ok = ns_model_config_parse (&model, json, size, label, error);
  ns_model_config_clear (&model);
  return ok;
}

static gboolean
read_index (const char *json, gsize size, const char *label, GError **error)
{
  g_autoptr (GPtrArray) shards = ns_safetensors_parse_index (json, size, label, NULL, error);
  return shards != NULL;
}

static gboolean
read_header (const char *json, gsize size, const char *label, GError **error)
{
  g_autoptr (GByteArray) file = g_byte_array_new ();
  guint8 len[8] = { 0 };
  for (int i = 0; i < 8; i++)
    len[i] = (guint8) ((guint64) size >> (8 * i));
  g_byte_array_append (file, len, 8);
  g_byte_array_append (file, (const guint8 *) json, (guint) size);
  g_byte_array_append (file, (const guint8 *) "\0\0\0\0", 4);
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  return ns_safetensors_parse (store, file->data, file->len, label, error);
}

static gboolean
read_tokenizer (const char *json, gsize size, const char *label, GError **error)
{
  NsTokenizer *tok = ns_tokenizer_new_from_json (json, size, NULL, 0, label, error);
  ns_tokenizer_free (tok);
  return tok != NULL;
}

static const struct {
  const char *name;
  ReadFunc read;
  const char *good;
} readers[] = {
  { "config.json", read_config,
    "{\"model_type\": \"nextstep\", \"hidden_size\": 64, \"num_hidden_layers\": 2, "
    "\"num_attention_heads\": 4, \"intermediate_size\": 128, \"vocab_size\": 1000, "
    "\"boi\": 10, \"eoi\": 11, \"image_placeholder_id\": 12, \"pad_token_id\": 13}" },
  { "vae/config.json", read_config, "{}" },
  { "tokenizer_config.json", read_config, "{\"bos_token\": null}" },
  { "model.safetensors.index.json", read_index, "{\"weight_map\": {\"a\": \"s.safetensors\"}}" },
  { "x.safetensors", read_header,
    "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}" },
  { "tokenizer.json", read_tokenizer,
    "{\"version\": \"1.0\", \"added_tokens\": [], \"normalizer\": null, "
    "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
    "\"trim_offsets\": false, \"use_regex\": false}, \"decoder\": {\"type\": \"ByteLevel\"}, "
    "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
    "\"merges\": [[\"a\", \"b\"]]}}" },
};

static void
test_readers (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (readers); i++)
    {
      const char *doc = readers[i].good;
      g_autoptr (GError) error = NULL;
      gboolean ok = readers[i].read (doc, strlen (doc), readers[i].name, &error);
      g_assert_no_error (error);
      g_assert_true (ok);
      g_autofree char *doubled = g_strconcat (doc, "\n", doc, NULL);
      g_autofree char *garbage = g_strconcat (doc, " garbage", NULL);
      const char *const bad[] = { doubled, garbage };
      for (guint k = 0; k < G_N_ELEMENTS (bad); k++)
        {
          g_assert_false (readers[i].read (bad[k], strlen (bad[k]), readers[i].name, &error));
          g_test_message ("%s", error->message);
          ns_files_test_assert_error (error, readers[i].name, "nothing after the first JSON value",
                                      NULL);
          g_clear_error (&error);
        }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/json-load/accepts", test_accepts);
  g_test_add_func ("/json-load/trailing", test_trailing);
  g_test_add_func ("/json-load/grammar", test_grammar);
  g_test_add_func ("/json-load/depth-and-keys", test_depth_and_keys);
  g_test_add_func ("/json-load/readers", test_readers);
  return g_test_run ();
}
