/* test-memory.c — alloc/write/read/copy, and upload: weights point into the
 * caller's memory (no copy), shapes flatten as backend.h says, bad dtypes
 * and sizes are refused with an error naming the tensor (CPU backend);
 * reserve, read_async and read_wait on every backend. */
#include "ops-util.h"
#include "nextstep.h"

static void
test_memory_roundtrip (void)
{
  NsBackend *b = ns_backend_cpu_new (0);
  GError *error = NULL;
  float *dev = b->ops->alloc (b, 5, &error);
  g_assert_no_error (error);
  g_autofree float *zeros = ops_download (b, dev, 5);
  for (int i = 0; i < 5; i++)
    g_assert_cmpfloat (zeros[i], ==, 0.0f);

  const float src[5] = { 1, -2, 3.5f, NAN, 5 };
  float *other = ops_upload (b, src, 5);
  b->ops->copy (b, dev, other, 5);
  g_autofree float *back = ops_download (b, dev, 5);
  g_assert_cmpmem (back, sizeof src, src, sizeof src);

  float *empty = b->ops->alloc (b, 0, &error);
  g_assert_no_error (error);
  g_assert_nonnull (empty);
  b->ops->free (b, empty);
  b->ops->free (b, other);
  b->ops->free (b, dev);
  ns_backend_destroy (b);
}

static void
test_memory_too_large (void)
{
  NsBackend *b = ns_backend_cpu_new (1);
  GError *error = NULL;
  g_assert_null (b->ops->alloc (b, G_MAXSIZE / 2, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY);
  g_error_free (error);
  ns_backend_destroy (b);
}

static NsTensorView
view (NsDType dtype, int n_dims, const int64_t *shape, const void *data)
{
  NsTensorView v = { .name = (char *) "blk.weight", .dtype = dtype, .n_dims = n_dims,
                     .data = data, .file = "model.safetensors" };
  size_t n = 1;
  for (int d = 0; d < n_dims; d++)
    {
      v.shape[d] = shape[d];
      n *= shape[d];
    }
  v.n_bytes = n * ns_dtype_size (dtype);
  return v;
}

static void
test_upload_shapes (void)
{
  NsBackend *b = ns_backend_cpu_new (1);
  static const uint16_t data[2 * 3 * 4 * 5];
  const struct { int n_dims; int64_t shape[4]; int rows, cols; } cases[] = {
    { 0, { 0 }, 1, 1 },
    { 1, { 7 }, 1, 7 },
    { 2, { 6, 20 }, 6, 20 },
    { 4, { 2, 3, 4, 5 }, 2, 60 },
  };
  for (int c = 0; c < (int) G_N_ELEMENTS (cases); c++)
    {
      NsTensorView v = view (NS_DTYPE_BF16, cases[c].n_dims, cases[c].shape, data);
      NsMat m;
      GError *error = NULL;
      g_assert_true (b->ops->upload (b, &v, &m, &error));
      g_assert_no_error (error);
      g_assert_cmpint (m.rows, ==, cases[c].rows);
      g_assert_cmpint (m.cols, ==, cases[c].cols);
      g_assert_cmpint (m.dtype, ==, NS_DTYPE_BF16);
      g_assert_true (m.data == (const void *) data);
      g_assert_null (m.scale);
      b->ops->release (b, &m);
      g_assert_null (m.data);
    }
  ns_backend_destroy (b);
}

static void
assert_refused (NsBackend *b, const NsTensorView *v, int code)
{
  NsMat m;
  GError *error = NULL;
  g_assert_false (b->ops->upload (b, v, &m, &error));
  g_assert_error (error, NS_ERROR, code);
  g_assert_nonnull (strstr (error->message, "blk.weight"));
  g_assert_nonnull (strstr (error->message, "model.safetensors"));
  g_error_free (error);
}

static void
test_upload_refused (void)
{
  NsBackend *b = ns_backend_cpu_new (1);
  static const double data[12];
  const int64_t shape[2] = { 3, 4 };
  const NsDType refused[] = { NS_DTYPE_F64, NS_DTYPE_I8, NS_DTYPE_F8_E4M3, NS_DTYPE_I64 };
  for (int d = 0; d < (int) G_N_ELEMENTS (refused); d++)
    {
      NsTensorView v = view (refused[d], 2, shape, data);
      assert_refused (b, &v, NS_ERROR_UNSUPPORTED);
    }
  NsTensorView short_data = view (NS_DTYPE_F32, 2, shape, data);
  short_data.n_bytes -= 4;
  assert_refused (b, &short_data, NS_ERROR_FORMAT);
  const int64_t empty_shape[2] = { 0, 4 };
  NsTensorView empty = view (NS_DTYPE_F32, 2, empty_shape, data);
  assert_refused (b, &empty, NS_ERROR_MODEL);
  ns_backend_destroy (b);
}

/* Two reads in flight around an op that changes the source: each read
 * sees the data as it was when it was issued. Result: both reads. */
static float *
run_async_reads (NsBackend *b, gconstpointer data)
{
  (void) data;
  const float src[5] = { 1, -2, 3.5f, 4, 5 };
  GError *error = NULL;
  g_assert_true (b->ops->reserve (b, 64, &error));
  g_assert_no_error (error);
  float *x = ops_upload (b, src, 5);
  float *result = g_new (float, 10);
  b->ops->read_async (b, result, x, 5);
  b->ops->add (b, x, x, x, 5);
  b->ops->read_async (b, result + 5, x, 5);
  g_assert_true (b->ops->read_wait (b, &error));
  g_assert_no_error (error);
  b->ops->free (b, x);
  return result;
}

static void
test_async_reads (void)
{
  const double ref[10] = { 1, -2, 3.5, 4, 5, 2, -4, 7, 8, 10 };
  ops_check ("reserve + read_async + read_wait", run_async_reads, NULL, ref, 10, 0.0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/memory/roundtrip", test_memory_roundtrip);
  g_test_add_func ("/ops/memory/too-large", test_memory_too_large);
  g_test_add_func ("/ops/upload/shapes", test_upload_shapes);
  g_test_add_func ("/ops/upload/refused", test_upload_refused);
  g_test_add_func ("/ops/memory/async-reads", test_async_reads);
  return g_test_run ();
}
