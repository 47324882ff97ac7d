/* cuda-common.cuh — what every CUDA op file shares: the backend state, error
 * bookkeeping, dtype loads and launch helpers. Ops are asynchronous on the
 * backend's stream; the first failure is kept and reported by sync/read. */
#pragma once

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cublas_v2.h>
#include <stdint.h>

#include "backend.h"
#include "nextstep.h"

typedef struct {
  NsBackend base;
  int device;
  cudaStream_t stream;
  cublasHandle_t cublas;
  guint64 memory_cap;          /* bytes we may hold; from the device or a test cap */
  guint64 allocated;           /* bytes held through alloc/upload */
  GHashTable *sizes;           /* device pointer → bytes, for the accounting */
  guint64 peak;                /* most bytes held at once (for nextstep bench) */
  int sm;                      /* compute capability, major · 10 + minor */
  /* Scratch: host-supplied index arrays (ids, positions) and GEMM staging. */
  int32_t *index_scratch;
  size_t index_capacity;
  void *workspace;
  size_t workspace_bytes;
  cudaError_t first_error;     /* sticky: the first asynchronous failure */
  const char *first_error_op;
} NsCudaBackend;

static inline NsCudaBackend *
ns_cuda (NsBackend *b)
{
  return (NsCudaBackend *) b;
}

/* Records the launch status of an op (the first failure sticks). */
static inline void
ns_cuda_check_launch (NsBackend *b, const char *op)
{
  cudaError_t err = cudaGetLastError ();
  NsCudaBackend *cb = ns_cuda (b);
  if (err != cudaSuccess && cb->first_error == cudaSuccess)
    {
      cb->first_error = err;
      cb->first_error_op = op;
    }
}

static inline void
ns_cuda_record (NsBackend *b, cudaError_t err, const char *op)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (err != cudaSuccess && cb->first_error == cudaSuccess)
    {
      cb->first_error = err;
      cb->first_error_op = op;
    }
}

static inline unsigned
ns_div_up (size_t n, unsigned d)
{
  return (unsigned) ((n + d - 1) / d);
}

/* Element i of a weight matrix's storage, as float (scales applied by the
 * caller for quantized rows). */
__device__ __forceinline__ float
ns_load_weight (const void *data, NsDType dtype, size_t i)
{
  switch (dtype)
    {
    case NS_DTYPE_BF16: return __bfloat162float (((const __nv_bfloat16 *) data)[i]);
    case NS_DTYPE_F16: return __half2float (((const __half *) data)[i]);
    case NS_DTYPE_I8: return (float) ((const int8_t *) data)[i];
    case NS_DTYPE_F8_E4M3:
      {
        __nv_fp8_e4m3 v;
        v.__x = ((const __nv_fp8_storage_t *) data)[i];
        return (float) v;
      }
    default: return ((const float *) data)[i];
    }
}

/* Row `r` scale of a quantized matrix (1 for float storage). */
__device__ __forceinline__ float
ns_row_scale (const NsMat m, int r)
{
  return m.scale != NULL ? m.scale[r] : 1.0f;
}

__device__ __forceinline__ float
ns_warp_sum (float v)
{
  for (int offset = 16; offset > 0; offset >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float
ns_warp_max (float v)
{
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, offset));
  return v;
}

/* Sum over a block whose size is a multiple of 32 (≤ 1024); every thread
 * gets the result. `shared` holds ≥ 32 floats. */
__device__ __forceinline__ float
ns_block_sum (float v, float *shared)
{
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = ns_warp_sum (v);
  __syncthreads ();
  if (lane == 0)
    shared[warp] = v;
  __syncthreads ();
  int n_warps = blockDim.x >> 5;
  v = lane < n_warps ? shared[lane] : 0.0f;
  return ns_warp_sum (v);
}

/* Copies a host index array (ids, positions) to device scratch. */
const int32_t *ns_cuda_stage_indices (NsBackend *b, const int32_t *host, int n);
/* Device workspace of at least `bytes` (grown on demand; stream-ordered). */
void *ns_cuda_workspace (NsBackend *b, size_t bytes);

/* Op entry points, one family per file (the ops table is in cuda-backend.cu). */
G_BEGIN_DECLS
void ns_cuda_linear (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                     int rows, gboolean accumulate);
void ns_cuda_gemm_f32 (NsBackend *b, float *c, const float *a, const float *bm, int m, int n,
                       int k, int lda, int ldb, int ldc, gboolean transpose_a,
                       gboolean transpose_b, float beta);
void ns_cuda_rmsnorm (NsBackend *b, float *y, const float *x, const NsMat *weight, int rows,
                      int dim, float eps);
void ns_cuda_layernorm (NsBackend *b, float *y, const float *x, const NsMat *weight,
                        const NsMat *bias, int rows, int dim, float eps);
void ns_cuda_modulate (NsBackend *b, float *y, const float *x, const float *shift,
                       const float *scale, int rows, int dim, int mod_stride);
void ns_cuda_gated_add (NsBackend *b, float *x, const float *gate, const float *m, int rows,
                        int dim, int gate_stride);
void ns_cuda_groupnorm (NsBackend *b, float *y, const float *x, const NsMat *gamma,
                        const NsMat *beta, int c, int hw, int groups, float eps, gboolean silu);
void ns_cuda_silu (NsBackend *b, float *y, const float *x, size_t n);
void ns_cuda_silu_mul (NsBackend *b, float *y, const float *gate, const float *up, size_t n);
void ns_cuda_add (NsBackend *b, float *y, const float *a, const float *c, size_t n);
void ns_cuda_embedding (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n);
void ns_cuda_upsample2x (NsBackend *b, float *y, const float *x, int c, int h, int w);
void ns_cuda_patchify (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw,
                       int p);
void ns_cuda_unpatchify (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw,
                         int p);
void ns_cuda_rope (NsBackend *b, float *x, const int32_t *positions, int rows, int heads,
                   int head_dim, double theta);
void ns_cuda_kv_store (NsBackend *b, float *cache, const float *src, int batch, int n, int start,
                       int kv_heads, int head_dim, int capacity);
void ns_cuda_attention (NsBackend *b, float *out, const float *q, const float *k_cache,
                        const float *v_cache, const float *key_valid, int batch, int n,
                        int start, int heads, int kv_heads, int head_dim, int capacity);
void ns_cuda_attention_spatial (NsBackend *b, float *out, const float *q, const float *k,
                                const float *v, int c, int n);
void ns_cuda_conv2d (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                     int ci, int h, int wd, int co, int k, int stride, int pad_t, int pad_l,
                     int pad_b, int pad_r);
/* Quantizes a device bf16/f16/f32 matrix [rows × cols] to int8 or fp8 e4m3
 * with one absmax scale per row. */
void ns_cuda_quantize_rows (NsBackend *b, void *q, float *scale, const void *src,
                            NsDType src_dtype, NsDType q_dtype, int rows, int cols);
G_END_DECLS
