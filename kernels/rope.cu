/* rope.cu — rotary embedding (HF rotate_half pairs (i, i + d/2), angles in
 * double like the CPU reference) and the KV-cache write of new positions.
 * Checked by tests/kernels. */
#include "cuda-common.cuh"

__global__ void
rope_kernel (float *x, const int32_t *positions, int rows, int heads, int head_dim, double theta)
{
  int half = head_dim / 2;
  size_t total = (size_t) rows * heads * half;
  for (size_t t = blockIdx.x * (size_t) blockDim.x + threadIdx.x; t < total;
       t += (size_t) gridDim.x * blockDim.x)
    {
      int i = (int) (t % half);
      size_t rh = t / half;
      int r = (int) (rh / heads);
      double inv_freq = pow (theta, -2.0 * i / head_dim);
      double angle = positions[r] * inv_freq;
      float c = (float) cos (angle), s = (float) sin (angle);
      float *v = x + rh * head_dim;
      float a = v[i], bb = v[i + half];
      v[i] = a * c - bb * s;
      v[i + half] = bb * c + a * s;
    }
}

__global__ void
kv_store_kernel (float *cache, const float *src, int batch, int n, int start, int kv_heads,
                 int head_dim, int capacity)
{
  size_t total = (size_t) batch * n * kv_heads * head_dim;
  for (size_t t = blockIdx.x * (size_t) blockDim.x + threadIdx.x; t < total;
       t += (size_t) gridDim.x * blockDim.x)
    {
      size_t d = t % head_dim, h = (t / head_dim) % kv_heads;
      size_t i = (t / ((size_t) head_dim * kv_heads)) % n, s = t / ((size_t) head_dim * kv_heads * n);
      cache[((s * kv_heads + h) * capacity + start + i) * head_dim + d] = src[t];
    }
}

void
ns_cuda_rope (NsBackend *b, float *x, const int32_t *positions, int rows, int heads, int head_dim,
              double theta)
{
  const int32_t *dev_pos = ns_cuda_stage_indices (b, positions, rows);
  size_t total = (size_t) rows * heads * (head_dim / 2);
  rope_kernel<<<MIN (ns_div_up (total, 256), 65535u), 256, 0, ns_cuda (b)->stream>>> (
    x, dev_pos, rows, heads, head_dim, theta);
  ns_cuda_check_launch (b, "rope");
}

void
ns_cuda_kv_store (NsBackend *b, float *cache, const float *src, int batch, int n, int start,
                  int kv_heads, int head_dim, int capacity)
{
  size_t total = (size_t) batch * n * kv_heads * head_dim;
  kv_store_kernel<<<MIN (ns_div_up (total, 256), 65535u), 256, 0, ns_cuda (b)->stream>>> (
    cache, src, batch, n, start, kv_heads, head_dim, capacity);
  ns_cuda_check_launch (b, "kv_store");
}
