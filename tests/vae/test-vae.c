/* test-vae.c — the VAE (engine/model/vae.h) on the CPU backend against the
 * golden unit tensors of both tiny cases, the checkpoint check, argument
 * errors, cancellation (with a counting backend that also proves every
 * buffer is freed), tiled against whole decode, and the preview map. */
#include <math.h>
#include <string.h>

#include "test-util.h"
#include "nextstep.h"
#include "files/torch-checkpoint.h"
#include "model/vae-private.h"

/* ---- fixtures --------------------------------------------------------- */

typedef struct {
  NsVaeConfig cfg;
  NsTensorStore *store;         /* the VAE checkpoint.pt */
  NsTensorStore *units;         /* units.safetensors */
  JsonParser *units_json;
} Golden;

/* FALSE (test skipped) when the golden data is absent. */
static gboolean
golden_load (Golden *g, const char *case_name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *config = ns_test_golden_path (case_name, "vae", "config.json", NULL);
  if (config == NULL)
    {
      g_test_skip ("no golden data (NS_GOLDEN_DIR)");
      return FALSE;
    }
  g_autofree char *ckpt = ns_test_golden_path (case_name, "vae", "checkpoint.pt", NULL);
  g_autofree char *units = ns_test_golden_path (case_name, "units.safetensors", NULL);
  g_autofree char *units_json = ns_test_golden_path (case_name, "units.json", NULL);
  g_assert_true (ns_vae_config_load (&g->cfg, config, &error));
  g_assert_no_error (error);
  g->store = ns_torch_checkpoint_load (ckpt, &error);
  g_assert_no_error (error);
  g->units = ns_test_load_safetensors (units);
  g->units_json = ns_test_load_json (units_json);
  return TRUE;
}

static void
golden_clear (Golden *g)
{
  ns_tensor_store_free (g->store);
  ns_tensor_store_free (g->units);
  g_object_unref (g->units_json);
}

static const NsTensorView *
unit (const Golden *g, const char *name)
{
  const NsTensorView *t = ns_tensor_store_find (g->units, name);
  if (t == NULL)
    g_error ("units.safetensors has no tensor %s", name);
  return t;
}

static double
tolerance (const Golden *g, const char *name)
{
  return ns_test_tolerance (json_node_get_object (json_parser_get_root (g->units_json)),
                            name, 1e-6);
}

/* One thread: the ops of these tiny models are too small for threads to
 * pay off, and on a busy machine they cost far more than they give. */
static NsBackend *
cpu_backend (void)
{
  return ns_backend_cpu_new (1);
}

static NsVae *
vae_new (NsBackend *b, const Golden *g)
{
  g_autoptr (GError) error = NULL;
  NsVae *vae = ns_vae_new (b, g->store, &g->cfg, &error);
  g_assert_no_error (error);
  g_assert_nonnull (vae);
  return vae;
}

static void
fill_gaussian (float *x, size_t n, guint32 seed)
{
  GRand *rng = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    {
      double u = 1.0 - g_rand_double (rng), v = g_rand_double (rng);
      x[i] = (float) (sqrt (-2.0 * log (u)) * cos (2.0 * G_PI * v));
    }
  g_rand_free (rng);
}

/* ---- golden unit tensors ---------------------------------------------- */

static void
check_decoder (NsVae *vae, const Golden *g)
{
  g_autoptr (GError) error = NULL;
  const NsTensorView *z = unit (g, "vae_dec_z");
  int h = (int) z->shape[2], w = (int) z->shape[3];
  g_autofree float *latent = ns_tensor_to_f32 (z);
  size_t n = (size_t) 3 * h * w * NS_VAE_FACTOR * NS_VAE_FACTOR;
  g_autofree float *rgb = g_new (float, n);
  g_assert_true (ns_vae_decode (vae, latent, h, w, rgb, NULL, &error));
  g_assert_no_error (error);
  ns_test_assert_close ("vae_dec_out", rgb, unit (g, "vae_dec_out_f64"), n,
                        tolerance (g, "vae_dec_out"));
}

