/* test-linear.c — linear (decode GEMV, grouped GEMV and prefill matmul
 * paths) and embedding against naive double-precision loops, for every
 * weight dtype, quantized ones included. */
#include "ops-util.h"

#define LINEAR_TOL 2e-5

typedef struct {
  int rows, cols, outs;
  gboolean bias, accumulate;
  NsDType dtype;
  guint32 seed;           /* weight seed; the bias uses seed + 1 */
  const float *x, *y0;    /* y0: the output's old value when accumulating */
} LinearCase;

static float
weight_scale (const LinearCase *lc)
{
  return 1.0f / sqrtf (lc->cols);
}

/* Biases stay in the file dtype; quantized matrices get F32 biases. */
static NsDType
bias_dtype (const LinearCase *lc)
{
  return lc->dtype == NS_DTYPE_I8 || lc->dtype == NS_DTYPE_F8_E4M3 || lc->dtype == NS_DTYPE_Q4
           ? NS_DTYPE_F32 : lc->dtype;
}

/* ref[r, o] = y0[r, o] + bias[o] + Σ_i x[r, i] · W[o, i] (x rounded for q4) */
static double *
reference (const LinearCase *lc)
{
  g_autofree double *x = ops_multiplied_x (lc->x, lc->rows, lc->cols, lc->dtype);
  g_autofree double *w = ops_matrix_values (lc->seed, lc->dtype, lc->outs, lc->cols,
                                            weight_scale (lc));
  g_autofree double *bias = lc->bias ? ops_weight_values (lc->seed + 1, bias_dtype (lc), lc->outs,
                                                          0.5f)
                                     : NULL;
  double *ref = g_new (double, (size_t) lc->rows * lc->outs);
  for (int r = 0; r < lc->rows; r++)
    for (int o = 0; o < lc->outs; o++)
      {
        double s = (lc->y0 ? lc->y0[r * lc->outs + o] : 0.0) + (bias ? bias[o] : 0.0);
        for (int i = 0; i < lc->cols; i++)
          s += x[r * lc->cols + i] * w[(size_t) o * lc->cols + i];
        ref[r * lc->outs + o] = s;
      }
  return ref;
}

static float *
run_linear (NsBackend *b, gconstpointer data)
{
  const LinearCase *lc = data;
  size_t n_out = (size_t) lc->rows * lc->outs;
  OpsWeight *w = ops_weight_new (b, lc->seed, lc->dtype, lc->outs, lc->cols, weight_scale (lc));
  OpsWeight *bias = lc->bias ? ops_weight_new (b, lc->seed + 1, bias_dtype (lc), 1, lc->outs,
                                               0.5f)
                             : NULL;
  float *x = ops_upload (b, lc->x, (size_t) lc->rows * lc->cols);
  float *y = lc->y0 ? ops_upload (b, lc->y0, n_out) : ops_poisoned (b, n_out);
  b->ops->linear (b, y, x, &w->mat, ops_mat (bias), lc->rows, lc->accumulate);
  float *result = ops_download (b, y, n_out);
  b->ops->free (b, x);
  b->ops->free (b, y);
  ops_weight_free (w);
  ops_weight_free (bias);
  return result;
}

/* x_scale: activations uniform in ±x_scale (above 65504 for the f16 overflow
 * of issue 16). */
static void
check_linear_scaled (GRand *rng, NsDType dtype, int rows, int cols, int outs, gboolean bias,
                     gboolean accumulate, float x_scale)
{
  size_t n_out = (size_t) rows * outs;
  g_autofree float *x = ops_random (rng, (size_t) rows * cols, x_scale);
  g_autofree float *y0 = accumulate ? ops_random (rng, n_out, 1.0f) : NULL;
  LinearCase lc = { rows, cols, outs, bias, accumulate, dtype, g_rand_int (rng), x, y0 };
  g_autofree double *ref = reference (&lc);
  g_autofree char *what = g_strdup_printf ("linear %s rows %d, %d → %d%s%s",
                                           ns_dtype_name (dtype), rows, cols, outs,
                                           bias ? ", bias" : "", accumulate ? ", accumulate" : "");
  ops_check (what, run_linear, &lc, ref, n_out, LINEAR_TOL);
}

