/* gemv-q4.c — the products of q4 matrices on the CPU (decode and prefill:
 * linear.c runs both through its GEMV loop, 8 x rows at a time).
 *
 * Why integers: widened to f32 (code × scale, then two FMAs per weight for
 * CFG's two rows), a q4 layer-step was FMA-bound at 1.16× the int8 one on a
 * Zen 4 (docs/benchmarks.md), though it reads half the bytes. So x is
 * rounded to 8 bits per group (q4-layout.h, "activations") and each group's
 * Σ code·a is an exact integer sum, from vpdpbusd (64 products an
 * instruction, AVX512-VNNI) or vpmaddubsw + vpmaddwd (AVX2); the f32 work is
 * one scale and one FMA per 8 weights: a layer-step went from 1.11× to
 * 0.59× int8's (docs/benchmarks.md, "4-bit weights"). The plain C path is
 * the reference the others must match (tests/quant/test-quant.c runs all
 * three).
 *
 * The vector paths read a block's 32 code bytes (q4-layout.h) shuffled by
 * SHUFFLE within each 16 bytes, so that every 4-byte lane holds codes of one
 * group; their nibbles as u8 (code + 8: each nibble XOR 8) multiply x codes
 * stored in the same order (NsQ4Rows.lanes), and each lane starts from −8 ×
 * the sum of its x codes to undo the +8. */
#include "gemv-q4.h"
#include "q4-layout.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#  define Q4_X86 1
#  include <immintrin.h>
#else
#  define Q4_X86 0
#endif

_Static_assert (NS_Q4_GROUP == 32, "the vector paths' lanes assume two groups a block");

#define UNIT 128              /* x elements per unit: two blocks (64 code bytes, one zmm) */
#define UNIT_LANES 16         /* 4-byte lanes of a unit: 8 elements each (low and high nibbles) */
#define ROWS_W 4              /* weight rows per pass: each x load serves 4 */
#define PREFETCH 16384        /* code bytes ahead of each row's stream, into L2 (as the
                                 other formats' 32 Ki weights, gemv-avx512.c) */

struct NsQ4Rows {
  int rows, cols, units;
  NsQ4Path path;          /* chosen when x is rounded, before the threads start */
  int8_t *codes;          /* [rows, cols], element order */
  float *step;            /* [rows, cols / NS_Q4_GROUP] */
  int8_t *lanes;          /* [rows, units · UNIT]: a unit's low-nibble partners, then its high */
  float *lane_step;       /* [rows, units · UNIT_LANES]: the step of each lane's group */
  int32_t *lane_bias;     /* [rows, units · UNIT_LANES]: −8 · Σ the lane's codes */
};

static const int8_t SHUFFLE[16] = { 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15 };

/* The element of a block in the low nibble of shuffled byte p (< 32); the
 * high nibble holds element + 8. Byte b of word t holds elements 16b + t and
 * 16b + 8 + t (q4-layout.h), and shuffled byte p is byte SHUFFLE[p % 16] of
 * the 16 at 16 · (p / 16). */
static int
lane_element (int p)
{
  int c = SHUFFLE[p % 16], t = 4 * (p / 16) + c / 4;
  return 16 * (c % 4) + t;
}

static NsQ4Path limit = NS_Q4_PATH_VNNI;

/* ---- rounding x --------------------------------------------------------- */

static void
round_group (const float *x, int8_t *codes, float *step)
{
  float m = ns_q4_x_amax (x), inv = ns_q4_x_inverse (m);
  for (int j = 0; j < NS_Q4_GROUP; j++)
    codes[j] = (int8_t) ns_q4_x_code (x[j], inv);
  *step = ns_q4_x_step (m);
}

/* Row r's codes in the vector paths' order, with its lanes' steps and
 * biases; a row ending in half a unit leaves the other half zero. */
