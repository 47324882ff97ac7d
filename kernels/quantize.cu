/* quantize.cu — weight-only quantization at load, the rule of
 * engine/cpu/quant.c: each output row of a bf16/f16/f32 matrix becomes int8
 * (scale = absmax/127) or fp8 e4m3 (scale = absmax/448, saturating, round
 * to nearest even) with its float scale, so both backends hold the same
 * codes. One block per row. */
#include "cuda-common.cuh"

__global__ void
quantize_rows_kernel (void *q, float *scale, NsMat src, NsDType q_dtype)
{
  __shared__ float shared[32];
  size_t row0 = (size_t) blockIdx.x * src.cols;
  float amax = 0.0f;
  for (int i = threadIdx.x; i < src.cols; i += blockDim.x)
    amax = fmaxf (amax, fabsf (ns_load_weight (src, row0 + i)));
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
  for (int i = threadIdx.x; i < src.cols; i += blockDim.x)
    {
      float v = ns_load_weight (src, row0 + i) / s;
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
  NsMat m = { src_dtype, rows, cols, src, NULL };
  quantize_rows_kernel<<<rows, 256, 0, ns_cuda (b)->stream>>> (q, scale, m, q_dtype);
  ns_cuda_check_launch (b, "quantize");
}
