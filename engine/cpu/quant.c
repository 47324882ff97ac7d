/* quant.c — the C reference of kernels/quantize.cu (see quant.h). */
#include <math.h>
#include <string.h>

#include "cpu/quant.h"
#include "cpu-backend.h"

#define F8_MAX 448.0f
#define I8_MAX 127.0f

uint8_t
ns_f32_to_f8e4m3 (float v)
{
  uint8_t sign = signbit (v) ? 0x80 : 0x00;
  float a = fabsf (v);
  if (isnan (v))
    return sign | 0x7f;
  if (a >= F8_MAX)
    return sign | 0x7e;
  /* Below the smallest normal 2^-6 the step is 2^-9: a·2^9 is exact, so
   * rintf rounds the code itself half to even; code 8 is the smallest normal. */
  if (a < 0x1p-6f)
    return sign | (uint8_t) rintf (a * 0x1p9f);
  int e;
  float m = frexpf (a, &e);          /* a = m · 2^e, m in [0.5, 1) */
  /* 3 mantissa bits after the leading one; (2m - 1)·8 is exact in float, and
   * a carry into the exponent (q = 8) lands on the next code by itself. */
  int q = (int) rintf ((2.0f * m - 1.0f) * 8.0f);
  int code = ((e - 1 + 7) << 3) + q;
  return sign | (uint8_t) MIN (code, 0x7e);
}

NsDType
ns_weight_format_dtype (NsWeightFormat format)
{
  switch (format)
    {
    case NS_WEIGHTS_INT8: return NS_DTYPE_I8;
    case NS_WEIGHTS_FP8: return NS_DTYPE_F8_E4M3;
    case NS_WEIGHTS_Q4: return NS_DTYPE_Q4;
    default: return NS_DTYPE_F32;
    }
}

/* The largest |v| of a row, NaN skipped (as fmaxf does). The magnitudes
 * are compared as bits: for everything up to +inf their integer order is
 * the float order, so the loop is an integer max that vectorises (fmaxf
 * calls did not: `convert` spent most of its time in them). */
NS_CPU_HOT static float
row_amax (const float *restrict v, int n)
{
  uint32_t m = 0;
  for (int i = 0; i < n; i++)
    {
      uint32_t bits;
      memcpy (&bits, &v[i], sizeof bits);
      bits &= 0x7fffffffu;
      bits = bits > 0x7f800000u ? 0 : bits;
      m = bits > m ? bits : m;
    }
  float a;
  memcpy (&a, &m, sizeof a);
  return a;
}

/* code = clamp(rint(v / s), lo, hi), NaN → hi (what fminf/fmaxf made of
 * it); a loop the compiler vectorises, for int8 rows and q4 groups. */
NS_CPU_HOT static void
round_codes (const float *restrict v, int n, float s, float lo, float hi, int8_t *restrict q)
{
  for (int i = 0; i < n; i++)
    {
      float r = rintf (v[i] / s);
      r = r != r ? hi : r;
      r = r < lo ? lo : r;
      r = r > hi ? hi : r;
      q[i] = (int8_t) r;
    }
}

/* One row, its values already widened to f32 in v. */
static void
quantize_row (const float *v, int cols, NsDType q_dtype, uint8_t *q, float *scale)
{
  float amax = row_amax (v, cols);
  float s = amax > 0.0f ? amax / (q_dtype == NS_DTYPE_I8 ? I8_MAX : F8_MAX) : 1.0f;
  *scale = s;
  if (q_dtype == NS_DTYPE_I8)
    round_codes (v, cols, s, -I8_MAX, I8_MAX, (int8_t *) q);
  else
    for (int i = 0; i < cols; i++)
      q[i] = ns_f32_to_f8e4m3 (v[i] / s);
}

void
ns_quantize_rows (const void *src, NsDType dtype, int rows, int cols, NsDType q_dtype, void *q,
                  float *scale)
{
  g_return_if_fail (q_dtype == NS_DTYPE_I8 || q_dtype == NS_DTYPE_F8_E4M3);
  g_return_if_fail (dtype == NS_DTYPE_F32 || dtype == NS_DTYPE_BF16 || dtype == NS_DTYPE_F16);
  NsMat m = { .dtype = dtype, .rows = rows, .cols = cols, .data = src };
#pragma omp parallel if ((size_t) rows * cols > (1 << 16))
  {
    float *v = g_new (float, cols);
#pragma omp for schedule (static)
    for (int r = 0; r < rows; r++)
      {
        ns_cpu_convert (v, &m, (size_t) r * cols, cols);
        quantize_row (v, cols, q_dtype, (uint8_t *) q + (size_t) r * cols, scale + r);
      }
    g_free (v);
  }
}