static void
arrange_row (NsQ4Rows *q, int r)
{
  const int8_t *codes = q->codes + (size_t) r * q->cols;
  const float *step = q->step + (size_t) r * ns_q4_row_groups (q->cols);
  int8_t *lanes = q->lanes + (size_t) r * q->units * UNIT;
  float *lane_step = q->lane_step + (size_t) r * q->units * UNIT_LANES;
  int32_t *lane_bias = q->lane_bias + (size_t) r * q->units * UNIT_LANES;
  for (int b = 0; b < q->cols / NS_Q4_BLOCK; b++)
    {
      int u = b / 2, h = b % 2;
      int8_t *lo = lanes + (size_t) u * UNIT + 32 * h, *hi = lo + UNIT / 2;
      for (int p = 0; p < 32; p++)
        {
          lo[p] = codes[NS_Q4_BLOCK * b + lane_element (p)];
          hi[p] = codes[NS_Q4_BLOCK * b + lane_element (p) + 8];
        }
      for (int l = 0; l < 8; l++)
        {
          size_t lane = (size_t) u * UNIT_LANES + 8 * h + l;
          int sum = 0;
          for (int j = 4 * l; j < 4 * l + 4; j++)
            sum += lo[j] + hi[j];
          lane_step[lane] = step[(NS_Q4_BLOCK * b + lane_element (4 * l)) / NS_Q4_GROUP];
          lane_bias[lane] = -8 * sum;
        }
    }
}

NsQ4Rows *
ns_cpu_q4_rows_new (const float *x, int rows, int cols)
{
  g_return_val_if_fail (ns_q4_cols_ok (cols) && rows > 0, NULL);
  NsQ4Rows *q = g_new0 (NsQ4Rows, 1);
  q->rows = rows;
  q->cols = cols;
  q->units = (cols + UNIT - 1) / UNIT;
  q->path = MIN (ns_cpu_q4_best_path (), limit);
  size_t groups = ns_q4_row_groups (cols), lanes = (size_t) q->units * UNIT_LANES;
  q->codes = g_new (int8_t, (size_t) rows * cols);
  q->step = g_new (float, rows * groups);
  q->lanes = g_new0 (int8_t, (size_t) rows * q->units * UNIT);
  q->lane_step = g_new0 (float, rows * lanes);
  q->lane_bias = g_new0 (int32_t, rows * lanes);
  for (int r = 0; r < rows; r++)
    {
      for (size_t g = 0; g < groups; g++)
        round_group (x + (size_t) r * cols + g * NS_Q4_GROUP,
                     q->codes + (size_t) r * cols + g * NS_Q4_GROUP, q->step + r * groups + g);
      arrange_row (q, r);
    }
  return q;
}

void
ns_cpu_q4_rows_free (NsQ4Rows *q)
{
  if (q == NULL)
    return;
  g_free (q->codes);
  g_free (q->step);
  g_free (q->lanes);
  g_free (q->lane_step);
  g_free (q->lane_bias);
  g_free (q);
}

/* ---- the reference ------------------------------------------------------ */

/* Σ_g scale_g · step_g · Σ_{i in g} code_i · a_i for weight row w. */
static float
plain_dot (const NsQ4Rows *q, int r, const uint8_t *w, const uint16_t *sc)
{
  const int8_t *a = q->codes + (size_t) r * q->cols;
  const float *step = q->step + (size_t) r * ns_q4_row_groups (q->cols);
  float sum = 0.0f;
  for (size_t g = 0; g < ns_q4_row_groups (q->cols); g++)
    {
      int dot = 0;
      for (size_t i = g * NS_Q4_GROUP; i < (g + 1) * NS_Q4_GROUP; i++)
        dot += ns_q4_code (w, i) * a[i];
      sum += (float) dot * (ns_f16_to_f32 (sc[g]) * step[g]);
    }
  return sum;
}

static void
plain_dots (const NsQ4Rows *q, int nw, const uint8_t *w, const uint16_t *sc, float *sums)
{
  for (int k = 0; k < nw; k++)
    for (int r = 0; r < q->rows; r++)
      sums[k * q->rows + r] = plain_dot (q, r, w + k * ns_q4_row_bytes (q->cols),
                                         sc + k * ns_q4_row_groups (q->cols));
}

#if Q4_X86

/* PASS (nw, nr, q, r0, w, sc, from, to, sums, ld) over every weight row and
 * x row, in passes of constant shape so that the accumulators stay in
 * registers: x rows in pairs, weight rows ROWS_W at a time, leftovers singly. */