static void
check_linear (GRand *rng, NsDType dtype, int rows, int cols, int outs, gboolean bias,
              gboolean accumulate)
{
  check_linear_scaled (rng, dtype, rows, cols, outs, bias, accumulate, 1.0f);
}

typedef struct {
  int rows, cols, outs;
  gboolean bias, accumulate;
} LinearShape;

/* Every shape in every weight dtype. */
static void
check_shapes (guint32 seed, const LinearShape *shapes, int n)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (seed);
  for (int d = 0; d < (int) G_N_ELEMENTS (ops_all_weight_dtypes); d++)
    for (int s = 0; s < n; s++)
      check_linear (rng, ops_all_weight_dtypes[d], shapes[s].rows, shapes[s].cols,
                    shapes[s].outs, shapes[s].bias, shapes[s].accumulate);
}

/* Decode sizes: 1–8 rows (the row groups of the GEMV and their remainders),
 * widths below, at and above one F16 conversion chunk, odd everywhere; the
 * largest is big enough to run on several threads. */
static void
test_linear_decode (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (11);
  const int shapes[][2] = { { 1, 1 }, { 37, 5 }, { 256, 64 }, { 1029, 19 }, { 517, 97 } };
  for (int d = 0; d < (int) G_N_ELEMENTS (ops_all_weight_dtypes); d++)
    for (int s = 0; s < (int) G_N_ELEMENTS (shapes); s++)
      for (int rows = 1; rows <= 8; rows++)
        check_linear (rng, ops_all_weight_dtypes[d], rows, shapes[s][0], shapes[s][1],
                      rows % 2 == 1, rows % 3 == 0);
}

/* Vector GEMV shapes: k a multiple of 16 (every format's 16-byte loads),
 * few output rows and a long k (split-K), output rows not a multiple of
 * the warp's 4; then 9–32 rows (GEMV by groups of 8). */
static void
test_linear_gemv_splits (void)
{
  const LinearShape shapes[] = { { 2, 4096, 18, TRUE, FALSE }, { 3, 512, 257, FALSE, TRUE },
                                 { 8, 1024, 64, TRUE, TRUE }, { 13, 256, 70, TRUE, FALSE },
                                 { 32, 96, 33, FALSE, TRUE } };
  check_shapes (13, shapes, G_N_ELEMENTS (shapes));
}

/* q4 shapes: whole 64-element blocks (1, 2 and many per row, so the
 * GEMV's cache-line loop, its unit tail and several threads all run),
 * every decode row count, prefill; plus widths that are not whole blocks
 * (32, 96, 200), which q4 stores as int8 (the rule ops_stored_dtype
 * checks at upload). */
static void
test_linear_q4 (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (15);
  const int shapes[][2] = { { 64, 5 }, { 128, 19 }, { 192, 8 }, { 1344, 33 }, { 4096, 40 },
                            { 32, 7 }, { 96, 9 }, { 200, 3 } };
  for (int s = 0; s < (int) G_N_ELEMENTS (shapes); s++)
    {
      for (int rows = 1; rows <= 8; rows++)
        check_linear (rng, NS_DTYPE_Q4, rows, shapes[s][0], shapes[s][1], rows % 2 == 0,
                      rows % 3 == 1);
      check_linear (rng, NS_DTYPE_Q4, 21, shapes[s][0], shapes[s][1], TRUE, FALSE);
    }
  g_assert_cmpint (ops_stored_dtype (NS_DTYPE_Q4, 64), ==, NS_DTYPE_Q4);
  g_assert_cmpint (ops_stored_dtype (NS_DTYPE_Q4, 96), ==, NS_DTYPE_I8);
}

/* rows = 0 writes nothing (issue 16: CUDA fell to the 8-row kernel). */
static float *
run_linear_no_rows (NsBackend *b, gconstpointer data)
{
  (void) data;
  OpsWeight *w = ops_weight_new (b, 3, NS_DTYPE_BF16, 16, 32, 1.0f);
  float *x = ops_poisoned (b, 8 * 32);
  g_autofree float *guard = g_new (float, 8 * 16);
  for (int i = 0; i < 8 * 16; i++)
    guard[i] = (float) i;
  float *y = ops_upload (b, guard, 8 * 16);
  b->ops->linear (b, y, x, &w->mat, NULL, 0, FALSE);
  float *result = ops_download (b, y, 8 * 16);
  b->ops->free (b, x);
  b->ops->free (b, y);
  ops_weight_free (w);
  return result;
}

