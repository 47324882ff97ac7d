/* token-loop.c — the per-image-token loop (docs/architecture.md, "The
 * per-token loop"): sample the token with the flow-matching head and CFG,
 * read it back once, feed it through the backbone. Everything a token needs
 * lives in backend memory, allocated here once per request; the token index
 * is a device counter, so the ops of every token are the same and a backend
 * with graphs captures them once (a sampling graph and a decode graph) and
 * replays them. The pipeline (pipeline.c) and `nextstep bench` both run
 * tokens through this file. */
#include <string.h>

#include <time.h>
#include "model/pipeline-private.h"

struct NsTokenLoop {
  NsBackend *b;
  NsTransformer *tr;
  NsFmHead *head;
  NsKvCache *kv;
  NsFmState *fm;
  NsTokenLoopSpec spec;
  int rows, hidden;
  double *grid;             /* host time grid */
  NsSamplerPlan plan;
  NsGraph *sample_graph, *decode_graph;
  float *x, *h_last, *c, *tmp, *tok, *emb;   /* backend */
  int32_t *token_ctr, *pos_rows;
  double *times;
  float *tok_host;          /* [n, dim]: the one read per token lands here */
  NsRunTrace *trace;
  int token;                /* host copy, for traces only */
  double head_ms, backbone_ms;
  double head_cpu_ms, backbone_cpu_ms;
};

static float *
balloc (NsTokenLoop *lp, size_t n, GError **error)
{
  return lp->b->ops->alloc (lp->b, n, error);
}

void
ns_token_loop_free (NsTokenLoop *lp)
{
  if (lp == NULL)
    return;
  NsSamplerPlan *pl = &lp->plan;
  void *bufs[] = { lp->x, lp->h_last, lp->c, lp->tmp, lp->tok, lp->emb, lp->token_ctr,
                   lp->pos_rows, lp->times, pl->state, pl->x_rows, pl->v_rows, pl->v, pl->eps,
                   (float *) pl->noise_table };
  for (size_t i = 0; i < G_N_ELEMENTS (bufs); i++)
    ns_backend_free_any (lp->b, bufs[i]);
  NsGraph *graphs[] = { lp->sample_graph, lp->decode_graph };
  for (size_t i = 0; i < G_N_ELEMENTS (graphs); i++)
    if (graphs[i])
      lp->b->ops->graph_free (lp->b, graphs[i]);
  ns_fm_state_free (lp->fm);
  g_free (lp->grid);
  g_free (lp->tok_host);
  g_free (lp);
}

/* Injected draws (--noise), uploaded once. */
static gboolean
upload_noise (NsTokenLoop *lp, GError **error)
{
  const NsTokenLoopSpec *sp = &lp->spec;
  g_autofree float *table = ns_noise_load_file (sp->noise_file, sp->ntok, lp->plan.draws, sp->n,
                                                sp->dim, error);
  size_t count = (size_t) sp->ntok * lp->plan.draws * sp->n * sp->dim;
  float *dev = table ? balloc (lp, count, error) : NULL;
  if (dev == NULL)
    return FALSE;
  lp->b->ops->write (lp->b, dev, table, count);
  lp->plan.noise_table = dev;
  return TRUE;
}

static gboolean
alloc_buffers (NsTokenLoop *lp, GError **error)
{
  const NsTokenLoopSpec *sp = &lp->spec;
  NsSamplerPlan *pl = &lp->plan;
  size_t block = (size_t) sp->n * sp->dim, rows_block = (size_t) lp->rows * sp->dim;
  size_t rh = (size_t) lp->rows * lp->hidden;
  return (lp->fm = ns_fm_state_new (lp->head, lp->rows, sp->steps, error))
    && (pl->state = ns_backend_alloc_f64 (lp->b, block, error))
    && (pl->x_rows = balloc (lp, rows_block, error))
    && (pl->v_rows = balloc (lp, rows_block, error)) && (pl->v = balloc (lp, block, error))
    && (pl->eps = balloc (lp, block, error))
    && (lp->x = balloc (lp, rh, error)) && (lp->h_last = balloc (lp, rh, error))
    && (lp->c = balloc (lp, rh, error)) && (lp->tmp = balloc (lp, rh, error))
    && (lp->tok = balloc (lp, block, error))
    && (lp->emb = balloc (lp, (size_t) sp->n * lp->hidden, error))
    && (lp->token_ctr = ns_backend_alloc_i32 (lp->b, 1, error))
    && (lp->times = ns_backend_alloc_f64 (lp->b, (size_t) sp->steps * lp->rows, error));
}