#define EACH_PASS(PASS, q, nw, w, sc, from, to, sums)                                   \
  for (int r0_ = 0; r0_ < (q)->rows; r0_ += 2)                                          \
    for (int k_ = 0; k_ < (nw);)                                                         \
      {                                                                                  \
        int kw_ = (nw) - k_ >= ROWS_W ? ROWS_W : 1;                                      \
        const uint8_t *wk_ = (w) + k_ * ns_q4_row_bytes ((q)->cols);                     \
        const uint16_t *sk_ = (sc) + k_ * ns_q4_row_groups ((q)->cols);                  \
        float *s_ = (sums) + k_ * (q)->rows + r0_;                                       \
        if (kw_ == ROWS_W && (q)->rows - r0_ >= 2)                                       \
          PASS (ROWS_W, 2, q, r0_, wk_, sk_, from, to, s_, (q)->rows);                   \
        else if (kw_ == ROWS_W)                                                          \
          PASS (ROWS_W, 1, q, r0_, wk_, sk_, from, to, s_, (q)->rows);                   \
        else if ((q)->rows - r0_ >= 2)                                                   \
          PASS (1, 2, q, r0_, wk_, sk_, from, to, s_, (q)->rows);                        \
        else                                                                             \
          PASS (1, 1, q, r0_, wk_, sk_, from, to, s_, (q)->rows);                        \
        k_ += kw_;                                                                       \
      }

/* ---- AVX2: one block (32 code bytes, 8 lanes) at a time ------------------ */

#define V3 __attribute__ ((target ("arch=x86-64-v3")))
#define V3_INLINE static inline __attribute__ ((always_inline, target ("arch=x86-64-v3")))

/* acc[k·nr + r] += block b of weight row k · x row r, for rows r0 … r0 + nr. */
V3_INLINE void
avx2_block (int nw, int nr, const NsQ4Rows *q, int r0, const uint8_t *w, const uint16_t *sc,
            int b, __m256 *acc)
{
  const size_t stride = ns_q4_row_bytes (q->cols), lds = ns_q4_row_groups (q->cols);
  const __m256i shuffle = _mm256_broadcastsi128_si256 (_mm_loadu_si128 ((const __m128i *) SHUFFLE));
  const __m256i groups = _mm256_setr_epi32 (0, 0, 1, 1, 0, 0, 1, 1);
  const size_t lane0 = (size_t) (b / 2) * UNIT_LANES + 8 * (b % 2);
  const size_t byte0 = (size_t) (b / 2) * UNIT + 32 * (b % 2);
  for (int k = 0; k < nw; k++)
    {
      const uint8_t *p = w + k * stride + 32 * (size_t) b;
      _mm_prefetch ((const char *) p + PREFETCH, _MM_HINT_T1);
      __m256i v = _mm256_xor_si256 (_mm256_shuffle_epi8 (_mm256_loadu_si256 ((const __m256i *) p),
                                                         shuffle),
                                    _mm256_set1_epi8 ((char) 0x88));
      __m256i lo = _mm256_and_si256 (v, _mm256_set1_epi8 (15));
      __m256i hi = _mm256_and_si256 (_mm256_srli_epi16 (v, 4), _mm256_set1_epi8 (15));
      uint32_t two;
      memcpy (&two, sc + k * lds + 2 * (size_t) b, sizeof two);
      __m256 scale = _mm256_permutevar8x32_ps (
        _mm256_castps128_ps256 (_mm_cvtph_ps (_mm_cvtsi32_si128 ((int) two))), groups);
      for (int r = 0; r < nr; r++)
        {
          const int8_t *x = q->lanes + (size_t) (r0 + r) * q->units * UNIT + byte0;
          size_t lane = (size_t) (r0 + r) * q->units * UNIT_LANES + lane0;
          __m256i pairs = _mm256_add_epi16 (
            _mm256_maddubs_epi16 (lo, _mm256_loadu_si256 ((const __m256i *) x)),
            _mm256_maddubs_epi16 (hi, _mm256_loadu_si256 ((const __m256i *) (x + UNIT / 2))));
          __m256i dots = _mm256_add_epi32 (_mm256_madd_epi16 (pairs, _mm256_set1_epi16 (1)),
                                           _mm256_loadu_si256 ((const __m256i *) (q->lane_bias + lane)));
          __m256 step = _mm256_mul_ps (scale, _mm256_loadu_ps (q->lane_step + lane));
          acc[k * nr + r] = _mm256_fmadd_ps (_mm256_cvtepi32_ps (dots), step, acc[k * nr + r]);
        }
    }
}

