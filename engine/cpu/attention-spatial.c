/* attention-spatial.c — the VAE's single-head attention over all pixels.
 * Softmax is f32 with max subtraction. */
#include "cpu-backend.h"

#define SPATIAL_QUERIES 16    /* queries sharing one pass over k and v */

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

/* Channel-major layout: a query is a column, so a block of queries shares
 * every pass over the rows of k and v. */
void
ns_cpu_attention_spatial (NsBackend *b, float *out, const float *q, const float *k,
                          const float *v, int c, int n)
{
  float scale = 1.0f / sqrtf ((float) c);
  int n_blocks = (n + SPATIAL_QUERIES - 1) / SPATIAL_QUERIES;
#pragma omp parallel num_threads (ns_cpu_threads (b))
  {
    float *scores = g_new (float, (size_t) SPATIAL_QUERIES * n);
#pragma omp for schedule (dynamic, 1)
    for (int blk = 0; blk < n_blocks; blk++)
      {
        int i0 = blk * SPATIAL_QUERIES, nq = MIN (SPATIAL_QUERIES, n - i0);
        memset (scores, 0, (size_t) nq * n * sizeof (float));
        for (int ch = 0; ch < c; ch++)
          for (int qi = 0; qi < nq; qi++)
            ns_cpu_axpy (scores + (size_t) qi * n, q[(size_t) ch * n + i0 + qi] * scale,
                  k + (size_t) ch * n, n);
        for (int qi = 0; qi < nq; qi++)
          softmax (scores + (size_t) qi * n, n);
        for (int ch = 0; ch < c; ch++)
          for (int qi = 0; qi < nq; qi++)
            out[(size_t) ch * n + i0 + qi] = ns_cpu_dot (scores + (size_t) qi * n, v + (size_t) ch * n, n);
      }
    g_free (scores);
  }
}
