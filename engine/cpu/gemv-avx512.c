/* gemv-avx512.c — the decode GEMV's inner loops for 1-byte (int8, fp8)
 * weights on CPUs with AVX-512 (x86-64-v4), chosen at run time by linear.c
 * (q4 has its own, gemv-q4.c). They are written with intrinsics because
 * the instruction that makes them fast has no generic-vector spelling GCC
 * 12 compiles well: vpmovsxbd zmm ← m128 (16 codes sign-extended straight
 * from memory; __builtin_convertvector of 16 bytes becomes scalar moves).
 * Measured in L1 on a Zen 4 core: int8 1.5× the weights per second of
 * linear.c's shift-and-convert loops (docs/benchmarks.md).
 *
 * The arithmetic is the CPU reference's: every weight is widened to its
 * exact f32 value (the unscaled code, the row scale applied by the
 * caller), and dotted with the f32 activations in f32 FMAs. x rows are in
 * element order. */
#include "gemv-avx512.h"

#if NS_GEMV_AVX512

#include <immintrin.h>

#define V4 __attribute__ ((target ("arch=x86-64-v4")))
#define V4_INLINE static inline __attribute__ ((always_inline, target ("arch=x86-64-v4")))

#define ROWS_W 4            /* weight rows per pass: each x load serves 4 */
#define ROWS_X 2            /* x rows per pass (CFG's two); ROWS_W · ROWS_X accumulators */
#define PREFETCH 32768      /* weights ahead of each row's stream, into L2: at 2 KiB into
                               L1 the loads still waited for memory and int8 read at
                               60 % of the bandwidth, at 32 Ki weights 85–100 % (Zen 4) */

static gboolean allowed = TRUE;

gboolean
ns_cpu_gemv_avx512 (void)
{
  static int have = -1;
  if (have < 0)
    {
      __builtin_cpu_init ();
      have = __builtin_cpu_supports ("x86-64-v4") != 0;
    }
  return have && allowed;
}

void
ns_cpu_gemv_avx512_allow (gboolean allow)
{
  allowed = allow;
}

/* 16 codes at p as f32: int8 converted; fp8 e4m3 as f16 (vpmovsxbw, then
 * sign, exponent and mantissa moved into an f16's fields: the value · 2^-8,
 * subnormal codes as f16 subnormals, exactly) and vcvtph2ps. The 2^8 is
 * applied once to each sum (FP8_UNSCALE): a power of two, so the products
 * and sums are the unscaled ones exactly, and the multiply per 16 weights
 * that a 2^-120 f32 trick needs (linear.c) is gone — 12 % more weights a
 * second in L1. */
#define FP8_UNSCALE 256.0f

V4_INLINE __m512
widen16 (const void *p, gboolean fp8)
{
  if (!fp8)
    return _mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (_mm_loadu_si128 ((const __m128i *) p)));
  __m256i h = _mm256_cvtepi8_epi16 (_mm_loadu_si128 ((const __m128i *) p));
  h = _mm256_and_si256 (_mm256_slli_epi16 (h, 7), _mm256_set1_epi16 ((short) 0xbf80));
  return _mm512_cvtph_ps (h);
}

/* One code as f32 (unscaled), for a row's last n % 64 elements. */
static float
widen1 (const int8_t *w, int i, gboolean fp8)
{
  return fp8 ? ns_f8e4m3_to_f32 ((uint8_t) w[i]) : (float) w[i];
}

/* acc[k·nr + r] sums over the row; stores their totals plus the tail. */
V4_INLINE void
store_sums (int nw, int nr, __m512 *acc, const int8_t *w, size_t ldw, gboolean fp8,
            const float *const *x, int i, int n, float *sums, int ld)
{
  for (int k = 0; k < nw; k++)
    for (int r = 0; r < nr; r++)
      {
        float s = _mm512_reduce_add_ps (acc[k * nr + r]) * (fp8 ? FP8_UNSCALE : 1.0f);
        for (int j = i; j < n; j++)
          s += widen1 (w + k * ldw, j, fp8) * x[r][j];
        sums[k * ld + r] = s;
      }
}

/* sums[k·ld + r] = Σ_i code_k[i] · x[r][i], nw ≤ ROWS_W, nr ≤ ROWS_X,
 * constants after inlining so that the accumulators stay in registers. The
 * pragmas unroll every loop over them whatever the optimisation level: at -O2
 * GCC 12 kept acc[] on the stack, 11 instead of 24 G weights/s in L2. */
V4_INLINE void
b8_block (int nw, int nr, gboolean fp8, const int8_t *w, size_t ldw, const float *const *x,
          int n, float *sums, int ld)
{
  __m512 acc[ROWS_W * ROWS_X];
#pragma GCC unroll 8
  for (int a = 0; a < nw * nr; a++)
    acc[a] = _mm512_setzero_ps ();
  int i = 0;
  for (; i + 64 <= n; i += 64)
    {
#pragma GCC unroll 4
      for (int k = 0; k < nw; k++)
        _mm_prefetch ((const char *) (w + k * ldw + i) + PREFETCH, _MM_HINT_T1);
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++)
        {
          __m512 xv[ROWS_X];
#pragma GCC unroll 2
          for (int r = 0; r < nr; r++)
            xv[r] = _mm512_loadu_ps (x[r] + i + 16 * v);
#pragma GCC unroll 4
          for (int k = 0; k < nw; k++)
            {
              __m512 f = widen16 (w + k * ldw + i + 16 * v, fp8);
#pragma GCC unroll 2
              for (int r = 0; r < nr; r++)
                acc[k * nr + r] = _mm512_fmadd_ps (f, xv[r], acc[k * nr + r]);
            }
        }
    }
  store_sums (nw, nr, acc, w, ldw, fp8, x, i, n, sums, ld);
}

/* sums[k·rows + r] for nw weight rows and all x rows: x rows in pairs,
 * weight rows ROWS_W at a time and the leftover ones singly, each a block
 * of constant shape. */
V4_INLINE void
dot_rows (gboolean fp8, int nw, int rows, const int8_t *w, size_t ldw, const float *const *x,
          int n, float *sums)
{
  for (int r0 = 0; r0 < rows; r0 += ROWS_X)
    {
      const float *const *xr = x + r0;
      float *s = sums + r0;
      int k = 0;
      for (; k + ROWS_W <= nw; k += ROWS_W)
        if (rows - r0 >= 2)
          b8_block (ROWS_W, 2, fp8, w + k * ldw, ldw, xr, n, s + k * rows, rows);
        else
          b8_block (ROWS_W, 1, fp8, w + k * ldw, ldw, xr, n, s + k * rows, rows);
      for (; k < nw; k++)
        if (rows - r0 >= 2)
          b8_block (1, 2, fp8, w + k * ldw, ldw, xr, n, s + k * rows, rows);
        else
          b8_block (1, 1, fp8, w + k * ldw, ldw, xr, n, s + k * rows, rows);
    }
}

V4 void
ns_cpu_dot_b8_avx512 (int nw, int rows, const void *w, gboolean fp8, size_t ldw,
                      const float *const *x, int n, float *sums)
{
  if (fp8)
    dot_rows (TRUE, nw, rows, w, ldw, x, n, sums);
  else
    dot_rows (FALSE, nw, rows, w, ldw, x, n, sums);
}

#endif
