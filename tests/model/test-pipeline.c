/* test-pipeline.c — library-level runs of the golden requests (prompt rows,
 * h, c, v, tokens, latents, decoded, image), determinism, cancellation,
 * several images, previews and request validation. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "golden-run.h"
#include "model/pipeline-private.h"

/* Each case's model is loaded once and serves every test (models are
 * reusable across requests); freed at the end of main. */
static NsModel *loaded[2];
static const char *const cases[] = { "t2i-tiny", "edit-tiny" };

static NsModel *
get_model (const char *case_name)
{
  int i = strcmp (case_name, cases[0]) == 0 ? 0 : 1;
  if (loaded[i] != NULL)
    return loaded[i];
  g_autofree char *dir = ns_test_golden_path (case_name, "model", NULL);
  g_autofree char *vae = ns_test_golden_path (case_name, "vae", NULL);
  NsLoadOptions o = { .model_dir = dir, .vae_dir = vae, .backend = NS_BACKEND_CPU, .threads = 1 };
  g_autoptr (GError) error = NULL;
  loaded[i] = ns_model_load (&o, &error);
  g_assert_no_error (error);
  return loaded[i];
}

static guint8 *
result_rgb (const NsResult *res)
{
  size_t plane = (size_t) res->width * res->height;
  guint8 *rgb = g_new (guint8, res->n_images * plane * 3);
  for (int i = 0; i < res->n_images; i++)
    for (size_t p = 0; p < plane; p++)
      memcpy (rgb + (i * plane + p) * 3, res->rgba[i] + p * 4, 3);
  return rgb;
}

static void
assert_ids_equal (const GoldenRun *run, const char *name, const int32_t *ours, size_t n)
{
  const NsTensorView *ref = ns_tensor_store_find (run->tensors, name);
  g_assert_cmpint (ns_tensor_n_elements (ref), ==, (int64_t) n);
  for (size_t i = 0; i < n; i++)
    g_assert_cmpint (ours[i], ==, (int32_t) ns_tensor_get_f64 (ref, (int64_t) i));
}

/* h_f64 has ntok + 1 columns (the official loop's unused last step). */
static void
compare_h (const GoldenRun *run, const NsRunTrace *tr, int ntok, int hidden)
{
  size_t cols = ntok + 1, n = (size_t) tr->rows * cols * hidden;
  g_autofree float *full = g_new0 (float, n);
  g_autofree guint8 *keep = g_new0 (guint8, n);
  for (int r = 0; r < tr->rows; r++)
    for (int t = 0; t < ntok; t++)
      {
        size_t at = ((size_t) r * cols + t) * hidden;
        memcpy (full + at, tr->h + ((size_t) r * ntok + t) * hidden, hidden * sizeof (float));
        memset (keep + at, 1, hidden);
      }
  golden_run_compare (run, "h", full, keep);
}

static void
test_golden_run (gconstpointer data)
{
  const char *const *names = data;
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  GoldenRun *run = golden_run_load (names[0], names[1]);
  NsModel *model = get_model (names[0]);
  NsRequest r;
  golden_run_request (run, &r);
  NsRunTrace tr = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (NsResult) res = ns_model_run_traced (model, &r, &tr, &error);
  g_assert_no_error (error);
  assert_ids_equal (run, "prompt_ids", tr.prompt_ids, (size_t) tr.rows * tr.len);
  assert_ids_equal (run, "attention_mask", tr.attention_mask, (size_t) tr.rows * tr.len);
  compare_h (run, &tr, res->ntok, (int) ns_tensor_store_find (run->tensors, "h_f64")->shape[2]);
  golden_run_compare (run, "c", tr.c, NULL);
  golden_run_compare (run, "v", tr.v, NULL);
  g_autofree guint8 *rgb = result_rgb (res);
  golden_run_check (run, res->tokens, res->latents, res->decoded, rgb);
  g_free (tr.h);
  g_free (tr.c);
  g_free (tr.v);
  g_free (tr.prompt_ids);
  g_free (tr.attention_mask);
  golden_run_free (run);
}

/* ---- engine behaviour on the tiny T2I model ------------------------------ */

static void
small_request (NsRequest *r)
{
  ns_request_init (r);
  r->prompt = "a red square";
  r->width = 32;
  r->height = 48;
  r->steps = 3;
  r->cfg = 3.0;
  r->seed = 1234;
}

static NsResult *
run_ok (NsModel *m, const NsRequest *r)
{
  g_autoptr (GError) error = NULL;
  NsResult *res = ns_model_run (m, r, &error);
  g_assert_no_error (error);
  return res;
}

