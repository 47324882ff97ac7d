/* linear-q4.cu — the linear op (engine/cpu/linear.c) for 4-bit group-wise
 * weights (NS_DTYPE_Q4, q4-layout.h), called from ns_cuda_linear.
 *
 * Decode (≤ 32 rows, by groups of 8): one GEMV kernel, each warp owning
 * NS_GEMV_OUTS output rows so every x value it loads serves several weight
 * rows; a lane reads 16 bytes of packed codes at a time (32 weights: for
 * each of 8 nibbles, 4 consecutive elements, so one float4 of x per nibble)
 * and the two f16 scales of their groups, widens each code exactly
 * (code · scale in f32) and accumulates in f32 as the CPU does. Split-K (a
 * second kernel sums the splits in order) when the output rows are too few
 * to fill the GPU, with the split math of linear.cu (grid-index.h), so the
 * workspace holds the partials. Unaligned x takes a scalar kernel.
 * Prefill widens chunks of rows to f32 (a 4-bit code times an f16 scale is
 * exact in f32, not in bf16) and multiplies them with SGEMM into y, which
 * holds (y or 0) + bias beforehand. Both multiply x rounded to 8 bits per
 * group as the CPU does (q4-layout.h, "activations"; round_x_kernel, into
 * the workspace's head), so a seed gives the same tokens. Index math:
 * q4-layout.h and grid-index.h, checked on the CPU by
 * tests/ops/test-grid-index.c. */
#include "cuda-common.cuh"
#include "q4-layout.h"

#define Q4_MAX_ROWS 8
#define NS_Q4_GEMV_MAX_ROWS 32      /* linear.cu's GEMV_GROUPED_MAX_ROWS */
#define Q4_UNROLL 2                 /* 16-byte loads in flight per output row */
#define Q4_RESIDENT 4               /* blocks per SM assumed for the split choice (linear.cu's) */
#define Q4_CHUNK_BUDGET ((size_t) 64 << 20)   /* bytes of widened weight rows (prefill) */

typedef struct {
  float *y;              /* [rows, n_out] */
  float *part;           /* split partials [splits, rows, n_out], or NULL */
  const float *x;        /* [rows, k] */
  const uint8_t *w;      /* codes [n_out, k / 2] */
  const uint16_t *s;     /* f16 scales [n_out, k / NS_Q4_GROUP] */
  NsMat bias;            /* data NULL when absent */
  int n_out, k, splits, accumulate;
} Q4Args;

__device__ __forceinline__ float
q4_scale (const Q4Args &a, int o, size_t group)
{
  return __half2float (__ushort_as_half (a.s[(size_t) o * (a.k / NS_Q4_GROUP) + group]));
}

/* (y or 0) + bias + sum, in the reference's order. */
__device__ __forceinline__ void
q4_store (const Q4Args &a, int r, int o, float sum)
{
  float *dst = a.y + (size_t) r * a.n_out + o;
  float base = (a.accumulate ? *dst : 0.0f) + (a.bias.data ? ns_load_weight (a.bias, o) : 0.0f);
  *dst = base + sum;
}

__device__ __forceinline__ uint32_t
q4_word (const uint4 &r, int t)
{
  return t == 0 ? r.x : t == 1 ? r.y : t == 2 ? r.z : r.w;
}

/* grid (blocks over output rows, splits); warp w of block b owns output
 * rows (b · NS_GEMV_WARPS + w) · NS_GEMV_OUTS …; lanes stride over the
 * 16-byte loads of the split's range (ns_ix_split_range in NS_Q4_VEC
 * elements; load v holds the elements ns_q4_vec_element (v, t, k)). */
