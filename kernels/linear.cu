/* linear.cu — y = x·Wᵀ + bias (+ y), the op of engine/cpu/linear.c, with f32
 * activations on every path as the reference has them.
 *
 * Decode (1–8 rows: CFG rows × images) is bound by reading W once: the
 * GEMV of gemv.cuh, one kernel per weight format (no dtype switch in the
 * loop), each warp owning
 * NS_GEMV_OUTS output rows so every x value it loads serves several weight
 * rows, lanes across k with 16-byte weight loads (8 bf16/f16, 16 int8/fp8
 * codes, 4 f32), two of them per output row in flight, and split-K (a
 * second kernel sums the splits in order) when the output rows are too few
 * to fill two waves (k/v projections: 1,024 rows for 132 SMs). 9–32 rows
 * run the GEMV per group of 8: W is read again per group but never
 * written. More rows (prefill, the FM head's batched adaLN) go to cuBLAS
 * tensor cores with x split exactly into three bf16 planes (h + m + l = x
 * to f32 precision), so bf16 weights multiply f32 activations; int8/fp8
 * codes are exact in bf16 and are widened chunk by chunk into the
 * workspace, their row scales applied in the epilogue; f16 weights (which
 * would overflow at 65504 as fp16 inputs) are widened to f32 for SGEMM.
 * Split and chunk index math in grid-index.h. */
#include "gemv.cuh"

#define GEMV_GROUPED_MAX_ROWS 32
#define GEMM_ROWS_BUDGET ((size_t) 64 << 20)    /* bytes of x planes + f32 result */
#define GEMM_CHUNK_BUDGET ((size_t) 64 << 20)   /* bytes of widened weight rows */

/* ---- GEMV -----------------------------------------------------------------
 * 16-byte loads: gemv.cuh; any k or alignment: the scalar kernel below. */

typedef struct {
  float *y;              /* [rows, n_out] */
  const float *x;        /* [rows, k] */
  const void *w;
  const float *scale;    /* per-row scales of I8/F8, else NULL */
  NsMat bias;            /* data NULL when absent */
  int n_out, k, accumulate;
} GemvArgs;

__device__ __forceinline__ void
gemv_store (const GemvArgs &a, int r, int o, float sum)
{
  ns_gemv_store_linear (a.y + (size_t) r * a.n_out + o, a.bias, a.scale, o, sum, a.accumulate,
                        FALSE);
}

/* Any k, any alignment: one warp per output row, scalar loads. */
template <NsDType F>
__global__ void
gemv_any_kernel (const GemvArgs a, int rows)
{
  int o = blockIdx.x * NS_GEMV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (o >= a.n_out)
    return;
  float acc[NS_GEMV_MAX_ROWS] = { 0 };
  for (int i = lane; i < a.k; i += 32)
    {
      float wv = Fmt<F>::load1 (a.w, (size_t) o * a.k + i);
      for (int r = 0; r < rows; r++)
        acc[r] += wv * a.x[(size_t) r * a.k + i];
    }
  for (int r = 0; r < NS_GEMV_MAX_ROWS; r++)
    {
      float sum = ns_warp_sum (acc[r]);
      if (lane == 0 && r < rows)
        gemv_store (a, r, o, sum);
    }
}

template <NsDType F>
static void
gemv_any (NsBackend *b, const GemvArgs &a, int rows)
{
  gemv_any_kernel<F><<<ns_div_up (a.n_out, NS_GEMV_WARPS), NS_GEMV_WARPS * 32, 0,
                       ns_cuda (b)->stream>>> (a, rows);
}