V3_INLINE float
sum8 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  return _mm_cvtss_f32 (_mm_add_ss (s, _mm_movehdup_ps (s)));
}

/* sums[k·ld + r] += blocks b0 … b1 of nw weight rows · x rows r0 … r0 + nr. */
V3_INLINE void
avx2_pass (int nw, int nr, const NsQ4Rows *q, int r0, const uint8_t *w, const uint16_t *sc,
           int b0, int b1, float *sums, int ld)
{
  __m256 acc[ROWS_W * 2];
  for (int a = 0; a < nw * nr; a++)
    acc[a] = _mm256_setzero_ps ();
  for (int b = b0; b < b1; b++)
    avx2_block (nw, nr, q, r0, w, sc, b, acc);
  for (int k = 0; k < nw; k++)
    for (int r = 0; r < nr; r++)
      sums[k * ld + r] += sum8 (acc[k * nr + r]);
}

/* sums += every weight row · every x row over blocks b0 … b1. */
static V3 void
avx2_dots (const NsQ4Rows *q, int nw, const uint8_t *w, const uint16_t *sc, int b0, int b1,
           float *sums)
{
  EACH_PASS (avx2_pass, q, nw, w, sc, b0, b1, sums);
}

/* ---- AVX512-VNNI (with GFNI: Ice Lake, Zen 4 and later): one unit (two
 * blocks, 16 lanes) at a time ------------------------------------------------ */

#define V4N __attribute__ ((target ("arch=x86-64-v4,avx512vnni,gfni")))
#define V4N_INLINE static inline __attribute__ ((always_inline, target ("arch=x86-64-v4,avx512vnni,gfni")))

V4N_INLINE void
vnni_unit (int nw, int nr, const NsQ4Rows *q, int r0, const uint8_t *w, const uint16_t *sc,
           int u, __m512 *acc)
{
  const size_t stride = ns_q4_row_bytes (q->cols), lds = ns_q4_row_groups (q->cols);
  const __m512i shuffle = _mm512_broadcast_i32x4 (_mm_loadu_si128 ((const __m128i *) SHUFFLE));
  const __m512i groups = _mm512_setr_epi32 (0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3);
  /* GF(2) affine maps of each byte, one instruction each: result bit i is
   * the parity of the byte AND byte 7 − i of the matrix, XOR bit i of 8, so
   * these give (byte & 15) ^ 8 and (byte >> 4) ^ 8, the codes + 8. */
  const __m512i low_nibble = _mm512_set1_epi64 (0x0102040800000000);
  const __m512i high_nibble = _mm512_set1_epi64 (0x1020408000000000);
  for (int k = 0; k < nw; k++)
    {
      const uint8_t *p = w + k * stride + 64 * (size_t) u;
      _mm_prefetch ((const char *) p + PREFETCH, _MM_HINT_T1);
      if (u % 8 == 0)     /* a line of scales serves 8 units */
        _mm_prefetch ((const char *) (sc + k * lds + 4 * (size_t) u) + PREFETCH / 8, _MM_HINT_T1);
      __m512i v = _mm512_shuffle_epi8 (_mm512_loadu_si512 (p), shuffle);
      __m512i lo = _mm512_gf2p8affine_epi64_epi8 (v, low_nibble, 8);
      __m512i hi = _mm512_gf2p8affine_epi64_epi8 (v, high_nibble, 8);
      __m128i four = _mm_loadl_epi64 ((const __m128i *) (sc + k * lds + 4 * (size_t) u));
      __m512 scale = _mm512_permutexvar_ps (groups, _mm512_castps128_ps512 (_mm_cvtph_ps (four)));
      for (int r = 0; r < nr; r++)
        {
          const int8_t *x = q->lanes + ((size_t) (r0 + r) * q->units + u) * UNIT;
          size_t lane = ((size_t) (r0 + r) * q->units + u) * UNIT_LANES;
          __m512i dots = _mm512_loadu_si512 (q->lane_bias + lane);
          dots = _mm512_dpbusd_epi32 (dots, lo, _mm512_loadu_si512 (x));
          dots = _mm512_dpbusd_epi32 (dots, hi, _mm512_loadu_si512 (x + UNIT / 2));
          __m512 step = _mm512_mul_ps (scale, _mm512_loadu_ps (q->lane_step + lane));
          acc[k * nr + r] = _mm512_fmadd_ps (_mm512_cvtepi32_ps (dots), step, acc[k * nr + r]);
        }
    }
}

