/* attention-spatial.cu — the VAE mid-block's single-head attention over all
 * n = H·W positions, channel-major ([c, n] in and out). Queries are taken in
 * chunks so the score matrix never exceeds a fixed workspace (1024² images
 * have n = 16,384): scores = Qᵀ K by cuBLAS, a row softmax, then
 * out = V Pᵀ (engine/cpu/attention-spatial.c). */
#include "cuda-common.cuh"

#define SPATIAL_SCORE_BUDGET (64u << 20)   /* floats of scores per chunk (256 MB) */

/* Softmax over each row of scores [rows, n] (row-major), scaled. */
__global__ void
softmax_rows_kernel (float *scores, int n, float scale)
{
  __shared__ float shared[32];
  float *row = scores + (size_t) blockIdx.x * n;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x)
    m = fmaxf (m, row[j]);
  m = ns_warp_max (m);
  __syncthreads ();
  if ((threadIdx.x & 31) == 0)
    shared[threadIdx.x >> 5] = m;
  __syncthreads ();
  m = (threadIdx.x & 31) < (blockDim.x >> 5) ? shared[threadIdx.x & 31] : -INFINITY;
  m = ns_warp_max (m);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x)
    {
      float e = expf ((row[j] - m) * scale);
      row[j] = e;
      sum += e;
    }
  float inv = 1.0f / ns_block_sum (sum, shared);
  for (int j = threadIdx.x; j < n; j += blockDim.x)
    row[j] *= inv;
}

void
ns_cuda_attention_spatial (NsBackend *b, float *out, const float *q, const float *k,
                           const float *v, int c, int n)
{
  int chunk = (int) MAX (1u, MIN ((unsigned) n, SPATIAL_SCORE_BUDGET / (unsigned) n));
  float *scores = (float *) ns_cuda_workspace (b, (size_t) chunk * n * sizeof (float));
  if (scores == NULL)
    return;
  float scale = 1.0f / sqrtf ((float) c);
  for (int q0 = 0; q0 < n; q0 += chunk)
    {
      int rows = MIN (chunk, n - q0);
      /* A row-major [c, n] array is the column-major (n × c) matrix Xᵀ.
       * scores[rows, n] row-major is column-major (n × rows):
       * Kᵀ(n × c) · (Q[:, q0:q0+rows]ᵀ)ᵀ(c × rows), Q's block at q + q0, ld n. */
      ns_cuda_gemm_f32 (b, scores, k, q + q0, n, rows, c, n, n, n, FALSE, TRUE, 0.0f);
      softmax_rows_kernel<<<rows, 256, 0, ns_cuda (b)->stream>>> (scores, n, scale);
      /* out[:, q0:q0+rows] is column-major (rows × c) at out + q0, ld n:
       * P(rows × n) · Vᵀ(n × c), P being the transpose of scores as stored. */
      ns_cuda_gemm_f32 (b, out + q0, scores, v, rows, c, n, n, n, n, TRUE, FALSE, 0.0f);
    }
  ns_cuda_check_launch (b, "attention_spatial");
}
