/* rng.c — the host side of the engine's Gaussian draws: Philox on the host
 * (tests and previews compare against it; the mapping is in engine/philox.h,
 * which the backends' `noise` op uses) and the recorded draws of a golden
 * run (`--noise`), which the pipeline uploads once per request. */
#include <string.h>

#include "model/pipeline-private.h"
#include "files/safetensors.h"
#include "philox.h"

void
ns_rng_normal (guint64 seed, guint32 image, guint32 token, guint32 draw, float *out, int dim)
{
  for (int block = 0; 4 * block < dim; block++)
    {
      float four[4];
      ns_philox_normal4 (seed, image, token, draw, (guint32) block, four);
      memcpy (out + 4 * block, four, MIN (4, dim - 4 * block) * sizeof (float));
    }
}

float *
ns_noise_load_file (const char *path, int ntok, int draws, int n_images, int dim, GError **error)
{
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  if (!ns_safetensors_load_file (store, path, error))
    return NULL;
  const NsTensorView *t = ns_tensor_store_find (store, "noise");
  if (t == NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s has no tensor 'noise'; --noise needs a golden run file", path);
      return NULL;
    }
  const int64_t want[4] = { ntok, draws, n_images, dim };
  gboolean ok = t->n_dims == 4;
  for (int i = 0; ok && i < 4; i++)
    ok = t->shape[i] == want[i];
  if (!ok)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "%s: tensor 'noise' must have shape [%d, %d, %d, %d] (tokens, draws per "
                   "token, images, token dim) for this request; check the size, sampler, "
                   "steps and image count match the run",
                   path, ntok, draws, n_images, dim);
      return NULL;
    }
  return ns_tensor_to_f32 (t);
}
