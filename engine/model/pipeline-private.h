/* pipeline-private.h — the pieces of the generation pipeline (engine/model/
 * rng.c, transformer.c, fm-head.c, sampler.c, model.c, pipeline.c) as they
 * call each other. Not installed; tests include it for the unit checks. */
#pragma once

#include <glib.h>
#include <gio/gio.h>
#include <stdint.h>

#include "nextstep.h"
#include "backend.h"
#include "files/tensor.h"
#include "files/config.h"
#include "tokenizer/tokenizer.h"
#include "model/vae.h"
#include "model/model-iface.h"

G_BEGIN_DECLS

/* ---- rng.c: host-side draws ---------------------------------------------- */

/* `dim` float32 N(0, 1) values for (seed, image, token, draw), as the
 * backends' `noise` op makes them (engine/philox.h). */
void ns_rng_normal (guint64 seed, guint32 image, guint32 token, guint32 draw,
                    float *out, int dim);
/* The recorded draws [ntok, draws, n_images, dim] of a golden run file's
 * tensor `noise` as a new float array; its shape must be exactly that. */
float *ns_noise_load_file (const char *path, int ntok, int draws, int n_images, int dim,
                           GError **error);

/* ---- transformer.c: the Qwen2 backbone and the image projectors --------- */

typedef struct NsTransformer NsTransformer;
typedef struct NsKvCache NsKvCache;

/* Uploads the backbone and projector weights (bare HF names: embed_tokens,
 * layers.N.*, norm, image_{in,out}_projector, gen_pos_embed); `store` must
 * outlive the transformer (the CPU backend points into it). */
NsTransformer *ns_transformer_new (NsBackend *backend, const NsTensorStore *store,
                                   const NsModelConfig *cfg, GError **error);
void ns_transformer_free (NsTransformer *tr);

/* out [n, hidden] = embed_tokens[ids] (ids int32 backend memory). */
void ns_transformer_embed (NsTransformer *tr, float *out, const int32_t *ids, int n);
/* out [n, hidden] = image_in_projector (tokens [n, token_dim]). */
void ns_transformer_project_in (NsTransformer *tr, float *out, const float *tokens, int n);
/* out [n, hidden] = image_out_projector (h [n, hidden] (+ row
 * pos_rows[*token] of gen_pos_embed when pos_rows is not NULL)); `tmp`
 * [n, hidden] scratch; pos_rows and token int32 backend memory. */
void ns_transformer_project_out (NsTransformer *tr, float *out, const float *h, float *tmp,
                                 int n, const int32_t *pos_rows, const int32_t *token);
/* The gen_pos_embed row of each of the ntok image tokens at this width
 * into rows_of (host); FALSE when the config does not use gen_pos_embed. */
gboolean ns_transformer_pos_embed_rows (const NsTransformer *tr, int ntok, int width_px,
                                        int32_t *rows_of);

/* How many image tokens gen_pos_embed covers at this size (G_MAXINT when the
 * config does not use it). */
int ns_transformer_pos_embed_tokens (const NsTransformer *tr, int height_px, int width_px);

/* A KV cache for `rows` sequences of up to `capacity` positions, with scratch
 * space for forwards of up to `max_step` new positions per row. */
NsKvCache *ns_kv_cache_new (NsTransformer *tr, int rows, int capacity, int max_step,
                            GError **error);
void ns_kv_cache_free (NsKvCache *kv);

/* Host captures of a forward for tests: layer_inputs [layers, rows, n, hidden]
 * and hidden [rows, n, hidden] (after the final norm); either may be NULL. */
typedef struct {
  float *layer_inputs;
  float *hidden;
} NsBackboneTrace;

/* Counts n more positions as cached without computing them (`nextstep
 * bench` measures decode at a cache length). */
void ns_kv_cache_skip (NsKvCache *kv, int n);
int  ns_transformer_get_hidden (const NsTransformer *tr);

/* Prefill: runs `n` new positions of every row through the backbone. x
 * [rows, n, hidden] (backend, overwritten) holds their input embeddings; they
 * sit at the next n positions (slot index, pads included) and are appended
 * to the cache. mask [rows, n] (host; NULL = all real) marks real tokens:
 * pads are never attended to. last [rows, hidden] (backend) receives the
 * final-normed hidden state of each row's last new position. */