template <int R>
__global__ void __launch_bounds__ (NS_GEMV_WARPS * 32)
gemv_q4_kernel (const Q4Args a)
{
  constexpr int OUTS = NS_GEMV_OUTS;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int o0 = (blockIdx.x * NS_GEMV_WARPS + warp) * OUTS;
  if (o0 >= a.n_out)
    return;
  int k0, k1;
  ns_ix_split_range (a.k, a.splits, NS_Q4_VEC, blockIdx.y, &k0, &k1);
  int orow[OUTS];
  for (int o = 0; o < OUTS; o++)   /* rows past the end re-read row o0; never stored */
    orow[o] = o0 + o < a.n_out ? o0 + o : o0;
  float acc[OUTS][R];
  for (int o = 0; o < OUTS; o++)
    for (int r = 0; r < R; r++)
      acc[o][r] = 0.0f;
  const size_t row_vecs = (size_t) a.k / NS_Q4_VEC;
  for (int i = k0 + lane * NS_Q4_VEC; i < k1; i += 32 * NS_Q4_VEC * Q4_UNROLL)
    {
      uint4 raw[Q4_UNROLL][OUTS];
#pragma unroll
      for (int u = 0; u < Q4_UNROLL; u++)
        for (int o = 0; o < OUTS; o++)
          if (i + u * 32 * NS_Q4_VEC < k1)
            raw[u][o] = __ldg ((const uint4 *) a.w + (size_t) orow[o] * row_vecs
                               + (i + u * 32 * NS_Q4_VEC) / NS_Q4_VEC);
#pragma unroll
      for (int u = 0; u < Q4_UNROLL; u++)
        {
          int at = i + u * 32 * NS_Q4_VEC;
          if (at >= k1)
            break;
          size_t vec = (size_t) at / NS_Q4_VEC;
          float sc[OUTS][2];
          for (int o = 0; o < OUTS; o++)
            for (int h = 0; h < 2; h++)
              sc[o][h] = q4_scale (a, orow[o], ns_q4_vec_element (vec, 0, 4 * h) / NS_Q4_GROUP);
#pragma unroll
          for (int kk = 0; kk < 8; kk++)
            {
              float4 xv[R];
              size_t e = ns_q4_vec_element (vec, 0, kk);
              for (int r = 0; r < R; r++)
                xv[r] = __ldg ((const float4 *) (a.x + (size_t) r * a.k + e));
              for (int o = 0; o < OUTS; o++)
                {
                  /* scale of element e: its group's (e / G), which is the
                   * first or the second half of the block for G = 32 */
                  float s = NS_Q4_GROUP >= NS_Q4_BLOCK ? sc[o][0] : sc[o][kk / 4];
                  float w4[4];
                  for (int t = 0; t < 4; t++)
                    w4[t] = (float) ((int32_t) (q4_word (raw[u][o], t) << (28 - 4 * kk)) >> 28)
                            * s;
                  for (int r = 0; r < R; r++)
                    acc[o][r] += w4[0] * xv[r].x + w4[1] * xv[r].y + w4[2] * xv[r].z
                                 + w4[3] * xv[r].w;
                }
            }
        }
    }
  for (int o = 0; o < OUTS; o++)
    for (int r = 0; r < R; r++)
      {
        float sum = ns_warp_sum (acc[o][r]);
        if (lane != o * R + r || o0 + o >= a.n_out)
          continue;
        if (a.splits == 1)
          q4_store (a, r, o0 + o, sum);
        else
          a.part[((size_t) blockIdx.y * R + r) * a.n_out + o0 + o] = sum;
      }
}

/* Sums the split partials in split order, then the epilogue. */
__global__ void
gemv_q4_reduce_kernel (const Q4Args a, int rows)
{
  size_t n = (size_t) rows * a.n_out;
  NS_GRID_STRIDE (e, n)
    {
      float sum = 0.0f;
      for (int s = 0; s < a.splits; s++)
        sum += a.part[s * n + e];
      q4_store (a, (int) (e / a.n_out), (int) (e % a.n_out), sum);
    }
}

/* Any alignment of x: one warp per output row, element by element. */
__global__ void
gemv_q4_any_kernel (const Q4Args a, int rows)
{
  int o = blockIdx.x * NS_GEMV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (o >= a.n_out)
    return;
  const uint8_t *codes = a.w + (size_t) o * ns_q4_row_bytes (a.k);
  float acc[Q4_MAX_ROWS] = { 0 };
  for (int i = lane; i < a.k; i += 32)
    {
      float wv = (float) ns_q4_code (codes, i) * q4_scale (a, o, i / NS_Q4_GROUP);
      for (int r = 0; r < rows; r++)
        acc[r] += wv * a.x[(size_t) r * a.k + i];
    }
  for (int r = 0; r < Q4_MAX_ROWS; r++)
    {
      float sum = ns_warp_sum (acc[r]);
      if (lane == 0 && r < rows)
        q4_store (a, r, o, sum);
    }
}

