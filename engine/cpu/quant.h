/* quant.h — weight-only quantization shared by both backends, the convert
 * command and the memory planner: per output row absmax scaling to int8
 * (scale = amax/127, round half to even, clamp ±127) or fp8 e4m3
 * (scale = amax/448, round to nearest even, saturate to ±448), and q4
 * (q4-layout.h) per group of NS_Q4_GROUP elements: m = the element of
 * largest magnitude (the positive one of a tie), scale = f16(−m/8) (round
 * to nearest even, at most 65504 in magnitude), code = clamp(rint(v /
 * scale), −8, 7) with the f16 scale (0 when it is 0) — exactly what
 * kernels/quantize.cu computes on the GPU. */
#pragma once

#include "backend.h"
#include "q4-layout.h"

G_BEGIN_DECLS

/* float → fp8 e4m3 (E4M3FN: no infinities, 0x7f/0xff NaN), round to nearest
 * even, finite values beyond ±448 saturate (CUDA's __NV_SATFINITE). */
uint8_t ns_f32_to_f8e4m3 (float v);

/* The storage dtype of a weight format: I8, F8_E4M3, or F32 (= as stored)
 * for AUTO/BF16. */
NsDType ns_weight_format_dtype (NsWeightFormat format);

/* Quantizes a [rows × cols] float matrix (F32/BF16/F16 in `dtype`) into q
 * (rows·cols bytes) and scale (rows floats). */
void ns_quantize_rows (const void *src, NsDType dtype, int rows, int cols, NsDType q_dtype,
                       void *q, float *scale);

/* Quantizes a [rows × cols] float matrix to q4: q (rows · cols / 2 bytes,
 * q4-layout.h) and scale (rows · cols / NS_Q4_GROUP f16). cols must pass
 * ns_q4_cols_ok. */
void ns_quantize_q4_rows (const void *src, NsDType dtype, int rows, int cols, uint8_t *q,
                          uint16_t *scale);

/* Element i of row `row` of a q4 matrix, in double (the tests' reference). */
double ns_q4_value (const uint8_t *q, const uint16_t *scale, int cols, size_t row, size_t i);

/* The rule of --weights q4 for a matrix `upload` quantizes: TRUE when it
 * keeps int8 instead — its rows are not whole q4 blocks (ns_q4_cols_ok), or
 * it is one of the tensors the golden runs showed to be sensitive (the
 * token embedding, the FM head's adaLN modulations, final layer and
 * conditioning input, image_out_projector; docs/model.md, "4-bit
 * weights"). */
gboolean ns_q4_keeps_int8 (const char *name, int64_t cols);

G_END_DECLS
