/* linear.c — y = x · Wᵀ + bias, and embedding lookups.
 *
 * Decode (a few rows) is bound by streaming W from memory: each weight row
 * is read once, widened to f32 in registers, and dotted with every x row
 * while it is in L1. Prefill (many rows) is bound by arithmetic: the BLAS. */
#include "cpu-backend.h"

#define GEMV_MAX_ROWS 8       /* above this, the BLAS wins */
#define GEMV_GROUP 4          /* x rows one pass over a weight row serves */
#define GEMV_LINE 64          /* weight bytes per loop step: one cache line, one prefetch */
#define GEMV_PREFETCH 2048    /* bytes ahead of the weight stream */
#define GEMV_CHUNK 1024       /* F16 weights per conversion: 4 KiB of f32 */
#define PREFILL_PANEL_FLOATS (8 << 20)   /* W widened per sgemm call: 32 MiB */

/* How dot_rows widens the weights; a compile-time constant in every clone. */
typedef enum { WEIGHTS_F32, WEIGHTS_BF16, WEIGHTS_I8, WEIGHTS_F8 } WeightKind;

typedef int32_t NsI32x8 __attribute__ ((vector_size (32)));
typedef uint32_t NsU32x8b __attribute__ ((vector_size (32), aligned (1)));

/* Weights one widening step turns into `unit_vectors` vectors of 8 f32. */
static inline __attribute__ ((always_inline)) int
unit_vectors (WeightKind kind)
{
  return kind == WEIGHTS_I8 || kind == WEIGHTS_F8 ? 4 : 2;
}

static inline __attribute__ ((always_inline)) int
kind_size (WeightKind kind)
{
  return kind == WEIGHTS_F32 ? 4 : kind == WEIGHTS_BF16 ? 2 : 1;
}

/* The weights of one unit from element i as f32 vectors, exactly, with only
 * shifts and masks (no shuffles, which cost a port the FMAs need, and which
 * GCC's generic vectors do not produce well): the unit is read as 8 u32 and
 * vector v takes byte/half v of each, so it holds elements i + L·t + v
 * (t < 8, L = lanes per u32) and x comes de-interleaved to match (see
 * deinterleave).
 *  - bf16: half 0 as u32 << 16, half 1 as u32 & 0xffff0000;
 *  - int8: byte v shifted to the top, arithmetic-shifted back, converted
 *    (the row scale comes later);
 *  - fp8 e4m3: byte v at the top arithmetic-shifted by 4 puts sign, exponent
 *    and mantissa in an f32's fields: the value · 2^-120 (subnormal codes
 *    too, as f32 denormals); one multiply by 2^120 restores it. A table would
 *    take a scalar load per weight, which cannot keep up with the memory. */
static inline __attribute__ ((always_inline)) void
widen_unit (WeightKind kind, const void *w, int i, NsF32x8 *v)
{
  if (kind == WEIGHTS_F32)
    {
      v[0] = NS_F32X8_LOAD ((const float *) w + i);
      v[1] = NS_F32X8_LOAD ((const float *) w + i + 8);
      return;
    }
  NsU32x8 u = *(const NsU32x8b *) ((const char *) w + (size_t) i * kind_size (kind));
  if (kind == WEIGHTS_BF16)
    {
      v[0] = (NsF32x8) (u << 16);
      v[1] = (NsF32x8) (u & 0xffff0000u);
      return;
    }
  for (int k = 0; k < 4; k++)
    {
      NsI32x8 top = (NsI32x8) (u << (24 - 8 * k));
      if (kind == WEIGHTS_I8)
        v[k] = __builtin_convertvector (top >> 24, NsF32x8);
      else
        v[k] = (NsF32x8) ((top >> 4) & (int32_t) 0x87f00000) * 0x1p120f;
    }
}

/* One weight as f32 (the unscaled code for int8/fp8), for the tails. */
static inline __attribute__ ((always_inline)) float
widen1 (WeightKind kind, const void *w, int i)
{
  switch (kind)
    {
    case WEIGHTS_F32: return ((const float *) w)[i];
    case WEIGHTS_BF16: return ns_bf16_to_f32 (((const uint16_t *) w)[i]);
    case WEIGHTS_I8: return ((const int8_t *) w)[i];
    default: return ns_f8e4m3_to_f32 (((const uint8_t *) w)[i]);
    }
}

/* acc[r][v] += unit v of the weights · x[r] for one unit at element i. */
#define DOT_UNIT(kind, nr, w, x, i, acc)                                  \
  do                                                                      \
    {                                                                     \
      NsF32x8 wv_[4];                                                     \
      widen_unit ((kind), (w), (i), wv_);                                 \
      for (int v_ = 0; v_ < unit_vectors (kind); v_++)                    \
        for (int r_ = 0; r_ < (nr); r_++)                                 \
          (acc)[r_][v_] += wv_[v_] * NS_F32X8_LOAD ((x)[r_] + (i) + 8 * v_); \
    }                                                                     \
  while (0)

