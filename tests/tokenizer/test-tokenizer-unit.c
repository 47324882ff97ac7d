/* test-tokenizer-unit.c — tokenizer behaviour beyond the golden cases, on a
 * small tokenizer cut from the golden one (the first 1,000 ids and the
 * merges among them): merges written as "a b" strings, refusal of what is
 * not implemented, invalid UTF-8, lossy decoding, added-token options, long
 * words, and arbitrary input. */
#include <string.h>

#include "test-util.h"
#include "nextstep.h"
#include "tokenizer/tokenizer.h"

#define SMALL_VOCAB 1000

static JsonNode *golden_root;   /* the golden tokenizer.json, parsed once */

static char *
to_text (JsonNode *root, gsize *len)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, len);
}

/* The vocabulary entries below SMALL_VOCAB and the merges among them. */
static JsonObject *
small_model (JsonObject *model, gboolean string_merges)
{
  JsonObject *out = json_object_new ();
  JsonObject *vocab = json_object_get_object_member (model, "vocab");
  JsonObject *small = json_object_new ();
  JsonArray *merges = json_array_new ();
  JsonArray *all = json_object_get_array_member (model, "merges");
  g_autoptr (GList) names = json_object_get_members (model);
  for (GList *l = names; l; l = l->next)
    json_object_set_member (out, l->data, json_node_copy (json_object_get_member (model, l->data)));
  g_autoptr (GList) tokens = json_object_get_members (vocab);
  for (GList *l = tokens; l; l = l->next)
    if (json_object_get_int_member (vocab, l->data) < SMALL_VOCAB)
      json_object_set_int_member (small, l->data, json_object_get_int_member (vocab, l->data));
  for (guint i = 0; i < json_array_get_length (all); i++)
    {
      JsonArray *pair = json_array_get_array_element (all, i);
      const char *a = json_array_get_string_element (pair, 0);
      const char *b = json_array_get_string_element (pair, 1);
      g_autofree char *ab = g_strconcat (a, b, NULL);
      if (!json_object_has_member (small, a) || !json_object_has_member (small, b)
          || !json_object_has_member (small, ab))
        continue;
      if (string_merges)
        {
          g_autofree char *joined = g_strdup_printf ("%s %s", a, b);
          json_array_add_string_element (merges, joined);
        }
      else
        json_array_add_element (merges, json_node_copy (json_array_get_element (all, i)));
    }
  json_object_set_object_member (out, "vocab", small);
  json_object_set_array_member (out, "merges", merges);
  return out;
}

/* The golden tokenizer with a small vocabulary, as a new tree that can be
 * edited (json_node_copy shares objects, so the tree goes through text). */
static JsonNode *
small_root (gboolean string_merges)
{
  JsonObject *golden = json_node_get_object (golden_root);
  g_autoptr (JsonObject) top = json_object_new ();
  g_autoptr (GList) names = json_object_get_members (golden);
  for (GList *l = names; l; l = l->next)
    json_object_set_member (top, l->data, json_node_copy (json_object_get_member (golden, l->data)));
  json_object_set_object_member (top, "model", small_model (
    json_object_get_object_member (golden, "model"), string_merges));
  g_autoptr (JsonNode) node = json_node_init_object (json_node_alloc (), top);
  gsize len;
  g_autofree char *text = to_text (node, &len);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, text, len, NULL));
  return json_node_copy (json_parser_get_root (parser));
}

static NsTokenizer *
small_tokenizer (gboolean string_merges)
{
  g_autoptr (JsonNode) root = small_root (string_merges);
  gsize len;
  g_autofree char *text = to_text (root, &len);
  g_autoptr (GError) error = NULL;
  NsTokenizer *tok = ns_tokenizer_new_from_json (text, len, NULL, 0, "small", &error);
  g_assert_no_error (error);
  return tok;
}

