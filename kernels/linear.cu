/* linear.cu — y = x·Wᵀ + b (+ y).
 * Decode-sized calls (1–8 rows: CFG rows × images) use our GEMV, which
 * streams each weight row once for all activation rows (the whole cost of a
 * decode step is reading the weights); larger calls (prefill) go to cuBLAS on
 * tensor cores with the activations rounded to the weight's 16-bit type.
 * Checked against the CPU reference by tests/kernels (op "linear"). */
#include "cuda-common.cuh"

#define GEMV_MAX_ROWS 8
#define GEMV_WARPS 8

/* Eight consecutive weights starting at element `i` (a multiple of 8). */
__device__ __forceinline__ void
load8 (const void *data, NsDType dtype, size_t i, float w[8])
{
  switch (dtype)
    {
    case NS_DTYPE_BF16:
    case NS_DTYPE_F16:
      {
        uint4 raw = __ldg ((const uint4 *) ((const uint16_t *) data + i));
        const uint16_t *h = (const uint16_t *) &raw;
        for (int j = 0; j < 8; j++)
          w[j] = dtype == NS_DTYPE_BF16 ? __uint_as_float ((uint32_t) h[j] << 16)
                                        : __half2float (__ushort_as_half (h[j]));
        break;
      }
    case NS_DTYPE_I8:
    case NS_DTYPE_F8_E4M3:
      {
        uint2 raw = __ldg ((const uint2 *) ((const uint8_t *) data + i));
        const uint8_t *q = (const uint8_t *) &raw;
        for (int j = 0; j < 8; j++)
          {
            if (dtype == NS_DTYPE_I8)
              w[j] = (float) (int8_t) q[j];
            else
              {
                __nv_fp8_e4m3 v;
                v.__x = q[j];
                w[j] = (float) v;
              }
          }
        break;
      }
    default:
      {
        float4 a = __ldg ((const float4 *) ((const float *) data + i));
        float4 c = __ldg ((const float4 *) ((const float *) data + i) + 1);
        w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w;
        w[4] = c.x; w[5] = c.y; w[6] = c.z; w[7] = c.w;
      }
    }
}

/* One warp per output row; R activation rows share every weight load.
 * `vec8` is true when cols is a multiple of 8 (aligned vector loads). */
template <int R>
__global__ void
gemv_kernel (float *__restrict__ y, const float *__restrict__ x, NsMat w, NsMat bias,
             int has_bias, int accumulate, int vec8)
{
  int o = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (o >= w.rows)
    return;
  const size_t row0 = (size_t) o * w.cols;
  float acc[R];
  for (int r = 0; r < R; r++)
    acc[r] = 0.0f;

  if (vec8)
    for (int i = lane * 8; i < w.cols; i += 32 * 8)
      {
        float wv[8];
        load8 (w.data, w.dtype, row0 + i, wv);
        for (int r = 0; r < R; r++)
          {
            const float4 *xr = (const float4 *) (x + (size_t) r * w.cols + i);
            float4 a = __ldg (xr), c = __ldg (xr + 1);
            acc[r] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w
                      + wv[4] * c.x + wv[5] * c.y + wv[6] * c.z + wv[7] * c.w;
          }
      }
  else
    for (int i = lane; i < w.cols; i += 32)
      {
        float wv = ns_load_weight (w.data, w.dtype, row0 + i);
        for (int r = 0; r < R; r++)
          acc[r] += wv * x[(size_t) r * w.cols + i];
      }

  float scale = ns_row_scale (w, o);
  float b = has_bias ? ns_load_weight (bias.data, bias.dtype, o) : 0.0f;
  for (int r = 0; r < R; r++)
    {
      float v = ns_warp_sum (acc[r]);
      if (lane == 0)
        {
          float *dst = y + (size_t) r * w.rows + o;
          v = v * scale + b;
          *dst = accumulate ? *dst + v : v;
        }
    }
}

template <int R>
static void
launch_gemv (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
             gboolean accumulate)
{
  NsMat no_bias = { NS_DTYPE_F32, 0, 0, NULL, NULL };
  /* Vector loads need 16-byte aligned rows of x and of the weight. */
  int vec8 = w->cols % 8 == 0 && (uintptr_t) x % 16 == 0 && (uintptr_t) w->data % 16 == 0;
  gemv_kernel<R><<<ns_div_up (w->rows, GEMV_WARPS), GEMV_WARPS * 32, 0, ns_cuda (b)->stream>>> (
    y, x, *w, bias ? *bias : no_bias, bias != NULL, accumulate, vec8);
}

