/* ops-util.c — see ops-util.h. */
#include <math.h>
#include "cpu/quant.h"
#include "ops-util.h"

const int ops_thread_counts[2] = { 1, OPS_THREADS_MANY };
const NsDType ops_weight_dtypes[3] = { NS_DTYPE_F32, NS_DTYPE_BF16, NS_DTYPE_F16 };
const NsDType ops_all_weight_dtypes[6] = { NS_DTYPE_F32, NS_DTYPE_BF16, NS_DTYPE_F16,
                                           NS_DTYPE_I8, NS_DTYPE_F8_E4M3, NS_DTYPE_Q4 };

static NsBackend *cuda_backend;

static void
destroy_cuda (void)
{
  ns_backend_destroy (cuda_backend);
}

NsBackend *
ops_cuda (void)
{
  static gsize tried = 0;
  if (g_once_init_enter (&tried))
    {
      g_autoptr (GError) error = NULL;
      cuda_backend = ns_backend_cuda_new (0, 0, &error);
      if (cuda_backend != NULL)
        atexit (destroy_cuda);
      else
        g_test_message ("no CUDA backend: %s", error->message);
      g_once_init_leave (&tried, 1);
    }
  return cuda_backend;
}

static gboolean
is_quantized (NsDType dtype)
{
  return dtype == NS_DTYPE_I8 || dtype == NS_DTYPE_F8_E4M3 || dtype == NS_DTYPE_Q4;
}

NsDType
ops_stored_dtype (NsDType dtype, int cols)
{
  return dtype == NS_DTYPE_Q4 && ns_q4_keeps_int8 ("test.weight", cols) ? NS_DTYPE_I8 : dtype;
}

float *
ops_random (GRand *rng, size_t n, float scale)
{
  float *x = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (rng, -scale, scale);
  return x;
}

/* Stores v in dtype at element i of bytes and returns the stored value. */
static double
store (void *bytes, NsDType dtype, size_t i, float v)
{
  switch (dtype)
    {
    case NS_DTYPE_BF16:
      ((uint16_t *) bytes)[i] = ns_f32_to_bf16 (v);
      return ns_bf16_to_f32 (((uint16_t *) bytes)[i]);
    case NS_DTYPE_F16:
      ((uint16_t *) bytes)[i] = ns_f32_to_f16 (v);
      return ns_f16_to_f32 (((uint16_t *) bytes)[i]);
    default:
      ((float *) bytes)[i] = v;
      return v;
    }
}

/* Fills bytes (n elements of dtype) and exact from seed. */
static void
generate (guint32 seed, NsDType dtype, size_t n, float scale, void *bytes, double *exact)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    exact[i] = store (bytes, dtype, i, (float) g_rand_double_range (rng, -scale, scale));
}

double *
ops_weight_values (guint32 seed, NsDType dtype, size_t n, float scale)
{
  g_autofree void *bytes = g_malloc (MAX (n, 1) * ns_dtype_size (dtype));
  double *exact = g_new (double, MAX (n, 1));
  generate (seed, dtype, n, scale, bytes, exact);
  return exact;
}

const NsMat *
ops_mat (const OpsWeight *w)
{
  return w ? &w->mat : NULL;
}

