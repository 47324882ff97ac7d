/* test-kernels.c — every CUDA op against the CPU reference backend on fresh
 * random inputs. Outputs are poisoned with NaN before each run so an op that
 * skips an element fails; NaN never passes the comparison. Exits 77 (skip)
 * when no CUDA device is usable or the build has no CUDA backend. */
#include <math.h>
#include <string.h>

#include "backend.h"
#include "cpu/quant.h"
#include "nextstep.h"

static NsBackend *cpu, *gpu;

typedef struct {
  float *c, *g;   /* the same array on the CPU and the GPU backend */
  size_t n;
} Pair;

static float
uniform (void)
{
  return (float) g_test_rand_double_range (-1.0, 1.0);
}

static Pair
pair_new (size_t n, gboolean random)
{
  Pair p = { NULL, NULL, n };
  g_autoptr (GError) error = NULL;
  p.c = cpu->ops->alloc (cpu, n, &error);
  g_assert_no_error (error);
  p.g = gpu->ops->alloc (gpu, n, &error);
  g_assert_no_error (error);
  g_autofree float *host = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    host[i] = random ? uniform () : NAN;
  cpu->ops->write (cpu, p.c, host, n);
  gpu->ops->write (gpu, p.g, host, n);
  return p;
}

/* Writes the same values (e.g. a mask) to both sides. */
static void
pair_set (Pair *p, const float *host)
{
  cpu->ops->write (cpu, p->c, host, p->n);
  gpu->ops->write (gpu, p->g, host, p->n);
}

static void
pair_free (Pair *p)
{
  cpu->ops->free (cpu, p->c);
  gpu->ops->free (gpu, p->g);
}

/* max|gpu − cpu| / max|cpu| must be ≤ tol; non-finite values fail. */
static void
assert_pair_close (const char *what, Pair *p, double tol)
{
  g_autofree float *a = g_new (float, p->n), *b = g_new (float, p->n);
  cpu->ops->read (cpu, a, p->c, p->n);
  gpu->ops->read (gpu, b, p->g, p->n);
  g_autoptr (GError) error = NULL;
  g_assert_true (gpu->ops->sync (gpu, &error));
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < p->n; i++)
    {
      if (!isfinite (a[i]) || !isfinite (b[i]))
        {
          g_test_fail_printf ("%s: non-finite value at %zu (cpu %g, cuda %g)", what, i, a[i], b[i]);
          return;
        }
      max_ref = fmax (max_ref, fabs (a[i]));
      max_diff = fmax (max_diff, fabs ((double) a[i] - b[i]));
    }
  double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
  g_test_message ("%s: rel error %.3g (tolerance %.3g)", what, rel, tol);
  if (!(rel <= tol))
    g_test_fail_printf ("%s: rel error %.3g > %.3g", what, rel, tol);
}

/* A random weight tensor uploaded to both backends. */
typedef struct {
  NsTensorView view;
  gpointer storage;
  NsMat c, g;
} Weight;

static Weight *
weight_new (NsDType dtype, int rows, int cols, double scale)
{
  Weight *w = g_new0 (Weight, 1);
  size_t n = (size_t) rows * cols;
  w->storage = g_malloc (n * ns_dtype_size (dtype));
  for (size_t i = 0; i < n; i++)
    {
      float v = (float) (uniform () * scale);
      if (dtype == NS_DTYPE_F32)
        ((float *) w->storage)[i] = v;
      else if (dtype == NS_DTYPE_BF16)
        ((uint16_t *) w->storage)[i] = ns_f32_to_bf16 (v);
      else
        ((uint16_t *) w->storage)[i] = ns_f32_to_f16 (v);
    }
  w->view = (NsTensorView) { (char *) "w", dtype, rows == 1 ? 1 : 2, { rows == 1 ? cols : rows, cols },
                             w->storage, n * ns_dtype_size (dtype), "test" };
  g_autoptr (GError) error = NULL;
  g_assert_true (cpu->ops->upload (cpu, &w->view, &w->c, &error));
  g_assert_true (gpu->ops->upload (gpu, &w->view, &w->g, &error));
  return w;
}

static void
weight_free (Weight *w)
{
  cpu->ops->release (cpu, &w->c);
  gpu->ops->release (gpu, &w->g);
  g_free (w->storage);
  g_free (w);
}