static GArray *
encode (NsTokenizer *tok, const char *text)
{
  g_autoptr (GError) error = NULL;
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_assert_true (ns_tokenizer_encode (tok, text, -1, ids, &error));
  g_assert_no_error (error);
  return ids;
}

static const char *const texts[] = {
  "Hello, world! The quick brown fox jumps over the lazy dog.",
  "it's 1234 o'clock;\n\n  indented\tcode() {}",
  "a<|image_area|>32*32<|begin_of_image|>",
  "Ελληνικά, 中文, emoji 👩‍👩‍👧",
};

static void
test_string_merges (void)
{
  g_autoptr (NsTokenizer) pairs = small_tokenizer (FALSE);
  g_autoptr (NsTokenizer) strings = small_tokenizer (TRUE);
  for (guint i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr (GArray) a = encode (pairs, texts[i]);
      g_autoptr (GArray) b = encode (strings, texts[i]);
      g_assert_cmpmem (a->data, a->len * 4, b->data, b->len * 4);
      g_assert_cmpuint (a->len, <, strlen (texts[i]));   /* merges did happen */
      g_autofree char *back = ns_tokenizer_decode (strings, (int32_t *) b->data, b->len, NULL);
      g_assert_cmpstr (back, ==, texts[i]);
    }
}

/* ---- refusals ---- */

typedef struct {
  const char *path;             /* dot-separated members / array indices */
  const char *json;             /* new value */
  int code;
} Edit;

static void
set_path (JsonNode *root, const char *path, const char *json)
{
  g_auto (GStrv) parts = g_strsplit (path, ".", -1);
  JsonNode *node = root;
  guint n = g_strv_length (parts);
  for (guint i = 0; i + 1 < n; i++)
    node = JSON_NODE_HOLDS_ARRAY (node)
           ? json_array_get_element (json_node_get_array (node), atoi (parts[i]))
           : json_object_get_member (json_node_get_object (node), parts[i]);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, json, -1, NULL));
  json_object_set_member (json_node_get_object (node), parts[n - 1],
                          json_node_copy (json_parser_get_root (parser)));
}