static void
check_encoder (NsVae *vae, const Golden *g)
{
  g_autoptr (GError) error = NULL;
  const NsTensorView *x = unit (g, "vae_enc_x");
  int height = (int) x->shape[2], width = (int) x->shape[3], zc = g->cfg.z_channels;
  size_t n = (size_t) zc * (height / NS_VAE_FACTOR) * (width / NS_VAE_FACTOR);
  g_autofree float *pixels = ns_tensor_to_f32 (x);
  g_autofree float *latents = g_new (float, n), *moments = g_new (float, 2 * n);
  g_autofree float *normed = g_new (float, n), *logvar = g_new (float, n);
  g_assert_true (ns_vae_encode (vae, pixels, height, width, latents, moments, NULL, &error));
  g_assert_no_error (error);
  /* mean_normed and the clamped logvar are the latents and moments seen
   * through the definitions of golden/README.md "Unit tensors". */
  for (size_t i = 0; i < n; i++)
    {
      normed[i] = (float) (latents[i] / g->cfg.scaling_factor + g->cfg.shift_factor);
      logvar[i] = CLAMP (moments[n + i], -30.0f, 20.0f);
    }
  ns_test_assert_close ("vae_enc_moments", moments, unit (g, "vae_enc_moments_f64"), 2 * n,
                        tolerance (g, "vae_enc_moments"));
  ns_test_assert_close ("vae_enc_mean_normed", normed, unit (g, "vae_enc_mean_normed_f64"),
                        n, tolerance (g, "vae_enc_mean_normed"));
  ns_test_assert_close ("vae_enc_logvar", logvar, unit (g, "vae_enc_logvar_f64"), n,
                        tolerance (g, "vae_enc_logvar"));
  ns_test_assert_close ("vae_enc_latents", latents, unit (g, "vae_enc_latents_f64"), n,
                        tolerance (g, "vae_enc_latents"));
}

static void
test_golden (gconstpointer case_name)
{
  Golden g = { 0 };
  if (!golden_load (&g, case_name))
    return;
  NsBackend *b = cpu_backend ();
  NsVae *vae = vae_new (b, &g);
  g_assert_cmpint (ns_vae_get_config (vae)->z_channels, ==, g.cfg.z_channels);
  check_decoder (vae, &g);
  check_encoder (vae, &g);
  ns_vae_free (vae);
  ns_backend_destroy (b);
  golden_clear (&g);
}

/* ---- checkpoint check ------------------------------------------------- */

typedef enum { DEFECT_MISSING, DEFECT_EXTRA, DEFECT_SHAPE } Defect;

/* A copy of `src` (views into its memory) with one defect on `key`. */
static NsTensorStore *
store_with_defect (const NsTensorStore *src, Defect defect, const char *key)
{
  g_autoptr (GError) error = NULL;
  NsTensorStore *store = ns_tensor_store_new ();
  for (guint i = 0; i < ns_tensor_store_len (src); i++)
    {
      NsTensorView v = *ns_tensor_store_get (src, i);
      if (strcmp (v.name, key) == 0 && defect == DEFECT_MISSING)
        continue;
      if (strcmp (v.name, key) == 0 && defect == DEFECT_SHAPE)
        {
          /* [co, ci, 3, 3] → [co, ci·3, 3]: same bytes, wrong shape */
          v.shape[1] *= v.shape[2];
          v.shape[2] = v.shape[3];
          v.n_dims = 3;
        }
      g_assert_true (ns_tensor_store_add (store, &v, &error));
      g_assert_no_error (error);
    }
  if (defect == DEFECT_EXTRA)
    {
      NsTensorView v = *ns_tensor_store_get (src, 0);
      v.name = (char *) key;
      g_assert_true (ns_tensor_store_add (store, &v, &error));
    }
  return store;
}

static void
test_check (void)
{
  static const struct { Defect defect; const char *key; } cases[] = {
    { DEFECT_MISSING, "decoder.mid.attn_1.q.weight" },
    { DEFECT_MISSING, "encoder.down.1.block.0.nin_shortcut.bias" },
    { DEFECT_EXTRA, "decoder.up.0.upsample.conv.weight" },
    { DEFECT_EXTRA, "quant_conv.weight" },
    { DEFECT_SHAPE, "decoder.up.3.block.0.conv1.weight" },
  };
  Golden g = { 0 };
  if (!golden_load (&g, "t2i-tiny"))
    return;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  g_assert_true (ns_vae_check (g.store, &g.cfg, problems));
  g_assert_cmpuint (problems->len, ==, 0);
  NsBackend *b = cpu_backend ();
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      NsTensorStore *bad = store_with_defect (g.store, cases[i].defect, cases[i].key);
      g_ptr_array_set_size (problems, 0);
      g_assert_false (ns_vae_check (bad, &g.cfg, problems));
      g_assert_cmpuint (problems->len, ==, 1);
      g_test_message ("%s", (char *) problems->pdata[0]);
      g_assert_nonnull (strstr (problems->pdata[0], cases[i].key));
      g_assert_null (ns_vae_new (b, bad, &g.cfg, &error));
      g_assert_error (error, NS_ERROR, NS_ERROR_MODEL);
      g_assert_nonnull (strstr (error->message, cases[i].key));
      ns_tensor_store_free (bad);
    }
  ns_backend_destroy (b);
  golden_clear (&g);
}

