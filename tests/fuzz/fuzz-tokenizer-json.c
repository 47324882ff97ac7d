/* fuzz-tokenizer-json.c — tokenizer.json loading (models, normalizers,
 * pre-tokenizers, added tokens), then one encode with what loaded. */
#include "fuzz.h"
#include "tokenizer/tokenizer.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  NsTokenizer *tok = ns_tokenizer_new_from_json ((const char *) data, size, NULL, 0,
                                                 "fuzz/tokenizer.json", &error);
  g_clear_error (&error);
  if (tok == NULL)
    return 0;
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  if (ns_tokenizer_encode (tok, "Hello <|image_area|>32*32 wörld", -1, ids, &error))
    g_free (ns_tokenizer_decode (tok, (const int32_t *) ids->data, ids->len, NULL));
  g_clear_error (&error);
  g_array_unref (ids);
  ns_tokenizer_free (tok);
  return 0;
}
