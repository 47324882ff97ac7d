/* test-prompt.c — ns_prompt_build against every golden run: the request in
 * the run JSON, the special ids from the case's model/config.json, the
 * tokenizer from the model folder; prompt_ids and attention_mask must be
 * identical. Also the prompt builder's refusals and the BOS variant. */
#include <string.h>

#include "test-util.h"
#include "nextstep.h"
#include "files/config.h"
#include "tokenizer/tokenizer.h"

static const char *
string_or_null (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);
  return n == NULL || JSON_NODE_HOLDS_NULL (n) ? NULL : json_node_get_string (n);
}

/* The spec of a run: the request fields and the case's special ids. */
static void
spec_from_run (JsonObject *run, const NsModelConfig *cfg, NsPromptSpec *spec)
{
  JsonArray *hw = json_object_get_array_member (run, "hw");
  *spec = (NsPromptSpec) {
    .caption = string_or_null (run, "caption"),
    .positive = string_or_null (run, "positive"),
    .negative = string_or_null (run, "negative"),
    .out_h = (int) json_array_get_int_element (hw, 0) / 16,
    .out_w = (int) json_array_get_int_element (hw, 1) / 16,
    .images = (int) json_object_get_int_member (run, "n"),
    .cfg = json_object_get_double_member (run, "cfg"),
    .cfg_img = json_object_get_double_member (run, "cfg_img"),
    .pad_id = cfg->pad_token_id, .boi_id = cfg->boi, .eoi_id = cfg->eoi,
    .placeholder_id = cfg->image_placeholder_id,
  };
  if (json_object_has_member (run, "image"))
    {
      JsonArray *in = json_object_get_array_member (json_object_get_object_member (run, "image"),
                                                    "hw");
      spec->edit = TRUE;
      spec->in_h = (int) json_array_get_int_element (in, 0) / 16;
      spec->in_w = (int) json_array_get_int_element (in, 1) / 16;
      /* The README form is "<image>" + instruction; the spec takes the instruction. */
      g_assert_true (g_str_has_prefix (spec->caption, "<image>"));
      spec->caption += strlen ("<image>");
    }
}

static void
assert_tensor_equal (const NsTensorStore *store, const char *name, const int32_t *ours,
                     int rows, int len, const char *run)
{
  const NsTensorView *ref = ns_tensor_store_find (store, name);
  g_assert_nonnull (ref);
  g_assert_cmpint (ref->dtype, ==, NS_DTYPE_I32);
  g_assert_cmpint (ref->n_dims, ==, 2);
  if (ref->shape[0] != rows || ref->shape[1] != len)
    g_error ("%s: %s is [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "], we built [%d, %d]",
             run, name, ref->shape[0], ref->shape[1], rows, len);
  if (memcmp (ref->data, ours, (gsize) rows * len * sizeof (int32_t)) != 0)
    g_error ("%s: %s differs", run, name);
}

static void
check_run (NsTokenizer *tok, const NsModelConfig *cfg, const char *json_path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) parser = ns_test_load_json (json_path);
  JsonObject *run = json_node_get_object (json_parser_get_root (parser));
  NsPromptSpec spec;
  spec_from_run (run, cfg, &spec);
  g_autoptr (NsPromptRows) rows = ns_prompt_build (tok, &spec, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rows->cfg_mult, ==, json_object_get_int_member (run, "cfg_mult"));
  g_assert_cmpint (rows->rows, ==, json_object_get_int_member (run, "rows"));

  g_autofree char *base = g_strndup (json_path, strlen (json_path) - strlen (".json"));
  g_autofree char *tensors = g_strconcat (base, ".safetensors", NULL);
  g_autoptr (NsTensorStore) store = ns_test_load_safetensors (tensors);
  assert_tensor_equal (store, "prompt_ids", rows->ids, rows->rows, rows->len, json_path);
  assert_tensor_equal (store, "attention_mask", rows->mask, rows->rows, rows->len, json_path);
  const NsTensorView *latents = ns_tensor_store_find (store, "input_latents");
  g_assert_cmpint (rows->n_placeholder_images, ==, latents ? latents->shape[0] : 0);
  g_test_message ("%s: %d rows × %d ids match", json_path, rows->rows, rows->len);
}

/* Every run of a golden case, with the case's tokenizer and config.json. */
static guint
check_case (const char *case_dir)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *model_dir = g_build_filename (case_dir, "model", NULL);
  g_autofree char *config_path = g_build_filename (model_dir, "config.json", NULL);
  g_autofree char *runs_dir = g_build_filename (case_dir, "runs", NULL);
  NsModelConfig cfg = { 0 };
  g_assert_true (ns_model_config_load (&cfg, config_path, &error));
  g_autoptr (NsTokenizer) tok = ns_tokenizer_load (model_dir, &error);
  g_assert_no_error (error);
  g_autoptr (GDir) d = g_dir_open (runs_dir, 0, NULL);
  g_assert_nonnull (d);
  guint runs = 0;
  for (const char *name; (name = g_dir_read_name (d)) != NULL;)
    if (g_str_has_suffix (name, ".json"))
      {
        g_autofree char *path = g_build_filename (runs_dir, name, NULL);
        check_run (tok, &cfg, path);
        runs++;
      }
  ns_model_config_clear (&cfg);
  return runs;
}

