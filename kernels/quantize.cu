/* quantize.cu — weight-only quantization at load, the rule of
 * engine/cpu/quant.c: each output row of a bf16/f16/f32 matrix becomes int8
 * (scale = absmax/127) or fp8 e4m3 (scale = absmax/448, saturating, round
 * to nearest even) with its float scale, so both backends hold the same
 * codes. One block per row. */
#include "cuda-common.cuh"
#include "q4-layout.h"

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
  NsMat m = { src_dtype, rows, cols, src, NULL, NULL };
  quantize_rows_kernel<<<rows, 256, 0, ns_cuda (b)->stream>>> (q, scale, m, q_dtype);
  ns_cuda_check_launch (b, "quantize");
}

/* ---- q4 (q4-layout.h; the rule of cpu/quant.h) ------------------------- */

/* The element of larger magnitude, the positive one of a tie (the CPU's
 * order-free choice). */
__device__ __forceinline__ float
q4_pick (float a, float c)
{
  return fabsf (c) > fabsf (a) || (fabsf (c) == fabsf (a) && c > a) ? c : a;
}

/* One warp per group of NS_Q4_GROUP elements, 32 at a time; lanes l and
 * l + 8 (l % 16 < 8) hold the two nibbles of one byte (elements 8k + t and
 * 8(k + 1) + t of a block). */
__global__ void
quantize_q4_kernel (uint8_t *q, uint16_t *scale, NsMat src, size_t groups)
{
  size_t g = ((size_t) blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (g >= groups)
    return;
  size_t per_row = (size_t) src.cols / NS_Q4_GROUP, row = g / per_row;
  size_t c0 = g % per_row * NS_Q4_GROUP, at = row * src.cols + c0;
  float m = 0.0f;
  for (int j = lane; j < NS_Q4_GROUP; j += 32)
    m = q4_pick (m, ns_load_weight (src, at + j));
  for (int off = 16; off > 0; off >>= 1)
    m = q4_pick (m, __shfl_xor_sync (0xffffffffu, m, off));
  float d = fmaxf (-65504.0f, fminf (65504.0f, -m / 8.0f));
  __half h = __float2half_rn (d);
  float s = __half2float (h);
  if (lane == 0)
    scale[g] = __half_as_ushort (h);
  uint8_t *codes = q + row * ns_q4_row_bytes (src.cols);
  for (int j0 = 0; j0 < NS_Q4_GROUP; j0 += 32)
    {
      size_t c = c0 + j0 + lane;
      float v = ns_load_weight (src, row * src.cols + c);
      int code = s != 0.0f ? (int) fmaxf (-8.0f, fminf (7.0f, rintf (v / s))) : 0;
      int hi = __shfl_down_sync (0xffffffffu, code, 8);
      if (lane % 16 < 8)
        codes[ns_q4_byte (c)] = (uint8_t) ((code & 15) | ((hi & 15) << 4));
    }
}

void
ns_cuda_quantize_q4_rows (NsBackend *b, uint8_t *q, uint16_t *scale, const void *src,
                          NsDType src_dtype, int rows, int cols)
{
  NsMat m = { src_dtype, rows, cols, src, NULL, NULL };
  size_t groups = (size_t) rows * (cols / NS_Q4_GROUP);
  quantize_q4_kernel<<<ns_div_up (groups * 32, 256), 256, 0, ns_cuda (b)->stream>>> (
    q, scale, m, groups);
  ns_cuda_check_launch (b, "quantize q4");
}
