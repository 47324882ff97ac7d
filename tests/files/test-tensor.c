/* test-tensor.c — dtype table, scalar conversions, tensor store. */
#include <math.h>
#include <string.h>

#include "nextstep.h"
#include "files/tensor.h"

static void
test_dtype_names (void)
{
  for (int d = 0; d < NS_DTYPE_COUNT; d++)
    {
      NsDType back;
      g_assert_true (ns_dtype_from_name (ns_dtype_name ((NsDType) d), &back));
      g_assert_cmpint (back, ==, d);
    }
  NsDType out;
  g_assert_false (ns_dtype_from_name ("f32", &out));
  g_assert_false (ns_dtype_from_name ("BOOL", &out));
  g_assert_false (ns_dtype_from_name (NULL, &out));
  g_assert_cmpstr (ns_dtype_name (NS_DTYPE_BF16), ==, "BF16");
  g_assert_cmpstr (ns_dtype_name (NS_DTYPE_F8_E4M3), ==, "F8_E4M3");
  g_assert_cmpuint (ns_dtype_size (NS_DTYPE_F64), ==, sizeof (double));
  g_assert_cmpuint (ns_dtype_size (NS_DTYPE_I64), ==, sizeof (int64_t));
  g_assert_cmpuint (ns_dtype_size (NS_DTYPE_F32), ==, sizeof (float));
  g_assert_cmpuint (ns_dtype_size (NS_DTYPE_BF16), ==, 2);
  g_assert_cmpuint (ns_dtype_size (NS_DTYPE_U8), ==, 1);
}