/* sums[k·ld + r] = units u0 … u1 of nw weight rows · x rows r0 … r0 + nr. */
V4N_INLINE void
vnni_pass (int nw, int nr, const NsQ4Rows *q, int r0, const uint8_t *w, const uint16_t *sc,
           int u0, int u1, float *sums, int ld)
{
  __m512 acc[ROWS_W * 2];
  for (int a = 0; a < nw * nr; a++)
    acc[a] = _mm512_setzero_ps ();
  for (int u = u0; u < u1; u++)
    vnni_unit (nw, nr, q, r0, w, sc, u, acc);
  for (int k = 0; k < nw; k++)
    for (int r = 0; r < nr; r++)
      sums[k * ld + r] = _mm512_reduce_add_ps (acc[k * nr + r]);
}

/* sums = every weight row · every x row: whole units here, a row's last
 * half unit (cols an odd number of blocks) through avx2_dots. */
static V4N void
vnni_dots (const NsQ4Rows *q, int nw, const uint8_t *w, const uint16_t *sc, float *sums)
{
  EACH_PASS (vnni_pass, q, nw, w, sc, 0, q->cols / UNIT, sums);
  int blocks = q->cols / NS_Q4_BLOCK;
  if (blocks % 2)
    avx2_dots (q, nw, w, sc, blocks - 1, blocks, sums);
}

#endif /* Q4_X86 */

/* ---- dispatch ------------------------------------------------------------ */

NsQ4Path
ns_cpu_q4_best_path (void)
{
#if Q4_X86
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("x86-64-v4") && __builtin_cpu_supports ("avx512vnni")
      && __builtin_cpu_supports ("gfni"))
    return NS_Q4_PATH_VNNI;
  if (__builtin_cpu_supports ("x86-64-v3"))
    return NS_Q4_PATH_AVX2;
#endif
  return NS_Q4_PATH_PLAIN;
}

void
ns_cpu_q4_limit_path (NsQ4Path path)
{
  limit = path;
}

/* Rows r0 … r0 + nr of q, as a set of their own (no copy). */
static NsQ4Rows
rows_view (const NsQ4Rows *q, int r0, int nr)
{
  NsQ4Rows v = *q;
  size_t lanes = (size_t) r0 * q->units * UNIT_LANES;
  v.rows = nr;
  v.codes += (size_t) r0 * q->cols;
  v.step += (size_t) r0 * ns_q4_row_groups (q->cols);
  v.lanes += (size_t) r0 * q->units * UNIT;
  v.lane_step += lanes;
  v.lane_bias += lanes;
  return v;
}

void
ns_cpu_q4_dots (const NsQ4Rows *all, int r0, int nr, int nw, const uint8_t *w,
                const uint16_t *sc, float *sums)
{
  NsQ4Rows view = rows_view (all, r0, nr);
  const NsQ4Rows *q = &view;
  switch (q->path)
    {
#if Q4_X86
    case NS_Q4_PATH_VNNI:
      vnni_dots (q, nw, w, sc, sums);
      return;
    case NS_Q4_PATH_AVX2:
      memset (sums, 0, sizeof (float) * nw * q->rows);
      avx2_dots (q, nw, w, sc, 0, q->cols / NS_Q4_BLOCK, sums);
      return;
#endif
    default:
      plain_dots (q, nw, w, sc, sums);
      return;
    }
}