/* sums[r] += Σ_i W[i] · x[r][i] for nr ≤ GEMV_GROUP rows. Always inlined
 * with constant nr and kind, so the accumulators (one per row and vector:
 * independent FMA chains) live in registers and the kind tests fold. */
static inline __attribute__ ((always_inline)) void
dot_rows (int nr, WeightKind kind, const void *w, const float *const *x, int n, float *sums)
{
  const int unit = 8 * unit_vectors (kind), line = GEMV_LINE / kind_size (kind);
  NsF32x8 acc[GEMV_GROUP][4] = { { { 0 } } };
  int i = 0;
  for (; i + line <= n; i += line)
    {
      /* The hardware prefetcher alone leaves a third of the bandwidth unused. */
      __builtin_prefetch ((const char *) w + (size_t) i * kind_size (kind) + GEMV_PREFETCH);
      for (int u = i; u < i + line; u += unit)
        DOT_UNIT (kind, nr, w, x, u, acc);
    }
  for (; i + unit <= n; i += unit)
    DOT_UNIT (kind, nr, w, x, i, acc);
  for (int r = 0; r < nr; r++)
    {
      NsF32x8 all = (acc[r][0] + acc[r][2]) + (acc[r][1] + acc[r][3]);
      float s = NS_F32X8_SUM (all);
      for (int j = i; j < n; j++)
        s += widen1 (kind, w, j) * x[r][j];
      sums[r] += s;
    }
}

/* Row groups of constant size for dot_rows. */
static inline __attribute__ ((always_inline)) void
dot_all_rows (int rows, WeightKind kind, const void *w, const float *const *x, int n,
              float *sums)
{
  for (int r0 = 0; r0 < rows; r0 += GEMV_GROUP)
    switch (MIN (GEMV_GROUP, rows - r0))
      {
      case 1: dot_rows (1, kind, w, x + r0, n, sums + r0); break;
      case 2: dot_rows (2, kind, w, x + r0, n, sums + r0); break;
      case 3: dot_rows (3, kind, w, x + r0, n, sums + r0); break;
      default: dot_rows (4, kind, w, x + r0, n, sums + r0); break;
      }
}

NS_CPU_HOT static void
dot_all_rows_f32 (int rows, const float *w, const float *const *x, int n, float *sums)
{
  dot_all_rows (rows, WEIGHTS_F32, w, x, n, sums);
}

NS_CPU_HOT static void
dot_all_rows_bf16 (int rows, const uint16_t *w, const float *const *x, int n, float *sums)
{
  dot_all_rows (rows, WEIGHTS_BF16, w, x, n, sums);
}

NS_CPU_HOT static void
dot_all_rows_i8 (int rows, const int8_t *w, const float *const *x, int n, float *sums)
{
  dot_all_rows (rows, WEIGHTS_I8, w, x, n, sums);
}

NS_CPU_HOT static void
dot_all_rows_f8 (int rows, const uint8_t *w, const float *const *x, int n, float *sums)
{
  dot_all_rows (rows, WEIGHTS_F8, w, x, n, sums);
}

/* x rows reordered per unit of 8·lanes elements so that element 8·v + t of
 * the unit is x[lanes·t + v], the order widen_unit yields the weights in;
 * the tail past the last full unit stays in place. g_free the result. */
static float *
deinterleave (const float *x, int rows, int cols, int lanes)
{
  float *d = g_new (float, (size_t) rows * cols);
  int unit = 8 * lanes;
  for (int r = 0; r < rows; r++)
    {
      const float *xr = x + (size_t) r * cols;
      float *dr = d + (size_t) r * cols;
      int i = 0;
      for (; i + unit <= cols; i += unit)
        for (int v = 0; v < lanes; v++)
          for (int t = 0; t < 8; t++)
            dr[i + 8 * v + t] = xr[i + lanes * t + v];
      for (; i < cols; i++)
        dr[i] = xr[i];
    }
  return d;
}

/* sums[r] = W[o, :] · x[r, :] for every row r (x de-interleaved to match).
 * int8/fp8 codes are dotted unscaled and the row's scale applied once to the
 * sums; F16 (rare) is converted chunk by chunk into an L1 buffer first. */