template <int R>
static void
launch_q4 (NsBackend *b, const Q4Args &a)
{
  unsigned blocks = ns_div_up (ns_div_up (a.n_out, NS_GEMV_OUTS), NS_GEMV_WARPS);
  gemv_q4_kernel<R><<<dim3 (blocks, a.splits), NS_GEMV_WARPS * 32, 0, ns_cuda (b)->stream>>> (a);
}

/* Split-K partials of ≤ 8 rows, in floats (0 without a split). */
static size_t
gemv_part_floats (NsBackend *b, int n_out, int k, int rows)
{
  int splits = ns_ix_gemv_splits (n_out, k, NS_Q4_VEC, ns_cuda (b)->n_sms, Q4_RESIDENT);
  return splits > 1 ? (size_t) splits * rows * n_out : 0;
}

/* ≤ 8 rows; `part` holds gemv_part_floats. */
static void
gemv_q4 (NsBackend *b, Q4Args a, int rows, float *part)
{
  NsCudaBackend *cb = ns_cuda (b);
  if ((uintptr_t) a.x % 16 != 0 || (uintptr_t) a.w % 16 != 0)
    {
      gemv_q4_any_kernel<<<ns_div_up (a.n_out, NS_GEMV_WARPS), NS_GEMV_WARPS * 32, 0,
                           cb->stream>>> (a, rows);
      return;
    }
  a.splits = ns_ix_gemv_splits (a.n_out, a.k, NS_Q4_VEC, cb->n_sms, Q4_RESIDENT);
  a.part = a.splits > 1 ? part : NULL;
  switch (rows)
    {
    case 1: launch_q4<1> (b, a); break;
    case 2: launch_q4<2> (b, a); break;
    case 3: launch_q4<3> (b, a); break;
    case 4: launch_q4<4> (b, a); break;
    case 5: launch_q4<5> (b, a); break;
    case 6: launch_q4<6> (b, a); break;
    case 7: launch_q4<7> (b, a); break;
    default: launch_q4<8> (b, a); break;
    }
  if (a.splits > 1)
    gemv_q4_reduce_kernel<<<ns_grid_for ((size_t) rows * a.n_out), 256, 0, cb->stream>>> (a, rows);
}

/* ---- prefill ------------------------------------------------------------ */

/* Weight rows from `first` (an element index) as f32, exactly. */
__global__ void
widen_q4_kernel (float *dst, const Q4Args a, size_t first, size_t n)
{
  NS_GRID_STRIDE (i, n)
    {
      size_t e = first + i, o = e / a.k, c = e % a.k;
      dst[i] = (float) ns_q4_code (a.w + o * ns_q4_row_bytes (a.k), c)
               * q4_scale (a, (int) o, c / NS_Q4_GROUP);
    }
}

/* y = (y or 0) + bias, before the products accumulate into it. */
__global__ void
init_output_kernel (const Q4Args a, size_t n)
{
  NS_GRID_STRIDE (e, n) q4_store (a, (int) (e / a.n_out), (int) (e % a.n_out), 0.0f);
}

/* Weight rows widened per SGEMM. */
static int
gemm_chunk_rows (int n_out, int k)
{
  return (int) MAX (1, MIN ((size_t) n_out, Q4_CHUNK_BUDGET / (4 * (size_t) k)));
}

/* `chunk` holds gemm_chunk_rows rows of k floats. */
static void
gemm_q4 (NsBackend *b, const Q4Args &a, int rows, float *chunk)
{
  cudaStream_t stream = ns_cuda (b)->stream;
  size_t ny = (size_t) rows * a.n_out;
  init_output_kernel<<<ns_grid_for (ny), 256, 0, stream>>> (a, ny);
  int chunk_rows = gemm_chunk_rows (a.n_out, a.k);
  for (int o0 = 0; o0 < a.n_out; o0 += chunk_rows)
    {
      int count = MIN (chunk_rows, a.n_out - o0);
      size_t n = (size_t) count * a.k;
      widen_q4_kernel<<<ns_grid_for (n), 256, 0, stream>>> (chunk, a, (size_t) o0 * a.k, n);
      /* row-major y [rows, n_out] is column-major n_out × rows: W·xᵀ */
      ns_cuda_gemm_f32 (b, a.y + o0, chunk, a.x, count, rows, a.k, a.k, a.k, a.n_out, TRUE,
                        FALSE, 1.0f);
    }
}

