/* model/vae-preview.c — the instant-preview map: an affine map from one
 * latent pixel to the mean RGB of the 8×8 pixels the decoder makes from it,
 * fitted by least squares on decodes of random N(0, 1) latents at load
 * (small, so that loading the real VAE stays fast). */
#include <math.h>
#include <string.h>

#include "nextstep.h"
#include "model/vae-private.h"

#define NS_VAE_PREVIEW_IMAGES 2     /* random latent images decoded for the fit */
#define NS_VAE_PREVIEW_SIDE 8       /* their side in latent pixels: 2 × 64 samples */
#define NS_VAE_PREVIEW_SEED 1234u   /* fixed, so a VAE always gets the same map */

/* N(0, 1) by Box–Muller; 1 − u keeps the log argument in (0, 1]. */
static double
gaussian (GRand *rng)
{
  double u = 1.0 - g_rand_double (rng), v = g_rand_double (rng);
  return sqrt (-2.0 * log (u)) * cos (2.0 * G_PI * v);
}

/* Normal equations of rgb ≈ W·latent + bias: `ata` [(z+1)²] and
 * `atb` [(z+1) × 3], features (latent values…, 1). */
typedef struct {
  int n;
  double *ata, *atb;
} NsVaeFit;

static void
fit_add_image (NsVaeFit *fit, const float *latent, const float *rgb, int h, int w)
{
  int z = fit->n - 1, side = NS_VAE_FACTOR, width = w * side;
  size_t plane = (size_t) h * w, px_plane = plane * side * side;
  g_autofree double *feat = g_new (double, fit->n);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        double mean[3] = { 0, 0, 0 };
        for (int c = 0; c < 3; c++)
          for (int dy = 0; dy < side; dy++)
            for (int dx = 0; dx < side; dx++)
              mean[c] += rgb[c * px_plane + (size_t) (y * side + dy) * width + x * side + dx];
        for (int k = 0; k < z; k++)
          feat[k] = latent[k * plane + (size_t) y * w + x];
        feat[z] = 1.0;
        for (int i = 0; i < fit->n; i++)
          {
            for (int j = 0; j < fit->n; j++)
              fit->ata[i * fit->n + j] += feat[i] * feat[j];
            for (int c = 0; c < 3; c++)
              fit->atb[i * 3 + c] += feat[i] * mean[c] / (side * side);
          }
      }
}

/* Solves ata · x = atb in place (x lands in atb) by Gaussian elimination
 * with partial pivoting. A tiny ridge keeps it defined whatever the data. */
static void
fit_solve (NsVaeFit *fit)
{
  int n = fit->n;
  double *a = fit->ata, *b = fit->atb, trace = 0;
  for (int i = 0; i < n; i++)
    trace += a[i * n + i];
  for (int i = 0; i < n; i++)
    a[i * n + i] += 1e-9 * trace / n;
  for (int col = 0; col < n; col++)
    {
      int piv = col;
      for (int r = col + 1; r < n; r++)
        if (fabs (a[r * n + col]) > fabs (a[piv * n + col]))
          piv = r;
      for (int j = 0; j < n && piv != col; j++)
        {
          double t = a[col * n + j];
          a[col * n + j] = a[piv * n + j];
          a[piv * n + j] = t;
        }
      for (int c = 0; c < 3 && piv != col; c++)
        {
          double t = b[col * 3 + c];
          b[col * 3 + c] = b[piv * 3 + c];
          b[piv * 3 + c] = t;
        }
      for (int r = 0; r < n; r++)
        {
          if (r == col)
            continue;
          double m = a[r * n + col] / a[col * n + col];
          for (int j = col; j < n; j++)
            a[r * n + j] -= m * a[col * n + j];
          for (int c = 0; c < 3; c++)
            b[r * 3 + c] -= m * b[col * 3 + c];
        }
    }
  for (int r = 0; r < n; r++)
    for (int c = 0; c < 3; c++)
      b[r * 3 + c] /= a[r * n + r];
}

static gboolean
fit_store (NsVae *vae, const NsVaeFit *fit, GError **error)
{
  int z = fit->n - 1;
  for (int i = 0; i < 3 * fit->n; i++)
    if (!isfinite (fit->atb[i]))
      {
        g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                     "the VAE decoder gives non-finite pixels for random latents; its "
                     "checkpoint holds damaged weights");
        return FALSE;
      }
  vae->preview_weight = g_new (float, 3 * z);
  for (int c = 0; c < 3; c++)
    {
      for (int k = 0; k < z; k++)
        vae->preview_weight[c * z + k] = (float) fit->atb[k * 3 + c];
      vae->preview_bias[c] = (float) fit->atb[z * 3 + c];
    }
  return TRUE;
}

gboolean
ns_vae_fit_preview (NsVae *vae, GError **error)
{
  const int side = NS_VAE_PREVIEW_SIDE, z = vae->cfg.z_channels;
  const size_t n_latent = (size_t) z * side * side;
  NsVaeFit fit = { .n = z + 1 };
  fit.ata = g_new0 (double, fit.n * fit.n);
  fit.atb = g_new0 (double, fit.n * 3);
  g_autofree float *latent = g_new (float, n_latent);
  g_autofree float *rgb = g_new (float, (size_t) 3 * side * side * NS_VAE_FACTOR * NS_VAE_FACTOR);
  GRand *rng = g_rand_new_with_seed (NS_VAE_PREVIEW_SEED);
  NsVaeFlow f;
  gboolean ok = ns_vae_flow_alloc (&f, vae->backend, &vae->dec, side, side, error);
  for (int img = 0; ok && img < NS_VAE_PREVIEW_IMAGES; img++)
    {
      for (size_t i = 0; i < n_latent; i++)
        latent[i] = (float) gaussian (rng);
      ok = ns_vae_decode_whole (vae, &f, latent, side, side, rgb, NULL, error);
      if (ok)
        fit_add_image (&fit, latent, rgb, side, side);
    }
  ns_vae_flow_free (&f);
  if (ok)
    {
      fit_solve (&fit);
      ok = fit_store (vae, &fit, error);
    }
  if (!ok)
    g_prefix_error (error, "fitting the VAE preview map: ");
  g_rand_free (rng);
  g_free (fit.ata);
  g_free (fit.atb);
  return ok;
}