/* ≤ 8 rows: the shared GEMV, or the scalar kernel where it cannot load. */
static void
gemv (NsBackend *b, const GemvArgs &a, const NsMat *w, int rows)
{
  if (ns_gemv_fits (w, a.x))
    {
      NsGemvTask t = {};
      NsGemvMat m = { a.w, a.scale, a.bias, a.y };
      t.m[0] = m;
      t.n_out[0] = a.n_out;
      t.n_mats = 1;
      t.k = a.k;
      t.rows = rows;
      ns_gemv_launch (b, t, NsGemvPlainX { a.x, a.k }, NsGemvStore { a.accumulate, FALSE },
                      w->dtype);
      return;
    }
  switch (w->dtype)
    {
    case NS_DTYPE_BF16: gemv_any<NS_DTYPE_BF16> (b, a, rows); break;
    case NS_DTYPE_F16: gemv_any<NS_DTYPE_F16> (b, a, rows); break;
    case NS_DTYPE_I8: gemv_any<NS_DTYPE_I8> (b, a, rows); break;
    case NS_DTYPE_F8_E4M3: gemv_any<NS_DTYPE_F8_E4M3> (b, a, rows); break;
    default: gemv_any<NS_DTYPE_F32> (b, a, rows); break;
    }
}

/* Up to GEMV_GROUPED_MAX_ROWS rows, by groups of 8. */
static void
gemv_groups (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias, int rows,
             gboolean accumulate)
{
  for (int r0 = 0; r0 < rows; r0 += NS_GEMV_MAX_ROWS)
    {
      GemvArgs a = { y + (size_t) r0 * w->rows, x + (size_t) r0 * w->cols, w->data, w->scale,
                     ns_mat_or_none (bias), w->rows, w->cols, accumulate };
      gemv (b, a, w, MIN (NS_GEMV_MAX_ROWS, rows - r0));
    }
}

/* ---- tensor-core path ------------------------------------------------------ */

/* x = h + m + l, each a bf16 plane [rows, k]: the three leading 8-bit pieces
 * of x's 24-bit significand, so the sum of the three products is x·W. */
__global__ void
split_planes_kernel (__nv_bfloat16 *planes, const float *x, size_t n)
{
  NS_GRID_STRIDE (i, n)
    {
      float v = x[i];
      __nv_bfloat16 h = __float2bfloat16_rn (v);
      float rest = v - __bfloat162float (h);
      __nv_bfloat16 m = __float2bfloat16_rn (rest);
      planes[i] = h;
      planes[n + i] = m;
      planes[2 * n + i] = __float2bfloat16_rn (rest - __bfloat162float (m));
    }
}

/* Weight rows [o0, o0 + count) → bf16 codes (I8/F8, exact) or f32 (F16). */
template <NsDType F>
__global__ void
widen_rows_kernel (void *dst, const void *w, size_t first, size_t n, int to_f32)
{
  NS_GRID_STRIDE (i, n)
    {
      float v = Fmt<F>::load1 (w, first + i);
      if (to_f32)
        ((float *) dst)[i] = v;
      else
        ((__nv_bfloat16 *) dst)[i] = __float2bfloat16_rn (v);
    }
}

__global__ void
gemm_epilogue_kernel (const GemvArgs a, const float *tmp, size_t n)
{
  NS_GRID_STRIDE (e, n) gemv_store (a, (int) (e / a.n_out), (int) (e % a.n_out), tmp[e]);
}

typedef struct {
  NsBackend *b;
  const NsMat *w;
  int rows;                 /* rows of this pass */
  const float *x;           /* f32 rows (SGEMM) */
  const __nv_bfloat16 *planes;
  float *tmp;               /* [rows, n_out] */
  void *chunk;              /* widened weight rows */
  int chunk_rows;
} GemmPass;

static void
record_cublas (NsBackend *b, cublasStatus_t st)
{
  if (st != CUBLAS_STATUS_SUCCESS)
    ns_cuda_record (b, cudaErrorUnknown, "linear (cuBLAS)");
}

/* tmp[:, o0 : o0 + count] = x·W[o0 : o0 + count]ᵀ with W rows in bf16 at
 * `wb` (row-major y is column-major (n_out × rows): Wᵀᵀ·X). */