static void
gemv (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias, int rows,
      gboolean accumulate)
{
  switch (rows)
    {
    case 1: launch_gemv<1> (b, y, x, w, bias, accumulate); break;
    case 2: launch_gemv<2> (b, y, x, w, bias, accumulate); break;
    case 3: launch_gemv<3> (b, y, x, w, bias, accumulate); break;
    case 4: launch_gemv<4> (b, y, x, w, bias, accumulate); break;
    case 5: launch_gemv<5> (b, y, x, w, bias, accumulate); break;
    case 6: launch_gemv<6> (b, y, x, w, bias, accumulate); break;
    case 7: launch_gemv<7> (b, y, x, w, bias, accumulate); break;
    default: launch_gemv<8> (b, y, x, w, bias, accumulate); break;
    }
}

__global__ void
to_half_kernel (uint16_t *dst, const float *src, size_t n, int bf16)
{
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n;
       i += (size_t) gridDim.x * blockDim.x)
    dst[i] = bf16 ? __bfloat16_as_ushort (__float2bfloat16 (src[i]))
                  : __half_as_ushort (__float2half (src[i]));
}

/* Quantized rows → bf16 (scale applied), for the tensor-core path. */
__global__ void
dequant_kernel (uint16_t *dst, NsMat w)
{
  size_t n = (size_t) w.rows * w.cols;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n;
       i += (size_t) gridDim.x * blockDim.x)
    dst[i] = __bfloat16_as_ushort (__float2bfloat16 (
      ns_load_weight (w.data, w.dtype, i) * ns_row_scale (w, (int) (i / w.cols))));
}

__global__ void
add_bias_kernel (float *y, NsMat bias, int rows, int cols)
{
  size_t n = (size_t) rows * cols;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n;
       i += (size_t) gridDim.x * blockDim.x)
    y[i] += ns_load_weight (bias.data, bias.dtype, i % cols);
}

static unsigned
grid_for (size_t n)
{
  return MIN (ns_div_up (n, 256), 65535u);
}

/* Row-major y[rows, out] = x[rows, in]·Wᵀ is, column-major,
 * Y(out × rows) = Wᵀ(in × out)ᵀ · X(in × rows). */
static void
gemm (NsBackend *b, float *y, const float *x, const NsMat *w, int rows, gboolean accumulate)
{
  NsCudaBackend *cb = ns_cuda (b);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  cublasStatus_t st;
  if (w->dtype == NS_DTYPE_F32)
    {
      st = cublasSgemm (cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, w->rows, rows, w->cols, &alpha,
                        (const float *) w->data, w->cols, x, w->cols, &beta, y, w->rows);
    }
  else
    {
      gboolean bf16 = w->dtype != NS_DTYPE_F16;
      size_t nx = (size_t) rows * w->cols, nw = (size_t) w->rows * w->cols;
      gboolean quantized = w->dtype == NS_DTYPE_I8 || w->dtype == NS_DTYPE_F8_E4M3;
      uint16_t *ws = (uint16_t *) ns_cuda_workspace (b, (nx + (quantized ? nw : 0)) * 2);
      uint16_t *xh = ws, *wh = quantized ? ws + nx : (uint16_t *) w->data;
      to_half_kernel<<<grid_for (nx), 256, 0, cb->stream>>> (xh, x, nx, bf16);
      if (quantized)
        dequant_kernel<<<grid_for (nw), 256, 0, cb->stream>>> (wh, *w);
      cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
      st = cublasGemmEx (cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, w->rows, rows, w->cols, &alpha,
                         wh, t, w->cols, xh, t, w->cols, &beta, y, CUDA_R_32F, w->rows,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
  if (st != CUBLAS_STATUS_SUCCESS)
    ns_cuda_record (b, cudaErrorUnknown, "linear (cuBLAS)");
}

void
ns_cuda_linear (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                int rows, gboolean accumulate)
{
  if (rows <= GEMV_MAX_ROWS)
    gemv (b, y, x, w, bias, rows, accumulate);
  else
    {
      gemm (b, y, x, w, rows, accumulate);
      if (bias != NULL)
        add_bias_kernel<<<grid_for ((size_t) rows * w->rows), 256, 0, ns_cuda (b)->stream>>> (
          y, *bias, rows, w->rows);
    }
  ns_cuda_check_launch (b, "linear");
}

void
ns_cuda_gemm_f32 (NsBackend *b, float *c, const float *a, const float *bm, int m, int n, int k,
                  int lda, int ldb, int ldc, gboolean transpose_a, gboolean transpose_b,
                  float beta)
{
  const float alpha = 1.0f;
  if (cublasSgemm (ns_cuda (b)->cublas, transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                   transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, a, lda, bm, ldb,
                   &beta, c, ldc) != CUBLAS_STATUS_SUCCESS)
    ns_cuda_record (b, cudaErrorUnknown, "gemm (cuBLAS)");
}
