/* test-model-units.c — Philox known answers, the Gaussian draws, the sampler
 * time grids and CFG values of every golden run, and the backbone and FM-head
 * unit tensors of both golden cases. */
#include <math.h>
#include <string.h>

#include "golden-run.h"
#include "model/pipeline-private.h"
#include "files/safetensors.h"
#include "philox.h"

static const char *const cases[] = { "t2i-tiny", "edit-tiny" };

/* Random123 tests/kat_vectors, the three "philox4x32 10" lines. */
static void
test_philox_kat (void)
{
  static const struct { guint32 ctr[4], key[2], out[4]; } kat[] = {
    { { 0, 0, 0, 0 }, { 0, 0 }, { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
    { { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff }, { 0xffffffff, 0xffffffff },
      { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
    { { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, { 0xa4093822, 0x299f31d0 },
      { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (kat); i++)
    {
      guint32 out[4];
      ns_philox4x32_10 (kat[i].ctr, kat[i].key, out);
      for (int w = 0; w < 4; w++)
        g_assert_cmphex (out[w], ==, kat[i].out[w]);
    }
}

/* The draws are N(0, 1), reproducible, and differ across their coordinates. */
static void
test_rng_normal (void)
{
  enum { DIM = 64, COUNT = 2000 };
  double sum = 0, sq = 0;
  float a[DIM], b[DIM];
  for (int t = 0; t < COUNT; t++)
    {
      ns_rng_normal (42, 0, (guint32) t, 0, a, DIM);
      for (int i = 0; i < DIM; i++)
        {
          g_assert_true (isfinite (a[i]));
          sum += a[i];
          sq += (double) a[i] * a[i];
        }
    }
  double mean = sum / (COUNT * DIM), var = sq / (COUNT * DIM) - mean * mean;
  g_assert_cmpfloat (fabs (mean), <, 0.02);
  g_assert_cmpfloat (fabs (var - 1.0), <, 0.03);

  ns_rng_normal (7, 1, 2, 3, a, DIM);
  ns_rng_normal (7, 1, 2, 3, b, DIM);
  g_assert_cmpmem (a, sizeof a, b, sizeof b);
  const guint32 other[][3] = { { 0, 2, 3 }, { 1, 1, 3 }, { 1, 2, 4 } };
  for (size_t k = 0; k < G_N_ELEMENTS (other); k++)
    {
      ns_rng_normal (7, other[k][0], other[k][1], other[k][2], b, DIM);
      g_assert_true (memcmp (a, b, sizeof a) != 0);
    }
  ns_rng_normal (8, 1, 2, 3, b, DIM);
  g_assert_true (memcmp (a, b, sizeof a) != 0);
}

/* --noise: draw j of token t for image i is noise[t, j, i], as the CPU
 * backend's noise op hands it out. */
static void
test_noise_file (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  GoldenRun *run = golden_run_load ("t2i-tiny", "t2i-hfsde-64x96-n2");
  const NsTensorView *ref = ns_tensor_store_find (run->tensors, "noise");
  int ntok = (int) ref->shape[0], k = (int) ref->shape[1], n = (int) ref->shape[2];
  g_autoptr (GError) error = NULL;
  g_autofree float *table = ns_noise_load_file (run->tensors_path, ntok, k, n, 64, &error);
  g_assert_no_error (error);
  NsBackend *cpu = ns_backend_cpu_new (1);
  int32_t token = ntok - 1;
  float draw[2 * 64];
  cpu->ops->noise (cpu, draw, n, 64, 0, table, k, &token, k - 2);
  size_t at = (((size_t) (ntok - 1) * k + (k - 2)) * n) * 64;
  for (int i = 0; i < n * 64; i++)
    g_assert_cmpfloat (draw[i], ==, ns_tensor_get_f32 (ref, (int64_t) (at + i)));
  g_assert_null (ns_noise_load_file (run->tensors_path, ntok, k + 1, n, 64, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT);
  ns_backend_destroy (cpu);
  golden_run_free (run);
}

static void
check_run_schedule (const GoldenRun *run)
{
  NsSampler sampler;
  g_assert_true (ns_sampler_from_name (run->sampler, &sampler));
  g_autofree double *grid = g_new (double, run->steps + 1);
  int count = ns_sampler_time_grid (sampler, run->steps, run->shift, grid);
  const NsTensorView *ref = ns_tensor_store_find (run->tensors, "t_grid_f64");
  g_assert_cmpint (count, ==, (int) ns_tensor_n_elements (ref));
  for (int i = 0; i < count; i++)
    g_assert_cmpfloat_with_epsilon (grid[i], ns_tensor_get_f64 (ref, i), 1e-6);
  g_assert_cmpint (ns_sampler_draws_per_token (sampler, run->steps), ==,
                   (int) json_object_get_int_member (run->root, "noise_per_token"));

  const NsTensorView *cfg_iter = ns_tensor_store_find (run->tensors, "cfg_iter");
  int ntok = (int) cfg_iter->shape[0];
  NsCfgSchedule schedule = strcmp (run->cfg_schedule, "linear") == 0 ? NS_CFG_LINEAR
                                                                     : NS_CFG_CONSTANT;
  NsCfgParams params = { run->cfg, run->cfg_img, schedule == NS_CFG_LINEAR, ntok };
  for (int t = 0; t < ntok; t++)
    {
      double c, ci;
      ns_cfg_scales (&params, t, &c, &ci);
      g_assert_cmpfloat_with_epsilon (c, ns_tensor_get_f64 (cfg_iter, 2 * t), 1e-12);
      g_assert_cmpfloat_with_epsilon (ci, ns_tensor_get_f64 (cfg_iter, 2 * t + 1), 1e-12);
    }
}

static void
test_schedules (void)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_auto (GStrv) names = golden_run_names (cases[c]);
      g_assert_nonnull (names[0]);
      for (char **name = names; *name; name++)
        {
          GoldenRun *run = golden_run_load (cases[c], *name);
          check_run_schedule (run);
          golden_run_free (run);
        }
    }
}

/* Aug-2025 linear schedule: full guidance at token 0, decaying towards 1. */
static void
test_linear_schedule (void)
{
  double c0, ci0, c_last, ci_last;
  const NsCfgParams params = { 5.0, 3.0, TRUE, 10 };
  ns_cfg_scales (&params, 0, &c0, &ci0);
  ns_cfg_scales (&params, 9, &c_last, &ci_last);
  g_assert_cmpfloat (c0, ==, 5.0);
  g_assert_cmpfloat (ci0, ==, 3.0);
  g_assert_cmpfloat_with_epsilon (c_last, 1.4, 1e-12);
  g_assert_cmpfloat_with_epsilon (ci_last, 1.2, 1e-12);
}

/* ---- unit tensors --------------------------------------------------------- */

typedef struct {
  NsModelConfig cfg;
  NsTensorStore *weights, *units;
  NsBackend *backend;
  JsonParser *parser;
  JsonObject *root;
} Unit;

static Unit *
unit_load (const char *case_name)
{
  Unit *u = g_new0 (Unit, 1);
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = ns_test_golden_path (case_name, "model", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_autofree char *units = ns_test_golden_path (case_name, "units.safetensors", NULL);
  g_autofree char *json = ns_test_golden_path (case_name, "units.json", NULL);
  g_assert_true (ns_model_config_load (&u->cfg, cfg, &error));
  u->weights = ns_safetensors_load_dir (dir, &error);
  g_assert_no_error (error);
  u->units = ns_test_load_safetensors (units);
  u->parser = ns_test_load_json (json);
  u->root = json_node_get_object (json_parser_get_root (u->parser));
  u->backend = ns_backend_cpu_new (1);
  return u;
}

static void
unit_free (Unit *u)
{
  ns_backend_destroy (u->backend);
  ns_tensor_store_free (u->weights);
  ns_tensor_store_free (u->units);
  ns_model_config_clear (&u->cfg);
  g_object_unref (u->parser);
  g_free (u);
}

static void
unit_compare (Unit *u, const char *name, const float *ours, const guint8 *keep)
{
  g_autofree char *ref_name = g_strdup_printf ("%s_f64", name);
  const NsTensorView *ref = ns_tensor_store_find (u->units, ref_name);
  g_assert_nonnull (ref);
  double tol = ns_test_tolerance (u->root, name, 1e-6);
  double err = ns_test_rel_error_masked (ours, ref, (size_t) ns_tensor_n_elements (ref), keep);
  g_test_message ("%s: rel error %.3g (tolerance %.3g)", name, err, tol);
  if (!(err <= tol))
    g_test_fail_printf ("%s: rel error %.3g exceeds tolerance %.3g", name, err, tol);
}

static void
test_backbone (gconstpointer data)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  Unit *u = unit_load (data);
  g_autoptr (GError) error = NULL;
  const NsTensorView *ids_t = ns_tensor_store_find (u->units, "bb_input_ids");
  const NsTensorView *mask_t = ns_tensor_store_find (u->units, "bb_attention_mask");
  int rows = (int) ids_t->shape[0], len = (int) ids_t->shape[1], hidden = u->cfg.hidden_size;
  int layers = u->cfg.num_hidden_layers;
  g_autofree int32_t *ids = g_new (int32_t, rows * len);
  g_autofree int32_t *mask = g_new (int32_t, rows * len);
  for (int i = 0; i < rows * len; i++)
    {
      ids[i] = (int32_t) ns_tensor_get_f64 (ids_t, i);
      mask[i] = (int32_t) ns_tensor_get_f64 (mask_t, i);
    }
  NsTransformer *tr = ns_transformer_new (u->backend, u->weights, &u->cfg, &error);
  g_assert_no_error (error);
  NsKvCache *kv = ns_kv_cache_new (tr, rows, len, len, &error);
  g_assert_no_error (error);
  const NsBackendOps *ops = u->backend->ops;
  float *x = ops->alloc (u->backend, (size_t) rows * len * hidden, &error);
  float *last = ops->alloc (u->backend, (size_t) rows * hidden, &error);
  size_t per_layer = (size_t) rows * len * hidden;
  g_autofree float *layer_inputs = g_new (float, layers * per_layer);
  g_autofree float *hs = g_new (float, per_layer);
  g_autofree guint8 *keep = g_new (guint8, layers * per_layer);
  for (size_t i = 0; i < layers * per_layer; i++)
    keep[i] = mask[(i % per_layer) / hidden] != 0;
  NsBackboneTrace trace = { layer_inputs, hs };
  ns_transformer_embed (tr, x, ids, rows * len);
  g_assert_true (ns_transformer_forward (tr, kv, x, len, mask, last, &trace, NULL, &error));
  g_assert_no_error (error);
  unit_compare (u, "bb_layer_inputs", layer_inputs, keep);
  unit_compare (u, "bb_hidden", hs, keep);
  ops->free (u->backend, x);
  ops->free (u->backend, last);
  ns_kv_cache_free (kv);
  ns_transformer_free (tr);
  unit_free (u);
}

static void
test_fm_head (gconstpointer data)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  Unit *u = unit_load (data);
  g_autoptr (GError) error = NULL;
  const NsTensorView *x_t = ns_tensor_store_find (u->units, "fm_x");
  const NsTensorView *t_t = ns_tensor_store_find (u->units, "fm_t");
  const NsTensorView *c_t = ns_tensor_store_find (u->units, "fm_c");
  int rows = (int) x_t->shape[0], dim = (int) x_t->shape[1], hidden = u->cfg.hidden_size;
  NsFmHead *head = ns_fm_head_new (u->backend, u->weights, &u->cfg, &error);
  g_assert_no_error (error);
  NsFmState *st = ns_fm_state_new (head, rows, 1, &error);
  g_assert_no_error (error);
  const NsBackendOps *ops = u->backend->ops;
  float *x = ops->alloc (u->backend, (size_t) rows * dim, &error);
  float *c = ops->alloc (u->backend, (size_t) rows * hidden, &error);
  float *v = ops->alloc (u->backend, (size_t) rows * dim, &error);
  g_autofree float *xh = ns_tensor_to_f32 (x_t);
  g_autofree float *ch = ns_tensor_to_f32 (c_t);
  g_autofree double *t = g_new (double, rows);
  for (int r = 0; r < rows; r++)
    t[r] = ns_tensor_get_f32 (t_t, r);
  ops->write (u->backend, x, xh, (size_t) rows * dim);
  ops->write (u->backend, c, ch, (size_t) rows * hidden);
  ns_fm_head_set_times (head, st, t);
  ns_fm_head_set_cond (head, st, c);
  ns_fm_head_forward (head, st, 0, x, v);
  int fm_dim = ns_fm_head_get_dim (head);
  g_autofree float *y_host = g_new (float, (size_t) rows * fm_dim);
  g_autofree float *v_host = g_new (float, (size_t) rows * dim);
  ops->read (u->backend, y_host, ns_fm_state_get_y (st), (size_t) rows * fm_dim);
  ops->read (u->backend, v_host, v, (size_t) rows * dim);
  unit_compare (u, "fm_y", y_host, NULL);
  unit_compare (u, "fm_v", v_host, NULL);
  ops->free (u->backend, x);
  ops->free (u->backend, c);
  ops->free (u->backend, v);
  ns_fm_state_free (st);
  ns_fm_head_free (head);
  unit_free (u);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/model/philox/kat", test_philox_kat);
  g_test_add_func ("/model/rng/normal", test_rng_normal);
  g_test_add_func ("/model/rng/noise-file", test_noise_file);
  g_test_add_func ("/model/sampler/golden-schedules", test_schedules);
  g_test_add_func ("/model/sampler/linear-schedule", test_linear_schedule);
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autofree char *bb = g_strdup_printf ("/model/units/backbone/%s", cases[c]);
      g_autofree char *fm = g_strdup_printf ("/model/units/fm-head/%s", cases[c]);
      g_test_add_data_func (bb, cases[c], test_backbone);
      g_test_add_data_func (fm, cases[c], test_fm_head);
    }
  return g_test_run ();
}