static void
test_bad_config (void)
{
  Golden g = { 0 };
  if (!golden_load (&g, "t2i-tiny"))
    return;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  NsVaeConfig three_levels = g.cfg, odd_ch = g.cfg;
  three_levels.n_ch_mult = 3;
  odd_ch.ch = 48;
  g_assert_false (ns_vae_check (g.store, &three_levels, problems));
  g_assert_cmpuint (problems->len, ==, 1);
  NsBackend *b = cpu_backend ();
  g_assert_null (ns_vae_new (b, g.store, &three_levels, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED);
  g_clear_error (&error);
  g_assert_null (ns_vae_new (b, g.store, &odd_ch, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "ch 48"));
  ns_backend_destroy (b);
  golden_clear (&g);
}

static void
test_bad_sizes (void)
{
  Golden g = { 0 };
  if (!golden_load (&g, "edit-tiny"))     /* psz 2: images must be multiples of 16 */
    return;
  NsBackend *b = cpu_backend ();
  NsVae *vae = vae_new (b, &g);
  g_autofree float *buf = g_new0 (float, 3 * 48 * 48), *out = g_new (float, 3 * 48 * 48);
  static const int decode_sizes[][2] = { { 0, 4 }, { 4, -1 }, { 100000, 1 } };
  static const int encode_sizes[][2] = { { 0, 16 }, { 30, 48 }, { 40, 48 }, { 48, 8 } };
  for (guint i = 0; i < G_N_ELEMENTS (decode_sizes); i++)
    {
      g_autoptr (GError) error = NULL;
      g_assert_false (ns_vae_decode (vae, buf, decode_sizes[i][0], decode_sizes[i][1], out,
                                     NULL, &error));
      g_assert_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT);
    }
  for (guint i = 0; i < G_N_ELEMENTS (encode_sizes); i++)
    {
      g_autoptr (GError) error = NULL;
      g_assert_false (ns_vae_encode (vae, buf, encode_sizes[i][0], encode_sizes[i][1], out,
                                     NULL, NULL, &error));
      g_assert_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT);
    }
  ns_vae_free (vae);
  ns_backend_destroy (b);
  golden_clear (&g);
}

/* ---- cancellation, with a backend that counts ------------------------- */

/* Forwards to the CPU backend, counts live buffers and weights, and cancels
 * `cancellable` at the `cancel_at`-th conv2d. */
typedef struct {
  NsBackend base;
  NsBackendOps ops;
  NsBackend *inner;
  int live_buffers, live_weights, convs, cancel_at;
  GCancellable *cancellable;
} Counting;

#define INNER(b) (((Counting *) (b))->inner)

static float *
c_alloc (NsBackend *b, size_t n, GError **error)
{
  float *p = INNER (b)->ops->alloc (INNER (b), n, error);
  ((Counting *) b)->live_buffers += p != NULL;
  return p;
}

static void
c_free (NsBackend *b, float *p)
{
  ((Counting *) b)->live_buffers--;
  INNER (b)->ops->free (INNER (b), p);
}

static void
c_write (NsBackend *b, float *dst, const float *src, size_t n)
{
  INNER (b)->ops->write (INNER (b), dst, src, n);
}

static void
c_read (NsBackend *b, float *dst, const float *src, size_t n)
{
  INNER (b)->ops->read (INNER (b), dst, src, n);
}

static gboolean
c_upload (NsBackend *b, const NsTensorView *t, NsMat *out, GError **error)
{
  gboolean ok = INNER (b)->ops->upload (INNER (b), t, out, error);
  ((Counting *) b)->live_weights += ok;
  return ok;
}

static void
c_release (NsBackend *b, NsMat *m)
{
  ((Counting *) b)->live_weights--;
  INNER (b)->ops->release (INNER (b), m);
}

