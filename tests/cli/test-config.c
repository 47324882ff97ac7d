/* test-config.c — config.json / VAE config.json / tokenizer_config.json
 * parsing: defaults, every refusal, and the enum names of ns-api-model.h. */
#include <string.h>

#include "nextstep.h"
#include "files/config.h"
#include "test-util.h"

/* A complete minimal NextStep config with `extra` members spliced in
 * (later members override earlier ones in json-glib, as in Python). */
static char *
model_json (const char *extra)
{
  return g_strdup_printf ("{\"model_type\": \"nextstep\", \"hidden_size\": 64, "
                          "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                          "\"intermediate_size\": 128, \"vocab_size\": 1000, \"boi\": 10, "
                          "\"eoi\": 11, \"image_placeholder_id\": 12, \"pad_token_id\": 13%s%s}",
                          extra[0] ? ", " : "", extra);
}

static void
test_model_defaults (void)
{
  g_autofree char *json = model_json ("\"bos_token_id\": null, \"eos_token_id\": [5, 6]");
  NsModelConfig c;
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_model_config_parse (&c, json, strlen (json), "config.json", &error));
  g_assert_no_error (error);
  g_assert_cmpint (c.head_dim, ==, 64 / 4);
  g_assert_cmpint (c.num_key_value_heads, ==, c.num_attention_heads);
  g_assert_cmpfloat (c.fm_head_mlp_ratio, ==, 1.0);
  g_assert_false (c.use_gen_pos_embed);
  g_assert_cmpint (c.latent_patch_size, ==, 2);
  g_assert_cmpint (c.latent_channels, ==, 16);
  g_assert_true (c.attention_bias);
  g_assert_cmpint (c.o_attention_bias, ==, c.attention_bias);
  g_assert_false (c.mlp_bias);
  g_assert_cmpint (c.bos_token_id, ==, -1);
  g_assert_cmpint (c.eos_token_id, ==, 5);
  g_assert_cmpint (c.boi, ==, 10);
  g_assert_null (c.vae_name_or_path);
  g_assert_null (c.name_or_path);
  g_assert_cmpstr (c.model_type, ==, "nextstep");
  ns_model_config_clear (&c);
}

static void
test_model_golden (void)
{
  g_autofree char *path = ns_test_golden_path ("edit-tiny", "model", "config.json", NULL);
  if (path == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  g_autoptr (JsonParser) parser = ns_test_load_json (path);
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  NsModelConfig c;
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_model_config_load (&c, path, &error));
  g_assert_no_error (error);
  g_assert_cmpint (c.hidden_size, ==, json_object_get_int_member (o, "hidden_size"));
  g_assert_cmpint (c.num_key_value_heads, ==,
                   json_object_get_int_member (o, "num_key_value_heads"));
  g_assert_cmpint (c.fm_head_layers, ==, json_object_get_int_member (o, "fm_head_layers"));
  g_assert_cmpint (c.vocab_size, ==, json_object_get_int_member (o, "vocab_size"));
  g_assert_cmpfloat (c.rope_theta, ==, json_object_get_double_member (o, "rope_theta"));
  g_assert_cmpstr (c.vae_name_or_path, ==, json_object_get_string_member (o, "vae_name_or_path"));
  ns_model_config_clear (&c);
}

typedef struct {
  const char *extra;      /* spliced into the good config, or a whole text */
  const char *needle;     /* the message must name this */
} Bad;

