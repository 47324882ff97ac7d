/* fuzz-index.c — model.safetensors.index.json parsing. */
#include "fuzz.h"
#include "files/safetensors.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GHashTable *weight_map = NULL;
  GError *error = NULL;
  GPtrArray *shards = ns_safetensors_parse_index ((const char *) data, size, "fuzz.index.json",
                                                  &weight_map, &error);
  if (shards != NULL)
    g_ptr_array_unref (shards);
  if (weight_map != NULL)
    g_hash_table_unref (weight_map);
  g_clear_error (&error);
  return 0;
}
