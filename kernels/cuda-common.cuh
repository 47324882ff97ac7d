/* cuda-common.cuh — what every CUDA op file shares: the backend state, error
 * bookkeeping, dtype loads, reductions and launch helpers. Ops are
 * asynchronous on the backend's stream and read positions and token indices
 * from device memory (backend.h), so a sequence of them can be captured as
 * a graph; the first failure is kept and reported by sync/read_wait. */
#pragma once

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cublas_v2.h>
#include <stdint.h>

#include "backend.h"
#include "grid-index.h"
#include "q4-layout.h"
#include "nextstep.h"

/* One host read in flight (read_async): `n` floats at `offset` of the pinned
 * staging buffer go to `dst` at read_wait. */
typedef struct {
  float *dst;
  size_t offset, n;
} NsCudaRead;

typedef struct {
  NsBackend base;
  int device;
  int sm;                      /* compute capability, major · 10 + minor */
  int n_sms;
  cudaStream_t stream;
  cublasHandle_t cublas;
  void *cublas_workspace;      /* fixed, so cuBLAS calls can be captured */
  guint64 memory_cap;          /* bytes we may hold; from the device or a test cap */
  guint64 allocated;           /* bytes held through alloc/upload/workspaces */
  guint64 peak;                /* most bytes held at once (for nextstep bench) */
  GHashTable *sizes;           /* device pointer → bytes, for the accounting */
  int max_out, max_in;         /* largest weight matrix uploaded (rows, cols) */
  int max_q4_in, max_q4_out;   /* the same over q4 matrices (0: none) */
  void *workspace;             /* one scratch buffer, stream-ordered among ops */
  size_t workspace_bytes;
  int live_graphs;             /* graphs made and not freed */
  GPtrArray *retired;          /* old workspaces a live graph may still use */
  float *staging;              /* pinned host memory for read_async */
  size_t staging_floats, staging_used;
  GArray *reads;               /* NsCudaRead in flight */
  cudaEvent_t read_done;
  gboolean capturing;          /* between graph_begin and graph_end */
  cudaError_t first_error;     /* sticky: the first failure */
  const char *first_error_op;
} NsCudaBackend;

static inline NsCudaBackend *
ns_cuda (NsBackend *b)
{
  return (NsCudaBackend *) b;
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

/* Records the launch status of an op (the first failure sticks). */
static inline void
ns_cuda_check_launch (NsBackend *b, const char *op)
{
  ns_cuda_record (b, cudaGetLastError (), op);
}

static inline unsigned
ns_div_up (size_t n, unsigned d)
{
  return (unsigned) ((n + d - 1) / d);
}

/* Blocks of 256 threads for a grid-stride loop over n elements. */
static inline unsigned
ns_grid_for (size_t n)
{
  return MAX (1u, MIN (ns_div_up (n, 256), 65535u));
}

#define NS_GRID_STRIDE(i, n)                                                    \
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < (n);     \
       i += (size_t) gridDim.x * blockDim.x)