static void
test_same_seed (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  NsModel *m = get_model ("t2i-tiny");
  NsRequest r;
  small_request (&r);
  g_autoptr (NsResult) a = run_ok (m, &r);
  g_autoptr (NsResult) b = run_ok (m, &r);
  size_t bytes = (size_t) a->width * a->height * 4;
  g_assert_cmpint (a->seed, ==, 1234);
  g_assert_cmpmem (a->rgba[0], bytes, b->rgba[0], bytes);
  r.seed = 1235;
  g_autoptr (NsResult) c = run_ok (m, &r);
  g_assert_true (memcmp (a->tokens, c->tokens, (size_t) a->ntok * a->token_dim * 4) != 0);
}

/* Image i of a batch is the image the same seed gives alone at index i: the
 * batch rows do not leak into each other, and each image has its own draws. */
static void
test_several_images (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  NsModel *m = get_model ("t2i-tiny");
  NsRequest r;
  small_request (&r);
  r.images = 3;
  r.cfg_schedule = NS_CFG_LINEAR;
  g_autoptr (NsResult) many = run_ok (m, &r);
  g_assert_cmpint (many->n_images, ==, 3);
  r.images = 1;
  g_autoptr (NsResult) one = run_ok (m, &r);
  size_t per = (size_t) one->ntok * one->token_dim;
  for (size_t i = 0; i < per; i++)
    g_assert_cmpfloat_with_epsilon (many->tokens[i], one->tokens[i], 1e-4);
  g_assert_true (memcmp (many->tokens, many->tokens + per, per * 4) != 0);
  g_assert_true (memcmp (many->tokens + per, many->tokens + 2 * per, per * 4) != 0);
}

typedef struct {
  GCancellable *cancellable;
  int cancel_at, tokens_seen, previews, vae_previews;
} Watch;

static void
watch_token (int image, int token, int n_tokens, gpointer data)
{
  Watch *w = data;
  g_assert_cmpint (token, <, n_tokens);
  if (image == 0)
    w->tokens_seen++;
  if (w->cancellable && token == w->cancel_at)
    g_cancellable_cancel (w->cancellable);
}

static void
watch_preview (int image, const guint8 *rgba, int width, int height, int tokens_done,
               gboolean vae_decoded, gpointer data)
{
  Watch *w = data;
  g_assert_cmpint (image, ==, 0);
  g_assert_nonnull (rgba);
  g_assert_cmpint (width * height, >, 0);
  g_assert_cmpint (tokens_done, >, 0);
  w->previews++;
  w->vae_previews += vae_decoded;
}

static void
test_cancel (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  NsModel *m = get_model ("t2i-tiny");
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Watch w = { cancellable, 2, 0, 0, 0 };
  NsRequest r;
  small_request (&r);
  r.steps = 50;
  r.cancellable = cancellable;
  r.on_token = watch_token;
  r.user_data = &w;
  g_autoptr (GError) error = NULL;
  gint64 start = g_get_monotonic_time ();
  NsResult *res = ns_model_run (m, &r, &error);
  g_assert_null (res);
  g_assert_error (error, NS_ERROR, NS_ERROR_CANCELLED);
  g_assert_cmpint (w.tokens_seen, ==, 3);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 30 * G_USEC_PER_SEC);
  /* the model stays usable */
  g_cancellable_reset (cancellable);
  r.steps = 2;
  r.on_token = NULL;
  g_autoptr (NsResult) again = run_ok (m, &r);
  g_assert_nonnull (again);
}

static void
test_previews (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  NsModel *m = get_model ("t2i-tiny");
  Watch w = { 0 };
  NsRequest r;
  small_request (&r);
  r.on_preview = watch_preview;
  r.on_token = watch_token;
  r.preview_every = 1;
  r.user_data = &w;
  g_autoptr (NsResult) res = run_ok (m, &r);
  g_assert_nonnull (res);
  int grid_h = r.height / 16, ntok = (r.width / 16) * grid_h;
  g_assert_cmpint (w.tokens_seen, ==, ntok);
  g_assert_cmpint (w.vae_previews, ==, grid_h - 1);
  g_assert_cmpint (w.previews, ==, ntok + grid_h - 1);
}

/* An input whose sides are not multiples of 16 is resized to the nearest
 * token grid, which is also the default output size. */
static void
test_edit_resize (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  NsModel *m = get_model ("edit-tiny");
  enum { W = 40, H = 56 };
  g_autofree guint8 *px = g_new (guint8, W * H * 4);
  for (int i = 0; i < W * H * 4; i++)
    px[i] = (guint8) (i * 37);
  NsRequest r;
  ns_request_init (&r);
  r.mode = NS_MODE_EDIT;
  r.prompt = "make it blue";
  r.steps = 2;
  r.input = (NsImage) { W, H, px, W * 4 };
  g_autoptr (NsResult) res = run_ok (m, &r);
  g_assert_cmpint (res->width, ==, 48);
  g_assert_cmpint (res->height, ==, 64);
}