/* tol < 0: the bound of the path the GPU takes for this shape. */
static void
check_linear_case (NsDType dtype, int rows, int in, int out, gboolean with_bias,
                   gboolean accumulate, double tol)
{
  Weight *w = weight_new (dtype, out, in, 1.0 / sqrt (in));
  Weight *bias = with_bias ? weight_new (dtype, 1, out, 0.1) : NULL;
  Pair x = pair_new ((size_t) rows * in, TRUE), y = pair_new ((size_t) rows * out, accumulate);
  cpu->ops->linear (cpu, y.c, x.c, &w->c, bias ? &bias->c : NULL, rows, accumulate);
  gpu->ops->linear (gpu, y.g, x.g, &w->g, bias ? &bias->g : NULL, rows, accumulate);
  g_autofree char *what = g_strdup_printf ("linear %s rows %d %d→%d bias %d acc %d",
                                           ns_dtype_name (dtype), rows, in, out, with_bias,
                                           accumulate);
  /* Above 8 rows bf16/f16 weights go to tensor cores with 16-bit activations. */
  if (tol < 0)
    tol = rows > 8 && dtype != NS_DTYPE_F32 ? 2e-2 : 1e-4;
  assert_pair_close (what, &y, tol);
  pair_free (&x);
  pair_free (&y);
  weight_free (w);
  if (bias)
    weight_free (bias);
}

static void
test_linear (void)
{
  const NsDType dtypes[] = { NS_DTYPE_F32, NS_DTYPE_BF16, NS_DTYPE_F16 };
  const int rows[] = { 1, 2, 3, 6, 8, 9, 33 };
  for (guint d = 0; d < G_N_ELEMENTS (dtypes); d++)
    for (guint r = 0; r < G_N_ELEMENTS (rows); r++)
      {
        check_linear_case (dtypes[d], rows[r], 256, 96, TRUE, FALSE, -1);
        check_linear_case (dtypes[d], rows[r], 40, 17, FALSE, TRUE, -1);   /* scalar path */
      }
}

/* A quantized table: both backends quantize alike, so rows match exactly. */
static void
check_quantized_embedding (void)
{
  Weight *table = weight_new (NS_DTYPE_BF16, 50, 96, 1.0);
  g_assert_cmpint (table->c.dtype, ==, table->g.dtype);
  const int32_t ids[4] = { 49, 0, 7, 7 };
  Pair e = pair_new (4 * 96, FALSE);
  cpu->ops->embedding (cpu, e.c, &table->c, ids, 4);
  gpu->ops->embedding (gpu, e.g, &table->g, ids, 4);
  assert_pair_close ("embedding quantized", &e, 1e-7);
  pair_free (&e);
  weight_free (table);
}

/* Weights quantized on the host (a convert cache) through upload_quantized. */
static void
test_upload_quantized (void)
{
  const NsDType dtypes[] = { NS_DTYPE_I8, NS_DTYPE_F8_E4M3 };
  int rows = 64, cols = 256;
  for (guint d = 0; d < G_N_ELEMENTS (dtypes); d++)
    {
      g_autofree float *w = g_new (float, rows * cols);
      g_autofree uint8_t *q = g_malloc (rows * cols);
      g_autofree float *scale = g_new (float, rows);
      for (int i = 0; i < rows * cols; i++)
        w[i] = uniform ();
      ns_quantize_rows (w, NS_DTYPE_F32, rows, cols, dtypes[d], q, scale);
      NsTensorView qv = { (char *) "q", dtypes[d], 2, { rows, cols }, q, (size_t) rows * cols,
                          "test" };
      NsTensorView sv = { (char *) "q.scale", NS_DTYPE_F32, 1, { rows }, scale,
                          rows * sizeof (float), "test" };
      NsMat mc, mg;
      g_autoptr (GError) error = NULL;
      g_assert_true (cpu->ops->upload_quantized (cpu, &qv, &sv, &mc, &error));
      g_assert_true (gpu->ops->upload_quantized (gpu, &qv, &sv, &mg, &error));
      Pair x = pair_new (3 * cols, TRUE), y = pair_new (3 * rows, FALSE);
      cpu->ops->linear (cpu, y.c, x.c, &mc, NULL, 3, FALSE);
      gpu->ops->linear (gpu, y.g, x.g, &mg, NULL, 3, FALSE);
      assert_pair_close (ns_dtype_name (dtypes[d]), &y, 1e-5);
      pair_free (&x);
      pair_free (&y);
      cpu->ops->release (cpu, &mc);
      gpu->ops->release (gpu, &mg);
    }
}

