/* fuzz-safetensors.c — safetensors header and data-area validation. */
#include "fuzz.h"
#include "files/safetensors.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  NsTensorStore *store = ns_tensor_store_new ();
  GError *error = NULL;
  if (ns_safetensors_parse (store, data, size, "fuzz.safetensors", &error))
    for (guint i = 0; i < ns_tensor_store_len (store); i++)
      {
        /* Touch the first and last element: views must lie inside the input. */
        const NsTensorView *t = ns_tensor_store_get (store, i);
        int64_t n = ns_tensor_n_elements (t);
        if (n > 0 && t->dtype != NS_DTYPE_I64 && t->dtype != NS_DTYPE_I32)
          (void) (ns_tensor_get_f64 (t, 0) + ns_tensor_get_f64 (t, n - 1));
      }
  g_clear_error (&error);
  ns_tensor_store_free (store);
  return 0;
}