static void
test_refusals (void)
{
  static const Edit edits[] = {
    { "model.type", "\"WordPiece\"", NS_ERROR_UNSUPPORTED },
    { "model.dropout", "0.1", NS_ERROR_UNSUPPORTED },
    { "model.continuing_subword_prefix", "\"##\"", NS_ERROR_UNSUPPORTED },
    { "normalizer", "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"b\"}",
      NS_ERROR_UNSUPPORTED },
    { "normalizer", "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
                    "{\"type\": \"Lowercase\"}]}", NS_ERROR_UNSUPPORTED },
    { "pre_tokenizer", "{\"type\": \"Whitespace\"}", NS_ERROR_UNSUPPORTED },
    { "pre_tokenizer", "null", NS_ERROR_UNSUPPORTED },
    { "pre_tokenizer.pretokenizers.0.behavior", "\"Removed\"", NS_ERROR_UNSUPPORTED },
    { "pre_tokenizer.pretokenizers.0.invert", "true", NS_ERROR_UNSUPPORTED },
    { "pre_tokenizer.pretokenizers.0.pattern", "{\"Regex\": \"\\\\w+|\\\\s+\"}",
      NS_ERROR_UNSUPPORTED },
    { "pre_tokenizer.pretokenizers.0.pattern", "{\"Regex\": \"(\"}", NS_ERROR_UNSUPPORTED },
    { "pre_tokenizer.pretokenizers.1.add_prefix_space", "true", NS_ERROR_UNSUPPORTED },
    { "decoder", "{\"type\": \"WordPiece\"}", NS_ERROR_UNSUPPORTED },
    { "truncation", "{\"max_length\": 8}", NS_ERROR_UNSUPPORTED },
    { "model.merges", "[[\"Ġ\", \"no-such-token\"]]", NS_ERROR_FORMAT },
    { "model.merges", "[\"a\"]", NS_ERROR_FORMAT },
    { "model.vocab", "{\"a\": \"one\"}", NS_ERROR_FORMAT },
    { "model.vocab", "{\"a\": 0, \"b\": 0}", NS_ERROR_FORMAT },
    { "model.vocab", "{\"a\": 99999999999}", NS_ERROR_FORMAT },
    { "added_tokens", "[{\"id\": 5, \"content\": \"\"}]", NS_ERROR_FORMAT },
    { "model", "[]", NS_ERROR_FORMAT },
  };
  for (guint i = 0; i < G_N_ELEMENTS (edits); i++)
    {
      g_autoptr (JsonNode) root = small_root (FALSE);
      set_path (root, edits[i].path, edits[i].json);
      gsize len;
      g_autofree char *text = to_text (root, &len);
      g_autoptr (GError) error = NULL;
      g_autoptr (NsTokenizer) tok = ns_tokenizer_new_from_json (text, len, NULL, 0, "edited",
                                                                &error);
      g_test_message ("%s = %s: %s", edits[i].path, edits[i].json,
                      error ? error->message : "(accepted)");
      g_assert_null (tok);
      g_assert_error (error, NS_ERROR, edits[i].code);
    }
  g_autoptr (GError) error = NULL;
  g_assert_null (ns_tokenizer_new_from_json ("{\"model\": ", 10, NULL, 0, "cut", &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_FORMAT);
}

/* ---- UTF-8 ---- */

static void
test_invalid_utf8 (void)
{
  static const char *const bad[] = { "\xff", "ok\xc3", "\xed\xa0\x80", "\xc0\xaf", "a\xf4\x90\x80\x80" };
  g_autoptr (NsTokenizer) tok = small_tokenizer (FALSE);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
      g_assert_false (ns_tokenizer_encode (tok, bad[i], -1, ids, &error));
      g_assert_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT);
      g_assert_cmpuint (ids->len, ==, 0);
    }
  /* NUL is a valid character (Rust strings allow it). */
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_assert_true (ns_tokenizer_encode (tok, "a\0b", 3, ids, &error));
  gsize len;
  g_autofree char *back = ns_tokenizer_decode_len (tok, (int32_t *) ids->data, ids->len, &len,
                                                   &error);
  g_assert_cmpmem (back, len, "a\0b", 3);
}

/* The id of the byte-level token of byte b (b ≥ 0xAE stands for itself). */
static int32_t
byte_id (NsTokenizer *tok, guint8 b)
{
  char utf8[8] = { 0 };
  g_assert_cmpuint (b, >=, 0xAE);
  g_unichar_to_utf8 (b, utf8);
  return ns_tokenizer_token_id (tok, utf8);
}

/* Rust's from_utf8_lossy: one U+FFFD per maximal invalid subsequence. */
static void
test_lossy_decode (void)
{
  static const struct { guint8 bytes[4]; int n; const char *text; } cases[] = {
    { { 0xE4, 0xB8 }, 2, "\uFFFD" },                 /* cut 3-byte sequence */
    { { 0xF0, 0xB0, 0xB0 }, 3, "\uFFFD" },           /* cut 4-byte sequence */
    { { 0xC0, 0xB0 }, 2, "\uFFFD\uFFFD" },           /* C0 never starts one */
    { { 0xED, 0xB0, 0xB0 }, 3, "\uFFFD\uFFFD\uFFFD" }, /* surrogate range */
    { { 0xE4, 0xB8, 0xAE }, 3, "丮" },
  };
  g_autoptr (NsTokenizer) tok = small_tokenizer (FALSE);
  int32_t eot = ns_tokenizer_token_id (tok, "<|endoftext|>");
  g_assert_cmpint (eot, >=, 0);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      /* bytes, an added token, the bytes again: each run decodes alone */
      int32_t ids[9];
      int n = 0;
      for (int k = 0; k < cases[i].n; k++)
        ids[n++] = byte_id (tok, cases[i].bytes[k]);
      ids[n++] = eot;
      for (int k = 0; k < cases[i].n; k++)
        ids[n++] = byte_id (tok, cases[i].bytes[k]);
      g_autoptr (GError) error = NULL;
      g_autofree char *text = ns_tokenizer_decode (tok, ids, n, &error);
      g_autofree char *want = g_strconcat (cases[i].text, "<|endoftext|>", cases[i].text, NULL);
      g_assert_no_error (error);
      g_assert_cmpstr (text, ==, want);
    }
  g_autoptr (GError) error = NULL;
  int32_t unknown[] = { 5, 1 << 30 };
  g_assert_null (ns_tokenizer_decode (tok, unknown, 2, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT);
}

