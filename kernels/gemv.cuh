/* gemv.cuh — the decode GEMV of every float and int8/fp8 weight format,
 * shared by the linear op (linear.cu) and the fused linears
 * (linear-fused.cu): y = f(x)·Wᵀ over ≤ 8 rows of x for up to
 * NS_GEMV_MAX_MATS matrices of one format and k in one launch.
 *  - one kernel per weight format (a template: no dtype switch in the loop),
 *    each warp owning NS_GEMV_OUTS weight rows so every x value it loads
 *    serves several of them, lanes across k with 16-byte weight loads (8
 *    bf16/f16, 16 int8/fp8 codes, 4 f32), GEMV_UNROLL of them per weight row
 *    in flight;
 *  - split-K (a second kernel sums the splits in order) when the grid of all
 *    matrices together is too small to fill two waves;
 *  - a prologue X that produces x as it is loaded (plain rows, or rows
 *    LayerNormed and modulated), and an epilogue E that stores each sum
 *    (linear with bias and accumulation, silu · up, gated residual).
 * Which block, warp and lane owns what: grid-index.h, checked on the CPU by
 * tests/ops/test-grid-index.c. */
#pragma once

#include "cuda-common.cuh"

#define NS_GEMV_MAX_ROWS 8
#define NS_GEMV_RESIDENT 4     /* blocks per SM assumed for the split choice */
#define GEMV_UNROLL 2          /* 16-byte loads in flight per weight row */

/* ---- weight formats: 16-byte vectors decoded four values at a time ---- */

__device__ __forceinline__ uint32_t
word_of (const uint4 &r, int j)
{
  return j == 0 ? r.x : j == 1 ? r.y : j == 2 ? r.z : r.w;
}

template <NsDType F> struct Fmt;

template <> struct Fmt<NS_DTYPE_F32> {
  static constexpr int VEC = 4;
  __device__ static void decode4 (const uint4 &r, int q, float w[4])
  {
    (void) q;
    w[0] = __uint_as_float (r.x); w[1] = __uint_as_float (r.y);
    w[2] = __uint_as_float (r.z); w[3] = __uint_as_float (r.w);
  }
  __device__ static float load1 (const void *d, size_t i) { return ((const float *) d)[i]; }
};

/* bf16 is the top half of an f32. */
template <> struct Fmt<NS_DTYPE_BF16> {
  static constexpr int VEC = 8;
  __device__ static void decode4 (const uint4 &r, int q, float w[4])
  {
    for (int j = 0; j < 2; j++)
      {
        uint32_t u = word_of (r, 2 * q + j);
        w[2 * j] = __uint_as_float (u << 16);
        w[2 * j + 1] = __uint_as_float (u & 0xffff0000u);
      }
  }
  __device__ static float load1 (const void *d, size_t i)
  {
    return __uint_as_float ((uint32_t) ((const uint16_t *) d)[i] << 16);
  }
};

template <> struct Fmt<NS_DTYPE_F16> {
  static constexpr int VEC = 8;
  __device__ static void decode4 (const uint4 &r, int q, float w[4])
  {
    for (int j = 0; j < 2; j++)
      {
        uint32_t u = word_of (r, 2 * q + j);
        float2 f = __half22float2 (*(const __half2 *) &u);
        w[2 * j] = f.x;
        w[2 * j + 1] = f.y;
      }
  }
  __device__ static float load1 (const void *d, size_t i)
  {
    return __half2float (((const __half *) d)[i]);
  }
};

template <> struct Fmt<NS_DTYPE_I8> {
  static constexpr int VEC = 16;
  __device__ static void decode4 (const uint4 &r, int q, float w[4])
  {
    uint32_t u = word_of (r, q);
    for (int j = 0; j < 4; j++)
      w[j] = (float) (int8_t) (u >> (8 * j));
  }
  __device__ static float load1 (const void *d, size_t i) { return ((const int8_t *) d)[i]; }
};