gboolean ns_transformer_forward (NsTransformer *tr, NsKvCache *kv, float *x, int n,
                                 const int32_t *mask, float *last, NsBackboneTrace *trace,
                                 GCancellable *cancellable, GError **error);
/* One decode step: x [rows, hidden] at the next position, as forward with
 * n = 1 and no mask, but only ops: no host access, no checks, so it can be
 * captured as a graph and replayed for every image token. */
void ns_transformer_decode (NsTransformer *tr, NsKvCache *kv, float *x, float *last);

/* ---- fm-head.c: the flow-matching head ---------------------------------- */

typedef struct NsFmHead NsFmHead;
typedef struct NsFmState NsFmState;

NsFmHead *ns_fm_head_new (NsBackend *backend, const NsTensorStore *store,
                          const NsModelConfig *cfg, GError **error);
void      ns_fm_head_free (NsFmHead *head);

/* Scratch and modulation for `rows` rows (CFG rows) and `steps` sampling
 * steps. */
NsFmState *ns_fm_state_new (NsFmHead *head, int rows, int steps, GError **error);
void       ns_fm_state_free (NsFmState *st);
/* time_embed of t [steps, rows] (float64 backend memory); once per request. */
void ns_fm_head_set_times (NsFmHead *head, NsFmState *st, const double *t);
/* y = time_embed + cond_embed(c) (c backend [rows, hidden]) and from it the
 * shift/scale/gate of every block, step and row; once per token. */
void ns_fm_head_set_cond (NsFmHead *head, NsFmState *st, const float *c);
/* v [rows, token_dim] = head(x [rows, token_dim]) at step `step` (backend). */
void ns_fm_head_forward (NsFmHead *head, NsFmState *st, int step, const float *x, float *v);
/* Backend pointer to y [steps, rows, dim] of the last set_cond (test hook). */
const float *ns_fm_state_get_y (const NsFmState *st);
int ns_fm_head_get_dim (const NsFmHead *head);

/* ---- sampler.c: samplers and CFG ---------------------------------------- */

/* Number of Gaussian draws and head evaluations per token. */
int ns_sampler_draws_per_token (NsSampler sampler, int steps);
/* Fills t (steps + 1 entries; gh-grid uses the first `steps`) with the time
 * grid; returns how many entries the sampler defines. */
int ns_sampler_time_grid (NsSampler sampler, int steps, double shift, double *t);

/* Head rows v_rows [cfg_mult, n, dim] for the head input x_rows [cfg_mult,
 * n, dim] (every block the same state) at grid point `step`. */
typedef void (*NsHeadFunc) (gpointer data, int step, const float *x_rows, float *v_rows);
/* Sees the CFG-combined velocity v [n, dim] (backend) of evaluation `step`. */
typedef void (*NsVelocityHook) (gpointer data, int step, const float *v);

/* What the sampling of one image token needs; buffers are backend memory
 * allocated once per request. */
typedef struct {
  NsBackend *backend;
  NsSampler sampler;
  int steps, n, dim, cfg_mult;
  const double *grid;       /* host, from ns_sampler_time_grid */
  NsCfgParams cfg;
  guint64 seed;
  const float *noise_table; /* injected draws [ntok, draws, n, dim], or NULL (Philox) */
  int draws;
  const int32_t *token;     /* int32 counter: the image token being sampled */
  double *state;            /* [n, dim] */
  float *x_rows, *v_rows;   /* [cfg_mult, n, dim] */
  float *v, *eps;           /* [n, dim] */
} NsSamplerPlan;

/* Issues the ops that sample the current token of every image into tok
 * [n, dim] (backend), with use_norm when asked. Only ops: the sequence is
 * the same for every token (what the token graph captures). */
void ns_sampler_sample_token (const NsSamplerPlan *plan, NsHeadFunc head, NsVelocityHook hook,
                              gpointer data, float *tok, gboolean use_norm);