static float
from_bits (uint32_t u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

static uint32_t
to_bits (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  return u;
}

/* bf16 keeps the top 16 bits of a float; rounding must pick the nearer of
 * the two candidates and the even one on a tie. */
static void
test_bf16 (void)
{
  for (int i = 0; i < 200000; i++)
    {
      uint32_t u = g_test_rand_int ();
      float x = from_bits (u);
      if (!isfinite (x))
        continue;
      uint16_t b = ns_f32_to_bf16 (x);
      uint32_t down = u & 0xffff0000u, up = down + 0x10000u;
      /* past the largest finite bf16 the next step up is 2^128 (→ inf) */
      double fd = from_bits (down);
      double fu = isfinite (from_bits (up)) ? from_bits (up) : copysign (ldexp (1, 128), x);
      double dd = fabs (x - fd), du = fabs (x - fu);
      gboolean take_up = du < dd || (du == dd && ((down >> 16) & 1u));
      uint16_t expect = (uint16_t) ((take_up ? up : down) >> 16);
      g_assert_cmphex (b, ==, expect);
      g_assert_cmphex (to_bits (ns_bf16_to_f32 (b)), ==, (uint32_t) b << 16);
    }
  /* exact ties around 1.0: 1 + 2^-8 lies between 1 and 1 + 2^-7 */
  g_assert_cmphex (ns_f32_to_bf16 (1.0f + ldexpf (1, -8)), ==, ns_f32_to_bf16 (1.0f));
  g_assert_cmphex (ns_f32_to_bf16 (1.0f + 3 * ldexpf (1, -8)), ==,
                   ns_f32_to_bf16 (1.0f + ldexpf (1, -6)));
  g_assert_true (isnan (ns_bf16_to_f32 (ns_f32_to_bf16 (NAN))));
  g_assert_true (isinf (ns_bf16_to_f32 (ns_f32_to_bf16 (INFINITY))));
}

/* The compiler's _Float16 conversion is the reference for f16. */
static void
test_f16 (void)
{
#if defined(__FLT16_MAX__)
  for (uint32_t h = 0; h < 0x10000u; h++)
    {
      _Float16 ref;
      uint16_t hv = (uint16_t) h;
      memcpy (&ref, &hv, 2);
      float f = ns_f16_to_f32 (hv);
      if (isnan ((float) ref))
        {
          g_assert_true (isnan (f));
          continue;
        }
      g_assert_cmpfloat (f, ==, (float) ref);
      g_assert_cmphex (ns_f32_to_f16 (f), ==, hv);
    }
  for (int i = 0; i < 200000; i++)
    {
      float x = from_bits (g_test_rand_int ());
      if (isnan (x))
        continue;
      _Float16 ref = (_Float16) x;
      uint16_t rv;
      memcpy (&rv, &ref, 2);
      g_assert_cmphex (ns_f32_to_f16 (x), ==, rv);
    }
#else
  g_test_skip ("the compiler has no _Float16 to compare with");
#endif
}

/* E4M3FN by its definition: bias 7, 3 mantissa bits, no inf, 0x7f NaN. */
static void
test_f8e4m3 (void)
{
  for (int v = 0; v < 256; v++)
    {
      int exp = (v >> 3) & 15, man = v & 7;
      float mag = exp == 0 ? man / 8.0f * ldexpf (1, -6) : (1 + man / 8.0f) * ldexpf (1, exp - 7);
      float expect = (v & 0x80) ? -mag : mag;
      float got = ns_f8e4m3_to_f32 ((uint8_t) v);
      if ((v & 0x7f) == 0x7f)
        g_assert_true (isnan (got));
      else
        g_assert_cmpfloat (got, ==, expect);
    }
}

static void
test_get (void)
{
  const float f32[] = { 1.5f, -2.0f };
  const double f64[] = { 0.25, -1e300 };
  const uint16_t bf16[] = { ns_f32_to_bf16 (3.0f), ns_f32_to_bf16 (-0.5f) };
  const uint16_t f16[] = { ns_f32_to_f16 (3.0f), ns_f32_to_f16 (-0.5f) };
  const int8_t i8[] = { -7, 100 };
  const uint8_t u8[] = { 200, 3 };
  const int32_t i32[] = { -70000, 5 };
  const int64_t i64[] = { -((int64_t) 1 << 40), 9 };
  const struct { NsDType dtype; const void *data; double v0, v1; } cases[] = {
    { NS_DTYPE_F32, f32, 1.5, -2.0 }, { NS_DTYPE_F64, f64, 0.25, -1e300 },
    { NS_DTYPE_BF16, bf16, 3.0, -0.5 }, { NS_DTYPE_F16, f16, 3.0, -0.5 },
    { NS_DTYPE_I8, i8, -7, 100 }, { NS_DTYPE_U8, u8, 200, 3 },
    { NS_DTYPE_I32, i32, -70000, 5 }, { NS_DTYPE_I64, i64, -1099511627776.0, 9 },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      NsTensorView t = { "t", cases[c].dtype, 1, { 2 }, cases[c].data,
                         2 * ns_dtype_size (cases[c].dtype), NULL };
      g_assert_cmpint (ns_tensor_n_elements (&t), ==, 2);
      g_assert_cmpfloat (ns_tensor_get_f64 (&t, 0), ==, cases[c].v0);
      g_assert_cmpfloat (ns_tensor_get_f64 (&t, 1), ==, cases[c].v1);
      g_autofree float *all = ns_tensor_to_f32 (&t);
      g_assert_cmpfloat (all[0], ==, (float) cases[c].v0);
      g_assert_cmpfloat (all[1], ==, (float) cases[c].v1);
    }
  NsTensorView scalar = { "s", NS_DTYPE_F32, 0, { 0 }, f32, 4, NULL };
  g_assert_cmpint (ns_tensor_n_elements (&scalar), ==, 1);
}

static int destroyed;

static void
count_destroy (gpointer p)
{
  destroyed++;
  g_free (p);
}

static void
test_store (void)
{
  destroyed = 0;
  NsTensorStore *store = ns_tensor_store_new ();
  float *data = g_new0 (float, 12);
  ns_tensor_store_keep (store, data, count_destroy);
  char file[] = "a.safetensors";
  NsTensorView v = { "b.weight", NS_DTYPE_F32, 2, { 3, 4 }, data, 48, file };
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_tensor_store_add (store, &v, &error));
  v.name = "a.bias";
  v.n_dims = 1;
  v.shape[0] = 5;
  v.n_bytes = 20;
  g_assert_true (ns_tensor_store_add (store, &v, &error));
  file[0] = 'X';                   /* the store keeps its own copy of names */
  g_assert_false (ns_tensor_store_add (store, &v, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "a.bias"));
  g_assert_cmpuint (ns_tensor_store_len (store), ==, 2);
  g_assert_cmpstr (ns_tensor_store_get (store, 0)->name, ==, "b.weight");
  g_assert_cmpstr (ns_tensor_store_get (store, 1)->name, ==, "a.bias");
  g_assert_cmpstr (ns_tensor_store_get (store, 1)->file, ==, "a.safetensors");
  g_assert_true (ns_tensor_store_find (store, "b.weight") == ns_tensor_store_get (store, 0));
  g_assert_null (ns_tensor_store_find (store, "c"));
  g_assert_cmpint (ns_tensor_store_n_elements (store), ==, 17);
  ns_tensor_store_free (store);
  g_assert_cmpint (destroyed, ==, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/files/tensor/dtype-names", test_dtype_names);
  g_test_add_func ("/files/tensor/bf16", test_bf16);
  g_test_add_func ("/files/tensor/f16", test_f16);
  g_test_add_func ("/files/tensor/f8e4m3", test_f8e4m3);
  g_test_add_func ("/files/tensor/get", test_get);
  g_test_add_func ("/files/tensor/store", test_store);
  return g_test_run ();
}