template <> struct Fmt<NS_DTYPE_F8_E4M3> {
  static constexpr int VEC = 16;
  __device__ static void decode4 (const uint4 &r, int q, float w[4])
  {
    uint32_t u = word_of (r, q);
    for (int j = 0; j < 2; j++)
      {
        __half2_raw h = __nv_cvt_fp8x2_to_halfraw2 ((__nv_fp8x2_storage_t) (u >> (16 * j)),
                                                    __NV_E4M3);
        float2 f = __half22float2 (*(const __half2 *) &h);
        w[2 * j] = f.x;
        w[2 * j + 1] = f.y;
      }
  }
  __device__ static float load1 (const void *d, size_t i)
  {
    __nv_fp8_e4m3 v;
    v.__x = ((const __nv_fp8_storage_t *) d)[i];
    return (float) v;
  }
};

/* Elements per 16-byte load of a weight format the GEMV takes, 0 for the
 * others (q4 has its own kernel, linear-q4.cu). */
static inline int
ns_gemv_vec (NsDType dtype)
{
  switch (dtype)
    {
    case NS_DTYPE_F32: return Fmt<NS_DTYPE_F32>::VEC;
    case NS_DTYPE_BF16: return Fmt<NS_DTYPE_BF16>::VEC;
    case NS_DTYPE_F16: return Fmt<NS_DTYPE_F16>::VEC;
    case NS_DTYPE_I8: return Fmt<NS_DTYPE_I8>::VEC;
    case NS_DTYPE_F8_E4M3: return Fmt<NS_DTYPE_F8_E4M3>::VEC;
    default: return 0;
    }
}

/* TRUE when the GEMV can read W and x with 16-byte loads. */
static inline gboolean
ns_gemv_fits (const NsMat *w, const float *x)
{
  int vec = ns_gemv_vec (w->dtype);
  return vec > 0 && w->cols % vec == 0 && (uintptr_t) x % 16 == 0
         && (uintptr_t) w->data % 16 == 0;
}

/* ---- the task ----------------------------------------------------------------- */

typedef struct {
  const void *w;
  const float *scale;    /* per-row scales of I8/F8, else NULL */
  NsMat bias;            /* data NULL when absent */
  float *y;              /* [rows, n_out] (paired: matrix 0's only) */
} NsGemvMat;

typedef struct {
  NsGemvMat m[NS_GEMV_MAX_MATS];
  int n_out[NS_GEMV_MAX_MATS];
  int first[NS_GEMV_MAX_MATS + 1];   /* ns_ix_gemv_first_blocks */
  int n_mats, k, rows, paired, splits;
  float *part;                       /* split partials (ns_ix_gemv_part), or NULL */
} NsGemvTask;

__device__ __forceinline__ float
ns_gemv_silu (float v)
{
  return v / (1.0f + expf (-v));   /* elementwise.cu's, PyTorch's form */
}

/* bias + scale · sum, the terms in the reference's order (engine/cpu/linear.c:
 * the bias first, then the products). */
__device__ __forceinline__ float
ns_gemv_value (const NsGemvMat &m, int o, float sum)
{
  return (m.bias.data ? ns_load_weight (m.bias, o) : 0.0f) + (m.scale ? m.scale[o] * sum : sum);
}

/* ---- prologues: x as the kernel loads it ----------------------------------- */

/* Rows of x as they are. */
struct NsGemvPlainX {
  const float *x;
  int k;
  template <int R> __device__ void prepare (float2 *stats) const { (void) stats; }
  __device__ float4 load4 (int r, int at, const float2 *stats) const
  {
    (void) stats;
    return __ldg ((const float4 *) (x + (size_t) r * k + at));
  }
};

/* Rows of x LayerNormed (statistics in double, as norm.cu's layernorm) and
 * modulated (elementwise.cu's modulate), each block computing the
 * statistics of its rows once. Needs shift, scale and their stride aligned
 * for float4 loads. */