static void
count_progress (double fraction, const char *what, gpointer data)
{
  double *last = data;
  g_assert_nonnull (what);
  g_assert_cmpfloat (fraction, >=, *last);
  *last = fraction;
}

/* Any checkpoint edits; one that does not look like an edit model warns,
 * and the edit defaults apply whatever the checkpoint. */
static void
test_edit_any_checkpoint (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  NsModel *t2i = get_model ("t2i-tiny"), *edit = get_model ("edit-tiny");
  g_autofree char *warning = ns_model_mode_warning (t2i, NS_MODE_EDIT);
  g_assert_nonnull (strstr (warning, "text-to-image"));
  g_assert_null (ns_model_mode_warning (edit, NS_MODE_EDIT));
  g_assert_null (ns_model_mode_warning (t2i, NS_MODE_GENERATE));
  enum { W = 32, H = 32 };
  g_autofree guint8 *px = g_new (guint8, W * H * 4);
  for (int i = 0; i < W * H * 4; i++)
    px[i] = (guint8) (i * 13);
  NsRequest r, on_edit_model;
  ns_request_init (&r);
  r.mode = NS_MODE_EDIT;
  r.prompt = "make it night";
  r.steps = 2;
  r.input = (NsImage) { W, H, px, W * 4 };
  on_edit_model = r;
  g_autoptr (NsResult) res = run_ok (t2i, &r);
  g_assert_cmpint (res->width, ==, W);
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_request_resolve (t2i, &r, &error));
  g_assert_true (ns_request_resolve (edit, &on_edit_model, &error));
  g_assert_cmpfloat (r.cfg_img, ==, on_edit_model.cfg_img);
  g_assert_cmpfloat (r.shift, ==, on_edit_model.shift);
  g_assert_cmpstr (r.negative, ==, on_edit_model.negative);
}

/* Progress reaches 1, AUTO says why it runs on the CPU, cancelling stops it. */
static void
test_load (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  g_autofree char *dir = ns_test_golden_path ("t2i-tiny", "model", NULL);
  double last = 0;
  NsLoadOptions o = { .model_dir = dir, .backend = NS_BACKEND_AUTO, .threads = 1,
                      .progress = count_progress, .progress_data = &last };
  g_autoptr (GError) error = NULL;
  g_autoptr (NsModel) m = ns_model_load (&o, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (last, ==, 1.0);
  if (ns_model_get_backend (m) == NS_BACKEND_CPU)
    g_assert_nonnull (ns_model_get_backend_note (m));
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_cancellable_cancel (cancellable);
  o.cancellable = cancellable;
  o.progress = NULL;
  NsModel *none = ns_model_load (&o, &error);
  g_assert_null (none);
  g_assert_error (error, NS_ERROR, NS_ERROR_CANCELLED);
}

/* A copy of the t2i model folder (symlinks) whose config enables
 * use_gen_pos_embed: the saved buffer then shifts every condition. */
static char *
pos_embed_model (void)
{
  g_autofree char *src = ns_test_golden_path ("t2i-tiny", "model", NULL);
  char *dst = ns_test_tmpdir ();
  GDir *d = g_dir_open (src, 0, NULL);
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *from = g_build_filename (src, name, NULL);
      g_autofree char *to = g_build_filename (dst, name, NULL);
      if (strcmp (name, "config.json") != 0)
        {
          g_assert_cmpint (symlink (from, to), ==, 0);
          continue;
        }
      g_autofree char *text = NULL;
      g_assert_true (g_file_get_contents (from, &text, NULL, NULL));
      g_autoptr (GString) cfg = g_string_new (text);
      g_assert_cmpint (g_string_replace (cfg, "\"use_gen_pos_embed\": false",
                                         "\"use_gen_pos_embed\": true", 1), ==, 1);
      g_assert_true (g_file_set_contents (to, cfg->str, -1, NULL));
    }
  g_dir_close (d);
  return dst;
}

