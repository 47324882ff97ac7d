/* convert.c — weights (F32, BF16, F16 straight from the file mapping, or
 * I8/F8_E4M3 with per-row scales, Q4 with per-group scales) to f32. */
#include "cpu-backend.h"
#include "q4-layout.h"

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

/* Codes times their row's scale in one pass: the prefill panel (linear.c)
 * is larger than L2, and a second pass to scale it went to memory. */
NS_CPU_HOT static void
widen_i8 (float *restrict dst, const int8_t *restrict q, size_t n, float s)
{
  for (size_t i = 0; i < n; i++)
    dst[i] = q[i] * s;
}

NS_CPU_HOT static void
widen_f8 (float *restrict dst, const uint8_t *restrict q, size_t n, float s)
{
  const float *f8 = f8_table ();
  for (size_t i = 0; i < n; i++)
    dst[i] = f8[q[i]] * s;
}

/* Quantized rows (I8/F8_E4M3): the codes times their row's scale; a span
 * may cross rows. */
static void
convert_quantized (float *dst, const NsMat *m, size_t offset, size_t n)
{
  size_t done = 0;
  while (done < n)
    {
      size_t at = offset + done;
      size_t row = at / m->cols;
      size_t len = MIN (n - done, (row + 1) * m->cols - at);
      const uint8_t *q = (const uint8_t *) m->data + at;
      if (m->dtype == NS_DTYPE_I8)
        widen_i8 (dst + done, (const int8_t *) q, len, m->scale[row]);
      else
        widen_f8 (dst + done, q, len, m->scale[row]);
      done += len;
    }
}

/* One whole q4 block (64 elements from `codes`, 32 bytes) times its group
 * scales: nibble k of every word is the vector of elements 8k … 8k + 7,
 * which the compiler vectorises. The products are exact (a 4-bit code times
 * an f16 scale). */
NS_CPU_HOT static void
widen_q4_blocks (float *restrict dst, const uint8_t *restrict codes,
                 const uint16_t *restrict scales, size_t blocks)
{
  for (size_t bl = 0; bl < blocks; bl++)
    {
      uint32_t words[8];
      memcpy (words, codes + bl * (NS_Q4_BLOCK / 2), sizeof words);
      float s[NS_Q4_BLOCK / NS_Q4_GROUP > 0 ? NS_Q4_BLOCK / NS_Q4_GROUP : 1];
      for (int g = 0; g < NS_Q4_BLOCK / NS_Q4_GROUP; g++)
        s[g] = ns_f16_to_f32 (scales[(bl * NS_Q4_BLOCK) / NS_Q4_GROUP + g]);
      for (int k = 0; k < 8; k++)
        for (int t = 0; t < 8; t++)
          {
            int32_t c = (int32_t) (words[t] << (28 - 4 * k)) >> 28;
            dst[bl * NS_Q4_BLOCK + 8 * k + t] = (float) c * s[(8 * k + t) / NS_Q4_GROUP];
          }
    }
}

/* Q4 rows: whole blocks vectorised, any other start or end element by
 * element; a span may cross rows. Groups larger than a block take the
 * element path. */
static void
convert_q4 (float *dst, const NsMat *m, size_t offset, size_t n)
{
  size_t cols = (size_t) m->cols, bytes = ns_q4_row_bytes (cols);
  size_t groups = ns_q4_row_groups (cols);
  const uint8_t *q = m->data;
  size_t done = 0;
  while (done < n)
    {
      size_t at = offset + done, row = at / cols, i = at % cols;
      const uint8_t *codes = q + row * bytes;
      const uint16_t *scales = m->group_scale + row * groups;
      size_t len = MIN (n - done, cols - i);
      if (i % NS_Q4_BLOCK == 0 && len >= NS_Q4_BLOCK && NS_Q4_GROUP <= NS_Q4_BLOCK)
        {
          size_t blocks = len / NS_Q4_BLOCK;
          widen_q4_blocks (dst + done, codes + ns_q4_byte (i), scales + i / NS_Q4_GROUP, blocks);
          done += blocks * NS_Q4_BLOCK;
          continue;
        }
      size_t end = len >= NS_Q4_BLOCK ? i + NS_Q4_BLOCK - i % NS_Q4_BLOCK : i + len;
      for (size_t j = i; j < end; j++)
        dst[done++] = (float) ns_q4_code (codes, j) * ns_f16_to_f32 (scales[j / NS_Q4_GROUP]);
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
    case NS_DTYPE_Q4:
      convert_q4 (dst, m, offset, n);
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