struct NsGemvNormX {
  const float *x;
  int k;
  NsMat weight, bias;    /* LayerNorm affine, data NULL when absent */
  float eps;
  const float *shift, *scale;
  int stride;

  /* stats[r] = (mean, 1 / sqrt(var + eps)); every thread of the block calls. */
  template <int R> __device__ void prepare (float2 *stats) const
  {
    __shared__ double red[32];
    for (int r = 0; r < R; r++)
      {
        const float *xr = x + (size_t) r * k;
        double sum = 0.0, var = 0.0;
        for (int i = threadIdx.x; i < k; i += blockDim.x)
          sum += xr[i];
        double mean = ns_block_sum (sum, red) / k;
        for (int i = threadIdx.x; i < k; i += blockDim.x)
          var += (xr[i] - mean) * (xr[i] - mean);
        float inv = (float) (1.0 / sqrt (ns_block_sum (var, red) / k + eps));
        if (threadIdx.x == 0)
          stats[r] = make_float2 ((float) mean, inv);
      }
    __syncthreads ();
  }
  __device__ float one (float v, int i, float2 st, float sh, float sc) const
  {
    float u = (v - st.x) * st.y;
    u = (weight.data ? u * ns_load_weight (weight, i) : u)
        + (bias.data ? ns_load_weight (bias, i) : 0.0f);
    return u * (1.0f + sc) + sh;
  }
  __device__ float4 load4 (int r, int at, const float2 *stats) const
  {
    float4 v = __ldg ((const float4 *) (x + (size_t) r * k + at));
    float4 sh = __ldg ((const float4 *) (shift + (size_t) r * stride + at));
    float4 sc = __ldg ((const float4 *) (scale + (size_t) r * stride + at));
    float2 st = stats[r];
    return make_float4 (one (v.x, at, st, sh.x, sc.x), one (v.y, at + 1, st, sh.y, sc.y),
                        one (v.z, at + 2, st, sh.z, sc.z), one (v.w, at + 3, st, sh.w, sc.w));
  }
};

/* ---- epilogues: what a finished sum becomes --------------------------------- */

/* *dst = (*dst or 0) + bias + scale · sum, in the reference's order (the
 * linear op), then silu when asked. */
__device__ __forceinline__ void
ns_gemv_store_linear (float *dst, const NsMat &bias, const float *scale, int o, float sum,
                      int accumulate, int silu)
{
  float base = (accumulate ? *dst : 0.0f) + (bias.data ? ns_load_weight (bias, o) : 0.0f);
  float v = base + (scale ? scale[o] * sum : sum);
  *dst = silu ? ns_gemv_silu (v) : v;
}

struct NsGemvStore {
  int accumulate, silu;
  __device__ void store (const NsGemvTask &t, int mat, int r, int o, float sum,
                         float partner) const
  {
    (void) partner;
    const NsGemvMat &m = t.m[mat];
    ns_gemv_store_linear (m.y + (size_t) r * t.n_out[mat] + o, m.bias, m.scale, o, sum,
                          accumulate, silu);
  }
};

/* y = silu(gate) · up: matrix 0 is gate, its partner sum up's. */
struct NsGemvSwiglu {
  __device__ void store (const NsGemvTask &t, int mat, int r, int o, float sum,
                         float partner) const
  {
    (void) mat;
    float gate = ns_gemv_value (t.m[0], o, sum), up = ns_gemv_value (t.m[1], o, partner);
    t.m[0].y[(size_t) r * t.n_out[0] + o] = ns_gemv_silu (gate) * up;
  }
};

/* y += gate ⊙ (bias + scale · sum), gate rows `stride` apart. */
struct NsGemvGatedAdd {
  const float *gate;
  int stride;
  __device__ void store (const NsGemvTask &t, int mat, int r, int o, float sum,
                         float partner) const
  {
    (void) partner;
    t.m[0].y[(size_t) r * t.n_out[0] + o] += gate[(size_t) r * stride + o]
                                             * ns_gemv_value (t.m[mat], o, sum);
  }
};

