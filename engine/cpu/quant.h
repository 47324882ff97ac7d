/* quant.h — weight-only quantization shared by both backends, the convert
 * command and the memory planner: per output row absmax scaling to int8
 * (scale = amax/127, round half to even, clamp ±127) or fp8 e4m3
 * (scale = amax/448, round to nearest even, saturate to ±448), exactly what
 * kernels/quantize.cu computes on the GPU. */
#pragma once

#include "backend.h"

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

G_END_DECLS
