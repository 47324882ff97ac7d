/* test-token-loop.c — the per-token contract of docs/architecture.md ("The
 * per-token loop"), checked on the CPU backend through the counting wrapper
 * of engine/model/op-trace.c, with the settings of every golden run (its
 * model, size, images, sampler, steps, CFG and recorded noise):
 *  - host traffic per image token: at most one read and one wait, no write;
 *  - the ops of consecutive tokens are the same ops on the same buffers with
 *    the same arguments (what a captured graph replays);
 *  - the ops of a decode layer and of an FM-head step (the fused linears);
 *  - and, so that neither check passes vacuously, that the counter sees the
 *    waits `timings` adds and that the log sees a changed argument. */
#include <string.h>

#include "golden-run.h"
#include "model/op-trace.h"
#include "model/pipeline-private.h"
#include "files/safetensors.h"

#define PROMPT_LEN 12
#define TOKENS_CHECKED 4

typedef struct {
  NsModelConfig cfg;
  NsTensorStore *weights;
  NsBackend *cpu, *b;       /* b: the tracing wrapper around cpu */
  NsTransformer *tr;
  NsFmHead *head;
  NsKvCache *kv;
  NsTokenLoop *loop;
  int ntok, dim, n, cfg_mult;
  float *tokens;
} Fixture;

static NsTokenLoopSpec
spec_of (const GoldenRun *run, const Fixture *f, gboolean timings)
{
  NsSampler sampler;
  g_assert_true (ns_sampler_from_name (run->sampler, &sampler));
  gboolean linear = strcmp (run->cfg_schedule, "linear") == 0;
  return (NsTokenLoopSpec) {
    .n = f->n, .cfg_mult = f->cfg_mult, .ntok = f->ntok, .dim = f->dim, .sampler = sampler,
    .steps = run->steps, .shift = run->shift,
    .cfg = { run->cfg, run->cfg_img, linear, f->ntok }, .noise_file = run->tensors_path,
    .use_norm = run->use_norm, .width_px = run->width, .timings = timings,
  };
}

/* Loads the run's model on a traced CPU backend and prefills random ids. */
static void
fixture_init (Fixture *f, const GoldenRun *run, gboolean timings)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *cfg_path = g_build_filename (run->model_dir, "config.json", NULL);
  g_assert_true (ns_model_config_load (&f->cfg, cfg_path, &error));
  f->weights = ns_safetensors_load_dir (run->model_dir, &error);
  g_assert_no_error (error);
  f->cpu = ns_backend_cpu_new (1);
  f->b = ns_op_trace_new (f->cpu, TRUE);
  int p = f->cfg.latent_patch_size;
  f->n = run->n;
  f->cfg_mult = 1 + (run->cfg > 1.0) + (run->edit && run->cfg_img > 1.0);
  f->ntok = (run->height / (8 * p)) * (run->width / (8 * p));
  f->dim = f->cfg.latent_channels * p * p;
  int rows = f->cfg_mult * f->n;
  f->tr = ns_transformer_new (f->b, f->weights, &f->cfg, &error);
  g_assert_no_error (error);
  f->head = ns_fm_head_new (f->b, f->weights, &f->cfg, &error);
  g_assert_no_error (error);
  f->kv = ns_kv_cache_new (f->tr, rows, PROMPT_LEN + f->ntok, PROMPT_LEN, &error);
  g_assert_no_error (error);
  NsTokenLoopSpec spec = spec_of (run, f, timings);
  f->loop = ns_token_loop_new (f->b, f->tr, f->head, f->kv, &spec, &error);
  g_assert_no_error (error);
  f->tokens = g_new0 (float, (size_t) f->n * f->ntok * f->dim);

  g_autofree int32_t *ids = g_new (int32_t, rows * PROMPT_LEN);
  for (int i = 0; i < rows * PROMPT_LEN; i++)
    ids[i] = 100 + 7 * i;
  int32_t *ids_dev = ns_backend_alloc_i32 (f->b, rows * PROMPT_LEN, &error);
  float *x = f->b->ops->alloc (f->b, (size_t) rows * PROMPT_LEN * f->cfg.hidden_size, &error);
  g_assert_no_error (error);
  ns_backend_write_i32 (f->b, ids_dev, ids, rows * PROMPT_LEN);
  ns_transformer_embed (f->tr, x, ids_dev, rows * PROMPT_LEN);
  g_assert_true (ns_transformer_forward (f->tr, f->kv, x, PROMPT_LEN, NULL,
                                         ns_token_loop_last_hidden (f->loop), NULL, NULL,
                                         &error));
  ns_backend_free_any (f->b, ids_dev);
  ns_backend_free_any (f->b, x);
}

static void
fixture_clear (Fixture *f)
{
  ns_token_loop_free (f->loop);
  ns_kv_cache_free (f->kv);
  ns_fm_head_free (f->head);
  ns_transformer_free (f->tr);
  ns_backend_destroy (f->b);
  ns_backend_destroy (f->cpu);
  ns_tensor_store_free (f->weights);
  ns_model_config_clear (&f->cfg);
  g_free (f->tokens);
}

/* Runs image token t; returns its op log (caller frees) and counts. */
static GPtrArray *
run_token (Fixture *f, int t, NsOpCounts *counts)
{
  g_autoptr (GError) error = NULL;
  ns_op_trace_reset (f->b);
  g_assert_true (ns_token_loop_step (f->loop, t, t + 1 < f->ntok, f->tokens, &error));
  g_assert_no_error (error);
  *counts = *ns_op_trace_counts (f->b);
  GPtrArray *log = ns_op_trace_log (f->b);
  GPtrArray *copy = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < log->len; i++)
    g_ptr_array_add (copy, g_strdup (log->pdata[i]));
  return copy;
}