/* ---- kernels ------------------------------------------------------------------- */

/* grid (blocks of all matrices, splits); slot o of a warp is the weight row
 * ns_ix_gemv_slot gives. Needs k a multiple of VEC and 16-byte aligned x
 * and W (ns_gemv_fits). */
template <NsDType F, int R, class X, class E>
__global__ void __launch_bounds__ (NS_GEMV_WARPS * 32)
ns_gemv_kernel (const NsGemvTask t, const X xin, const E epi)
{
  constexpr int VEC = Fmt<F>::VEC, OUTS = NS_GEMV_OUTS, HALF = NS_GEMV_OUTS / 2;
  __shared__ float2 stats[R];
  xin.template prepare<R> (stats);   /* every thread, before any returns */
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int mat[OUTS], row[OUTS];
  for (int o = 0; o < OUTS; o++)
    ns_ix_gemv_slot (t.first, t.n_mats, t.paired, blockIdx.x, warp, o, &mat[o], &row[o]);
  if (row[0] >= t.n_out[mat[0]])
    return;
  int k0, k1;
  ns_ix_split_range (t.k, t.splits, VEC, blockIdx.y, &k0, &k1);
  const uint4 *rows[OUTS];
  for (int o = 0; o < OUTS; o++)   /* rows past the end re-read the warp's first; never stored */
    rows[o] = (const uint4 *) t.m[mat[o]].w
              + (size_t) (row[o] < t.n_out[mat[o]] ? row[o] : row[0]) * (t.k / VEC);
  float acc[OUTS][R];
  for (int o = 0; o < OUTS; o++)
    for (int r = 0; r < R; r++)
      acc[o][r] = 0.0f;
  for (int i = k0 + lane * VEC; i < k1; i += 32 * VEC * GEMV_UNROLL)
    {
      uint4 raw[GEMV_UNROLL][OUTS];
#pragma unroll
      for (int u = 0; u < GEMV_UNROLL; u++)
        for (int o = 0; o < OUTS; o++)
          if (i + u * 32 * VEC < k1)
            raw[u][o] = __ldg (rows[o] + (i + u * 32 * VEC) / VEC);
#pragma unroll
      for (int u = 0; u < GEMV_UNROLL; u++)
        {
          int at = i + u * 32 * VEC;
          if (at >= k1)
            break;
#pragma unroll
          for (int q = 0; q < VEC / 4; q++)
            {
              float4 xv[R];
              for (int r = 0; r < R; r++)
                xv[r] = xin.load4 (r, at + 4 * q, stats);
              for (int o = 0; o < OUTS; o++)
                {
                  float w4[4];
                  Fmt<F>::decode4 (raw[u][o], q, w4);
                  for (int r = 0; r < R; r++)
                    acc[o][r] += w4[0] * xv[r].x + w4[1] * xv[r].y + w4[2] * xv[r].z
                                 + w4[3] * xv[r].w;
                }
            }
        }
    }
  /* every lane gets every sum; lane o·R + r stores slot o of row r */
  for (int o = 0; o < OUTS; o++)
    for (int r = 0; r < R; r++)
      acc[o][r] = ns_warp_sum (acc[o][r]);
  for (int o = 0; o < OUTS; o++)
    for (int r = 0; r < R; r++)
      {
        if (lane != o * R + r || row[o] >= t.n_out[mat[o]])
          continue;
        if (t.splits > 1)
          t.part[ns_ix_gemv_part (t.n_out, mat[o], t.splits, t.rows, blockIdx.y, r, row[o])]
            = acc[o][r];
        else if (!t.paired || o < HALF)
          epi.store (t, mat[o], r, row[o], acc[o][r], t.paired ? acc[o + HALF][r] : 0.0f);
      }
}

