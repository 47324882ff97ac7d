/* linear.c — y = x · Wᵀ + bias, and embedding lookups.
 *
 * Decode (a few rows) is bound by streaming W from memory: each weight row
 * is read once, widened to f32 in registers, and dotted with every x row
 * while it is in L1. Prefill (many rows) is bound by arithmetic: the BLAS. */
#include "cpu-backend.h"
#include "gemv-avx512.h"
#include "gemv-q4.h"
#include "q4-layout.h"

#define GEMV_MAX_ROWS 8       /* above this, the BLAS wins */
#define GEMV_GROUP 4          /* x rows one pass over the weights serves */
#define GEMV_ACCUMULATORS 8   /* weight rows × x rows of one pass: FMA chains in registers */
#define GEMV_BLOCK 8          /* weight rows a thread takes at a time */
#define GEMV_LINE 64          /* weight bytes per loop step: one cache line, one prefetch */
#define GEMV_PREFETCH 32768   /* bytes ahead of the weight stream, into L2: 2 KiB into L1
                                 left bf16 at 60 % of the read bandwidth on Zen 4, 32 KiB
                                 reaches 100 % (docs/benchmarks.md) */
#define GEMV_CHUNK 1024       /* F16 weights per conversion: 4 KiB of f32 */
#define PREFILL_PANEL_BYTES (4 << 20)    /* W widened per BLAS call: cache-sized */
#define PREFILL_PANEL_MIN_ROWS 64        /* fewer make the BLAS repack x too often */

/* How the dot products widen the weights; a compile-time constant in every
 * clone. */
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

static inline __attribute__ ((always_inline)) size_t
kind_bytes (WeightKind kind, size_t n)
{
  return n * kind_size (kind);
}

/* Vector v of the weights of the unit at element i as f32, exactly, with
 * only shifts and masks (no shuffles, which cost a port the FMAs need, and
 * which GCC's generic vectors do not produce well): the unit is read as 8
 * u32 and vector v takes byte/half v of each, so it holds elements
 * i + L·t + v (t < 8, L = lanes per u32) and x comes de-interleaved to
 * match (see deinterleave).
 *  - bf16: half 0 as u32 << 16, half 1 as u32 & 0xffff0000;
 *  - int8: byte v shifted to the top, arithmetic-shifted back, converted
 *    (the row scale comes later);
 *  - fp8 e4m3: byte v at the top arithmetic-shifted by 4 puts sign, exponent
 *    and mantissa in an f32's fields: the value · 2^-120 (subnormal codes
 *    too, as f32 denormals); one multiply by 2^120 restores it. A table would
 *    take a scalar load per weight, which cannot keep up with the memory. */