static gboolean
c_sync (NsBackend *b, GError **error)
{
  return INNER (b)->ops->sync (INNER (b), error);
}

static void
c_add (NsBackend *b, float *y, const float *a, const float *c, size_t n)
{
  INNER (b)->ops->add (INNER (b), y, a, c, n);
}

static void
c_layernorm (NsBackend *b, float *y, const float *x, const NsMat *weight, const NsMat *bias,
             int rows, int dim, float eps)
{
  INNER (b)->ops->layernorm (INNER (b), y, x, weight, bias, rows, dim, eps);
}

static void
c_conv2d (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias, int ci,
          int h, int wd, int co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r)
{
  Counting *cb = (Counting *) b;
  if (++cb->convs == cb->cancel_at)
    g_cancellable_cancel (cb->cancellable);
  INNER (b)->ops->conv2d (INNER (b), y, x, w, bias, ci, h, wd, co, k, stride, pad_t, pad_l,
                          pad_b, pad_r);
}

static void
c_groupnorm (NsBackend *b, float *y, const float *x, const NsMat *gamma, const NsMat *beta,
             int c, int hw, int groups, float eps, gboolean silu)
{
  INNER (b)->ops->groupnorm (INNER (b), y, x, gamma, beta, c, hw, groups, eps, silu);
}

static void
c_upsample2x (NsBackend *b, float *y, const float *x, int c, int h, int w)
{
  INNER (b)->ops->upsample2x (INNER (b), y, x, c, h, w);
}

static void
c_attention_spatial (NsBackend *b, float *out, const float *q, const float *k, const float *v,
                     int c, int n)
{
  INNER (b)->ops->attention_spatial (INNER (b), out, q, k, v, c, n);
}

static void
c_patchify (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw, int p)
{
  INNER (b)->ops->patchify (INNER (b), tokens, latent, c, gh, gw, p);
}

static void
c_unpatchify (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw, int p)
{
  INNER (b)->ops->unpatchify (INNER (b), latent, tokens, c, gh, gw, p);
}

/* Only the ops the VAE uses; the others stay NULL so a new use shows up. */
static void
counting_init (Counting *cb, GCancellable *cancellable)
{
  *cb = (Counting) { .inner = cpu_backend (), .cancellable = cancellable };
  cb->ops = (NsBackendOps) {
    .name = "counting", .alloc = c_alloc, .free = c_free, .write = c_write, .read = c_read,
    .upload = c_upload, .release = c_release, .sync = c_sync, .add = c_add,
    .layernorm = c_layernorm, .conv2d = c_conv2d, .groupnorm = c_groupnorm,
    .upsample2x = c_upsample2x, .attention_spatial = c_attention_spatial,
    .patchify = c_patchify, .unpatchify = c_unpatchify,
  };
  cb->base.ops = &cb->ops;
}

/* Decodes (or encodes) a 2×2 latent / 16×16 image with a cancel at the
 * `at`-th conv; TRUE when it was cancelled. */
static gboolean
run_cancelled_at (NsVae *vae, Counting *cb, gboolean encode, int at)
{
  g_autoptr (GError) error = NULL;
  float in[3 * 16 * 16] = { 0 }, out[3 * 16 * 16];
  g_cancellable_reset (cb->cancellable);
  cb->convs = 0;
  cb->cancel_at = at;
  gboolean ok = encode
                ? ns_vae_encode (vae, in, 16, 16, out, NULL, cb->cancellable, &error)
                : ns_vae_decode (vae, in, 2, 2, out, cb->cancellable, &error);
  g_assert_cmpint (cb->live_buffers, ==, 0);
  if (ok)
    return FALSE;
  g_assert_error (error, NS_ERROR, NS_ERROR_CANCELLED);
  return TRUE;
}