static void
test_linear_no_rows (void)
{
  double ref[8 * 16];
  for (int i = 0; i < 8 * 16; i++)
    ref[i] = i;
  ops_check ("linear rows 0", run_linear_no_rows, NULL, ref, 8 * 16, 0.0);
}

/* Prefill sizes: rows past the GEMV limit, not multiples of the 6-row tile;
 * columns not multiples of the 16-wide panel; k over one 256 block. */
static void
test_linear_prefill (void)
{
  const LinearShape shapes[] = { { 9, 17, 3, TRUE, FALSE }, { 13, 300, 37, FALSE, TRUE },
                                 { 50, 517, 70, TRUE, TRUE }, { 64, 128, 130, FALSE, FALSE },
                                 { 40, 512, 96, TRUE, FALSE } };
  check_shapes (12, shapes, G_N_ELEMENTS (shapes));
}

/* Prefill-sized rows with activations past the f16 range and with f32
 * precision that bf16 or f16 inputs would lose (issue 16). */
static void
test_linear_prefill_precision (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (14);
  for (int d = 0; d < (int) G_N_ELEMENTS (ops_all_weight_dtypes); d++)
    {
      check_linear_scaled (rng, ops_all_weight_dtypes[d], 40, 256, 48, TRUE, FALSE, 1e5f);
      check_linear_scaled (rng, ops_all_weight_dtypes[d], 33, 1024, 20, FALSE, TRUE, 3.0f);
    }
}

typedef struct {
  NsDType dtype;
  int vocab, dim, n;
  const int32_t *ids;
} EmbeddingCase;

static float *
run_embedding (NsBackend *b, gconstpointer data)
{
  const EmbeddingCase *ec = data;
  size_t n_out = (size_t) ec->n * ec->dim;
  OpsWeight *table = ops_weight_new (b, 5, ec->dtype, ec->vocab, ec->dim, 1.0f);
  float *out = ops_poisoned (b, n_out);
  int32_t *ids = ops_upload_i32 (b, ec->ids, ec->n);
  b->ops->embedding (b, out, &table->mat, ids, ec->n);
  float *result = ops_download (b, out, n_out);
  b->ops->free (b, out);
  ns_backend_free_any (b, ids);
  ops_weight_free (table);
  return result;
}

static void
test_embedding (void)
{
  const int32_t ids[] = { 0, 12, 3, 12, 9, 1 };
  for (int d = 0; d < 3; d++)
    for (int dim = 1; dim <= 7; dim += 6)
      {
        EmbeddingCase ec = { ops_weight_dtypes[d], 13, dim, G_N_ELEMENTS (ids), ids };
        g_autofree double *table = ops_weight_values (5, ec.dtype, (size_t) ec.vocab * dim, 1.0f);
        g_autofree double *ref = g_new (double, (size_t) ec.n * dim);
        for (int i = 0; i < ec.n; i++)
          memcpy (ref + (size_t) i * dim, table + (size_t) ids[i] * dim, dim * sizeof (double));
        g_autofree char *what = g_strdup_printf ("embedding %s dim %d",
                                                 ns_dtype_name (ec.dtype), dim);
        ops_check (what, run_embedding, &ec, ref, (size_t) ec.n * dim, 0.0);
      }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/linear/decode", test_linear_decode);
  g_test_add_func ("/ops/linear/gemv-splits", test_linear_gemv_splits);
  g_test_add_func ("/ops/linear/no-rows", test_linear_no_rows);
  g_test_add_func ("/ops/linear/q4", test_linear_q4);
  g_test_add_func ("/ops/linear/prefill", test_linear_prefill);
  g_test_add_func ("/ops/linear/prefill-precision", test_linear_prefill_precision);
  g_test_add_func ("/ops/embedding", test_embedding);
  return g_test_run ();
}
