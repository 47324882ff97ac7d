/* image.c — nearest ×2 upsampling and the token ↔ latent patch layout. */
#include "cpu-backend.h"

void
ns_cpu_upsample2x (NsBackend *b, float *y, const float *x, int c, int h, int w)
{
#pragma omp parallel for num_threads (ns_cpu_threads (b))
  for (int ch = 0; ch < c; ch++)
    for (int yy = 0; yy < 2 * h; yy++)
      {
        const float *src = x + ((size_t) ch * h + yy / 2) * w;
        float *dst = y + ((size_t) ch * 2 * h + yy) * 2 * w;
        for (int xx = 0; xx < 2 * w; xx++)
          dst[xx] = src[xx / 2];
      }
}

/* Index in latent [c, gh·p, gw·p] of element e of token t (see backend.h). */
static size_t
latent_index (int gh, int gw, int p, int t, int e)
{
  int ch = e / (p * p), a = e / p % p, bb = e % p, i = t / gw, j = t % gw;
  return ((size_t) ch * gh * p + (size_t) p * i + a) * ((size_t) gw * p) + (size_t) p * j + bb;
}

void
ns_cpu_patchify (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw, int p)
{
  (void) b;
  int per_token = c * p * p;
  for (int t = 0; t < gh * gw; t++)
    for (int e = 0; e < per_token; e++)
      tokens[(size_t) t * per_token + e] = latent[latent_index (gh, gw, p, t, e)];
}

void
ns_cpu_unpatchify (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw, int p)
{
  (void) b;
  int per_token = c * p * p;
  for (int t = 0; t < gh * gw; t++)
    for (int e = 0; e < per_token; e++)
      latent[latent_index (gh, gw, p, t, e)] = tokens[(size_t) t * per_token + e];
}