static void
test_cancel (void)
{
  Golden g = { 0 };
  if (!golden_load (&g, "t2i-tiny"))
    return;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Counting cb;
  counting_init (&cb, cancellable);
  NsVae *vae = vae_new (&cb.base, &g);
  g_assert_cmpint (cb.live_buffers, ==, 0);
  for (int encode = 0; encode <= 1; encode++)
    {
      /* at 0 the cancellable is never cancelled: the pass completes and
       * counts its convs; a cancel at any of them but the final conv_out
       * (after the last check) must stop the pass */
      g_assert_false (run_cancelled_at (vae, &cb, encode, 0));
      int total = cb.convs;
      g_assert_cmpint (total, >, 10);
      for (int at = 1; at <= total; at++)
        g_assert_cmpint (run_cancelled_at (vae, &cb, encode, at), ==, at < total);
    }
  g_cancellable_cancel (cancellable);
  g_autoptr (GError) error = NULL;
  float latent[16 * 4] = { 0 }, rgb[3 * 16 * 16];
  g_assert_false (ns_vae_decode (vae, latent, 2, 2, rgb, cancellable, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_CANCELLED);
  ns_vae_free (vae);
  g_assert_cmpint (cb.live_weights, ==, 0);
  g_assert_cmpint (cb.live_buffers, ==, 0);
  ns_backend_destroy (cb.inner);
  golden_clear (&g);
}

/* ---- tiled decode ----------------------------------------------------- */

static float *
decode_whole (NsVae *vae, const float *latent, int h, int w)
{
  g_autoptr (GError) error = NULL;
  float *rgb = g_new (float, (size_t) 3 * h * w * NS_VAE_FACTOR * NS_VAE_FACTOR);
  NsVaeFlow f;
  g_assert_true (ns_vae_flow_alloc (&f, vae->backend, &vae->dec, h, w, &error));
  g_assert_true (ns_vae_decode_whole (vae, &f, latent, h, w, rgb, NULL, &error));
  g_assert_no_error (error);
  ns_vae_flow_free (&f);
  return rgb;
}

static float *
decode_public (NsVae *vae, const float *latent, int h, int w)
{
  g_autoptr (GError) error = NULL;
  float *rgb = g_new (float, (size_t) 3 * h * w * NS_VAE_FACTOR * NS_VAE_FACTOR);
  g_assert_true (ns_vae_decode (vae, latent, h, w, rgb, NULL, &error));
  g_assert_no_error (error);
  return rgb;
}

/* A smooth random latent (N(0, 1) values on a grid of one per 8 latent
 * pixels, interpolated bilinearly) looks more like an image latent than
 * white noise does. */
static float *
smooth_latent (int z, int h, int w, guint32 seed)
{
  int gh = h / 8 + 2, gw = w / 8 + 2;
  g_autofree float *grid = g_new (float, (size_t) z * gh * gw);
  fill_gaussian (grid, (size_t) z * gh * gw, seed);
  float *latent = g_new (float, (size_t) z * h * w);
  for (int k = 0; k < z; k++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        {
          const float *gk = grid + (size_t) k * gh * gw + (y / 8) * gw + x / 8;
          float ay = (y % 8) / 8.0f, ax = (x % 8) / 8.0f;
          latent[((size_t) k * h + y) * w + x] =
            (1 - ay) * ((1 - ax) * gk[0] + ax * gk[1]) + ay * ((1 - ax) * gk[gw] + ax * gk[gw + 1]);
        }
  return latent;
}

/* latent[:, y0:y0+side, x0:x0+side] */
static float *
crop (const float *latent, int z, int h, int w, int y0, int x0, int side)
{
  float *out = g_new (float, (size_t) z * side * side);
  for (int k = 0; k < z; k++)
    for (int y = 0; y < side; y++)
      memcpy (out + ((size_t) k * side + y) * side, latent + ((size_t) k * h + y0 + y) * w + x0,
              sizeof (float) * side);
  return out;
}

/* Every pixel of the tiled decode of an n × n latent made of 2 × 2 tiles
 * of `side` (at 0 and n − side on each axis) must be a blend of the
 * decodes of the tiles that cover it: equal to the only one, or between
 * the lowest and the highest. */
static void
check_blend (NsVae *vae, const float *latent, int n, int side, const float *tiled)
{
  int z = ns_vae_get_config (vae)->z_channels, px = n * NS_VAE_FACTOR;
  int tpx = side * NS_VAE_FACTOR, start[2] = { 0, (n - side) * NS_VAE_FACTOR };
  float *tiles[4];
  for (int t = 0; t < 4; t++)
    {
      g_autofree float *part = crop (latent, z, n, n, start[t / 2] / NS_VAE_FACTOR,
                                     start[t % 2] / NS_VAE_FACTOR, side);
      tiles[t] = decode_whole (vae, part, side, side);
    }
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < px; y++)
      for (int x = 0; x < px; x++)
        {
          float lo = INFINITY, hi = -INFINITY, got = tiled[((size_t) c * px + y) * px + x];
          for (int t = 0; t < 4; t++)
            {
              int ty = y - start[t / 2], tx = x - start[t % 2];
              if (ty < 0 || ty >= tpx || tx < 0 || tx >= tpx)
                continue;
              float v = tiles[t][((size_t) c * tpx + ty) * tpx + tx];
              lo = MIN (lo, v);
              hi = MAX (hi, v);
            }
          float eps = 1e-5f * MAX (1.0f, fabsf (got));
          if (!(got >= lo - eps && got <= hi + eps))
            g_error ("tiled pixel (%d, %d, %d) = %g is not a blend of its tiles [%g, %g]",
                     c, y, x, got, lo, hi);
        }
  for (int t = 0; t < 4; t++)
    g_free (tiles[t]);
}

/* max|a − b| / max|b| and RMS(a − b) / RMS(b) */
static void
rel_diff (const float *a, const float *b, size_t n, double *max_rel, double *rms_rel)
{
  double diff = 0, ref = 0, sd = 0, sr = 0;
  for (size_t i = 0; i < n; i++)
    {
      double d = (double) a[i] - b[i];
      diff = MAX (diff, fabs (d));
      ref = MAX (ref, fabs ((double) b[i]));
      sd += d * d;
      sr += (double) b[i] * b[i];
    }
  *max_rel = diff / ref;
  *rms_rel = sqrt (sd / sr);
}

/* Small tiles (16 latent pixels, overlap 4) keep this fast; the production
 * geometry (64, 16) runs the same code. */
static void
test_tiled (void)
{
  Golden g = { 0 };
  if (!golden_load (&g, "edit-tiny"))
    return;
  NsBackend *b = cpu_backend ();
  NsVae *vae = vae_new (b, &g);
  vae->tile_side = 16;
  vae->tile_overlap = 4;
  const int side = vae->tile_side, n = side + vae->tile_overlap, z = g.cfg.z_channels;
  g_autofree float *latent = smooth_latent (z, n, n, 7);

  /* up to the threshold the public decode is the whole decode */
  g_autofree float *small = crop (latent, z, n, n, 0, 0, side);
  g_autofree float *at_threshold = decode_public (vae, small, side, side);
  g_autofree float *whole_small = decode_whole (vae, small, side, side);
  size_t n_small = (size_t) 3 * side * side * NS_VAE_FACTOR * NS_VAE_FACTOR;
  g_assert_cmpmem (at_threshold, n_small * sizeof (float), whole_small,
                   n_small * sizeof (float));

  /* just above it: 2 × 2 tiles, blended, close to the whole decode */
  g_autofree float *tiled = decode_public (vae, latent, n, n);
  check_blend (vae, latent, n, side, tiled);
  g_autofree float *whole = decode_whole (vae, latent, n, n);
  double max_rel, rms_rel;
  rel_diff (tiled, whole, (size_t) 3 * n * n * NS_VAE_FACTOR * NS_VAE_FACTOR, &max_rel,
            &rms_rel);
  g_test_message ("%d×%d latent in %d×%d tiles (overlap %d): tiled vs whole max rel %.3g, "
                  "RMS rel %.3g", n, n, side, side, vae->tile_overlap, max_rel, rms_rel);
  g_assert_cmpfloat (rms_rel, >, 0.0);
  g_assert_cmpfloat (rms_rel, <, 0.5);
  ns_vae_free (vae);
  ns_backend_destroy (b);
  golden_clear (&g);
}

/* ---- preview map ------------------------------------------------------ */

/* R² over all channels of the preview map's prediction of the 8×8-pooled
 * decode of a fresh random latent (1 − SSE / SS around each channel mean). */
static double
preview_r2 (NsVae *vae, int side, guint32 seed)
{
  int z = ns_vae_get_config (vae)->z_channels, px = side * NS_VAE_FACTOR;
  size_t plane = (size_t) side * side;
  g_autofree float *latent = g_new (float, z * plane);
  fill_gaussian (latent, z * plane, seed);
  g_autofree float *rgb = decode_whole (vae, latent, side, side);
  const float *wt, *bias;
  ns_vae_preview_map (vae, &wt, &bias);
  double sse = 0, sst = 0;
  for (int c = 0; c < 3; c++)
    {
      g_autofree double *pooled = g_new0 (double, plane);
      double mean = 0;
      for (int y = 0; y < px; y++)
        for (int x = 0; x < px; x++)
          pooled[(y / NS_VAE_FACTOR) * side + x / NS_VAE_FACTOR] +=
            rgb[((size_t) c * px + y) * px + x] / (NS_VAE_FACTOR * NS_VAE_FACTOR);
      for (size_t i = 0; i < plane; i++)
        mean += pooled[i] / plane;
      for (size_t i = 0; i < plane; i++)
        {
          double pred = bias[c];
          for (int k = 0; k < z; k++)
            pred += wt[c * z + k] * latent[k * plane + i];
          sse += (pooled[i] - pred) * (pooled[i] - pred);
          sst += (pooled[i] - mean) * (pooled[i] - mean);
        }
    }
  return 1.0 - sse / sst;
}

/* Points `v` at an F32 copy of its data, kept by `store`, for editing. */
static void
view_to_f32 (NsTensorStore *store, NsTensorView *v, float **data)
{
  *data = ns_tensor_to_f32 (v);
  ns_tensor_store_keep (store, *data, g_free);
  v->data = *data;
  v->dtype = NS_DTYPE_F32;
  v->n_bytes = sizeof (float) * ns_tensor_n_elements (v);
}

/* The golden VAE made local and nearly linear, as a trained decoder is
 * nearly local: 3×3 kernels keep only their centre tap and GroupNorm gains
 * shrink ×0.1 (swish is then close to linear). */
static NsTensorStore *
store_local_linear (const NsTensorStore *src)
{
  g_autoptr (GError) error = NULL;
  NsTensorStore *store = ns_tensor_store_new ();
  for (guint i = 0; i < ns_tensor_store_len (src); i++)
    {
      NsTensorView v = *ns_tensor_store_get (src, i);
      float *data;
      if (v.n_dims == 4 && v.shape[3] == 3)
        {
          view_to_f32 (store, &v, &data);
          for (int64_t j = 0; j < ns_tensor_n_elements (&v); j++)
            data[j] = j % 9 == 4 ? data[j] : 0.0f;
        }
      else if (v.n_dims == 1 && strstr (v.name, "norm") && g_str_has_suffix (v.name, ".weight"))
        {
          view_to_f32 (store, &v, &data);
          for (int64_t j = 0; j < v.shape[0]; j++)
            data[j] *= 0.1f;
        }
      g_assert_true (ns_tensor_store_add (store, &v, &error));
    }
  return store;
}

static void
test_preview (gconstpointer case_name)
{
  Golden g = { 0 };
  if (!golden_load (&g, case_name))
    return;
  NsBackend *b = cpu_backend ();
  gint64 start = g_get_monotonic_time ();
  NsVae *vae = vae_new (b, &g);
  double load_s = (g_get_monotonic_time () - start) / 1e6;
  /* A random-weight decoder has no local linear colour relation: reported,
   * not asserted (measured ≈ −0.1: the fit only finds noise). */
  double r2_random = preview_r2 (vae, 16, 99);
  g_assert_true (isfinite (r2_random));
  ns_vae_free (vae);
  NsTensorStore *golden_store = g.store;
  g.store = store_local_linear (golden_store);
  vae = vae_new (b, &g);
  double r2_local = preview_r2 (vae, 16, 99);
  g_test_message ("%s: load with preview fit %.2f s; preview R² on a fresh 16×16 latent: "
                  "%.3f (golden VAE), %.3f (local, near-linear variant)",
                  (const char *) case_name, load_s, r2_random, r2_local);
  g_assert_cmpfloat (r2_local, >, 0.85);
  ns_vae_free (vae);
  ns_tensor_store_free (golden_store);
  ns_backend_destroy (b);
  golden_clear (&g);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/vae/golden/t2i-tiny", "t2i-tiny", test_golden);
  g_test_add_data_func ("/vae/golden/edit-tiny", "edit-tiny", test_golden);
  g_test_add_func ("/vae/check", test_check);
  g_test_add_func ("/vae/bad-config", test_bad_config);
  g_test_add_func ("/vae/bad-sizes", test_bad_sizes);
  g_test_add_func ("/vae/cancel", test_cancel);
  g_test_add_func ("/vae/tiled", test_tiled);
  g_test_add_data_func ("/vae/preview/t2i-tiny", "t2i-tiny", test_preview);
  g_test_add_data_func ("/vae/preview/edit-tiny", "edit-tiny", test_preview);
  return g_test_run ();
}