static void
gemm_planes (const GemmPass *p, const void *wb, int o0, int count)
{
  NsCudaBackend *cb = ns_cuda (p->b);
  const float one = 1.0f;
  size_t plane = (size_t) p->rows * p->w->cols;
  for (int j = 0; j < 3; j++)
    {
      const float beta = j == 0 ? 0.0f : 1.0f;
      record_cublas (p->b, cublasGemmEx (cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, count, p->rows,
                                         p->w->cols, &one, wb, CUDA_R_16BF, p->w->cols,
                                         p->planes + j * plane, CUDA_R_16BF, p->w->cols, &beta,
                                         p->tmp + o0, CUDA_R_32F, p->w->rows,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
}

static void
gemm_f32 (const GemmPass *p, const float *wf, int o0, int count)
{
  ns_cuda_gemm_f32 (p->b, p->tmp + o0, wf, p->x, count, p->rows, p->w->cols, p->w->cols,
                    p->w->cols, p->w->rows, TRUE, FALSE, 0.0f);
}

/* Widens weight rows chunk by chunk into the workspace and multiplies. */
template <NsDType F>
static void
gemm_chunks (const GemmPass *p, int to_f32)
{
  const NsMat *w = p->w;
  for (int o0 = 0; o0 < w->rows; o0 += p->chunk_rows)
    {
      int count = MIN (p->chunk_rows, w->rows - o0);
      size_t n = (size_t) count * w->cols;
      widen_rows_kernel<F><<<ns_grid_for (n), 256, 0, ns_cuda (p->b)->stream>>> (
        p->chunk, w->data, (size_t) o0 * w->cols, n, to_f32);
      if (to_f32)
        gemm_f32 (p, (const float *) p->chunk, o0, count);
      else
        gemm_planes (p, p->chunk, o0, count);
    }
}

static void
gemm_pass (const GemmPass *p)
{
  switch (p->w->dtype)
    {
    case NS_DTYPE_BF16: gemm_planes (p, p->w->data, 0, p->w->rows); break;
    case NS_DTYPE_F32: gemm_f32 (p, (const float *) p->w->data, 0, p->w->rows); break;
    case NS_DTYPE_F16: gemm_chunks<NS_DTYPE_F16> (p, TRUE); break;
    case NS_DTYPE_I8: gemm_chunks<NS_DTYPE_I8> (p, FALSE); break;
    default: gemm_chunks<NS_DTYPE_F8_E4M3> (p, FALSE); break;
    }
}

/* Rows per pass so the planes and the f32 result fit GEMM_ROWS_BUDGET, and
 * weight rows per widened chunk (0: the weight is used as stored). */
static void
gemm_sizes (const NsMat *w, int rows, int *pass_rows, int *chunk_rows)
{
  size_t per_row = (size_t) w->rows * 4 + (size_t) w->cols * 6;
  *pass_rows = (int) MAX (1, MIN ((size_t) rows, GEMM_ROWS_BUDGET / per_row));
  size_t elem = w->dtype == NS_DTYPE_F16 ? 4 : 2;
  gboolean widen = w->dtype != NS_DTYPE_BF16 && w->dtype != NS_DTYPE_F32;
  *chunk_rows = widen ? (int) MAX (1, MIN ((size_t) w->rows,
                                           GEMM_CHUNK_BUDGET / (elem * w->cols))) : 0;
}

static size_t
gemm_bytes (const NsMat *w, int pass_rows, int chunk_rows)
{
  size_t chunk_elem = w->dtype == NS_DTYPE_F16 ? 4 : 2;
  return (size_t) pass_rows * ((size_t) w->rows * 4 + (size_t) w->cols * 6)
         + (size_t) chunk_rows * w->cols * chunk_elem;
}

static void
gemm (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias, int rows,
      gboolean accumulate)
{
  int pass_rows, chunk_rows;
  gemm_sizes (w, rows, &pass_rows, &chunk_rows);
  char *ws = (char *) ns_cuda_workspace (b, gemm_bytes (w, pass_rows, chunk_rows));
  if (ws == NULL)
    return;
  cudaStream_t stream = ns_cuda (b)->stream;
  for (int r0 = 0; r0 < rows; r0 += pass_rows)
    {
      int n = MIN (pass_rows, rows - r0);
      GemmPass p = { b, w, n, x + (size_t) r0 * w->cols, NULL, (float *) ws, NULL, chunk_rows };
      p.planes = (const __nv_bfloat16 *) (ws + (size_t) n * w->rows * 4);
      p.chunk = ws + (size_t) pass_rows * ((size_t) w->rows * 4 + (size_t) w->cols * 6);
      size_t nx = (size_t) n * w->cols, ny = (size_t) n * w->rows;
      if (w->dtype != NS_DTYPE_F32 && w->dtype != NS_DTYPE_F16)
        split_planes_kernel<<<ns_grid_for (nx), 256, 0, stream>>> (
          (__nv_bfloat16 *) p.planes, p.x, nx);
      gemm_pass (&p);
      GemvArgs a = { y + (size_t) r0 * w->rows, NULL, NULL, w->scale, ns_mat_or_none (bias),
                     w->rows, w->cols, accumulate };
      gemm_epilogue_kernel<<<ns_grid_for (ny), 256, 0, stream>>> (a, p.tmp, ny);
    }
}

/* ---- the op ------------------------------------------------------------------ */

size_t
ns_cuda_linear_workspace (NsBackend *b, int rows)
{
  NsCudaBackend *cb = ns_cuda (b);
  /* split partials: splits · blocks ≤ two waves + blocks (grid-index.h),
   * over the matrices of one launch (gemv.cuh: up to NS_GEMV_MAX_MATS) */
  size_t splits_out = (size_t) 2 * cb->n_sms * NS_GEMV_RESIDENT * NS_GEMV_WARPS * NS_GEMV_OUTS
                      + (size_t) NS_GEMV_MAX_MATS * (cb->max_out + NS_GEMV_WARPS * NS_GEMV_OUTS);
  size_t need = (size_t) NS_GEMV_MAX_ROWS * splits_out * sizeof (float);
  if (rows > GEMV_GROUPED_MAX_ROWS && cb->max_out > 0)
    {
      /* The worst case: the largest matrix in the format that widens most. */
      NsMat w = { NS_DTYPE_F16, cb->max_out, cb->max_in, NULL, NULL, NULL };
      int pass_rows, chunk_rows;
      gemm_sizes (&w, rows, &pass_rows, &chunk_rows);
      need = MAX (need, gemm_bytes (&w, pass_rows, chunk_rows));
    }
  return MAX (need, ns_cuda_linear_q4_workspace (b, rows));
}

void
ns_cuda_linear (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                int rows, gboolean accumulate)
{
  if (rows <= 0)
    return;
  if (w->dtype == NS_DTYPE_Q4)
    ns_cuda_linear_q4 (b, y, x, w, bias, rows, accumulate);   /* linear-q4.cu */
  else if (rows <= GEMV_GROUPED_MAX_ROWS)
    gemv_groups (b, y, x, w, bias, rows, accumulate);
  else
    gemm (b, y, x, w, bias, rows, accumulate);
  ns_cuda_check_launch (b, "linear");
}

void
ns_cuda_gemm_f32 (NsBackend *b, float *c, const float *a, const float *bm, int m, int n, int k,
                  int lda, int ldb, int ldc, gboolean transpose_a, gboolean transpose_b,
                  float beta)
{
  const float alpha = 1.0f;
  record_cublas (b, cublasSgemm (ns_cuda (b)->cublas, transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, a,
                                 lda, bm, ldb, &beta, c, ldc));
}