/* ---- the op ------------------------------------------------------------------ */

/* x̂ = x rounded as q4-layout.h rounds activations: a thread per group, the
 * CPU's f32 operations (ns_q4_x_*), so both give the same values. */
__global__ void
round_x_kernel (float *xhat, const float *x, size_t groups)
{
  NS_GRID_STRIDE (g, groups)
    {
      const float *xg = x + g * NS_Q4_GROUP;
      float m = ns_q4_x_amax (xg), inv = ns_q4_x_inverse (m), step = ns_q4_x_step (m);
      for (int j = 0; j < NS_Q4_GROUP; j++)
        xhat[g * NS_Q4_GROUP + j] = (float) ns_q4_x_code (xg[j], inv) * step;
    }
}

/* x̂ first (16-byte aligned for the GEMV's float4 loads), then the partials
 * or the widened chunk. */
static size_t
xhat_bytes (int rows, int k)
{
  return ((size_t) rows * k * sizeof (float) + 255) / 256 * 256;
}

static size_t
scratch_bytes (NsBackend *b, int rows, int n_out, int k)
{
  if (rows > NS_Q4_GEMV_MAX_ROWS)
    return (size_t) gemm_chunk_rows (n_out, k) * k * sizeof (float);
  return gemv_part_floats (b, n_out, k, MIN (rows, Q4_MAX_ROWS)) * sizeof (float);
}

/* The most any q4 matrix uploaded so far needs: splits · blocks ≤ two
 * waves + blocks (grid-index.h), so the partials of 8 rows are bounded by
 * the largest matrix whatever the split; the prefill chunk is at most
 * Q4_CHUNK_BUDGET. */
size_t
ns_cuda_linear_q4_workspace (NsBackend *b, int rows)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (cb->max_q4_in == 0)
    return 0;
  size_t per_row = (size_t) 2 * cb->n_sms * Q4_RESIDENT * NS_GEMV_WARPS * NS_GEMV_OUTS
                   + cb->max_q4_out + NS_GEMV_WARPS * NS_GEMV_OUTS;
  size_t part = per_row * MIN (rows, Q4_MAX_ROWS) * sizeof (float);
  size_t chunk = rows > NS_Q4_GEMV_MAX_ROWS ? Q4_CHUNK_BUDGET + (size_t) cb->max_q4_in * 4 : 0;
  return xhat_bytes (rows, cb->max_q4_in) + MAX (part, chunk);
}

void
ns_cuda_linear_q4 (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                   int rows, gboolean accumulate)
{
  size_t head = xhat_bytes (rows, w->cols);
  char *ws = (char *) ns_cuda_workspace (b, head + scratch_bytes (b, rows, w->rows, w->cols));
  if (ws == NULL)
    return;
  float *xhat = (float *) ws, *scratch = (float *) (ws + head);
  size_t groups = (size_t) rows * w->cols / NS_Q4_GROUP;
  round_x_kernel<<<ns_grid_for (groups), 256, 0, ns_cuda (b)->stream>>> (xhat, x, groups);
  Q4Args a = { y, NULL, xhat, (const uint8_t *) w->data, w->group_scale, ns_mat_or_none (bias),
               w->rows, w->cols, 1, accumulate };
  if (rows > NS_Q4_GEMV_MAX_ROWS)
    {
      gemm_q4 (b, a, rows, scratch);
      return;
    }
  for (int r0 = 0; r0 < rows; r0 += Q4_MAX_ROWS)
    {
      Q4Args g = a;
      g.y = y + (size_t) r0 * w->rows;
      g.x = xhat + (size_t) r0 * w->cols;
      gemv_q4 (b, g, MIN (Q4_MAX_ROWS, rows - r0), scratch);
    }
}