static void
test_linear_quantized (void)
{
  const NsWeightFormat formats[] = { NS_WEIGHTS_INT8, NS_WEIGHTS_FP8 };
  for (guint f = 0; f < G_N_ELEMENTS (formats); f++)
    {
      /* Both backends quantize the same way (cpu/quant.h), so the GPU must
       * match the CPU's quantized result to float rounding, at every size. */
      ns_backend_set_weight_format (gpu, formats[f], 0);
      ns_backend_set_weight_format (cpu, formats[f], 0);
      check_linear_case (NS_DTYPE_BF16, 2, 1024, 1024, TRUE, FALSE, -1);
      check_linear_case (NS_DTYPE_BF16, 33, 256, 96, TRUE, FALSE, -1);
      check_quantized_embedding ();
      ns_backend_set_weight_format (gpu, NS_WEIGHTS_BF16, NS_QUANT_MIN_ELEMENTS);
      ns_backend_set_weight_format (cpu, NS_WEIGHTS_BF16, NS_QUANT_MIN_ELEMENTS);
    }
}

static void
test_norms (void)
{
  int rows = 5, dim = 320;
  Weight *gain = weight_new (NS_DTYPE_BF16, 1, dim, 1.0), *bias = weight_new (NS_DTYPE_F32, 1, dim, 0.2);
  Pair x = pair_new ((size_t) rows * dim, TRUE), y = pair_new ((size_t) rows * dim, FALSE);
  cpu->ops->rmsnorm (cpu, y.c, x.c, &gain->c, rows, dim, 1e-5f);
  gpu->ops->rmsnorm (gpu, y.g, x.g, &gain->g, rows, dim, 1e-5f);
  assert_pair_close ("rmsnorm", &y, 1e-5);
  cpu->ops->layernorm (cpu, y.c, x.c, &gain->c, &bias->c, rows, dim, 1e-6f);
  gpu->ops->layernorm (gpu, y.g, x.g, &gain->g, &bias->g, rows, dim, 1e-6f);
  assert_pair_close ("layernorm affine", &y, 1e-5);
  cpu->ops->layernorm (cpu, y.c, x.c, NULL, NULL, rows, 64, 1e-6f);
  gpu->ops->layernorm (gpu, y.g, x.g, NULL, NULL, rows, 64, 1e-6f);
  assert_pair_close ("layernorm plain", &y, 1e-5);

  Pair mod = pair_new ((size_t) rows * 3 * dim, TRUE), m = pair_new ((size_t) rows * dim, TRUE);
  cpu->ops->modulate (cpu, y.c, x.c, mod.c, mod.c + dim, rows, dim, 3 * dim);
  gpu->ops->modulate (gpu, y.g, x.g, mod.g, mod.g + dim, rows, dim, 3 * dim);
  assert_pair_close ("modulate", &y, 1e-6);
  cpu->ops->gated_add (cpu, y.c, mod.c + 2 * dim, m.c, rows, dim, 3 * dim);
  gpu->ops->gated_add (gpu, y.g, mod.g + 2 * dim, m.g, rows, dim, 3 * dim);
  assert_pair_close ("gated_add", &y, 1e-6);
  for (Pair *p = (Pair[]) { x, y, mod, m }, *e = p + 4; p < e; p++)
    pair_free (p);
  weight_free (gain);
  weight_free (bias);
}