static void
test_gen_pos_embed (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  g_autofree char *dir = pos_embed_model ();
  g_autofree char *vae = ns_test_golden_path ("t2i-tiny", "vae", NULL);
  NsLoadOptions o = { .model_dir = dir, .vae_dir = vae, .backend = NS_BACKEND_CPU, .threads = 1 };
  g_autoptr (GError) error = NULL;
  g_autoptr (NsModel) with = ns_model_load (&o, &error);
  g_assert_no_error (error);
  NsRequest r;
  small_request (&r);
  g_autoptr (NsResult) a = run_ok (with, &r);
  g_autoptr (NsResult) b = run_ok (get_model ("t2i-tiny"), &r);
  size_t n = (size_t) a->ntok * a->token_dim;
  for (size_t i = 0; i < n; i++)
    g_assert_true (isfinite (a->tokens[i]));
  g_assert_true (memcmp (a->tokens, b->tokens, n * sizeof (float)) != 0);
  ns_test_rmtree (dir);
}

static void
expect_invalid (NsModel *m, const NsRequest *r, int code)
{
  g_autoptr (GError) error = NULL;
  NsResult *res = ns_model_run (m, r, &error);
  g_assert_null (res);
  g_assert_error (error, NS_ERROR, code);
}

static void
test_bad_requests (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  NsModel *m = get_model ("t2i-tiny");
  NsRequest r;
  small_request (&r);
  r.cfg = 0.5;
  expect_invalid (m, &r, NS_ERROR_INVALID_ARGUMENT);
  small_request (&r);
  r.width = 40;
  expect_invalid (m, &r, NS_ERROR_INVALID_ARGUMENT);
  small_request (&r);
  r.steps = -3;
  expect_invalid (m, &r, NS_ERROR_INVALID_ARGUMENT);
  small_request (&r);
  r.images = 0;
  expect_invalid (m, &r, NS_ERROR_INVALID_ARGUMENT);
  small_request (&r);
  r.mode = NS_MODE_EDIT;
  expect_invalid (m, &r, NS_ERROR_INVALID_ARGUMENT);
  small_request (&r);
  g_autofree char *missing = g_build_filename (g_get_tmp_dir (), "no-such-noise.safetensors", NULL);
  r.noise_file = missing;
  expect_invalid (m, &r, NS_ERROR_FILE);
}

/* Defaults by kind (docs/model.md §9). */
static void
test_defaults (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  NsModel *t2i = get_model ("t2i-tiny");
  NsModel *edit = get_model ("edit-tiny");
  g_assert_cmpint (ns_model_get_kind (t2i), ==, NS_MODEL_KIND_T2I);
  g_assert_cmpint (ns_model_get_kind (edit), ==, NS_MODEL_KIND_EDIT);
  g_assert_cmpint (ns_model_get_backend (t2i), ==, NS_BACKEND_CPU);
  NsRequest r;
  g_autoptr (GError) error = NULL;
  ns_request_init (&r);
  r.prompt = "x";
  g_assert_true (ns_request_resolve (t2i, &r, &error));
  g_assert_cmpint (r.width, ==, 512);
  g_assert_cmpint (r.sampler, ==, NS_SAMPLER_HF_SDE);
  g_assert_cmpint (r.steps, ==, 28);
  g_assert_cmpint (r.use_norm, ==, 0);
  guint8 px[48 * 40 * 4] = { 0 };
  ns_request_init (&r);
  r.prompt = "x";
  r.mode = NS_MODE_EDIT;
  r.input = (NsImage) { 40, 48, px, 40 * 4 };
  g_assert_true (ns_request_resolve (edit, &r, &error));
  g_assert_cmpint (r.width, ==, 48);
  g_assert_cmpint (r.height, ==, 48);
  g_assert_cmpint (r.sampler, ==, NS_SAMPLER_GH_GRID);
  g_assert_cmpfloat (r.shift, ==, 3.2);
  g_assert_cmpfloat (r.cfg_img, ==, 2.0);
  g_assert_cmpstr (r.negative, ==, "Copy original image.");
  g_assert_cmpint (r.use_norm, ==, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  golden_run_add_tests ("/model/pipeline/golden", test_golden_run);
  g_test_add_func ("/model/pipeline/defaults", test_defaults);
  g_test_add_func ("/model/pipeline/same-seed", test_same_seed);
  g_test_add_func ("/model/pipeline/several-images", test_several_images);
  g_test_add_func ("/model/pipeline/cancel", test_cancel);
  g_test_add_func ("/model/pipeline/previews", test_previews);
  g_test_add_func ("/model/pipeline/bad-requests", test_bad_requests);
  g_test_add_func ("/model/pipeline/edit-resize", test_edit_resize);
  g_test_add_func ("/model/pipeline/edit-any-checkpoint", test_edit_any_checkpoint);
  g_test_add_func ("/model/pipeline/load", test_load);
  g_test_add_func ("/model/pipeline/gen-pos-embed", test_gen_pos_embed);
  int rc = g_test_run ();
  for (size_t i = 0; i < G_N_ELEMENTS (loaded); i++)
    ns_model_free (loaded[i]);
  return rc;
}