/* ---- q4 --------------------------------------------------------------- */

#define F16_MAX 65504.0f

/* One group: the scale's f16 bits, and the codes of v[0 … NS_Q4_GROUP − 1]
 * into row (of the packed layout) at elements i0 … i0 + NS_Q4_GROUP − 1. */
static uint16_t
quantize_group (const float *v, size_t i0, uint8_t *row)
{
  float m = 0.0f;
  for (int j = 0; j < NS_Q4_GROUP; j++)
    if (fabsf (v[j]) > fabsf (m) || (fabsf (v[j]) == fabsf (m) && v[j] > m))
      m = v[j];
  float d = fmaxf (-F16_MAX, fminf (F16_MAX, -m / 8.0f));
  uint16_t bits = ns_f32_to_f16 (d);
  float s = ns_f16_to_f32 (bits);
  int8_t c[NS_Q4_GROUP] = { 0 };
  if (s != 0.0f)
    round_codes (v, NS_Q4_GROUP, s, -8.0f, 7.0f, c);
  for (int j = 0; j < NS_Q4_GROUP; j++)
    ns_q4_put (row, i0 + j, c[j]);
  return bits;
}

void
ns_quantize_q4_rows (const void *src, NsDType dtype, int rows, int cols, uint8_t *q,
                     uint16_t *scale)
{
  g_return_if_fail (ns_q4_cols_ok (cols));
  g_return_if_fail (dtype == NS_DTYPE_F32 || dtype == NS_DTYPE_BF16 || dtype == NS_DTYPE_F16);
  size_t groups = ns_q4_row_groups (cols), bytes = ns_q4_row_bytes (cols);
  NsMat m = { .dtype = dtype, .rows = rows, .cols = cols, .data = src };
#pragma omp parallel if ((size_t) rows * cols > (1 << 16))
  {
    float *v = g_new (float, cols);
#pragma omp for schedule (static)
    for (int r = 0; r < rows; r++)
      {
        uint8_t *row = q + (size_t) r * bytes;
        memset (row, 0, bytes);
        ns_cpu_convert (v, &m, (size_t) r * cols, cols);
        for (size_t g = 0; g < groups; g++)
          scale[(size_t) r * groups + g] = quantize_group (v + g * NS_Q4_GROUP,
                                                           g * NS_Q4_GROUP, row);
      }
    g_free (v);
  }
}

double
ns_q4_value (const uint8_t *q, const uint16_t *scale, int cols, size_t row, size_t i)
{
  return (double) ns_q4_code (q + row * ns_q4_row_bytes (cols), i)
         * ns_f16_to_f32 (scale[row * ns_q4_row_groups (cols) + i / NS_Q4_GROUP]);
}

gboolean
ns_q4_keeps_int8 (const char *name, int64_t cols)
{
  static const char *const sensitive[] = {
    "embed_tokens.", "image_out_projector.", "adaLN_modulation.", "final_layer.",
    "cond_embed.",
  };
  if (!ns_q4_cols_ok (cols))
    return TRUE;
  for (guint i = 0; name != NULL && i < G_N_ELEMENTS (sensitive); i++)
    if (strstr (name, sensitive[i]) != NULL)
      return TRUE;
  return FALSE;
}

NsDType
ns_backend_upload_dtype (const NsBackend *b, const NsTensorView *t)
{
  NsDType q = ns_weight_format_dtype (b->weight_format);
  if (q == NS_DTYPE_F32 || !ns_dtype_is_weight (t->dtype) || t->n_dims != 2
      || ns_tensor_n_elements (t) < b->quant_min_elements)
    return t->dtype;
  if (q == NS_DTYPE_Q4 && ns_q4_keeps_int8 (t->name, t->shape[1]))
    return NS_DTYPE_I8;
  return q;
}