/* ---- added-token options (HF AddedVocabulary semantics) ---- */

static NsTokenizer *
tokenizer_with_added (const char *added_json)
{
  g_autoptr (JsonNode) root = small_root (FALSE);
  set_path (root, "added_tokens", added_json);
  gsize len;
  g_autofree char *text = to_text (root, &len);
  g_autoptr (GError) error = NULL;
  NsTokenizer *tok = ns_tokenizer_new_from_json (text, len, NULL, 0, "added", &error);
  g_assert_no_error (error);
  return tok;
}

/* encode(text) == encode(a) + [id of token] + encode(b). */
static void
assert_split (NsTokenizer *tok, const char *text, const char *a, const char *token,
              const char *b)
{
  g_autoptr (GArray) ids = encode (tok, text);
  g_autoptr (GArray) want = encode (tok, a);
  int32_t id = ns_tokenizer_token_id (tok, token);
  g_array_append_val (want, id);
  g_autoptr (GArray) rest = encode (tok, b);
  g_array_append_vals (want, rest->data, rest->len);
  g_assert_cmpmem (ids->data, ids->len * 4, want->data, want->len * 4);
}

static void
test_added_options (void)
{
  g_autoptr (NsTokenizer) tok = tokenizer_with_added (
    "[{\"id\": 1000, \"content\": \"<L>\", \"lstrip\": true, \"special\": true},"
    " {\"id\": 1001, \"content\": \"<R>\", \"rstrip\": true, \"special\": true},"
    " {\"id\": 1002, \"content\": \"zz\", \"single_word\": true, \"special\": true},"
    " {\"id\": 1003, \"content\": \"cafe\\u0301\", \"normalized\": true},"
    " {\"id\": 1004, \"content\": \"<R>x\", \"special\": true}]");
  g_assert_cmpint (ns_tokenizer_token_id (tok, "<L>"), ==, SMALL_VOCAB);
  assert_split (tok, "a \t<L> b", "a", "<L>", " b");
  assert_split (tok, "a <R> \n b", "a ", "<R>", "b");
  assert_split (tok, "a <R>x", "a ", "<R>x", "");           /* longest wins */
  assert_split (tok, "x zz.", "x ", "zz", ".");
  /* single_word: not inside a word */
  g_autoptr (GArray) inside = encode (tok, "xzz");
  for (guint i = 0; i < inside->len; i++)
    g_assert_cmpint (g_array_index (inside, int32_t, i), !=, ns_tokenizer_token_id (tok, "zz"));
  /* normalized: found after NFC, in composed and decomposed text */
  assert_split (tok, "un café", "un ", "cafe\u0301", "");
  assert_split (tok, "un cafe\u0301!", "un ", "cafe\u0301", "!");
}

/* ---- characters missing from the vocabulary ---- */

/* The small tokenizer without the byte-level characters of bytes F0 ("ð")
 * and 9F ("Ł"), so an emoji (F0 9F 98 80) starts with two unknown bytes,
 * plus the edits given as path = value pairs. */