static void
test_elementwise (void)
{
  size_t n = 4099;
  Pair a = pair_new (n, TRUE), b = pair_new (n, TRUE), y = pair_new (n, FALSE);
  cpu->ops->silu (cpu, y.c, a.c, n);
  gpu->ops->silu (gpu, y.g, a.g, n);
  assert_pair_close ("silu", &y, 1e-6);
  cpu->ops->silu_mul (cpu, y.c, a.c, b.c, n);
  gpu->ops->silu_mul (gpu, y.g, a.g, b.g, n);
  assert_pair_close ("silu_mul", &y, 1e-6);
  cpu->ops->add (cpu, y.c, a.c, b.c, n);
  gpu->ops->add (gpu, y.g, a.g, b.g, n);
  assert_pair_close ("add", &y, 0);
  pair_free (&a);
  pair_free (&b);
  pair_free (&y);

  Weight *table = weight_new (NS_DTYPE_BF16, 50, 24, 1.0);
  const int32_t ids[] = { 3, 0, 49, 3, 17 };
  Pair e = pair_new (5 * 24, FALSE);
  cpu->ops->embedding (cpu, e.c, &table->c, ids, 5);
  gpu->ops->embedding (gpu, e.g, &table->g, ids, 5);
  assert_pair_close ("embedding", &e, 0);
  pair_free (&e);
  weight_free (table);

  int c = 16, gh = 3, gw = 5, p = 2;
  Pair lat = pair_new ((size_t) c * gh * p * gw * p, TRUE), tok = pair_new (lat.n, FALSE),
       back = pair_new (lat.n, FALSE), up = pair_new (lat.n * 4, FALSE);
  cpu->ops->patchify (cpu, tok.c, lat.c, c, gh, gw, p);
  gpu->ops->patchify (gpu, tok.g, lat.g, c, gh, gw, p);
  assert_pair_close ("patchify", &tok, 0);
  cpu->ops->unpatchify (cpu, back.c, tok.c, c, gh, gw, p);
  gpu->ops->unpatchify (gpu, back.g, tok.g, c, gh, gw, p);
  assert_pair_close ("unpatchify", &back, 0);
  cpu->ops->upsample2x (cpu, up.c, lat.c, c, gh * p, gw * p);
  gpu->ops->upsample2x (gpu, up.g, lat.g, c, gh * p, gw * p);
  assert_pair_close ("upsample2x", &up, 0);
  for (Pair *q = (Pair[]) { lat, tok, back, up }, *end = q + 4; q < end; q++)
    pair_free (q);
}

/* Prefill of `n` queries then one decode step, GQA ratio heads/kv_heads,
 * sequence 0 left-padded by `pad` keys (its pad queries see no valid key). */
static void
check_attention_case (int batch, int heads, int kv_heads, int head_dim, int n, int pad)
{
  int capacity = n + 3;
  Pair q = pair_new ((size_t) batch * n * heads * head_dim, TRUE);
  Pair k = pair_new ((size_t) batch * n * kv_heads * head_dim, TRUE), v = pair_new (k.n, TRUE);
  Pair kc = pair_new ((size_t) batch * kv_heads * capacity * head_dim, FALSE), vc = pair_new (kc.n, FALSE);
  Pair valid = pair_new ((size_t) batch * capacity, FALSE), out = pair_new (q.n, FALSE);
  g_autofree float *mask = g_new (float, valid.n);
  for (int s = 0; s < batch; s++)
    for (int pos = 0; pos < capacity; pos++)
      mask[s * capacity + pos] = s == 0 && pos < pad ? 0.0f : 1.0f;
  pair_set (&valid, mask);
  g_autofree int32_t *positions = g_new (int32_t, batch * n);
  for (int i = 0; i < batch * n; i++)
    positions[i] = i % n;
  NsBackend *both[] = { cpu, gpu };
  for (int side = 0; side < 2; side++)
    {
      NsBackend *b = both[side];
      float *qq = side ? q.g : q.c, *kk = side ? k.g : k.c;
      b->ops->rope (b, qq, positions, batch * n, heads, head_dim, 1e6);
      b->ops->rope (b, kk, positions, batch * n, kv_heads, head_dim, 1e6);
      b->ops->kv_store (b, side ? kc.g : kc.c, kk, batch, n, 0, kv_heads, head_dim, capacity);
      b->ops->kv_store (b, side ? vc.g : vc.c, side ? v.g : v.c, batch, n, 0, kv_heads, head_dim,
                        capacity);
      b->ops->attention (b, side ? out.g : out.c, qq, side ? kc.g : kc.c, side ? vc.g : vc.c,
                         side ? valid.g : valid.c, batch, n, 0, heads, kv_heads, head_dim,
                         capacity);
    }
  g_autofree char *what = g_strdup_printf ("attention prefill b%d h%d/%d d%d n%d pad%d", batch,
                                           heads, kv_heads, head_dim, n, pad);
  assert_pair_close ("rope + kv_store (k cache)", &kc, 1e-6);
  assert_pair_close (what, &out, 1e-5);
  for (Pair *p = (Pair[]) { q, k, v, kc, vc, valid, out }, *e = p + 7; p < e; p++)
    pair_free (p);
}

