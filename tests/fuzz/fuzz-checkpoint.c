/* fuzz-checkpoint.c — checkpoint.pt: zip container and allow-list unpickler. */
#include "fuzz.h"
#include "files/torch-checkpoint.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  NsTensorStore *store = ns_tensor_store_new ();
  GError *error = NULL;
  if (ns_torch_checkpoint_parse (store, data, size, "fuzz/checkpoint.pt", &error))
    for (guint i = 0; i < ns_tensor_store_len (store); i++)
      {
        const NsTensorView *t = ns_tensor_store_get (store, i);
        int64_t n = ns_tensor_n_elements (t);
        if (n > 0)
          (void) (ns_tensor_get_f64 (t, 0) + ns_tensor_get_f64 (t, n - 1));
      }
  g_clear_error (&error);
  ns_tensor_store_free (store);
  return 0;
}