/* The first line where two logs differ, or -1. */
static int
first_difference (GPtrArray *a, GPtrArray *b)
{
  for (guint i = 0; i < MIN (a->len, b->len); i++)
    if (strcmp (a->pdata[i], b->pdata[i]) != 0)
      return (int) i;
  return a->len == b->len ? -1 : (int) MIN (a->len, b->len);
}

static void
test_token_contract (gconstpointer data)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  const char *const *names = data;
  GoldenRun *run = golden_run_load (names[0], names[1]);
  Fixture f = { 0 };
  fixture_init (&f, run, FALSE);
  int checked = MIN (TOKENS_CHECKED, f.ntok - 1);   /* the last token feeds nothing back */
  g_autoptr (GPtrArray) previous = NULL;
  for (int t = 0; t < checked; t++)
    {
      NsOpCounts c;
      g_autoptr (GPtrArray) log = run_token (&f, t, &c);
      g_test_message ("token %d: %" G_GUINT64_FORMAT " ops, %" G_GUINT64_FORMAT " reads, %"
                      G_GUINT64_FORMAT " writes, %" G_GUINT64_FORMAT " waits", t, c.ops, c.reads,
                      c.writes, c.syncs);
      g_assert_cmpuint (c.reads, <=, 1);
      g_assert_cmpuint (c.writes, ==, 0);
      g_assert_cmpuint (c.syncs, <=, 1);
      g_assert_cmpuint (c.ops, >, 10);
      if (previous != NULL)
        {
          int at = first_difference (previous, log);
          if (at >= 0)
            g_test_fail_printf ("token %d issues other ops than token %d from op %d: '%s' vs "
                                "'%s'", t, t - 1, at,
                                at < (int) previous->len ? (char *) previous->pdata[at] : "(end)",
                                at < (int) log->len ? (char *) log->pdata[at] : "(end)");
        }
      g_clear_pointer (&previous, g_ptr_array_unref);
      previous = g_steal_pointer (&log);
    }
  fixture_clear (&f);
  golden_run_free (run);
}

/* The t2i-ghgrid-64 golden run loaded into f, or NULL (the test skipped)
 * without golden data. */
static GoldenRun *
load_ghgrid (Fixture *f, gboolean timings)
{
  if (ns_test_golden_dir () == NULL)
    {
      g_test_skip ("no golden data");
      return NULL;
    }
  GoldenRun *run = golden_run_load ("t2i-tiny", "t2i-ghgrid-64");
  fixture_init (f, run, timings);
  return run;
}

/* Ops per decode layer and per FM-head step, with the fused linears of
 * backend.h (15 and 4 + 6 per block before them): a layer is rmsnorm,
 * linear_multi, 2 rope, 2 kv_store, attention, o_proj, rmsnorm,
 * linear_swiglu, down; a head step input_proj, per block
 * norm_modulate_linear and linear_gated_add, the final
 * norm_modulate_linear. The decode step ends with the counter, a copy per
 * row and the final norm. */
#define LAYER_OPS 11
#define HEAD_OPS(blocks) (2 + 2 * (blocks))

static void
test_op_counts (void)
{
  Fixture f = { 0 };
  GoldenRun *run = load_ghgrid (&f, FALSE);
  if (run == NULL)
    return;
  g_autoptr (GError) error = NULL;
  int rows = f.cfg_mult * f.n;
  float *x = f.b->ops->alloc (f.b, (size_t) rows * f.cfg.hidden_size, &error);
  float *tok = f.b->ops->alloc (f.b, (size_t) 2 * rows * f.dim, &error);
  NsFmState *st = ns_fm_state_new (f.head, rows, 1, &error);
  g_assert_no_error (error);
  ns_op_trace_reset (f.b);
  ns_transformer_decode (f.tr, f.kv, x, ns_token_loop_last_hidden (f.loop));
  g_assert_cmpuint (ns_op_trace_counts (f.b)->ops, ==,
                    (guint64) f.cfg.num_hidden_layers * LAYER_OPS + 2 + rows);
  ns_op_trace_reset (f.b);
  ns_fm_head_forward (f.head, st, 0, tok, tok + (size_t) rows * f.dim);
  g_assert_cmpuint (ns_op_trace_counts (f.b)->ops, ==, HEAD_OPS (f.cfg.fm_head_layers));
  ns_fm_state_free (st);
  ns_backend_free_any (f.b, x);
  ns_backend_free_any (f.b, tok);
  fixture_clear (&f);
  golden_run_free (run);
}

/* The checks above can fail: `timings` waits twice more per token, and a
 * changed argument (another feed_back) changes the log. */
static void
test_checks_can_fail (void)
{
  Fixture f = { 0 };
  GoldenRun *run = load_ghgrid (&f, TRUE);
  if (run == NULL)
    return;
  NsOpCounts c;
  g_autoptr (GPtrArray) first = run_token (&f, 0, &c);
  g_assert_cmpuint (c.syncs, ==, 3);
  g_autoptr (GPtrArray) last = run_token (&f, f.ntok - 1, &c);
  g_assert_cmpint (first_difference (first, last), >=, 0);
  fixture_clear (&f);
  golden_run_free (run);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  golden_run_add_tests ("/model/token-loop", test_token_contract);
  g_test_add_func ("/model/token-loop/checks-can-fail", test_checks_can_fail);
  g_test_add_func ("/model/token-loop/op-counts", test_op_counts);
  return g_test_run ();
}
