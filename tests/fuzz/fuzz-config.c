/* fuzz-config.c — NextStep config.json, VAE config.json and
 * tokenizer_config.json parsing (the same bytes through all three). */
#include "fuzz.h"
#include "files/config.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *json = (const char *) data;
  GError *error = NULL;

  NsModelConfig model = { 0 };
  if (ns_model_config_parse (&model, json, size, "config.json", &error))
    ns_model_config_clear (&model);
  g_clear_error (&error);

  NsVaeConfig vae = { 0 };
  ns_vae_config_parse (&vae, json, size, "vae/config.json", &error);
  g_clear_error (&error);

  NsTokenizerConfig tok = { 0 };
  if (ns_tokenizer_config_parse (&tok, json, size, "tokenizer_config.json", &error))
    ns_tokenizer_config_clear (&tok);
  g_clear_error (&error);
  return 0;
}