static inline __attribute__ ((always_inline)) void
widen_vector (WeightKind kind, const void *w, int i, int v, NsF32x8 *out)
{
  if (kind == WEIGHTS_F32)
    {
      *out = NS_F32X8_LOAD ((const float *) w + i + 8 * v);
      return;
    }
  NsU32x8 u = *(const NsU32x8b *) ((const char *) w + kind_bytes (kind, i));
  if (kind == WEIGHTS_BF16)
    {
      *out = v == 0 ? (NsF32x8) (u << 16) : (NsF32x8) (u & 0xffff0000u);
      return;
    }
  NsI32x8 top = (NsI32x8) (u << (24 - 8 * v));
  if (kind == WEIGHTS_I8)
    *out = __builtin_convertvector (top >> 24, NsF32x8);
  else
    *out = (NsF32x8) ((top >> 4) & (int32_t) 0x87f00000) * 0x1p120f;
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

/* acc[k·nr + r] += unit of weight row k · x[r] for the unit at element i.
 * Each x vector is loaded once for all nw weight rows: with one weight row
 * per pass, int8 needed 8 bytes of x (from L2: two rows of 5120 floats do
 * not fit L1) per byte of weights, and that, not memory, bounded it. */
#define DOT_UNIT(kind, nw, nr, w, stride, x, i, acc)                              \
  do                                                                              \
    {                                                                             \
      for (int v_ = 0; v_ < unit_vectors (kind); v_++)                            \
        {                                                                         \
          NsF32x8 xv_[GEMV_GROUP];                                                \
          for (int r_ = 0; r_ < (nr); r_++)                                       \
            xv_[r_] = NS_F32X8_LOAD ((x)[r_] + (i) + 8 * v_);                     \
          for (int k_ = 0; k_ < (nw); k_++)                                       \
            {                                                                     \
              NsF32x8 wv_;                                                        \
              widen_vector ((kind), (const char *) (w) + k_ * (stride), (i), v_, &wv_); \
              for (int r_ = 0; r_ < (nr); r_++)                                   \
                (acc)[k_ * (nr) + r_] += wv_ * xv_[r_];                           \
            }                                                                     \
        }                                                                         \
    }                                                                             \
  while (0)

/* sums[k·ld + r] = Σ_i W_k[i] · x[r][i] for nw weight rows `ldw` elements
 * apart and nr x rows, nw·nr ≤ GEMV_ACCUMULATORS. Always inlined with
 * constant nw, nr and kind, so the accumulators (independent FMA chains)
 * live in registers and the kind tests fold. */
static inline __attribute__ ((always_inline)) void
dot_block (int nw, int nr, WeightKind kind, const void *w, size_t ldw, const float *const *x,
           int n, float *sums, int ld)
{
  const int unit = 8 * unit_vectors (kind);
  const int line = GEMV_LINE / kind_size (kind);
  const size_t stride = kind_bytes (kind, ldw);
  NsF32x8 acc[GEMV_ACCUMULATORS] = { { 0 } };
  int i = 0;
  for (; i + line <= n; i += line)
    {
      /* The hardware prefetcher alone leaves a third of the bandwidth unused
       * (locality 2: into L2, where 32 KiB ahead per row does not evict x). */
      for (int k = 0; k < nw; k++)
        __builtin_prefetch ((const char *) w + k * stride + kind_bytes (kind, i)
                            + GEMV_PREFETCH, 0, 2);
      for (int u = i; u < i + line; u += unit)
        DOT_UNIT (kind, nw, nr, w, stride, x, u, acc);
    }
  for (; i + unit <= n; i += unit)
    DOT_UNIT (kind, nw, nr, w, stride, x, i, acc);
  for (int k = 0; k < nw; k++)
    for (int r = 0; r < nr; r++)
      {
        float s = NS_F32X8_SUM (acc[k * nr + r]);
        for (int j = i; j < n; j++)
          s += widen1 (kind, (const char *) w + k * stride, j) * x[r][j];
        sums[k * ld + r] = s;
      }
}

/* nw weight rows against nr x rows: as many weight rows per pass as the
 * accumulators allow, the leftover ones singly. */
static inline __attribute__ ((always_inline)) void
dot_group (int nw, int nr, WeightKind kind, const void *w, size_t ldw, const float *const *x,
           int n, float *sums, int ld)
{
  const int wb = GEMV_ACCUMULATORS / nr;
  const size_t stride = kind_bytes (kind, ldw);
  int k = 0;
  for (; k + wb <= nw; k += wb)
    dot_block (wb, nr, kind, (const char *) w + k * stride, ldw, x, n, sums + k * ld, ld);
  for (; k < nw; k++)
    dot_block (1, nr, kind, (const char *) w + k * stride, ldw, x, n, sums + k * ld, ld);
}

/* sums[k·rows + r] = W_k · x[r] for nw ≤ GEMV_BLOCK weight rows and all x
 * rows, in groups of constant size for dot_group. */
static inline __attribute__ ((always_inline)) void
dot_all (int nw, int rows, WeightKind kind, const void *w, size_t ldw, const float *const *x,
         int n, float *sums)
{
  for (int r0 = 0; r0 < rows; r0 += GEMV_GROUP)
    switch (MIN (GEMV_GROUP, rows - r0))
      {
      case 1: dot_group (nw, 1, kind, w, ldw, x + r0, n, sums + r0, rows); break;
      case 2: dot_group (nw, 2, kind, w, ldw, x + r0, n, sums + r0, rows); break;
      case 3: dot_group (nw, 3, kind, w, ldw, x + r0, n, sums + r0, rows); break;
      default: dot_group (nw, 4, kind, w, ldw, x + r0, n, sums + r0, rows); break;
      }
}

#define DOT_ALL_CLONE(name, kind, type)                                                  \
  NS_CPU_HOT static void                                                               \
  name (int nw, int rows, const type *w, size_t ldw, const float *const *x, int n,     \
        float *sums)                                                                   \
  {                                                                                    \
    dot_all (nw, rows, kind, w, ldw, x, n, sums);                                      \
  }
DOT_ALL_CLONE (dot_all_f32, WEIGHTS_F32, float)
DOT_ALL_CLONE (dot_all_bf16, WEIGHTS_BF16, uint16_t)
DOT_ALL_CLONE (dot_all_i8, WEIGHTS_I8, int8_t)
DOT_ALL_CLONE (dot_all_f8, WEIGHTS_F8, uint8_t)

/* x rows reordered per unit of 8·lanes elements so that element 8·v + t of
 * the unit is x[lanes·t + v], the order widen_vector yields the weights in;
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

/* F16 weights (rare) are converted a chunk of one row at a time into an L1
 * buffer and dotted as f32. */
static void
f16_row_dots (const NsMat *w, int o, const float *const *x, int rows, float *sums)
{
  float buf[GEMV_CHUNK], part[GEMV_MAX_ROWS];
  const float *xp[GEMV_MAX_ROWS];
  size_t at = (size_t) o * w->cols;
  for (int r = 0; r < rows; r++)
    {
      xp[r] = x[r];
      sums[r] = 0.0f;
    }
  for (int c0 = 0; c0 < w->cols; c0 += GEMV_CHUNK)
    {
      int len = MIN (GEMV_CHUNK, w->cols - c0);
      ns_cpu_convert (buf, w, at + c0, len);
      dot_all_f32 (1, rows, buf, len, xp, len, part);
      for (int r = 0; r < rows; r++)
        {
          sums[r] += part[r];
          xp[r] += len;
        }
    }
}

/* TRUE when the int8/fp8 rows of w go through gemv-avx512.c, whose x rows
 * are in element order. */
static gboolean
avx512_rows (const NsMat *w)
{
  return (w->dtype == NS_DTYPE_I8 || w->dtype == NS_DTYPE_F8_E4M3) && ns_cpu_gemv_avx512 ();
}

/* The unscaled int8/fp8 code dots of block_dots. */
static void
b8_dots (const NsMat *w, size_t at, int nw, const float *const *x, int rows, float *sums,
         gboolean avx512)
{
  int cols = w->cols;
  gboolean fp8 = w->dtype == NS_DTYPE_F8_E4M3;
#if NS_GEMV_AVX512
  if (avx512)
    {
      ns_cpu_dot_b8_avx512 (nw, rows, (const int8_t *) w->data + at, fp8, cols, x, cols, sums);
      return;
    }
#endif
  (void) avx512;
  if (!fp8)
    dot_all_i8 (nw, rows, (const int8_t *) w->data + at, cols, x, cols, sums);
  else
    dot_all_f8 (nw, rows, (const uint8_t *) w->data + at, cols, x, cols, sums);
}

/* sums[k·rows + r] = W[o + k, :] · x[r, :] for k < nw and every row r (x
 * de-interleaved to match linear.c's own loops). int8/fp8 codes are dotted
 * unscaled and each row's scale applied once to its sums; q4 rows multiply
 * x4, the x rows rounded for them (gemv-q4.c). */
static void
block_dots (const NsMat *w, int o, int nw, const float *const *x, const NsQ4Rows *x4, int r0,
            int rows, float *sums, gboolean avx512)
{
  int cols = w->cols;
  size_t at = (size_t) o * cols;
  switch (w->dtype)
    {
    case NS_DTYPE_BF16:
      dot_all_bf16 (nw, rows, (const uint16_t *) w->data + at, cols, x, cols, sums);
      return;
    case NS_DTYPE_F32:
      dot_all_f32 (nw, rows, (const float *) w->data + at, cols, x, cols, sums);
      return;
    case NS_DTYPE_Q4:
      ns_cpu_q4_dots (x4, r0, rows, nw, (const uint8_t *) w->data + ns_q4_row_bytes (at),
                      w->group_scale + ns_q4_row_groups (at), sums);
      return;
    case NS_DTYPE_I8:
    case NS_DTYPE_F8_E4M3:
      b8_dots (w, at, nw, x, rows, sums, avx512);
      for (int k = 0; k < nw; k++)
        for (int r = 0; r < rows; r++)
          sums[k * rows + r] *= w->scale[o + k];
      return;
    default:
      for (int k = 0; k < nw; k++)
        f16_row_dots (w, o + k, x, rows, sums + k * rows);
      return;
    }
}

/* y[r, o] += W[o, :] · x[r, :] for all r; W is read from memory once, a
 * block of GEMV_BLOCK rows at a time, against GEMV_MAX_ROWS x rows at a time
 * (more only for q4, whose prefill is this loop too). (x rows of 5120
 * floats do not fit L1 together; walking W a column block at a time to keep
 * them there measured slower: the stride breaks the stream.) */
static void
gemv (NsBackend *b, float *y, const float *x, const NsMat *w, int rows)
{
  gboolean avx512 = avx512_rows (w);
  int lanes = w->dtype == NS_DTYPE_BF16 ? 2
              : (w->dtype == NS_DTYPE_I8 || w->dtype == NS_DTYPE_F8_E4M3) && !avx512 ? 4 : 0;
  float *xd = lanes ? deinterleave (x, rows, w->cols, lanes) : NULL;
  const float *xs = xd ? xd : x;
  NsQ4Rows *x4 = w->dtype == NS_DTYPE_Q4 ? ns_cpu_q4_rows_new (x, rows, w->cols) : NULL;
  const float **xp = g_new (const float *, rows);
  for (int r = 0; r < rows; r++)
    xp[r] = xs + (size_t) r * w->cols;
  int blocks = (w->rows + GEMV_BLOCK - 1) / GEMV_BLOCK;
  /* Static: each thread streams one contiguous stretch of W. */
#pragma omp parallel for num_threads (ns_cpu_threads (b)) schedule (static) \
  if ((size_t) w->rows * w->cols > NS_CPU_PARALLEL_MIN)
  for (int blk = 0; blk < blocks; blk++)
    {
      int o = blk * GEMV_BLOCK, nw = MIN (GEMV_BLOCK, w->rows - o);
      float sums[GEMV_BLOCK * GEMV_MAX_ROWS];
      for (int r0 = 0; r0 < rows; r0 += GEMV_MAX_ROWS)
        {
          int nr = MIN (GEMV_MAX_ROWS, rows - r0);
          block_dots (w, o, nw, xp + r0, x4, r0, nr, sums, avx512);
          for (int k = 0; k < nw; k++)
            for (int r = 0; r < nr; r++)
              y[(size_t) (r0 + r) * w->rows + o + k] += sums[k * nr + r];
        }
    }
  g_free (xp);
  g_free (xd);
  ns_cpu_q4_rows_free (x4);
}

/* Output rows per prefill panel: about PREFILL_PANEL_BYTES of f32, a
 * multiple of 16 (the BLAS's tiles), and the panels a multiple of the
 * threads so that none waits for the others' last one. */
static int
prefill_block (int outs, int cols, int threads)
{
  size_t bytes = (size_t) outs * cols * sizeof (float);
  int rounds = MAX (1, (int) ((bytes + (size_t) threads * PREFILL_PANEL_BYTES - 1)
                              / ((size_t) threads * PREFILL_PANEL_BYTES)));
  int block = (outs + rounds * threads - 1) / (rounds * threads);
  return MIN (outs, MAX (PREFILL_PANEL_MIN_ROWS, (block + 15) / 16 * 16));
}

/* Prefill: the BLAS does the arithmetic-bound product. Each thread widens
 * a panel of output rows of W to f32 (exactly, the GEMV's values) and
 * multiplies it on its own: the panel stays in its cache, and nothing the
 * size of W is allocated or written. y[:, o0 .. o0+nb) += x · W[o0 .. o0+nb, :]ᵀ. */
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
  int threads = ns_cpu_threads (b), block = prefill_block (w->rows, cols, threads);
  int panels = (w->rows + block - 1) / block;
  ns_cpu_blas_serial ();
#pragma omp parallel num_threads (MIN (threads, panels))
  {
    float *panel = g_new (float, (size_t) block * cols);
#pragma omp for schedule (static)
    for (int p = 0; p < panels; p++)
      {
        int o0 = p * block, nb = MIN (block, w->rows - o0);
        for (int o = 0; o < nb; o++)
          ns_cpu_convert (panel + (size_t) o * cols, w, (size_t) (o0 + o) * cols, cols);
        ns_cpu_sgemm_serial (rows, nb, cols, x, panel, y + o0, w->rows);
      }
    g_free (panel);
  }
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
  /* q4 multiplies x rounded to 8 bits (q4-layout.h) as integers, 4× the
   * products an instruction of f32 FMAs: its prefill is the GEMV loop too */
  if (rows <= GEMV_MAX_ROWS || w->dtype == NS_DTYPE_Q4)
    gemv (b, y, x, w, rows);
  else
    prefill (b, y, x, w, rows);
}
