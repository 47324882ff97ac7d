/* convert.c — weights (F32, BF16, F16 straight from the file mapping) to f32. */
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
