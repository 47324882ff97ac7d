/* gemv-avx512.h — the AVX-512 decode GEMV loops of gemv-avx512.c, which
 * linear.c calls where ns_cpu_gemv_avx512 () says the CPU has them. Built
 * where the compiler can target x86-64-v4 per function (GCC/clang on
 * x86-64); elsewhere NS_GEMV_AVX512 is 0 and linear.c keeps its own loops. */
#pragma once

#include "cpu-backend.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#  define NS_GEMV_AVX512 1
#else
#  define NS_GEMV_AVX512 0
#endif

G_BEGIN_DECLS

#if NS_GEMV_AVX512
/* TRUE on a CPU with the x86-64-v4 instructions (AVX-512 F/BW/CD/DQ/VL),
 * unless turned off. */
gboolean ns_cpu_gemv_avx512 (void);

/* FALSE makes linear.c use its own loops even on such a CPU: the tests run
 * both paths on one machine. Not thread-safe; set it between ops. */
void ns_cpu_gemv_avx512_allow (gboolean allow);

/* sums[k·rows + r] = Σ_i code(W_k[i]) · x[r][i] for nw ≤ 8 weight rows of
 * int8 (fp8 FALSE) or fp8 e4m3 codes `ldw` apart, unscaled, and rows ≤ 8
 * x rows of n elements in order. */
void ns_cpu_dot_b8_avx512 (int nw, int rows, const void *w, gboolean fp8, size_t ldw,
                           const float *const *x, int n, float *sums);
#else
#  define ns_cpu_gemv_avx512() FALSE
#  define ns_cpu_gemv_avx512_allow(allow) ((void) (allow))
#endif

G_END_DECLS
