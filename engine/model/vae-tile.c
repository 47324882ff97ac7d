/* model/vae-tile.c — decoding latents above tile_side² latent pixels in
 * overlapping tiles (vae-private.h), so the activations of the whole image
 * are never held at once. Each tile's RGB is weighted by a linear ramp over
 * its inner borders and the weighted sum is normalised, so seams fade over
 * tile_overlap latent pixels. */
#include <string.h>

#include "nextstep.h"
#include "model/vae-private.h"

/* Tile starts along an axis of n latent pixels: one tile when n fits, else
 * the fewest tiles of `side` overlapping by at least `overlap`, spread
 * evenly from 0 to n − side. */
static int *
axis_tiles (int n, int side, int overlap, int *count)
{
  int step = side - overlap;
  int k = n <= side ? 1 : (n - overlap + step - 1) / step;
  int *starts = g_new (int, k);
  for (int i = 0; i < k; i++)
    starts[i] = k == 1 ? 0 : (int) ((gint64) i * (n - side) / (k - 1));
  *count = k;
  return starts;
}

/* A tile in output pixels, which of its borders are inside the image, and
 * the ramp length in pixels. */
typedef struct {
  int y0, x0, h, w;
  gboolean inner_top, inner_bottom, inner_left, inner_right;
  float span;
} NsVaeTile;

/* Blend weight at pixel p of a tile side of `len` pixels: rises linearly
 * from the inner borders over `span` pixels, 1 elsewhere; never 0. */
static float
ramp (int p, int len, gboolean inner_lead, gboolean inner_trail, float span)
{
  float wgt = 1.0f;
  if (inner_lead)
    wgt = MIN (wgt, (p + 0.5f) / span);
  if (inner_trail)
    wgt = MIN (wgt, (len - p - 0.5f) / span);
  return wgt;
}

static void
blend_tile (float *rgb, float *weight, int height, int width, const float *tile_rgb,
            const NsVaeTile *t)
{
  size_t plane = (size_t) height * width, tile_plane = (size_t) t->h * t->w;
  for (int y = 0; y < t->h; y++)
    {
      float wy = ramp (y, t->h, t->inner_top, t->inner_bottom, t->span);
      for (int x = 0; x < t->w; x++)
        {
          float wgt = wy * ramp (x, t->w, t->inner_left, t->inner_right, t->span);
          size_t o = (size_t) (t->y0 + y) * width + t->x0 + x, i = (size_t) y * t->w + x;
          weight[o] += wgt;
          for (int c = 0; c < 3; c++)
            rgb[c * plane + o] += wgt * tile_rgb[c * tile_plane + i];
        }
    }
}

/* Copies latent[:, y0:y0+th, x0:x0+tw] into `out` [z, th, tw]. */
static void
crop_latent (float *out, const float *latent, int z, int h, int w, int y0, int x0, int th,
             int tw)
{
  for (int k = 0; k < z; k++)
    for (int y = 0; y < th; y++)
      memcpy (out + ((size_t) k * th + y) * tw, latent + ((size_t) k * h + y0 + y) * w + x0,
              sizeof (float) * tw);
}

typedef struct {
  int *ys, *xs;
  int ny, nx, th, tw;           /* tile grid and tile size in latent pixels */
  float *latent, *rgb, *weight; /* host: one tile's latent and RGB, the weight sum */
} NsVaeTiling;

static void
tiling_clear (NsVaeTiling *tl)
{
  g_free (tl->ys);
  g_free (tl->xs);
  g_free (tl->latent);
  g_free (tl->rgb);
  g_free (tl->weight);
}

static gboolean
decode_tiles (NsVae *vae, NsVaeFlow *f, NsVaeTiling *tl, const float *latent, int h, int w,
              float *rgb, GCancellable *cancellable, GError **error)
{
  int height = h * NS_VAE_FACTOR, width = w * NS_VAE_FACTOR;
  for (int i = 0; i < tl->ny; i++)
    for (int j = 0; j < tl->nx; j++)
      {
        crop_latent (tl->latent, latent, vae->cfg.z_channels, h, w, tl->ys[i], tl->xs[j],
                     tl->th, tl->tw);
        if (!ns_vae_decode_whole (vae, f, tl->latent, tl->th, tl->tw, tl->rgb, cancellable,
                                  error))
          return FALSE;
        NsVaeTile t = {
          .y0 = tl->ys[i] * NS_VAE_FACTOR, .x0 = tl->xs[j] * NS_VAE_FACTOR,
          .h = tl->th * NS_VAE_FACTOR, .w = tl->tw * NS_VAE_FACTOR,
          .inner_top = i > 0, .inner_bottom = i < tl->ny - 1,
          .inner_left = j > 0, .inner_right = j < tl->nx - 1,
          .span = (float) vae->tile_overlap * NS_VAE_FACTOR,
        };
        blend_tile (rgb, tl->weight, height, width, tl->rgb, &t);
      }
  size_t plane = (size_t) height * width;
  for (size_t o = 0; o < plane; o++)
    for (int c = 0; c < 3; c++)
      rgb[c * plane + o] /= tl->weight[o];
  return TRUE;
}

/* Host buffers of a tiled decode; FALSE when the weight sum does not fit. */
static gboolean
tiling_alloc (NsVaeTiling *tl, const NsVae *vae, int h, int w, GError **error)
{
  int z = vae->cfg.z_channels;
  tl->ys = axis_tiles (h, vae->tile_side, vae->tile_overlap, &tl->ny);
  tl->xs = axis_tiles (w, vae->tile_side, vae->tile_overlap, &tl->nx);
  tl->th = MIN (h, vae->tile_side);
  tl->tw = MIN (w, vae->tile_side);
  tl->latent = g_new (float, (size_t) z * tl->th * tl->tw);
  tl->rgb = g_new (float, (size_t) 3 * tl->th * tl->tw * NS_VAE_FACTOR * NS_VAE_FACTOR);
  tl->weight = g_try_new0 (float, (size_t) h * w * NS_VAE_FACTOR * NS_VAE_FACTOR);
  if (tl->weight != NULL)
    return TRUE;
  g_set_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY,
               "VAE decode: no host memory for the tile weights of a %d×%d latent", h, w);
  return FALSE;
}

gboolean
ns_vae_decode_tiled (NsVae *vae, const float *latent, int h, int w, float *rgb,
                     GCancellable *cancellable, GError **error)
{
  NsVaeTiling tl = { 0 };
  NsVaeFlow f = { 0 };
  gboolean ok = tiling_alloc (&tl, vae, h, w, error)
                && ns_vae_flow_alloc (&f, vae->backend, &vae->dec, tl.th, tl.tw, error);
  if (ok)
    {
      memset (rgb, 0, sizeof (float) * 3 * (size_t) h * w * NS_VAE_FACTOR * NS_VAE_FACTOR);
      ok = decode_tiles (vae, &f, &tl, latent, h, w, rgb, cancellable, error);
    }
  ns_vae_flow_free (&f);
  tiling_clear (&tl);
  return ok;
}
