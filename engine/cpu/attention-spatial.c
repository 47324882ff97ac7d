/* attention-spatial.c — the VAE's single-head attention over all pixels:
 * two products through the BLAS around an f32 softmax (with max
 * subtraction), a block of queries at a time so the scores stay bounded. */
#include "cpu-backend.h"

#define SCORE_FLOATS (4 << 20)   /* 16 MiB of scores per query block */

/* Softmax over a full row, in place. */
static void
softmax (float *x, int n)
{
  float max = -INFINITY, sum = 0.0f;
  for (int j = 0; j < n; j++)
    max = MAX (max, x[j]);
  for (int j = 0; j < n; j++)
    {
      x[j] = expf (x[j] - max);
      sum += x[j];
    }
  for (int j = 0; j < n; j++)
    x[j] /= sum;
}

/* Channel-major layout: q, k, v, out are [c, n]. */
void
ns_cpu_attention_spatial (NsBackend *b, float *out, const float *q, const float *k,
                          const float *v, int c, int n)
{
  float scale = 1.0f / sqrtf ((float) c);
  int block = CLAMP (SCORE_FLOATS / n, 1, n);
  float *scores = g_new (float, (size_t) block * n);
  for (int i0 = 0; i0 < n; i0 += block)
    {
      int nq = MIN (block, n - i0);
      /* scores[i, j] = scale · Σ_ch q[ch, i0 + i] · k[ch, j] */
      ns_cpu_sgemm (b, TRUE, FALSE, nq, n, c, scale, q + i0, n, k, n, 0.0f, scores, n);
#pragma omp parallel for num_threads (ns_cpu_threads (b)) schedule (static)
      for (int i = 0; i < nq; i++)
        softmax (scores + (size_t) i * n, n);
      /* out[ch, i0 + i] = Σ_j v[ch, j] · scores[i, j] */
      ns_cpu_sgemm (b, FALSE, TRUE, c, nq, n, 1.0f, v, n, scores, n, 0.0f, out + i0, n);
    }
  g_free (scores);
}