static void
weight_row_dots (const NsMat *w, int o, const float *x, int rows, float *sums)
{
  int cols = w->cols;
  size_t at = (size_t) o * cols;
  const float *xp[GEMV_MAX_ROWS];
  for (int r = 0; r < rows; r++)
    {
      xp[r] = x + (size_t) r * cols;
      sums[r] = 0.0f;
    }
  switch (w->dtype)
    {
    case NS_DTYPE_BF16:
      dot_all_rows_bf16 (rows, (const uint16_t *) w->data + at, xp, cols, sums);
      return;
    case NS_DTYPE_F32:
      dot_all_rows_f32 (rows, (const float *) w->data + at, xp, cols, sums);
      return;
    case NS_DTYPE_I8:
    case NS_DTYPE_F8_E4M3:
      if (w->dtype == NS_DTYPE_I8)
        dot_all_rows_i8 (rows, (const int8_t *) w->data + at, xp, cols, sums);
      else
        dot_all_rows_f8 (rows, (const uint8_t *) w->data + at, xp, cols, sums);
      for (int r = 0; r < rows; r++)
        sums[r] *= w->scale[o];
      return;
    default:
      break;
    }
  float buf[GEMV_CHUNK];
  for (int c0 = 0; c0 < cols; c0 += GEMV_CHUNK)
    {
      int len = MIN (GEMV_CHUNK, cols - c0);
      ns_cpu_convert (buf, w, at + c0, len);
      dot_all_rows_f32 (rows, buf, xp, len, sums);
      for (int r = 0; r < rows; r++)
        xp[r] += len;
    }
}

/* y[r, o] += W[o, :] · x[r, :] for all r; W is read from memory once. (x
 * rows of 5120 floats do not fit L1 together; walking W a column block at a
 * time to keep them there measured slower: the stride breaks the stream.) */
static void
gemv (NsBackend *b, float *y, const float *x, const NsMat *w, int rows)
{
  int lanes = w->dtype == NS_DTYPE_BF16 ? 2
              : w->dtype == NS_DTYPE_I8 || w->dtype == NS_DTYPE_F8_E4M3 ? 4 : 0;
  float *xd = lanes ? deinterleave (x, rows, w->cols, lanes) : NULL;
  const float *xs = xd ? xd : x;
  /* Static: each thread streams one contiguous stretch of W. */
#pragma omp parallel for num_threads (ns_cpu_threads (b)) schedule (static) \
  if ((size_t) w->rows * w->cols > NS_CPU_PARALLEL_MIN)
  for (int o = 0; o < w->rows; o++)
    {
      float sums[GEMV_MAX_ROWS];
      weight_row_dots (w, o, xs, rows, sums);
      for (int r = 0; r < rows; r++)
        y[(size_t) r * w->rows + o] += sums[r];
    }
  g_free (xd);
}

/* Prefill: the BLAS does the arithmetic-bound product. W is widened to f32
 * a panel of output rows at a time (exactly, the GEMV's values), so the
 * f32 copy stays small and the BLAS sees plain sgemm:
 * y[:, o0 .. o0+nb) += x · W[o0 .. o0+nb, :]ᵀ. */
static void
prefill (NsBackend *b, float *y, const float *x, const NsMat *w, int rows)
{
  int cols = w->cols;
  if (w->dtype == NS_DTYPE_F32)
    {
      ns_cpu_sgemm (b, FALSE, TRUE, rows, w->rows, cols, 1.0f, x, cols, w->data, cols, 1.0f, y,
                    w->rows);
      return;
    }
  int block = MAX (1, MIN (w->rows, PREFILL_PANEL_FLOATS / cols));
  float *panel = g_new (float, (size_t) block * cols);
  for (int o0 = 0; o0 < w->rows; o0 += block)
    {
      int nb = MIN (block, w->rows - o0);
#pragma omp parallel for num_threads (ns_cpu_threads (b)) schedule (static)
      for (int o = 0; o < nb; o++)
        ns_cpu_convert (panel + (size_t) o * cols, w, (size_t) (o0 + o) * cols, cols);
      ns_cpu_sgemm (b, FALSE, TRUE, rows, nb, cols, 1.0f, x, cols, panel, cols, 1.0f, y + o0,
                    w->rows);
    }
  g_free (panel);
}

/* y rows start from 0 (or their old value when accumulating), plus bias. */
static void
init_output (float *y, const NsMat *bias, int rows, int n, gboolean accumulate)
{
  float *bv = ns_cpu_mat_to_f32 (bias);
  for (int r = 0; r < rows; r++)
    {
      float *yr = y + (size_t) r * n;
      for (int o = 0; o < n; o++)
        yr[o] = (accumulate ? yr[o] : 0.0f) + (bv ? bv[o] : 0.0f);
    }
  g_free (bv);
}

void
ns_cpu_linear (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
               int rows, gboolean accumulate)
{
  g_return_if_fail (rows >= 0 && (bias == NULL || bias->rows * bias->cols == w->rows));
  init_output (y, bias, rows, w->rows, accumulate);
  if (rows == 0)
    return;
  if (rows <= GEMV_MAX_ROWS)
    gemv (b, y, x, w, rows);
  else
    prefill (b, y, x, w, rows);
}