static void
test_golden_runs (void)
{
  static const char *const cases[] = { "t2i-tiny", "edit-tiny" };
  guint runs = 0;
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autofree char *dir = ns_test_golden_path (cases[c], NULL);
      if (dir == NULL)
        {
          g_test_skip ("no golden data");
          return;
        }
      runs += check_case (dir);
    }
  g_test_message ("%u golden runs", runs);
  g_assert_cmpuint (runs, >, 0);
}

/* ---- refusals and BOS, on the golden tokenizer ---- */

static NsTokenizer *
golden_tokenizer (const char *config_json)
{
  g_autofree char *path = ns_test_golden_path ("tokenizer", "tokenizer.json", NULL);
  g_autofree char *json = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &json, &len, NULL));
  g_autoptr (GError) error = NULL;
  NsTokenizer *tok = ns_tokenizer_new_from_json (json, len, config_json,
                                                 config_json ? strlen (config_json) : 0,
                                                 path, &error);
  g_assert_no_error (error);
  return tok;
}

static NsPromptSpec
edit_spec (NsTokenizer *tok)
{
  return (NsPromptSpec) {
    .edit = TRUE, .caption = "Add a hat.", .negative = "Copy original image.",
    .out_h = 2, .out_w = 3, .in_h = 2, .in_w = 2, .images = 2, .cfg = 7.5, .cfg_img = 2.0,
    .pad_id = ns_tokenizer_token_id (tok, "[PAD]"),
    .boi_id = ns_tokenizer_token_id (tok, "<|begin_of_image|>"),
    .eoi_id = ns_tokenizer_token_id (tok, "<|end_of_image|>"),
    .placeholder_id = ns_tokenizer_token_id (tok, "<|image_placeholder|>"),
  };
}

static void
test_refusals (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  g_autoptr (NsTokenizer) tok = golden_tokenizer (NULL);
  NsPromptSpec ok = edit_spec (tok);
  struct { NsPromptSpec spec; int code; } cases[] = {
    { ok, NS_ERROR_INVALID_ARGUMENT }, { ok, NS_ERROR_INVALID_ARGUMENT },
    { ok, NS_ERROR_INVALID_ARGUMENT }, { ok, NS_ERROR_INVALID_ARGUMENT },
    { ok, NS_ERROR_MODEL }, { ok, NS_ERROR_INVALID_ARGUMENT },
  };
  cases[0].spec.caption = "<|image_placeholder|> a hat";     /* would shift the latents */
  cases[1].spec.cfg = 0.5;
  cases[2].spec.cfg = 1.0;                                    /* image guidance alone */
  cases[3].spec.out_h = 0;
  cases[4].spec.boi_id = 7;                                   /* config and tokenizer disagree */
  cases[5].spec.images = 0;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_assert_null (ns_prompt_build (tok, &cases[i].spec, &error));
      g_assert_error (error, NS_ERROR, cases[i].code);
      g_test_message ("refused: %s", error->message);
    }
}

/* A 3-way edit with a BOS token: every row starts with BOS, row blocks are
 * ordered cond, uncond1, uncond2, and only the first two carry the image. */
static void
test_bos_rows (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  g_autoptr (NsTokenizer) tok = golden_tokenizer ("{\"bos_token\": \"<|endoftext|>\"}");
  g_assert_cmpstr (ns_tokenizer_bos_token (tok), ==, "<|endoftext|>");
  NsPromptSpec spec = edit_spec (tok);
  g_autoptr (GError) error = NULL;
  g_autoptr (NsPromptRows) rows = ns_prompt_build (tok, &spec, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rows->rows, ==, 3 * spec.images);
  g_assert_cmpint (rows->n_placeholder_images, ==, 2 * spec.images);
  int32_t bos = ns_tokenizer_token_id (tok, "<|endoftext|>");
  for (int r = 0; r < rows->rows; r++)
    {
      const int32_t *ids = rows->ids + (gsize) r * rows->len;
      const int32_t *mask = rows->mask + (gsize) r * rows->len;
      int first = 0, placeholders = 0;
      while (mask[first] == 0)
        g_assert_cmpint (ids[first++], ==, spec.pad_id);
      g_assert_cmpint (ids[first], ==, bos);
      g_assert_cmpint (ids[rows->len - 1], ==, spec.boi_id);
      for (int i = first; i < rows->len; i++)
        placeholders += ids[i] == spec.placeholder_id;
      g_assert_cmpint (placeholders, ==, r < 2 * spec.images ? spec.in_h * spec.in_w : 0);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/prompt/golden-runs", test_golden_runs);
  g_test_add_func ("/prompt/refusals", test_refusals);
  g_test_add_func ("/prompt/bos-rows", test_bos_rows);
  return g_test_run ();
}
