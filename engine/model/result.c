/* result.c — NsResult: freeing, and saving a run's tensors for the tests. */
#include <string.h>

#include "nextstep.h"
#include "files/safetensors.h"

void
ns_result_free (NsResult *res)
{
  if (res == NULL)
    return;
  for (int i = 0; i < res->n_images && res->rgba; i++)
    g_free (res->rgba[i]);
  g_free (res->rgba);
  g_free (res->tokens);
  g_free (res->latents);
  g_free (res->decoded);
  g_free (res);
}

gboolean
ns_result_save_tokens (const NsResult *res, const char *path, GError **error)
{
  if (res->tokens == NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "This result came from a server, which sends only the pictures; run the "
                   "model locally to save its tokens");
      return FALSE;
    }
  int n = res->n_images, H = res->height, W = res->width;
  g_autoptr (NsSafetensorsWriter) w = ns_safetensors_writer_new ();
  const int64_t tok_shape[3] = { n, res->ntok, res->token_dim };
  const int64_t lat_shape[4] = { n, res->latent_channels, H / 8, W / 8 };
  const int64_t dec_shape[4] = { n, 3, H, W };
  const int64_t img_shape[4] = { n, H, W, 3 };
  g_autofree guint8 *rgb = g_new (guint8, (size_t) n * H * W * 3);
  for (int i = 0; i < n; i++)
    for (size_t p = 0; p < (size_t) H * W; p++)
      memcpy (rgb + ((size_t) i * H * W + p) * 3, res->rgba[i] + p * 4, 3);
  ns_safetensors_writer_add (w, "tokens", NS_DTYPE_F32, 3, tok_shape, res->tokens);
  ns_safetensors_writer_add (w, "latents", NS_DTYPE_F32, 4, lat_shape, res->latents);
  ns_safetensors_writer_add (w, "decoded", NS_DTYPE_F32, 4, dec_shape, res->decoded);
  ns_safetensors_writer_add (w, "image_u8", NS_DTYPE_U8, 4, img_shape, rgb);
  g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, res->seed);
  ns_safetensors_writer_set_metadata (w, "seed", seed);
  return ns_safetensors_writer_save (w, path, error);
}
