/* convert.c — weights (F32, BF16, F16 straight from the file mapping, or
 * I8/F8_E4M3 with per-row scales) to f32. */
#include "cpu-backend.h"

/* bf16 is the top half of an f32: a shift, which the compiler vectorises. */
NS_CPU_HOT static void
convert_bf16 (float *restrict dst, const uint16_t *restrict src, size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      uint32_t bits = (uint32_t) src[i] << 16;
      memcpy (&dst[i], &bits, sizeof bits);
    }
}

/* Rare in model files, so the scalar conversion from files/tensor.h. */
static void
convert_f16 (float *restrict dst, const uint16_t *restrict src, size_t n)
{
  for (size_t i = 0; i < n; i++)
    dst[i] = ns_f16_to_f32 (src[i]);
}

/* fp8 e4m3 has 256 codes: a table beats decoding the bits each time. */
static const float *
f8_table (void)
{
  static float table[256];
  static gsize ready = 0;
  if (g_once_init_enter (&ready))
    {
      for (int c = 0; c < 256; c++)
        table[c] = ns_f8e4m3_to_f32 ((uint8_t) c);
      g_once_init_leave (&ready, 1);
    }
  return table;
}

NS_CPU_HOT static void
widen_i8 (float *restrict dst, const int8_t *restrict q, size_t n)
{
  for (size_t i = 0; i < n; i++)
    dst[i] = q[i];
}

/* I8/F8_E4M3 weights: the codes as f32 without the row scales. */
static void
convert_codes (float *dst, const NsMat *m, size_t offset, size_t n)
{
  const uint8_t *q = (const uint8_t *) m->data + offset;
  if (m->dtype == NS_DTYPE_I8)
    {
      widen_i8 (dst, (const int8_t *) q, n);
      return;
    }
  const float *f8 = f8_table ();
  for (size_t i = 0; i < n; i++)
    dst[i] = f8[q[i]];
}

/* Quantized rows: the codes times their row's scale; a span may cross rows. */
static void
convert_quantized (float *dst, const NsMat *m, size_t offset, size_t n)
{
  size_t done = 0;
  while (done < n)
    {
      size_t at = offset + done;
      size_t row = at / m->cols;
      size_t len = MIN (n - done, (row + 1) * m->cols - at);
      float s = m->scale[row];
      convert_codes (dst + done, m, at, len);
      for (size_t i = 0; i < len; i++)
        dst[done + i] *= s;
      done += len;
    }
}

void
ns_cpu_convert (float *dst, const NsMat *m, size_t offset, size_t n)
{
  switch (m->dtype)
    {
    case NS_DTYPE_F32:
      memcpy (dst, (const float *) m->data + offset, n * sizeof (float));
      break;
    case NS_DTYPE_BF16:
      convert_bf16 (dst, (const uint16_t *) m->data + offset, n);
      break;
    case NS_DTYPE_F16:
      convert_f16 (dst, (const uint16_t *) m->data + offset, n);
      break;
    case NS_DTYPE_I8:
    case NS_DTYPE_F8_E4M3:
      convert_quantized (dst, m, offset, n);
      break;
    default:
      /* upload() refuses every other dtype. */
      g_return_if_reached ();
    }
}

float *
ns_cpu_mat_to_f32 (const NsMat *m)
{
  if (m == NULL)
    return NULL;
  size_t n = (size_t) m->rows * (size_t) m->cols;
  float *out = g_new (float, n);
  ns_cpu_convert (out, m, 0, n);
  return out;
}
