/* attention.c — the KV cache and causal GQA attention with a key mask.
 * Softmax is f32 with max subtraction. */
#include "cpu-backend.h"

void
ns_cpu_kv_store (NsBackend *b, float *cache, const float *src, int batch, int n,
                 const int32_t *start_at, int kv_heads, int head_dim, int capacity)
{
  (void) b;
  int start = *start_at;
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
                  const float *v_cache, const float *key_valid, int batch, int n,
                  const int32_t *start_at, int heads, int kv_heads, int head_dim, int capacity)
{
  int start = *start_at;
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
          scores[j] = ns_cpu_dot (qv, k_cache + cache_at + (size_t) j * head_dim, head_dim) * scale;
        masked_softmax (scores, key_valid + (size_t) s * capacity, n_keys);
        memset (o, 0, head_dim * sizeof (float));
        for (int j = 0; j < n_keys; j++)
          ns_cpu_axpy (o, scores[j], v_cache + cache_at + (size_t) j * head_dim, head_dim);
      }
    g_free (scores);
  }
}

