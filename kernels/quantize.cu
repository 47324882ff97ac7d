/* quantize.cu — weight-only quantization at load: each output row of a
 * bf16/f16/f32 matrix becomes int8 (scale = absmax/127) or fp8 e4m3
 * (scale = absmax/448) with its float scale. One block per row.
 * Checked by tests/kernels (round trip error bound). */
#include "cuda-common.cuh"

__global__ void
quantize_rows_kernel (void *q, float *scale, const void *src, NsDType src_dtype, NsDType q_dtype,
                      int cols)
{
  __shared__ float shared[32];
  size_t row0 = (size_t) blockIdx.x * cols;
  float amax = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x)
    amax = fmaxf (amax, fabsf (ns_load_weight (src, src_dtype, row0 + i)));
  amax = ns_warp_max (amax);
  if ((threadIdx.x & 31) == 0)
    shared[threadIdx.x >> 5] = amax;
  __syncthreads ();
  amax = 0.0f;
  for (int w = 0; w < (int) (blockDim.x >> 5); w++)
    amax = fmaxf (amax, shared[w]);
  float qmax = q_dtype == NS_DTYPE_I8 ? 127.0f : 448.0f;
  float s = amax > 0.0f ? amax / qmax : 1.0f;
  if (threadIdx.x == 0)
    scale[blockIdx.x] = s;
  for (int i = threadIdx.x; i < cols; i += blockDim.x)
    {
      float v = ns_load_weight (src, src_dtype, row0 + i) / s;
      if (q_dtype == NS_DTYPE_I8)
        ((int8_t *) q)[row0 + i] = (int8_t) fmaxf (-127.0f, fminf (127.0f, rintf (v)));
      else
        ((__nv_fp8_storage_t *) q)[row0 + i] = __nv_fp8_e4m3 (v).__x;
    }
}

void
ns_cuda_quantize_rows (NsBackend *b, void *q, float *scale, const void *src, NsDType src_dtype,
                       NsDType q_dtype, int rows, int cols)
{
  quantize_rows_kernel<<<rows, 256, 0, ns_cuda (b)->stream>>> (q, scale, src, src_dtype, q_dtype,
                                                               cols);
  ns_cuda_check_launch (b, "quantize");
}