/* Sums the split partials in split order, then the epilogue. */
template <class E>
__global__ void
ns_gemv_reduce_kernel (const NsGemvTask t, const E epi, size_t n)
{
  NS_GRID_STRIDE (e, n)
    {
      int mat, r, o;
      ns_ix_gemv_output (t.n_out, t.rows, e, &mat, &r, &o);
      float sum = 0.0f, partner = 0.0f;
      for (int s = 0; s < t.splits; s++)
        sum += t.part[ns_ix_gemv_part (t.n_out, mat, t.splits, t.rows, s, r, o)];
      for (int s = 0; t.paired && s < t.splits; s++)
        partner += t.part[ns_ix_gemv_part (t.n_out, 1, t.splits, t.rows, s, r, o)];
      epi.store (t, mat, r, o, sum, partner);
    }
}

/* ---- launch ------------------------------------------------------------------------ */

template <NsDType F, int R, class X, class E>
static void
ns_gemv_grid (NsBackend *b, const NsGemvTask &t, const X &x, const E &e, int blocks)
{
  ns_gemv_kernel<F, R, X, E><<<dim3 (blocks, t.splits), NS_GEMV_WARPS * 32, 0,
                               ns_cuda (b)->stream>>> (t, x, e);
}

template <NsDType F, class X, class E>
static void
ns_gemv_format (NsBackend *b, NsGemvTask t, const X &x, const E &e)
{
  NsCudaBackend *cb = ns_cuda (b);
  int blocks = ns_ix_gemv_first_blocks (t.n_out, t.n_mats, t.paired, t.first);
  size_t weight_rows = 0;
  for (int j = 0; j < t.n_mats; j++)
    weight_rows += t.n_out[j];
  t.splits = ns_ix_gemv_splits_for_blocks (blocks, t.k, Fmt<F>::VEC, cb->n_sms, NS_GEMV_RESIDENT);
  if (t.splits > 1)
    {
      t.part = (float *) ns_cuda_workspace (b, (size_t) t.splits * t.rows * weight_rows
                                                  * sizeof (float));
      if (t.part == NULL)
        return;
    }
  switch (t.rows)
    {
    case 1: ns_gemv_grid<F, 1> (b, t, x, e, blocks); break;
    case 2: ns_gemv_grid<F, 2> (b, t, x, e, blocks); break;
    case 3: ns_gemv_grid<F, 3> (b, t, x, e, blocks); break;
    case 4: ns_gemv_grid<F, 4> (b, t, x, e, blocks); break;
    case 5: ns_gemv_grid<F, 5> (b, t, x, e, blocks); break;
    case 6: ns_gemv_grid<F, 6> (b, t, x, e, blocks); break;
    case 7: ns_gemv_grid<F, 7> (b, t, x, e, blocks); break;
    default: ns_gemv_grid<F, 8> (b, t, x, e, blocks); break;
    }
  if (t.splits > 1)
    {
      size_t n = ns_ix_gemv_outputs (t.n_out, t.n_mats, t.paired, t.rows);
      ns_gemv_reduce_kernel<<<ns_grid_for (n), 256, 0, cb->stream>>> (t, e, n);
    }
}

/* The task (1–8 rows, weights that ns_gemv_fits) in one launch, plus the
 * split reduction when split-K pays. */
template <class X, class E>
static void
ns_gemv_launch (NsBackend *b, const NsGemvTask &t, const X &x, const E &e, NsDType dtype)
{
  switch (dtype)
    {
    case NS_DTYPE_BF16: ns_gemv_format<NS_DTYPE_BF16> (b, t, x, e); break;
    case NS_DTYPE_F16: ns_gemv_format<NS_DTYPE_F16> (b, t, x, e); break;
    case NS_DTYPE_I8: ns_gemv_format<NS_DTYPE_I8> (b, t, x, e); break;
    case NS_DTYPE_F8_E4M3: ns_gemv_format<NS_DTYPE_F8_E4M3> (b, t, x, e); break;
    default: ns_gemv_format<NS_DTYPE_F32> (b, t, x, e); break;
    }
}