static NsTokenizer *
tokenizer_missing_bytes (const char *const *edits)
{
  g_autoptr (JsonNode) root = small_root (FALSE);
  JsonObject *model = json_object_get_object_member (json_node_get_object (root), "model");
  JsonObject *vocab = json_object_get_object_member (model, "vocab");
  g_autoptr (GList) names = json_object_get_members (vocab);
  for (GList *l = names; l; l = l->next)
    if (strstr (l->data, "ð") || strstr (l->data, "Ł"))
      json_object_remove_member (vocab, l->data);
  JsonArray *all = json_object_get_array_member (model, "merges");
  JsonArray *kept = json_array_new ();
  for (guint i = 0; i < json_array_get_length (all); i++)
    {
      JsonArray *pair = json_array_get_array_element (all, i);
      const char *a = json_array_get_string_element (pair, 0);
      const char *b = json_array_get_string_element (pair, 1);
      g_autofree char *ab = g_strconcat (a, b, NULL);
      if (json_object_has_member (vocab, a) && json_object_has_member (vocab, b)
          && json_object_has_member (vocab, ab))
        json_array_add_element (kept, json_node_copy (json_array_get_element (all, i)));
    }
  json_object_set_array_member (model, "merges", kept);
  for (; edits && *edits; edits += 2)
    set_path (root, edits[0], edits[1]);
  gsize len;
  g_autofree char *text = to_text (root, &len);
  g_autoptr (GError) error = NULL;
  NsTokenizer *tok = ns_tokenizer_new_from_json (text, len, NULL, 0, "missing", &error);
  g_assert_no_error (error);
  return tok;
}

/* ids == head + tail */
static void
assert_prefixed (const GArray *ids, const int32_t *head, guint n, const GArray *tail)
{
  g_assert_cmpuint (ids->len, ==, n + tail->len);
  g_assert_cmpmem (ids->data, n * 4, head, n * 4);
  g_assert_cmpmem ((int32_t *) ids->data + n, tail->len * 4, tail->data, tail->len * 4);
}

/* HF's merge_word: a missing character is dropped, or becomes the unknown
 * token (consecutive ones fused with fuse_unk), or its UTF-8 bytes as
 * <0xXX> tokens with byte_fallback. */
static void
test_missing_bytes (void)
{
  static const char *const unk[] = { "model.vocab.<unk>", "1000",
                                     "model.unk_token", "\"<unk>\"", NULL };
  static const char *const fused[] = { "model.vocab.<unk>", "1000",
                                       "model.unk_token", "\"<unk>\"",
                                       "model.fuse_unk", "true", NULL };
  static const char *const fallback[] = { "model.vocab.<0xC3>", "1001", "model.vocab.<0xB0>", "1002",
                                          "model.vocab.<0xC5>", "1003", "model.vocab.<0x81>", "1004",
                                          "model.byte_fallback", "true", NULL };
  g_autoptr (NsTokenizer) dropped = tokenizer_missing_bytes (NULL);
  g_autoptr (GArray) rest = encode (dropped, "😀");
  g_autofree char *text = ns_tokenizer_decode (dropped, (int32_t *) rest->data, rest->len, NULL);
  g_assert_cmpstr (text, ==, "\uFFFD\uFFFD");       /* F0 9F gone, 98 80 left */

  g_autoptr (NsTokenizer) with_unk = tokenizer_missing_bytes (unk);
  g_autoptr (GArray) a = encode (with_unk, "😀");
  assert_prefixed (a, (const int32_t[]) { 1000, 1000 }, 2, rest);
  g_autoptr (NsTokenizer) with_fused = tokenizer_missing_bytes (fused);
  g_autoptr (GArray) b = encode (with_fused, "😀");
  assert_prefixed (b, (const int32_t[]) { 1000 }, 1, rest);
  g_autoptr (NsTokenizer) with_fallback = tokenizer_missing_bytes (fallback);
  g_autoptr (GArray) c = encode (with_fallback, "😀");
  /* "ð" is U+00F0 = C3 B0 and "Ł" is U+0141 = C5 81 in UTF-8 */
  assert_prefixed (c, (const int32_t[]) { 1001, 1002, 1003, 1004 }, 4, rest);
}