/* Time grid, head time embedding and gen_pos_embed rows: once per request. */
static gboolean
write_schedule (NsTokenLoop *lp, GError **error)
{
  const NsTokenLoopSpec *sp = &lp->spec;
  size_t sr = (size_t) sp->steps * lp->rows;
  g_autofree double *times = g_new (double, sr);
  for (size_t i = 0; i < sr; i++)
    times[i] = lp->grid[i / lp->rows];
  ns_backend_write_f64 (lp->b, lp->times, times, sr);
  ns_fm_head_set_times (lp->head, lp->fm, lp->times);
  g_autofree int32_t *rows_of = g_new (int32_t, sp->ntok);
  if (!ns_transformer_pos_embed_rows (lp->tr, sp->ntok, sp->width_px, rows_of))
    return TRUE;
  if ((lp->pos_rows = ns_backend_alloc_i32 (lp->b, sp->ntok, error)) == NULL)
    return FALSE;
  ns_backend_write_i32 (lp->b, lp->pos_rows, rows_of, sp->ntok);
  return TRUE;
}

NsTokenLoop *
ns_token_loop_new (NsBackend *b, NsTransformer *tr, NsFmHead *head, NsKvCache *kv,
                   const NsTokenLoopSpec *spec, GError **error)
{
  NsTokenLoop *lp = g_new0 (NsTokenLoop, 1);
  lp->b = b;
  lp->tr = tr;
  lp->head = head;
  lp->kv = kv;
  lp->spec = *spec;
  lp->rows = spec->cfg_mult * spec->n;
  lp->hidden = ns_transformer_get_hidden (tr);
  lp->grid = g_new (double, spec->steps + 1);
  ns_sampler_time_grid (spec->sampler, spec->steps, spec->shift, lp->grid);
  lp->plan = (NsSamplerPlan) {
    .backend = b, .sampler = spec->sampler, .steps = spec->steps, .n = spec->n,
    .dim = spec->dim, .cfg_mult = spec->cfg_mult, .grid = lp->grid, .seed = spec->seed,
    .draws = ns_sampler_draws_per_token (spec->sampler, spec->steps), .cfg = spec->cfg,
  };
  lp->tok_host = g_new (float, (size_t) spec->n * spec->dim);
  gboolean ok = alloc_buffers (lp, error) && (spec->noise_file == NULL || upload_noise (lp, error))
    && write_schedule (lp, error);
  if (!ok)
    {
      ns_token_loop_free (lp);
      return NULL;
    }
  lp->spec.noise_file = NULL;   /* the caller's string: not kept */
  lp->plan.token = lp->token_ctr;
  return lp;
}

float *
ns_token_loop_last_hidden (NsTokenLoop *lp)
{
  return lp->h_last;
}

void
ns_token_loop_set_trace (NsTokenLoop *lp, NsRunTrace *trace)
{
  lp->trace = trace;
}

void
ns_token_loop_get_timings (const NsTokenLoop *lp, double *head_ms, double *backbone_ms)
{
  *head_ms = lp->head_ms;
  *backbone_ms = lp->backbone_ms;
}

void
ns_token_loop_get_cpu_timings (const NsTokenLoop *lp, double *head_ms, double *backbone_ms)
{
  *head_ms = lp->head_cpu_ms;
  *backbone_ms = lp->backbone_cpu_ms;
}

/* ---- the ops of a token ---------------------------------------------------- */

/* The head on x_rows at grid point `step`: v_rows for every CFG block. */
static void
head_rows (gpointer data, int step, const float *x_rows, float *v_rows)
{
  NsTokenLoop *lp = data;
  ns_fm_head_forward (lp->head, lp->fm, step, x_rows, v_rows);
}

static void
trace_velocity (gpointer data, int step, const float *v)
{
  NsTokenLoop *lp = data;
  size_t block = (size_t) lp->spec.n * lp->spec.dim;
  lp->b->ops->read (lp->b, lp->trace->v + ((size_t) lp->token * lp->spec.steps + step) * block,
                    v, block);
}

static void
trace_rows (NsTokenLoop *lp, float *dst, const float *src)
{
  size_t rh = (size_t) lp->rows * lp->hidden;
  g_autofree float *host = g_new (float, rh);
  lp->b->ops->read (lp->b, host, src, rh);
  for (int r = 0; r < lp->rows; r++)
    memcpy (dst + ((size_t) r * lp->spec.ntok + lp->token) * lp->hidden,
            host + (size_t) r * lp->hidden, lp->hidden * sizeof (float));
}

