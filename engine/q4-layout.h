/* q4-layout.h — the 4-bit weight format (NS_DTYPE_Q4, `--weights q4`): where
 * each code and scale of a row lives. Plain C, marked __host__ __device__
 * under nvcc, shared by the quantizer (engine/cpu/quant.c,
 * kernels/quantize.cu), the CPU GEMV and conversion, the CUDA GEMV
 * (kernels/linear-q4.cu) and tests/ops/test-grid-index.c.
 *
 * Values: symmetric group-wise, W[o, i] = code · scale[o, i / NS_Q4_GROUP],
 * code a two's-complement int4 in [−8, 7], scale an f16 per group of 32
 * consecutive elements of a row (4.5 bits per weight). The quantizer makes
 * the element of largest magnitude code −8 exactly (scale = −m/8 for that
 * element m, as llama.cpp's Q4_0), so all 16 codes are used.
 *
 * Codes: each row is a sequence of blocks of NS_Q4_BLOCK = 64 elements, 32
 * bytes read as eight little-endian u32 words; nibble k (bits 4k … 4k+3) of
 * word t holds element 8k + t of the block. One 32-byte load widened a
 * nibble at a time gives eight vectors of 8 CONSECUTIVE elements (so x
 * needs no reordering and a vector never straddles two groups); a 16-byte
 * load (words 4h … 4h+3, the CUDA kernel's) holds the elements 8k + 4h + t,
 * t < 4: for each nibble one float4 of x. A row of q4 needs cols to be a
 * multiple of NS_Q4_BLOCK (and of the group); other matrices stay int8. */
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#  define NS_Q4_HD static inline __host__ __device__
#else
#  define NS_Q4_HD static inline
#endif

#ifndef NS_Q4_GROUP
#  define NS_Q4_GROUP 32      /* elements per f16 scale (docs/model.md, "4-bit weights") */
#endif
#define NS_Q4_BLOCK 64        /* elements per packing block: 32 bytes */
#define NS_Q4_VEC 32          /* elements per 16-byte load (half a block) */

/* TRUE when a row of `cols` elements can be stored as q4. */
NS_Q4_HD int
ns_q4_cols_ok (long long cols)
{
  return cols > 0 && cols % NS_Q4_BLOCK == 0 && cols % NS_Q4_GROUP == 0;
}

/* Bytes of the codes of one row, and scales per row. */
NS_Q4_HD size_t
ns_q4_row_bytes (size_t cols)
{
  return cols / 2;
}

NS_Q4_HD size_t
ns_q4_row_groups (size_t cols)
{
  return cols / NS_Q4_GROUP;
}

/* Byte of the row holding element i, and the shift of its nibble there. */
NS_Q4_HD size_t
ns_q4_byte (size_t i)
{
  size_t r = i % NS_Q4_BLOCK, t = r % 8, k = r / 8;
  return i / NS_Q4_BLOCK * (NS_Q4_BLOCK / 2) + 4 * t + k / 2;
}

NS_Q4_HD int
ns_q4_shift (size_t i)
{
  return (int) (4 * (i % NS_Q4_BLOCK / 8 % 2));
}

/* Code of element i of a row (−8 … 7). */
NS_Q4_HD int
ns_q4_code (const uint8_t *row, size_t i)
{
  int c = (row[ns_q4_byte (i)] >> ns_q4_shift (i)) & 15;
  return c >= 8 ? c - 16 : c;
}

/* Stores code c (−8 … 7) as element i of a row whose byte is zeroed or
 * holds the other nibble. */
NS_Q4_HD void
ns_q4_put (uint8_t *row, size_t i, int c)
{
  size_t b = ns_q4_byte (i);
  int s = ns_q4_shift (i);
  row[b] = (uint8_t) ((row[b] & ~(15 << s)) | ((c & 15) << s));
}

/* The element that nibble k of word t (t < 4) of 16-byte load `vec` of a
 * row holds: load vec covers words 4·(vec % 2) … +3 of block vec / 2. */
NS_Q4_HD size_t
ns_q4_vec_element (size_t vec, int t, int k)
{
  return vec / 2 * NS_Q4_BLOCK + 8 * (size_t) k + 4 * (vec % 2) + (size_t) t;
}

/* ---- activations --------------------------------------------------------
 * The x that a q4 matrix multiplies is rounded to 8 bits per group of
 * NS_Q4_GROUP elements (the weights' groups), symmetric: with m the group's
 * largest magnitude, code a = rint(x · 127/m) in [−127, 127] and value
 * a · m/127 (llama.cpp's Q8_0 beside Q4_0). The CPU then multiplies codes
 * as integers (engine/cpu/gemv-q4.c: the f32 FMAs were the bound, not the
 * memory), CUDA the values in f32; both give Σ_g s_g · (m_g/127) · Σ c·a.
 * Its error (≈ 0.3 % of an element's group maximum, RMS) is small beside
 * the weights' 4-bit one (docs/model.md, "4-bit weights"). A NaN or an
 * infinity in a group makes its scale NaN or infinite, so it reaches the
 * output instead of vanishing. */
#define NS_Q4_X_CODES 127

/* The largest magnitude of the group at x; NaN when any element is. */
NS_Q4_HD float
ns_q4_x_amax (const float *x)
{
  float m = 0.0f;
  for (int j = 0; j < NS_Q4_GROUP; j++)
    {
      float a = fabsf (x[j]);
      m = a > m || a != a ? a : m;
    }
  return m;
}

/* The step of a group whose largest magnitude is m, and its reciprocal
 * multiplier (0 for an all-zero or non-finite group). */
NS_Q4_HD float
ns_q4_x_step (float m)
{
  return m / (float) NS_Q4_X_CODES;
}

NS_Q4_HD float
ns_q4_x_inverse (float m)
{
  return m > 0.0f && m <= 3.4028235e38f ? (float) NS_Q4_X_CODES / m : 0.0f;
}

/* The code of element v of a group with multiplier inv. */
NS_Q4_HD int
ns_q4_x_code (float v, float inv)
{
  return (int) fminf (fmaxf (rintf (v * inv), (float) -NS_Q4_X_CODES), (float) NS_Q4_X_CODES);
}