/* ---- long words and arbitrary input ---- */

static void
test_long_words (void)
{
  g_autoptr (NsTokenizer) tok = small_tokenizer (FALSE);
  static const char *const units[] = { "a", "ab", "ing", " ", "1", "é" };
  for (guint i = 0; i < G_N_ELEMENTS (units); i++)
    {
      GString *s = g_string_new (NULL);
      while (s->len < 200000)
        g_string_append (s, units[i]);
      gint64 t0 = g_get_monotonic_time ();
      g_autoptr (GArray) ids = encode (tok, s->str);
      double secs = (g_get_monotonic_time () - t0) / 1e6;
      g_test_message ("200 kB of \"%s\": %u ids in %.3f s", units[i], ids->len, secs);
      g_assert_cmpfloat (secs, <, 5.0);        /* quadratic merging would take minutes */
      g_autofree char *back = ns_tokenizer_decode (tok, (int32_t *) ids->data, ids->len, NULL);
      g_assert_cmpstr (back, ==, s->str);
      g_string_free (s, TRUE);
    }
}

static void
test_arbitrary_input (void)
{
  g_autoptr (JsonNode) root = small_root (FALSE);
  gsize len;
  g_autofree char *json = to_text (root, &len);
  /* cut JSON never loads and never crashes */
  for (gsize cut = 0; cut < len; cut += len / 97 + 1)
    {
      g_autoptr (GError) error = NULL;
      g_assert_null (ns_tokenizer_new_from_json (json, cut, NULL, 0, "cut", &error));
      g_assert_nonnull (error);
    }
  /* random text round-trips (ASCII and NFC-stable characters) */
  g_autoptr (NsTokenizer) tok = small_tokenizer (FALSE);
  static const gunichar pool[] = { 'a', 'Z', ' ', '\n', '\t', '\'', 's', '1', '<', '|', '>',
                                   0xE9, 0x4E2D, 0x1F600, 0x3000, 0x85, 0x180E, 0x200D };
  GRand *rng = g_rand_new_with_seed (7);
  for (int k = 0; k < 300; k++)
    {
      GString *s = g_string_new (NULL);
      for (int i = g_rand_int_range (rng, 0, 40); i > 0; i--)
        g_string_append_unichar (s, pool[g_rand_int_range (rng, 0, G_N_ELEMENTS (pool))]);
      g_autoptr (GArray) ids = encode (tok, s->str);
      g_autofree char *back = ns_tokenizer_decode (tok, (int32_t *) ids->data, ids->len, NULL);
      g_assert_cmpstr (back, ==, s->str);
      g_string_free (s, TRUE);
    }
  g_rand_free (rng);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autofree char *path = ns_test_golden_path ("tokenizer", "tokenizer.json", NULL);
  if (path == NULL)
    {
      g_test_message ("no golden data: nothing to cut the small tokenizer from");
      return 77;
    }
  g_autoptr (JsonParser) parser = ns_test_load_json (path);
  golden_root = json_parser_get_root (parser);
  g_test_add_func ("/tokenizer/merges-as-strings", test_string_merges);
  g_test_add_func ("/tokenizer/refusals", test_refusals);
  g_test_add_func ("/tokenizer/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/tokenizer/lossy-decode", test_lossy_decode);
  g_test_add_func ("/tokenizer/added-token-options", test_added_options);
  g_test_add_func ("/tokenizer/missing-bytes", test_missing_bytes);
  g_test_add_func ("/tokenizer/long-words", test_long_words);
  g_test_add_func ("/tokenizer/arbitrary-input", test_arbitrary_input);
  return g_test_run ();
}
