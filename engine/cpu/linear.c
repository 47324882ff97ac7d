/* linear.c — y = x · Wᵀ + bias, and embedding lookups.
 *
 * Decode (a few rows) is bound by streaming W from memory: each weight row
 * is read once, widened to f32 in registers, and dotted with every x row
 * while it is in L1. Prefill (many rows) is bound by arithmetic: the blocked
 * matmul packs W once per column block and reuses it from cache for all rows. */
#include "cpu-backend.h"

#define GEMV_MAX_ROWS 8       /* above this, the blocked matmul wins */
#define GEMV_GROUP 4          /* x rows one pass over a weight row serves */
#define GEMV_PREFETCH 2048    /* bytes ahead of the weight stream */
#define GEMV_CHUNK 1024       /* F16 weights per conversion: 4 KiB of f32 */

/* sums[r] += Σ_i W[i] · x[r][i] for nr ≤ GEMV_GROUP rows. bf16 weights are
 * widened in registers without shuffles: 16 bf16 read as 8 u32 give the even
 * elements as u32 << 16 and the odd ones as u32 & 0xffff0000, so x comes
 * de-interleaved (see deinterleave). Always inlined with constant nr and
 * bf16, so the accumulators live in registers and the dtype test folds. */
static inline __attribute__ ((always_inline)) void
dot_rows (int nr, gboolean bf16, const void *w, const float *const *x, int n, float *sums)
{
  const float *wf = w;
  const uint16_t *wb = w;
  NsF32x8 acc[GEMV_GROUP][2] = { { { 0 } } };
  int i = 0;
  for (; i + 16 <= n; i += 16)
    {
      NsF32x8 w0, w1;
      /* The hardware prefetcher alone leaves a third of the bandwidth unused. */
      __builtin_prefetch ((const char *) w + (i * (bf16 ? 2 : 4) + GEMV_PREFETCH));
      if (bf16)
        {
          NsU32x8 pairs = *(const NsU32x8u *) (wb + i);
          w0 = (NsF32x8) (pairs << 16);
          w1 = (NsF32x8) (pairs & 0xffff0000u);
        }
      else
        {
          w0 = NS_F32X8_LOAD (wf + i);
          w1 = NS_F32X8_LOAD (wf + i + 8);
        }
      for (int r = 0; r < nr; r++)
        {
          acc[r][0] += w0 * NS_F32X8_LOAD (x[r] + i);
          acc[r][1] += w1 * NS_F32X8_LOAD (x[r] + i + 8);
        }
    }
  for (int r = 0; r < nr; r++)
    {
      NsF32x8 both = acc[r][0] + acc[r][1];
      float s = NS_F32X8_SUM (both);
      for (int j = i; j < n; j++)
        s += (bf16 ? ns_bf16_to_f32 (wb[j]) : wf[j]) * x[r][j];
      sums[r] += s;
    }
}

/* Row groups of constant size for dot_rows. */
static inline __attribute__ ((always_inline)) void
dot_all_rows (int rows, gboolean bf16, const void *w, const float *const *x, int n,
              float *sums)
{
  for (int r0 = 0; r0 < rows; r0 += GEMV_GROUP)
    switch (MIN (GEMV_GROUP, rows - r0))
      {
      case 1: dot_rows (1, bf16, w, x + r0, n, sums + r0); break;
      case 2: dot_rows (2, bf16, w, x + r0, n, sums + r0); break;
      case 3: dot_rows (3, bf16, w, x + r0, n, sums + r0); break;
      default: dot_rows (4, bf16, w, x + r0, n, sums + r0); break;
      }
}

NS_CPU_HOT static void
dot_all_rows_f32 (int rows, const float *w, const float *const *x, int n, float *sums)
{
  dot_all_rows (rows, FALSE, w, x, n, sums);
}

NS_CPU_HOT static void
dot_all_rows_bf16 (int rows, const uint16_t *w, const float *const *x, int n, float *sums)
{
  dot_all_rows (rows, TRUE, w, x, n, sums);
}

/* x rows reordered per 16-element block to [x0 x2 … x14 | x1 x3 … x15], the
 * order dot_rows pairs bf16 weights in; the tail past the last full block
 * stays in place. g_free the result. */
static float *
deinterleave (const float *x, int rows, int cols)
{
  float *d = g_new (float, (size_t) rows * cols);
  for (int r = 0; r < rows; r++)
    {
      const float *xr = x + (size_t) r * cols;
      float *dr = d + (size_t) r * cols;
      int i = 0;
      for (; i + 16 <= cols; i += 16)
        for (int k = 0; k < 8; k++)
          {
            dr[i + k] = xr[i + 2 * k];
            dr[i + 8 + k] = xr[i + 2 * k + 1];
          }
      for (; i < cols; i++)
        dr[i] = xr[i];
    }
  return d;
}

/* sums[r] = W[o, :] · x[r, :] for every row r (x de-interleaved for bf16).
 * F16 (rare) is converted chunk by chunk into an L1 buffer first. */
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
  if (w->dtype == NS_DTYPE_BF16)
    {
      dot_all_rows_bf16 (rows, (const uint16_t *) w->data + at, xp, cols, sums);
      return;
    }
  if (w->dtype == NS_DTYPE_F32)
    {
      dot_all_rows_f32 (rows, (const float *) w->data + at, xp, cols, sums);
      return;
    }
  /* Quantized rows: the codes are widened unscaled and the row's scale is
   * applied once to the sums. */
  gboolean quantized = w->dtype == NS_DTYPE_I8 || w->dtype == NS_DTYPE_F8_E4M3;
  float buf[GEMV_CHUNK];
  for (int c0 = 0; c0 < cols; c0 += GEMV_CHUNK)
    {
      int len = MIN (GEMV_CHUNK, cols - c0);
      if (quantized)
        ns_cpu_convert_codes (buf, w, at + c0, len);
      else
        ns_cpu_convert (buf, w, at + c0, len);
      dot_all_rows_f32 (rows, buf, xp, len, sums);
      for (int r = 0; r < rows; r++)
        xp[r] += len;
    }
  for (int r = 0; quantized && r < rows; r++)
    sums[r] *= w->scale[o];
}

/* y[r, o] += W[o, :] · x[r, :] for all r; W is read from memory once. */
static void
gemv (NsBackend *b, float *y, const float *x, const NsMat *w, int rows)
{
  float *xd = w->dtype == NS_DTYPE_BF16 ? deinterleave (x, rows, w->cols) : NULL;
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

/* The matmul's B[k, n] is W[n, k]: pack converts W rows and transposes. */
static void
pack_weight (const void *ctx, float *dst, int n0, int nr, int k0, int kb)
{
  const NsMat *w = ctx;
  float row[NS_CPU_KB];
  for (int j = 0; j < NS_CPU_NR; j++)
    {
      if (j < nr)
        ns_cpu_convert (row, w, (size_t) (n0 + j) * w->cols + k0, kb);
      else
        memset (row, 0, kb * sizeof (float));
      for (int kk = 0; kk < kb; kk++)
        dst[kk * NS_CPU_NR + j] = row[kk];
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
  if (rows <= GEMV_MAX_ROWS)
    gemv (b, y, x, w, rows);
  else
    ns_cpu_matmul (b, y, w->rows, x, w->cols, rows, w->rows, w->cols, pack_weight, w);
}