static const Bad bad_models[] = {
  { "\"model_type\": \"qwen2\"", "'qwen2' model, not NextStep" },
  { "\"model_type\": null", "model_type" },
  { "\"hidden_size\": 0", "hidden_size" },
  { "\"hidden_size\": -64", "hidden_size" },
  { "\"num_hidden_layers\": \"2\"", "num_hidden_layers" },
  { "\"num_attention_heads\": 2.5", "num_attention_heads" },
  { "\"intermediate_size\": 0", "intermediate_size" },
  { "\"num_key_value_heads\": 3", "num_key_value_heads" },
  { "\"head_dim\": 15", "head_dim" },
  { "\"hidden_act\": \"gelu\"", "hidden_act" },
  { "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}", "rope_scaling" },
  { "\"rope_theta\": 0", "rope_theta" },
  { "\"rope_theta\": 1e999", "1e999 is too large" },
  { "\"hidden_size\": 3000000000", "hidden_size" },
  { "\"eos_token_id\": []", "eos_token_id" },
  { "\"rms_norm_eps\": -1e-5", "rms_norm_eps" },
  { "\"vocab_size\": 0", "vocab_size" },
  { "\"attention_bias\": \"yes\"", "attention_bias" },
  { "\"boi\": null", "boi" },
  { "\"eoi\": 1000", "eoi" },
  { "\"image_placeholder_id\": -2", "image_placeholder_id" },
  { "\"pad_token_id\": \"[PAD]\"", "pad_token_id" },
  { "\"bos_token_id\": 5000", "bos_token_id" },
  { "\"latent_patch_size\": 0", "latent_patch_size" },
  { "\"latent_channels\": -16", "latent_channels" },
  { "\"fm_head_dim\": 0", "fm_head_dim" },
  { "\"fm_head_layers\": true", "fm_head_layers" },
  { "\"fm_head_mlp_ratio\": 0", "fm_head_mlp_ratio" },
  { "\"use_gen_pos_embed\": 1", "use_gen_pos_embed" },
  { "\"vae_name_or_path\": 3", "vae_name_or_path" },
};

/* `error` is read only here, after the call that fills it has run. */
static void
assert_refused (gboolean ok, GError **errorp, const char *needle)
{
  GError *error = *errorp;
  g_assert_false (ok);
  g_assert_nonnull (error);
  g_assert_true (error->domain == NS_ERROR);
  if (strstr (error->message, needle) == NULL || strstr (error->message, "cfg.json") == NULL)
    g_error ("message \"%s\" does not name the file and \"%s\"", error->message, needle);
}

static void
test_model_refusals (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (bad_models); i++)
    {
      g_autofree char *json = model_json (bad_models[i].extra);
      NsModelConfig c;
      g_autoptr (GError) error = NULL;
      assert_refused (ns_model_config_parse (&c, json, strlen (json), "cfg.json", &error),
                      &error, bad_models[i].needle);
    }
  static const char *const not_objects[] = { "", "[1, 2]", "{\"model_type\": ", "42" };
  for (gsize i = 0; i < G_N_ELEMENTS (not_objects); i++)
    {
      NsModelConfig c;
      g_autoptr (GError) error = NULL;
      assert_refused (ns_model_config_parse (&c, not_objects[i], strlen (not_objects[i]),
                                             "cfg.json", &error), &error, "cfg.json");
    }
}

static void
test_model_missing_file (void)
{
  NsModelConfig c;
  g_autoptr (GError) error = NULL;
  g_assert_false (ns_model_config_load (&c, "/nonexistent/cfg.json", &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_FILE);
  g_assert_nonnull (strstr (error->message, "/nonexistent/cfg.json"));
}

static void
test_vae_defaults (void)
{
  static const char json[] = "{\"ch\": 32, \"ch_mult\": [1, 2, 2, 2], \"psz\": null}";
  NsVaeConfig v;
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_vae_config_parse (&v, json, strlen (json), "vae.json", &error));
  g_assert_no_error (error);
  g_assert_cmpint (v.psz, ==, 1);
  g_assert_cmpint (v.n_ch_mult, ==, 4);
  g_assert_cmpint (v.ch_mult[3], ==, 2);
  g_assert_cmpint (v.z_channels, ==, 16);
  g_assert_cmpint (v.num_res_blocks, ==, 2);
  g_assert_cmpfloat (v.scaling_factor, ==, 1.0);
  g_assert_true (v.encoder_norm);
}