/* Condition from the last hidden state, every step's adaLN modulation, the
 * sampler loop → lp->tok. */
static void
sample_ops (NsTokenLoop *lp)
{
  ns_transformer_project_out (lp->tr, lp->c, lp->h_last, lp->tmp, lp->rows, lp->pos_rows,
                              lp->token_ctr);
  if (lp->trace)
    {
      trace_rows (lp, lp->trace->h, lp->h_last);
      trace_rows (lp, lp->trace->c, lp->c);
    }
  ns_fm_head_set_cond (lp->head, lp->fm, lp->c);
  ns_sampler_sample_token (&lp->plan, head_rows, lp->trace ? trace_velocity : NULL, lp, lp->tok,
                           lp->spec.use_norm);
}

/* The new tokens (one per image, the same in every CFG block) through the
 * backbone; then on to the next token. */
static void
decode_ops (NsTokenLoop *lp)
{
  const NsBackendOps *ops = lp->b->ops;
  size_t block = (size_t) lp->spec.n * lp->hidden;
  ns_transformer_project_in (lp->tr, lp->emb, lp->tok, lp->spec.n);
  for (int b = 0; b < lp->spec.cfg_mult; b++)
    ops->copy (lp->b, lp->x + b * block, lp->emb, block);
  ns_transformer_decode (lp->tr, lp->kv, lp->x, lp->h_last);
  ops->counter_add (lp->b, lp->token_ctr, 1, 1);
}

/* Runs fn's ops through a graph captured on first use where the backend has
 * graphs, else directly (always directly when tracing: traces read between
 * ops). */
static gboolean
run_ops (NsTokenLoop *lp, NsGraph **graph, void (*fn) (NsTokenLoop *), GError **error)
{
  const NsBackendOps *ops = lp->b->ops;
  if (ops->graph_begin == NULL || lp->trace != NULL)
    {
      fn (lp);
      return TRUE;
    }
  if (*graph == NULL)
    {
      if (!ops->graph_begin (lp->b, error))
        return FALSE;
      fn (lp);
      if ((*graph = ops->graph_end (lp->b, error)) == NULL)
        return FALSE;
    }
  ops->graph_launch (lp->b, *graph);
  return TRUE;
}

/* Wall and process CPU time, in ms. */
typedef struct {
  double wall, cpu;
} PartClock;

static PartClock
part_clock (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (PartClock) { g_get_monotonic_time () / 1000.0, ts.tv_sec * 1e3 + ts.tv_nsec / 1e6 };
}

/* With spec.timings: waits for the backend and adds the wall and CPU time
 * since *t0 to *ms and *cpu_ms (then *t0 = now). */
static gboolean
time_part (NsTokenLoop *lp, PartClock *t0, double *ms, double *cpu_ms, GError **error)
{
  if (!lp->spec.timings)
    return TRUE;
  if (!lp->b->ops->sync (lp->b, error))
    return FALSE;
  PartClock now = part_clock ();
  *ms += now.wall - t0->wall;
  *cpu_ms += now.cpu - t0->cpu;
  *t0 = now;
  return TRUE;
}

gboolean
ns_token_loop_step (NsTokenLoop *lp, int token, gboolean feed_back, float *out, GError **error)
{
  const NsBackendOps *ops = lp->b->ops;
  PartClock t0 = part_clock ();
  lp->token = token;
  if (!run_ops (lp, &lp->sample_graph, sample_ops, error)
      || !time_part (lp, &t0, &lp->head_ms, &lp->head_cpu_ms, error))
    return FALSE;
  ops->read_async (lp->b, lp->tok_host, lp->tok, (size_t) lp->spec.n * lp->spec.dim);
  if (feed_back
      && (!run_ops (lp, &lp->decode_graph, decode_ops, error)
          || !time_part (lp, &t0, &lp->backbone_ms, &lp->backbone_cpu_ms, error)))
    return FALSE;
  if (!ops->read_wait (lp->b, error))
    return FALSE;
  for (int i = 0; i < lp->spec.n; i++)
    memcpy (out + (size_t) i * lp->spec.ntok * lp->spec.dim + (size_t) token * lp->spec.dim,
            lp->tok_host + (size_t) i * lp->spec.dim, lp->spec.dim * sizeof (float));
  return TRUE;
}