static void
test_attention (void)
{
  check_attention_case (2, 4, 2, 16, 12, 4);
  check_attention_case (3, 10, 2, 128, 7, 2);   /* GQA 5, real head_dim */
  check_attention_case (1, 2, 2, 8, 1, 0);      /* decode-like single query */
  check_attention_case (2, 3, 1, 32, 40, 9);
}

static void
check_conv_case (NsDType dtype, int ci, int h, int w, int co, int k, int stride, int pt, int pl,
                 int pb, int pr)
{
  Weight *wt = weight_new (dtype, co, ci * k * k, 1.0 / sqrt (ci * k * k));
  Weight *bias = weight_new (dtype, 1, co, 0.1);
  int oh = (h + pt + pb - k) / stride + 1, ow = (w + pl + pr - k) / stride + 1;
  Pair x = pair_new ((size_t) ci * h * w, TRUE), y = pair_new ((size_t) co * oh * ow, FALSE);
  cpu->ops->conv2d (cpu, y.c, x.c, &wt->c, &bias->c, ci, h, w, co, k, stride, pt, pl, pb, pr);
  gpu->ops->conv2d (gpu, y.g, x.g, &wt->g, &bias->g, ci, h, w, co, k, stride, pt, pl, pb, pr);
  g_autofree char *what = g_strdup_printf ("conv2d %s %d×%d×%d → %d k%d s%d pad %d%d%d%d",
                                           ns_dtype_name (dtype), ci, h, w, co, k, stride, pt, pl,
                                           pb, pr);
  assert_pair_close (what, &y, 1e-4);
  pair_free (&x);
  pair_free (&y);
  weight_free (wt);
  weight_free (bias);
}

static void
test_vae_ops (void)
{
  check_conv_case (NS_DTYPE_F32, 8, 9, 13, 12, 3, 1, 1, 1, 1, 1);
  check_conv_case (NS_DTYPE_BF16, 16, 16, 10, 16, 3, 2, 0, 0, 1, 1);   /* downsample */
  check_conv_case (NS_DTYPE_BF16, 32, 7, 5, 8, 1, 1, 0, 0, 0, 0);

  int c = 64, hw = 9 * 7;
  Weight *gamma = weight_new (NS_DTYPE_BF16, 1, c, 1.0), *beta = weight_new (NS_DTYPE_BF16, 1, c, 0.3);
  Pair x = pair_new ((size_t) c * hw, TRUE), y = pair_new (x.n, FALSE);
  for (int silu = 0; silu < 2; silu++)
    {
      cpu->ops->groupnorm (cpu, y.c, x.c, &gamma->c, &beta->c, c, hw, 32, 1e-6f, silu);
      gpu->ops->groupnorm (gpu, y.g, x.g, &gamma->g, &beta->g, c, hw, 32, 1e-6f, silu);
      assert_pair_close (silu ? "groupnorm + swish" : "groupnorm", &y, 1e-5);
    }
  Pair k = pair_new (x.n, TRUE), v = pair_new (x.n, TRUE);
  cpu->ops->attention_spatial (cpu, y.c, x.c, k.c, v.c, c, hw);
  gpu->ops->attention_spatial (gpu, y.g, x.g, k.g, v.g, c, hw);
  assert_pair_close ("attention_spatial", &y, 1e-5);
  for (Pair *p = (Pair[]) { x, y, k, v }, *e = p + 4; p < e; p++)
    pair_free (p);
  weight_free (gamma);
  weight_free (beta);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autoptr (GError) error = NULL;
  gpu = ns_backend_cuda_new (0, 0, &error);
  if (gpu == NULL)
    {
      g_print ("SKIP: no CUDA device: %s\n", error->message);
      return 77;
    }
  cpu = ns_backend_cpu_new (0);
  g_test_add_func ("/kernels/linear", test_linear);
  g_test_add_func ("/kernels/linear-quantized", test_linear_quantized);
  g_test_add_func ("/kernels/upload-quantized", test_upload_quantized);
  g_test_add_func ("/kernels/norms", test_norms);
  g_test_add_func ("/kernels/elementwise", test_elementwise);
  g_test_add_func ("/kernels/attention", test_attention);
  g_test_add_func ("/kernels/vae-ops", test_vae_ops);
  int rc = g_test_run ();
  ns_backend_destroy (gpu);
  ns_backend_destroy (cpu);
  return rc;
}
