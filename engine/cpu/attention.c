/* attention.c — RoPE, the KV cache, causal GQA attention and the VAE's
 * single-head spatial attention. Softmax is f32 with max subtraction. */
#include "cpu-backend.h"

#define SPATIAL_QUERIES 16    /* queries sharing one pass over k and v */

NS_CPU_HOT static float
dot (const float *a, const float *c, int n)
{
  NsF32x8 acc0 = { 0 }, acc1 = { 0 };
  int i = 0;
  for (; i + 16 <= n; i += 16)
    {
      acc0 += NS_F32X8_LOAD (a + i) * NS_F32X8_LOAD (c + i);
      acc1 += NS_F32X8_LOAD (a + i + 8) * NS_F32X8_LOAD (c + i + 8);
    }
  NsF32x8 acc = acc0 + acc1;
  float s = NS_F32X8_SUM (acc);
  for (; i < n; i++)
    s += a[i] * c[i];
  return s;
}

/* y += a · x */
static void
axpy (float *restrict y, float a, const float *restrict x, int n)
{
  for (int i = 0; i < n; i++)
    y[i] += a * x[i];
}

void
ns_cpu_rope (NsBackend *b, float *x, const int32_t *positions, int rows, int heads,
             int head_dim, double theta)
{
  int half = head_dim / 2;
  float *cos_sin = g_new (float, (size_t) rows * half * 2);
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < half; i++)
      {
        double angle = positions[r] * pow (theta, -2.0 * i / head_dim);
        cos_sin[((size_t) r * half + i) * 2] = (float) cos (angle);
        cos_sin[((size_t) r * half + i) * 2 + 1] = (float) sin (angle);
      }
#pragma omp parallel for num_threads (ns_cpu_threads (b)) \
  if ((size_t) rows * heads * head_dim > NS_CPU_PARALLEL_MIN)
  for (int rh = 0; rh < rows * heads; rh++)
    {
      float *v = x + (size_t) rh * head_dim;
      const float *cs = cos_sin + (size_t) (rh / heads) * half * 2;
      for (int i = 0; i < half; i++)
        {
          float x1 = v[i], x2 = v[i + half], c = cs[2 * i], s = cs[2 * i + 1];
          v[i] = x1 * c - x2 * s;
          v[i + half] = x2 * c + x1 * s;
        }
    }
  g_free (cos_sin);
}

void
ns_cpu_kv_store (NsBackend *b, float *cache, const float *src, int batch, int n, int start,
                 int kv_heads, int head_dim, int capacity)
{
  (void) b;
  g_return_if_fail (start >= 0 && start + n <= capacity);
  for (int s = 0; s < batch; s++)
    for (int t = 0; t < n; t++)
      for (int h = 0; h < kv_heads; h++)
        memcpy (cache + (((size_t) s * kv_heads + h) * capacity + start + t) * head_dim,
                src + (((size_t) s * n + t) * kv_heads + h) * head_dim,
                head_dim * sizeof (float));
}

/* Softmax weights of one query over keys 0..n_keys-1, in place on scores;
 * masked keys get 0, and with no valid key every causal key gets 1/n_keys. */
static void
masked_softmax (float *scores, const float *valid, int n_keys)
{
  float max = -INFINITY;
  for (int j = 0; j < n_keys; j++)
    if (valid[j] != 0.0f)
      max = MAX (max, scores[j]);
  if (max == -INFINITY)
    {
      for (int j = 0; j < n_keys; j++)
        scores[j] = 1.0f / n_keys;
      return;
    }
  float sum = 0.0f;
  for (int j = 0; j < n_keys; j++)
    {
      scores[j] = valid[j] != 0.0f ? expf (scores[j] - max) : 0.0f;
      sum += scores[j];
    }
  for (int j = 0; j < n_keys; j++)
    scores[j] /= sum;
}

void
ns_cpu_attention (NsBackend *b, float *out, const float *q, const float *k_cache,
                  const float *v_cache, const float *key_valid, int batch, int n, int start,
                  int heads, int kv_heads, int head_dim, int capacity)
{
  g_return_if_fail (kv_heads > 0 && heads % kv_heads == 0 && start + n <= capacity);
  float scale = 1.0f / sqrtf ((float) head_dim);
  int group = heads / kv_heads;
#pragma omp parallel num_threads (ns_cpu_threads (b))
  {
    float *scores = g_new (float, start + n);
#pragma omp for schedule (dynamic, 4)
    for (int idx = 0; idx < batch * n * heads; idx++)
      {
        int s = idx / (n * heads), i = idx / heads % n, h = idx % heads;
        int n_keys = start + i + 1;
        size_t cache_at = ((size_t) s * kv_heads + h / group) * capacity * head_dim;
        const float *qv = q + (size_t) idx * head_dim;
        float *o = out + (size_t) idx * head_dim;
        for (int j = 0; j < n_keys; j++)
          scores[j] = dot (qv, k_cache + cache_at + (size_t) j * head_dim, head_dim) * scale;
        masked_softmax (scores, key_valid + (size_t) s * capacity, n_keys);
        memset (o, 0, head_dim * sizeof (float));
        for (int j = 0; j < n_keys; j++)
          axpy (o, scores[j], v_cache + cache_at + (size_t) j * head_dim, head_dim);
      }
    g_free (scores);
  }
}

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
            axpy (scores + (size_t) qi * n, q[(size_t) ch * n + i0 + qi] * scale,
                  k + (size_t) ch * n, n);
        for (int qi = 0; qi < nq; qi++)
          softmax (scores + (size_t) qi * n, n);
        for (int ch = 0; ch < c; ch++)
          for (int qi = 0; qi < nq; qi++)
            out[(size_t) ch * n + i0 + qi] = dot (scores + (size_t) qi * n, v + (size_t) ch * n, n);
      }
    g_free (scores);
  }
}