/* Intermediate tensors of a run for the library-level tests, allocated by
 * the run (g_free each): h [rows, ntok, hidden] (h[:, t] = the final-normed
 * hidden state the condition of token t comes from), c [rows, ntok, hidden],
 * v [ntok, evals, n, dim] (CFG-combined velocities), prompt_ids and
 * attention_mask [rows, len]. */
typedef struct {
  float *h;
  float *c;
  float *v;
  int32_t *prompt_ids;
  int32_t *attention_mask;
  int rows, len, evals;
} NsRunTrace;

/* ---- token-loop.c: the per-image-token loop ------------------------------ */

typedef struct NsTokenLoop NsTokenLoop;

typedef struct {
  int n, cfg_mult, ntok, dim;      /* images, CFG blocks, image tokens, token dim */
  NsSampler sampler;
  int steps;
  double shift;
  NsCfgParams cfg;
  guint64 seed;
  const char *noise_file;          /* injected draws (--noise), or NULL for Philox */
  gboolean use_norm;
  int width_px;                    /* for the gen_pos_embed rows */
  gboolean timings;                /* time head and backbone apart (waits twice a token) */
} NsTokenLoopSpec;

/* Allocates every buffer a token needs and writes the request's schedule;
 * kv holds cfg_mult · n rows. */
NsTokenLoop *ns_token_loop_new (NsBackend *b, NsTransformer *tr, NsFmHead *head, NsKvCache *kv,
                                const NsTokenLoopSpec *spec, GError **error);
void         ns_token_loop_free (NsTokenLoop *lp);
/* [rows, hidden] (backend): where the prefill leaves the last hidden state. */
float       *ns_token_loop_last_hidden (NsTokenLoop *lp);
/* Makes each step read h, c and v into the trace (tests; no graphs then). */
void         ns_token_loop_set_trace (NsTokenLoop *lp, NsRunTrace *trace);
/* Samples image token `token` of every image into out [n, ntok, dim] (host)
 * and, with feed_back, runs it through the backbone: at most one read and
 * one wait, no write. */
gboolean     ns_token_loop_step (NsTokenLoop *lp, int token, gboolean feed_back, float *out,
                                 GError **error);
/* Head and backbone milliseconds so far (spec.timings only). */
void         ns_token_loop_get_timings (const NsTokenLoop *lp, double *head_ms,
                                        double *backbone_ms);
/* The same in CPU time of the whole process (all its threads): on a shared
 * machine the measure of the work that wall time is not. */
void         ns_token_loop_get_cpu_timings (const NsTokenLoop *lp, double *head_ms,
                                            double *backbone_ms);

/* ---- weights.c: uploading weights ---------------------------------------- */

/* Uploads tensor `name` of `store` as a weight. With `optional`, a missing
 * tensor leaves `out` zeroed (data NULL) and succeeds. */
gboolean ns_weight_upload (NsBackend *backend, const NsTensorStore *store, const char *name,
                           gboolean optional, NsMat *out, GError **error);
/* Releases the `count` weights at `mats` whose data is set. */
void ns_weights_release (NsBackend *backend, NsMat *mats, size_t count);
/* NULL for a weight that was optional and absent, else the weight. */
static inline const NsMat *ns_weight_or_null (const NsMat *m) { return m->data ? m : NULL; }

/* The local implementation of NsModel: a checkpoint on a backend. */
typedef struct {
  NsModel base;
  char *vae_dir;
  NsModelConfig cfg;
  NsVaeConfig vae_cfg;
  NsTensorStore *weights;
  NsTensorStore *vae_weights;
  NsTokenizer *tokenizer;
  NsBackend *backend;
  NsTransformer *transformer;
  NsFmHead *head;
  NsVae *vae;
} NsLocalModel;

/* The local model's run (its NsModelClass.run); `model` must be local. */
NsResult *ns_local_model_run (NsModel *model, const NsRequest *request, GError **error);

/* ns_model_run on a local model, recording a trace for the tests. */
NsResult *ns_model_run_traced (NsModel *model, const NsRequest *request, NsRunTrace *trace,
                               GError **error);

G_END_DECLS