double *
ops_matrix_values (guint32 seed, NsDType dtype, int rows, int cols, float scale)
{
  size_t n = (size_t) rows * cols;
  if (!is_quantized (dtype))
    return ops_weight_values (seed, dtype, n, scale);
  g_autofree double *exact = ops_weight_values (seed, NS_DTYPE_F32, n, scale);
  g_autofree float *f = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    f[i] = (float) exact[i];
  dtype = ops_stored_dtype (dtype, cols);
  if (dtype == NS_DTYPE_Q4)
    {
      /* the double-precision dequantisation of the reference quantizer */
      g_autofree uint8_t *q4 = g_malloc (MAX (n / 2, 1));
      g_autofree uint16_t *s4 = g_new (uint16_t, MAX (n / NS_Q4_GROUP, 1));
      ns_quantize_q4_rows (f, NS_DTYPE_F32, rows, cols, q4, s4);
      double *v = g_new (double, MAX (n, 1));
      for (size_t i = 0; i < n; i++)
        v[i] = ns_q4_value (q4, s4, cols, i / cols, i % cols);
      return v;
    }
  g_autofree uint8_t *q = g_malloc (MAX (n, 1));
  g_autofree float *s = g_new (float, rows);
  ns_quantize_rows (f, NS_DTYPE_F32, rows, cols, dtype, q, s);
  double *v = g_new (double, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    v[i] = (dtype == NS_DTYPE_I8 ? (double) (int8_t) q[i] : ns_f8e4m3_to_f32 (q[i]))
           * s[i / cols];
  return v;
}

/* I8/F8 weights are F32 data the backend quantizes at upload (its weight
 * format set for this one upload). */
OpsWeight *
ops_weight_new (NsBackend *b, guint32 seed, NsDType dtype, int rows, int cols, float scale)
{
  size_t n = (size_t) rows * cols;
  NsDType stored = is_quantized (dtype) ? NS_DTYPE_F32 : dtype;
  OpsWeight *w = g_new0 (OpsWeight, 1);
  w->b = b;
  w->bytes = g_malloc (MAX (n, 1) * ns_dtype_size (stored));
  w->exact = g_new (double, MAX (n, 1));
  generate (seed, stored, n, scale, w->bytes, w->exact);
  if (is_quantized (dtype))
    {
      g_free (w->exact);
      w->exact = ops_matrix_values (seed, dtype, rows, cols, scale);
    }
  NsTensorView view = { .name = (char *) "test.weight", .dtype = stored, .n_dims = 2,
                        .shape = { rows, cols }, .data = w->bytes,
                        .n_bytes = n * ns_dtype_size (stored), .file = "ops-test" };
  NsWeightFormat format = b->weight_format;
  int64_t min_elements = b->quant_min_elements;
  if (is_quantized (dtype))
    ns_backend_set_weight_format (b, dtype == NS_DTYPE_I8 ? NS_WEIGHTS_INT8
                                     : dtype == NS_DTYPE_Q4 ? NS_WEIGHTS_Q4 : NS_WEIGHTS_FP8, 0);
  GError *error = NULL;
  g_assert_true (b->ops->upload (b, &view, &w->mat, &error));
  g_assert_no_error (error);
  ns_backend_set_weight_format (b, format, min_elements);
  /* q4 keeps int8 for rows that are not whole blocks (cpu/quant.h) */
  g_assert_cmpint (w->mat.dtype, ==, ops_stored_dtype (dtype, cols));
  return w;
}

void
ops_weight_free (OpsWeight *w)
{
  if (w == NULL)
    return;
  w->b->ops->release (w->b, &w->mat);
  g_free (w->bytes);
  g_free (w->exact);
  g_free (w);
}

float *
ops_upload (NsBackend *b, const float *host, size_t n)
{
  GError *error = NULL;
  float *dev = b->ops->alloc (b, n, &error);
  g_assert_no_error (error);
  b->ops->write (b, dev, host, n);
  return dev;
}

float *
ops_poisoned (NsBackend *b, size_t n)
{
  float *nan = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    nan[i] = NAN;
  float *dev = ops_upload (b, nan, n);
  g_free (nan);
  return dev;
}

float *
ops_download (NsBackend *b, const float *dev, size_t n)
{
  float *host = g_new (float, MAX (n, 1));
  b->ops->read (b, host, dev, n);
  GError *error = NULL;
  g_assert_true (b->ops->sync (b, &error));
  return host;
}

int32_t *
ops_upload_i32 (NsBackend *b, const int32_t *host, size_t n)
{
  GError *error = NULL;
  int32_t *dev = ns_backend_alloc_i32 (b, n, &error);
  g_assert_no_error (error);
  ns_backend_write_i32 (b, dev, host, n);
  return dev;
}

double *
ops_upload_f64 (NsBackend *b, const double *host, size_t n)
{
  GError *error = NULL;
  double *dev = ns_backend_alloc_f64 (b, n, &error);
  g_assert_no_error (error);
  ns_backend_write_f64 (b, dev, host, n);
  return dev;
}

double *
ops_download_f64 (NsBackend *b, const double *dev, size_t n)
{
  double *host = g_new (double, MAX (n, 1));
  b->ops->read (b, (float *) host, (const float *) dev, 2 * n);
  GError *error = NULL;
  g_assert_true (b->ops->sync (b, &error));
  return host;
}

void
ops_check (const char *what, OpsRunFunc run, gconstpointer data, const double *ref, size_t n,
           double tol)
{
  float *results[G_N_ELEMENTS (ops_thread_counts)];
  for (guint t = 0; t < G_N_ELEMENTS (ops_thread_counts); t++)
    {
      NsBackend *b = ns_backend_cpu_new (ops_thread_counts[t]);
      results[t] = run (b, data);
      ns_backend_destroy (b);
      g_autofree char *label = g_strdup_printf ("%s [cpu, %d threads]", what,
                                                ops_thread_counts[t]);
      ops_assert_close (label, results[t], ref, n, tol);
    }
  g_autofree char *label = g_strdup_printf ("%s [cpu, 1 vs %d threads]", what, OPS_THREADS_MANY);
  ops_assert_same (label, results[1], results[0], n, tol);
  for (guint t = 0; t < G_N_ELEMENTS (ops_thread_counts); t++)
    g_free (results[t]);
  NsBackend *cuda = ops_cuda ();
  if (cuda != NULL)
    {
      g_autofree float *result = run (cuda, data);
      g_autofree char *cuda_label = g_strdup_printf ("%s [cuda]", what);
      ops_assert_close (cuda_label, result, ref, n, tol);
    }
}

void
ops_assert_close (const char *what, const float *ours, const double *ref, size_t n, double tol)
{
  NsTensorView view = { .name = (char *) "reference", .dtype = NS_DTYPE_F64, .n_dims = 1,
                        .shape = { (int64_t) n }, .data = ref, .n_bytes = n * sizeof (double) };
  ns_test_assert_close (what, ours, &view, n, tol);
}

void
ops_assert_same (const char *what, const float *ours, const float *other, size_t n, double tol)
{
  double *ref = ops_to_double (other, n);
  ops_assert_close (what, ours, ref, n, tol);
  g_free (ref);
}

double *
ops_multiplied_x (const float *x, int rows, int cols, NsDType dtype)
{
  size_t n = (size_t) rows * cols;
  if (ops_stored_dtype (dtype, cols) != NS_DTYPE_Q4)
    return ops_to_double (x, n);
  double *d = g_new (double, MAX (n, 1));
  for (size_t g = 0; g < n; g += NS_Q4_GROUP)
    {
      float m = ns_q4_x_amax (x + g), inv = ns_q4_x_inverse (m);
      for (int j = 0; j < NS_Q4_GROUP; j++)
        d[g + j] = ns_q4_x_code (x[g + j], inv) * (double) ns_q4_x_step (m);
    }
  return d;
}

double *
ops_to_double (const float *x, size_t n)
{
  double *d = g_new (double, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    d[i] = x[i];
  return d;
}
