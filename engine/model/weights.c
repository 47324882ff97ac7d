/* weights.c — uploading checkpoint tensors as backend weights (the
 * transformer, FM head and VAE call these). */
#include <string.h>

#include "model/pipeline-private.h"
#include "model/weight-cache.h"

gboolean
ns_weight_upload (NsBackend *backend, const NsTensorStore *store, const char *name,
                  gboolean optional, NsMat *out, GError **error)
{
  memset (out, 0, sizeof *out);
  const NsTensorView *t = ns_tensor_store_find (store, name);
  if (t == NULL)
    {
      if (optional)
        return TRUE;
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "The model weights have no tensor '%s'; the checkpoint is incomplete", name);
      return FALSE;
    }
  if (t->dtype == NS_DTYPE_I8 || t->dtype == NS_DTYPE_F8_E4M3 || t->dtype == NS_DTYPE_U8)
    {
      /* A tensor from a `nextstep convert` cache (U8: q4 codes): its scales
       * sit beside it. */
      g_autofree char *scale_name = g_strconcat (name, NS_WEIGHT_CACHE_SCALE_SUFFIX, NULL);
      const NsTensorView *scale = ns_tensor_store_find (store, scale_name);
      if (scale == NULL)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                       "%s: quantized tensor '%s' has no '%s'; delete the file and run "
                       "nextstep convert again", t->file ? t->file : "model", name, scale_name);
          return FALSE;
        }
      return backend->ops->upload_quantized (backend, t, scale, out, error);
    }
  return backend->ops->upload (backend, t, out, error);
}

void
ns_weights_release (NsBackend *backend, NsMat *mats, size_t count)
{
  for (size_t i = 0; i < count; i++)
    if (mats[i].data != NULL)
      backend->ops->release (backend, &mats[i]);
}