/* A grid-stride kernel over n elements on the backend's stream. */
#define NS_LAUNCH(b, n, kernel, ...)                                            \
  do {                                                                          \
    kernel<<<ns_grid_for (n), 256, 0, ns_cuda (b)->stream>>> (__VA_ARGS__);    \
    ns_cuda_check_launch (b, #kernel);                                          \
  } while (0)

/* Element i of a small weight (norm gains, biases, tables) as float, scale
 * included. The hot loops (linear.cu) decode one format per kernel instead. */
__device__ __forceinline__ float
ns_load_weight (const NsMat m, size_t i)
{
  float v;
  switch (m.dtype)
    {
    case NS_DTYPE_BF16: v = __bfloat162float (((const __nv_bfloat16 *) m.data)[i]); break;
    case NS_DTYPE_F16: v = __half2float (((const __half *) m.data)[i]); break;
    case NS_DTYPE_I8: v = (float) ((const int8_t *) m.data)[i]; break;
    case NS_DTYPE_Q4:
      {
        /* q4-layout.h: element c of row o, times its group's f16 scale */
        size_t o = i / m.cols, c = i % m.cols;
        return (float) ns_q4_code ((const uint8_t *) m.data + o * ns_q4_row_bytes (m.cols), c)
               * __half2float (__ushort_as_half (
                   m.group_scale[o * ns_q4_row_groups (m.cols) + c / NS_Q4_GROUP]));
      }
    case NS_DTYPE_F8_E4M3:
      {
        __nv_fp8_e4m3 f;
        f.__x = ((const __nv_fp8_storage_t *) m.data)[i];
        v = (float) f;
        break;
      }
    default: v = ((const float *) m.data)[i];
    }
  return m.scale != NULL ? v * m.scale[i / m.cols] : v;
}

/* An optional weight passed by value: data NULL when absent. */
static inline NsMat
ns_mat_or_none (const NsMat *m)
{
  NsMat none = { NS_DTYPE_F32, 0, 1, NULL, NULL, NULL };
  return m != NULL ? *m : none;
}

template <typename T>
__device__ __forceinline__ T
ns_warp_sum (T v)
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
 * gets the result. `shared` holds ≥ 32 values. */
template <typename T>
__device__ __forceinline__ T
ns_block_sum (T v, T *shared)
{
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = ns_warp_sum (v);
  __syncthreads ();
  if (lane == 0)
    shared[warp] = v;
  __syncthreads ();
  int n_warps = blockDim.x >> 5;
  v = lane < n_warps ? shared[lane] : (T) 0;
  return ns_warp_sum (v);
}

/* Device scratch of at least `bytes`, valid until the next op that asks.
 * Grows outside graph capture only (reserve sizes it first); NULL with the
 * failure recorded when it cannot. */
void *ns_cuda_workspace (NsBackend *b, size_t bytes);
/* The workspace a linear of `rows` rows needs at most (for reserve). */
size_t ns_cuda_linear_workspace (NsBackend *b, int rows);

/* linear-fused.cu: the workspace a fused linear of `rows` rows needs at most
 * (for reserve), and scratch of `floats` floats placed after what the
 * linear op itself takes from the workspace, so that the unfused sequence a
 * fused op falls back to can keep an intermediate there across its linears. */
size_t ns_cuda_fused_workspace (NsBackend *b, int rows);
float *ns_cuda_fused_scratch (NsBackend *b, int rows, size_t floats);

/* Op entry points, one family per file (the ops table is in cuda-backend.cu). */
G_BEGIN_DECLS
/* linear.cu */
void ns_cuda_linear (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                     int rows, gboolean accumulate);
void ns_cuda_gemm_f32 (NsBackend *b, float *c, const float *a, const float *bm, int m, int n,
                       int k, int lda, int ldb, int ldc, gboolean transpose_a,
                       gboolean transpose_b, float beta);
/* linear-fused.cu */
void ns_cuda_linear_multi (NsBackend *b, const NsLinearOut *outs, int n, const float *x,
                           int rows);
void ns_cuda_linear_swiglu (NsBackend *b, float *y, const float *x, const NsMat *gate_w,
                            const NsMat *gate_b, const NsMat *up_w, const NsMat *up_b, int rows);
void ns_cuda_norm_modulate_linear (NsBackend *b, float *y, const float *x,
                                   const NsNormModulate *nm, const NsMat *w, const NsMat *bias,
                                   int rows, gboolean silu);
void ns_cuda_linear_gated_add (NsBackend *b, float *x, const float *gate, const float *m,
                               const NsMat *w, const NsMat *bias, int rows, int gate_stride);
/* norm.cu, groupnorm.cu */
void ns_cuda_rmsnorm (NsBackend *b, float *y, const float *x, const NsMat *weight, int rows,
                      int dim, float eps);
void ns_cuda_layernorm (NsBackend *b, float *y, const float *x, const NsMat *weight,
                        const NsMat *bias, int rows, int dim, float eps);
void ns_cuda_groupnorm (NsBackend *b, float *y, const float *x, const NsMat *gamma,
                        const NsMat *beta, int c, int hw, int groups, float eps, gboolean silu);
/* elementwise.cu */
void ns_cuda_modulate (NsBackend *b, float *y, const float *x, const float *shift,
                       const float *scale, int rows, int dim, int mod_stride);
void ns_cuda_gated_add (NsBackend *b, float *x, const float *gate, const float *m, int rows,
                        int dim, int gate_stride);
void ns_cuda_silu (NsBackend *b, float *y, const float *x, size_t n);
void ns_cuda_silu_mul (NsBackend *b, float *y, const float *gate, const float *up, size_t n);
void ns_cuda_add (NsBackend *b, float *y, const float *a, const float *c, size_t n);
void ns_cuda_counter_add (NsBackend *b, int32_t *counter, int n, int32_t delta);
void ns_cuda_add_indexed_row (NsBackend *b, float *y, const float *x, const float *table,
                              const int32_t *rows_of, const int32_t *token, int rows, int dim);
/* embedding.cu */
void ns_cuda_embedding (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n);
/* image.cu */
void ns_cuda_upsample2x (NsBackend *b, float *y, const float *x, int c, int h, int w);
void ns_cuda_patchify (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw,
                       int p);
void ns_cuda_unpatchify (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw,
                         int p);
/* rope.cu, attention.cu, attention-spatial.cu */
void ns_cuda_rope (NsBackend *b, float *x, const int32_t *start, int batch, int n, int heads,
                   int head_dim, double theta);
void ns_cuda_kv_store (NsBackend *b, float *cache, const float *src, int batch, int n,
                       const int32_t *start, int kv_heads, int head_dim, int capacity);
void ns_cuda_attention (NsBackend *b, float *out, const float *q, const float *k_cache,
                        const float *v_cache, const float *key_valid, int batch, int n,
                        const int32_t *start, int heads, int kv_heads, int head_dim,
                        int capacity);
void ns_cuda_attention_spatial (NsBackend *b, float *out, const float *q, const float *k,
                                const float *v, int c, int n);
/* conv2d.cu */
void ns_cuda_conv2d (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                     int ci, int h, int wd, int co, int k, int stride, int pad_t, int pad_l,
                     int pad_b, int pad_r);
/* sampler.cu */
void ns_cuda_time_features (NsBackend *b, float *out, const double *t, int n, int n_features);
void ns_cuda_noise (NsBackend *b, float *out, int n_images, int dim, guint64 seed,
                    const float *table, int draws, const int32_t *token, int draw);
void ns_cuda_cfg_combine (NsBackend *b, float *v, const float *v_rows, int cfg_mult,
                          size_t block, const NsCfgParams *cfg, const int32_t *token);
void ns_cuda_sampler_step (NsBackend *b, double *state, float *x_rows, const float *v,
                           const float *eps, size_t block, int copies,
                           const NsSamplerStep *step);
void ns_cuda_sampler_finish (NsBackend *b, float *tok, const double *state, int n, int dim,
                             gboolean use_norm);
/* quantize.cu: a device bf16/f16/f32 matrix [rows × cols] to int8 or fp8
 * e4m3 with one absmax scale per row (the CPU's cpu/quant.h rule). */
void ns_cuda_quantize_rows (NsBackend *b, void *q, float *scale, const void *src,
                            NsDType src_dtype, NsDType q_dtype, int rows, int cols);
/* quantize.cu: the same matrix to q4 codes and f16 group scales (q4-layout.h). */
void ns_cuda_quantize_q4_rows (NsBackend *b, uint8_t *q, uint16_t *scale, const void *src,
                               NsDType src_dtype, int rows, int cols);
/* linear-q4.cu: the linear op for Q4 weights (ns_cuda_linear hands them over). */
/* Workspace bytes ns_cuda_linear_q4 needs for `rows` x rows (0 without q4
 * matrices); ns_cuda_linear_workspace includes it. */
size_t ns_cuda_linear_q4_workspace (NsBackend *b, int rows);
void ns_cuda_linear_q4 (NsBackend *b, float *y, const float *x, const NsMat *w,
                        const NsMat *bias, int rows, gboolean accumulate);
G_END_DECLS
