/* gemv-q4.h — the products of q4 matrices (gemv-q4.c): x rounded to 8
 * bits per group (q4-layout.h, "activations"), integer dot products per
 * group, scaled in f32. linear.c calls it for any number of x rows (decode
 * and prefill), 8 at a time. */
#pragma once

#include "cpu-backend.h"

G_BEGIN_DECLS

/* The code paths, fastest last; each gives the same integer sums. */
typedef enum {
  NS_Q4_PATH_PLAIN,     /* portable C: the reference */
  NS_Q4_PATH_AVX2,      /* vpmaddubsw (x86-64-v3) */
  NS_Q4_PATH_VNNI,      /* vpdpbusd (x86-64-v4 with AVX512-VNNI and GFNI) */
} NsQ4Path;

/* The best path this CPU has. */
NsQ4Path ns_cpu_q4_best_path (void);

/* Makes linear.c use at most `path` (the tests run every path one machine
 * has); not thread-safe, set it between ops. */
void ns_cpu_q4_limit_path (NsQ4Path path);

/* x rows rounded for the q4 GEMV, in the element order of the reference and
 * in the order of the vector paths. */
typedef struct NsQ4Rows NsQ4Rows;

NsQ4Rows *ns_cpu_q4_rows_new (const float *x, int rows, int cols);
void ns_cpu_q4_rows_free (NsQ4Rows *q);

/* sums[k·nr + r] = W_k · x̂_{r0 + r} for nw ≤ 8 q4 rows (codes w, scales
 * sc, each row `cols` long) and rows r0 … r0 + nr of q. */
void ns_cpu_q4_dots (const NsQ4Rows *q, int r0, int nr, int nw, const uint8_t *w,
                     const uint16_t *sc, float *sums);

G_END_DECLS
