/* attention.cu — causal GQA attention over the KV cache with a key-padding
 * mask, for prefill (many queries) and decode (one query per sequence).
 * One block per (sequence, query, head); its warps split the keys and keep
 * an online softmax each (flash-decoding inside the block), then merge.
 * A query that sees no valid key averages v over its causal keys, as the
 * reference's finite mask value makes it do. Checked by tests/kernels. */
#include "cuda-common.cuh"

#define ATT_WARPS 4
#define ATT_MAX_HEAD_DIM 256
#define ATT_DIMS_PER_LANE (ATT_MAX_HEAD_DIM / 32)

__global__ void
attention_kernel (float *out, const float *q, const float *k_cache, const float *v_cache,
                  const float *key_valid, int n, int start, int heads, int kv_heads,
                  int head_dim, int capacity)
{
  __shared__ float s_m[ATT_WARPS], s_l[ATT_WARPS], s_count[ATT_WARPS];
  __shared__ float s_acc[ATT_WARPS][ATT_MAX_HEAD_DIM];
  int head = blockIdx.x % heads;
  int i = (blockIdx.x / heads) % n;
  int s = blockIdx.x / (heads * n);
  int kvh = head / (heads / kv_heads);
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int pos = start + i;
  const float *qv = q + (((size_t) s * n + i) * heads + head) * head_dim;
  const float *kb = k_cache + ((size_t) s * kv_heads + kvh) * capacity * head_dim;
  const float *vb = v_cache + ((size_t) s * kv_heads + kvh) * capacity * head_dim;
  const float *valid = key_valid + (size_t) s * capacity;
  float scale = rsqrtf ((float) head_dim);

  float qr[ATT_DIMS_PER_LANE], acc[ATT_DIMS_PER_LANE];
  for (int j = 0; j < ATT_DIMS_PER_LANE; j++)
    {
      int d = lane + 32 * j;
      qr[j] = d < head_dim ? qv[d] : 0.0f;
      acc[j] = 0.0f;
    }
  float m = -INFINITY, l = 0.0f, count = 0.0f;
  for (int key = warp; key <= pos; key += ATT_WARPS)
    {
      if (valid[key] == 0.0f)
        continue;
      const float *kv = kb + (size_t) key * head_dim;
      float dot = 0.0f;
      for (int j = 0; j < ATT_DIMS_PER_LANE; j++)
        {
          int d = lane + 32 * j;
          if (d < head_dim)
            dot += qr[j] * kv[d];
        }
      float score = ns_warp_sum (dot) * scale;
      float m_new = fmaxf (m, score);
      float correction = __expf (m - m_new), p = __expf (score - m_new);
      l = l * correction + p;
      const float *vv = vb + (size_t) key * head_dim;
      for (int j = 0; j < ATT_DIMS_PER_LANE; j++)
        {
          int d = lane + 32 * j;
          acc[j] = acc[j] * correction + (d < head_dim ? p * vv[d] : 0.0f);
        }
      m = m_new;
      count += 1.0f;
    }
  if (lane == 0)
    {
      s_m[warp] = m;
      s_l[warp] = l;
      s_count[warp] = count;
    }
  for (int j = 0; j < ATT_DIMS_PER_LANE; j++)
    if (lane + 32 * j < head_dim)
      s_acc[warp][lane + 32 * j] = acc[j];
  __syncthreads ();

  float *o = out + (((size_t) s * n + i) * heads + head) * head_dim;
  float total = 0.0f, m_all = -INFINITY;
  for (int w = 0; w < ATT_WARPS; w++)
    {
      total += s_count[w];
      m_all = fmaxf (m_all, s_m[w]);
    }
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    {
      float num = 0.0f, den = 0.0f;
      if (total > 0.0f)
        for (int w = 0; w < ATT_WARPS; w++)
          {
            if (s_count[w] == 0.0f)
              continue;
            float c = __expf (s_m[w] - m_all);
            num += s_acc[w][d] * c;
            den += s_l[w] * c;
          }
      else
        {
          for (int key = 0; key <= pos; key++)
            num += vb[(size_t) key * head_dim + d];
          den = (float) (pos + 1);
        }
      o[d] = num / den;
    }
}

void
ns_cuda_attention (NsBackend *b, float *out, const float *q, const float *k_cache,
                   const float *v_cache, const float *key_valid, int batch, int n, int start,
                   int heads, int kv_heads, int head_dim, int capacity)
{
  if (head_dim > ATT_MAX_HEAD_DIM || heads % kv_heads != 0)
    {
      ns_cuda_record (b, cudaErrorInvalidValue, "attention (head_dim > 256 or bad GQA ratio)");
      return;
    }
  attention_kernel<<<batch * n * heads, ATT_WARPS * 32, 0, ns_cuda (b)->stream>>> (
    out, q, k_cache, v_cache, key_valid, n, start, heads, kv_heads, head_dim, capacity);
  ns_cuda_check_launch (b, "attention");
}