static void
test_vae_refusals (void)
{
  static const Bad bad[] = {
    { "{\"ch_mult\": []}", "ch_mult" },
    { "{\"ch_mult\": [1, 1, 1, 1, 1, 1, 1, 1, 1]}", "ch_mult" },
    { "{\"ch_mult\": [1, 0]}", "ch_mult" },
    { "{\"ch_mult\": 4}", "ch_mult" },
    { "{\"ch\": 40, \"ch_mult\": [1]}", "ch_mult" },
    { "{\"psz\": 0}", "psz" },
    { "{\"z_channels\": -16}", "z_channels" },
    { "{\"num_res_blocks\": 0}", "num_res_blocks" },
    { "{\"scaling_factor\": 0}", "scaling_factor" },
    { "{\"shift_factor\": \"0.1\"}", "shift_factor" },
    { "{\"encoder_norm\": null, \"deterministic\": 0}", "deterministic" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      NsVaeConfig v;
      g_autoptr (GError) error = NULL;
      assert_refused (ns_vae_config_parse (&v, bad[i].extra, strlen (bad[i].extra), "cfg.json",
                                           &error), &error, bad[i].needle);
    }
}

static void
test_tokenizer_config (void)
{
  static const struct { const char *json; const char *bos; } good[] = {
    { "{\"bos_token\": null, \"eos_token\": \"<|endoftext|>\"}", NULL },
    { "{\"bos_token\": \"<s>\"}", "<s>" },
    { "{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}}", "<s>" },
    { "{}", NULL },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (good); i++)
    {
      NsTokenizerConfig t;
      g_autoptr (GError) error = NULL;
      g_assert_true (ns_tokenizer_config_parse (&t, good[i].json, strlen (good[i].json),
                                                "tc.json", &error));
      g_assert_no_error (error);
      g_assert_cmpstr (t.bos_token, ==, good[i].bos);
      ns_tokenizer_config_clear (&t);
    }
  static const char huge[] = "{\"model_max_length\": 1e30, \"pad_token\": {\"content\": \"[PAD]\"},"
                             " \"add_bos_token\": true}";
  NsTokenizerConfig t;
  g_assert_true (ns_tokenizer_config_parse (&t, huge, strlen (huge), "tc.json", NULL));
  g_assert_cmpint (t.model_max_length, ==, G_MAXINT64);
  g_assert_cmpstr (t.pad_token, ==, "[PAD]");
  g_assert_true (t.add_bos_token);
  ns_tokenizer_config_clear (&t);

  static const Bad bad[] = {
    { "{\"bos_token\": {\"lstrip\": false}}", "bos_token" },
    { "{\"eos_token\": 7}", "eos_token" },
    { "{\"add_bos_token\": \"no\"}", "add_bos_token" },
    { "{\"model_max_length\": -1}", "model_max_length" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      assert_refused (ns_tokenizer_config_parse (&t, bad[i].extra, strlen (bad[i].extra),
                                                 "cfg.json", &error), &error, bad[i].needle);
    }
}

static void
test_enum_names (void)
{
  for (int s = NS_SAMPLER_HF_SDE; s <= NS_SAMPLER_ODE; s++)
    {
      NsSampler back;
      g_assert_true (ns_sampler_from_name (ns_sampler_name (s), &back));
      g_assert_cmpint (back, ==, s);
    }
  for (int b = NS_BACKEND_AUTO; b <= NS_BACKEND_CUDA; b++)
    {
      NsBackendKind back;
      g_assert_true (ns_backend_from_name (ns_backend_name (b), &back));
      g_assert_cmpint (back, ==, b);
    }
  for (int w = NS_WEIGHTS_AUTO; w <= NS_WEIGHTS_Q4; w++)
    {
      NsWeightFormat back;
      g_assert_true (ns_weight_format_from_name (ns_weight_format_name (w), &back));
      g_assert_cmpint (back, ==, w);
    }
  NsSampler s;
  NsBackendKind b;
  NsWeightFormat w;
  g_assert_cmpstr (ns_sampler_name (NS_SAMPLER_GH_GRID), ==, "gh-grid");
  g_assert_false (ns_sampler_from_name ("euler", &s));
  g_assert_false (ns_backend_from_name ("metal", &b));
  g_assert_false (ns_weight_format_from_name ("fp4", &w));
  g_assert_false (ns_sampler_from_name (NULL, &s));
  g_assert_null (ns_sampler_name (NS_SAMPLER_DEFAULT));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/model/defaults", test_model_defaults);
  g_test_add_func ("/config/model/golden", test_model_golden);
  g_test_add_func ("/config/model/refusals", test_model_refusals);
  g_test_add_func ("/config/model/missing-file", test_model_missing_file);
  g_test_add_func ("/config/vae/defaults", test_vae_defaults);
  g_test_add_func ("/config/vae/refusals", test_vae_refusals);
  g_test_add_func ("/config/tokenizer", test_tokenizer_config);
  g_test_add_func ("/config/enum-names", test_enum_names);
  return g_test_run ();
}
