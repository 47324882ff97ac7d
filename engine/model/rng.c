/* rng.c — the engine's Gaussian draws: Philox4x32-10 + Box–Muller, or the
 * recorded draws of a golden run (`--noise`).
 *
 * Philox mapping (the CUDA backend must reproduce it bit for bit):
 *   key     = { seed & 0xffffffff, seed >> 32 }
 *   counter = { token, draw, image, block }      block = 0 .. ceil(dim/4) − 1
 *   Philox4x32-10 of (counter, key) gives 4 words w0..w3 (Random123
 *   definition: multipliers 0xD2511F53 / 0xCD9E8D57, Weyl key bumps
 *   0x9E3779B9 / 0xBB67AE85, 10 rounds).
 *   u_k = (w_k + 0.5) · 2^-32 in double, so u_k ∈ (0, 1).
 *   Box–Muller in double:  r = sqrt(−2 ln u0), φ = 2π u1 →
 *     out[4·block + 0] = (float) (r cos φ), out[4·block + 1] = (float) (r sin φ);
 *   the same with (u2, u3) for out[4·block + 2], out[4·block + 3].
 *   Values past `dim` in the last block are dropped.
 * `token` is the image-token index (raster order), `draw` the sampler's draw
 * number within the token (golden README "Samplers and the order of the noise
 * draws"), `image` the image index of the request. */
#include <math.h>
#include <string.h>

#include "model/pipeline-private.h"
#include "files/safetensors.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void
mulhilo (guint32 a, guint32 b, guint32 *hi, guint32 *lo)
{
  guint64 p = (guint64) a * b;
  *hi = (guint32) (p >> 32);
  *lo = (guint32) p;
}

void
ns_philox4x32_10 (const guint32 ctr[4], const guint32 key[2], guint32 out[4])
{
  guint32 c[4] = { ctr[0], ctr[1], ctr[2], ctr[3] };
  guint32 k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++)
    {
      if (round > 0)
        {
          k0 += PHILOX_W0;
          k1 += PHILOX_W1;
        }
      guint32 hi0, lo0, hi1, lo1;
      mulhilo (PHILOX_M0, c[0], &hi0, &lo0);
      mulhilo (PHILOX_M1, c[2], &hi1, &lo1);
      guint32 n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
      c[0] = n0;
      c[1] = lo1;
      c[2] = n2;
      c[3] = lo0;
    }
  for (int i = 0; i < 4; i++)
    out[i] = c[i];
}

static inline double
to_unit (guint32 w)
{
  return ((double) w + 0.5) * (1.0 / 4294967296.0);
}

void
ns_rng_normal (guint64 seed, guint32 image, guint32 token, guint32 draw, float *out, int dim)
{
  const guint32 key[2] = { (guint32) seed, (guint32) (seed >> 32) };
  for (int block = 0; 4 * block < dim; block++)
    {
      const guint32 ctr[4] = { token, draw, image, (guint32) block };
      guint32 w[4];
      ns_philox4x32_10 (ctr, key, w);
      for (int pair = 0; pair < 2; pair++)
        {
          double r = sqrt (-2.0 * log (to_unit (w[2 * pair])));
          double phi = 2.0 * G_PI * to_unit (w[2 * pair + 1]);
          int i = 4 * block + 2 * pair;
          if (i < dim)
            out[i] = (float) (r * cos (phi));
          if (i + 1 < dim)
            out[i + 1] = (float) (r * sin (phi));
        }
    }
}

struct NsNoise {
  guint64 seed;
  int n_images, dim;
  float *recorded;          /* [ntok, draws, n, dim] from a file, else NULL */
  int ntok, draws;
};

NsNoise *
ns_noise_new_philox (guint64 seed, int n_images, int dim)
{
  NsNoise *noise = g_new0 (NsNoise, 1);
  noise->seed = seed;
  noise->n_images = n_images;
  noise->dim = dim;
  return noise;
}

NsNoise *
ns_noise_new_file (const char *path, int ntok, int draws, int n_images, int dim, GError **error)
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
  NsNoise *noise = ns_noise_new_philox (0, n_images, dim);
  noise->recorded = ns_tensor_to_f32 (t);
  noise->ntok = ntok;
  noise->draws = draws;
  return noise;
}

void
ns_noise_draw (NsNoise *noise, int token, int draw, float *out)
{
  size_t block = (size_t) noise->n_images * noise->dim;
  if (noise->recorded != NULL)
    {
      g_return_if_fail (token < noise->ntok && draw < noise->draws);
      memcpy (out, noise->recorded + ((size_t) token * noise->draws + draw) * block,
              block * sizeof (float));
      return;
    }
  for (int i = 0; i < noise->n_images; i++)
    ns_rng_normal (noise->seed, (guint32) i, (guint32) token, (guint32) draw,
                   out + (size_t) i * noise->dim, noise->dim);
}

void
ns_noise_free (NsNoise *noise)
{
  if (noise == NULL)
    return;
  g_free (noise->recorded);
  g_free (noise);
}
