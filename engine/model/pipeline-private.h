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

G_BEGIN_DECLS

/* ---- rng.c: Philox4x32-10 and the noise sources ------------------------ */

/* One Philox4x32-10 block (Random123 definition). */
void ns_philox4x32_10 (const guint32 ctr[4], const guint32 key[2], guint32 out[4]);
/* `dim` float32 N(0, 1) values (dim even) for (seed, image, token, draw); the
 * mapping is documented in rng.c. */
void ns_rng_normal (guint64 seed, guint32 image, guint32 token, guint32 draw,
                    float *out, int dim);

typedef struct NsNoise NsNoise;

/* Draws from Philox for `n_images` images of `dim` values each. */
NsNoise *ns_noise_new_philox (guint64 seed, int n_images, int dim);
/* Draws from the tensor `noise` [ntok, draws, n_images, dim] of a golden run
 * file; its shape must be exactly that. */
NsNoise *ns_noise_new_file (const char *path, int ntok, int draws, int n_images, int dim,
                            GError **error);
/* Draw `draw` of token `token` for every image: out [n_images, dim]. */
void     ns_noise_draw (NsNoise *noise, int token, int draw, float *out);
void     ns_noise_free (NsNoise *noise);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsNoise, ns_noise_free)

/* ---- transformer.c: the Qwen2 backbone and the image projectors --------- */

typedef struct NsTransformer NsTransformer;
typedef struct NsKvCache NsKvCache;

/* Uploads the backbone and projector weights (bare HF names: embed_tokens,
 * layers.N.*, norm, image_{in,out}_projector, gen_pos_embed); `store` must
 * outlive the transformer (the CPU backend points into it). */
NsTransformer *ns_transformer_new (NsBackend *backend, const NsTensorStore *store,
                                   const NsModelConfig *cfg, GError **error);
void ns_transformer_free (NsTransformer *tr);

/* out [n, hidden] = embed_tokens[ids] (ids host). */
void ns_transformer_embed (NsTransformer *tr, float *out, const int32_t *ids, int n);
/* out [n, hidden] = image_in_projector (tokens [n, token_dim]). */
void ns_transformer_project_in (NsTransformer *tr, float *out, const float *tokens, int n);
/* out [n, hidden] = image_out_projector (h [n, hidden] (+ gen_pos_embed of
 * grid token `token` when the config enables it)). `tmp` [n, hidden] scratch. */
void ns_transformer_project_out (NsTransformer *tr, float *out, const float *h, float *tmp,
                                 int n, int token, int height_px, int width_px);

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

/* Runs `n` new positions of every row through the backbone. x [rows, n,
 * hidden] (backend, overwritten) holds their input embeddings; they sit at
 * positions len..len+n-1 (slot index, pads included) and are appended to the
 * cache. mask [rows, n] (host; NULL = all real) marks real tokens: pads are
 * never attended to. last [rows, hidden] (backend) receives the final-normed
 * hidden state of each row's last new position. */
gboolean ns_transformer_forward (NsTransformer *tr, NsKvCache *kv, float *x, int n,
                                 const int32_t *mask, float *last, NsBackboneTrace *trace,
                                 GCancellable *cancellable, GError **error);

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
/* time_embed of t [steps, rows] (host); once per request. */
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
/* (cfg, cfg_img) used for token `token` of `ntok`. */
void ns_cfg_for_token (NsCfgSchedule schedule, double cfg, double cfg_img, int token, int ntok,
                       double *cfg_t, double *cfg_img_t);
/* v [n, dim] from the head rows v_rows [cfg_mult, n, dim]. */
void ns_cfg_combine (float *v, const float *v_rows, int cfg_mult, int n, int dim, double cfg,
                     double cfg_img);
/* LayerNorm without affine (eps 1e-6) of each of n vectors of dim values. */
void ns_token_layernorm (float *x, int n, int dim);

/* CFG-combined velocity v [n, dim] for the state x [n, dim] at grid point
 * `step` (time grid[step]). */
typedef void (*NsVelocityFunc) (const float *x, int step, float *v, gpointer user_data);

typedef struct {
  NsSampler sampler;
  int steps;
  int n;                    /* images */
  int dim;                  /* token dim */
  const double *grid;       /* from ns_sampler_time_grid */
} NsSamplerPlan;

/* Samples token `token` of every image into out [n, dim] (before use_norm). */
void ns_sampler_sample_token (const NsSamplerPlan *plan, NsNoise *noise, int token,
                              NsVelocityFunc velocity, gpointer user_data, float *out);

/* ---- model.c: the loaded model ------------------------------------------ */

/* Uploads tensor `name` of `store` as a weight. With `optional`, a missing
 * tensor leaves `out` zeroed (data NULL) and succeeds. */
gboolean ns_weight_upload (NsBackend *backend, const NsTensorStore *store, const char *name,
                           gboolean optional, NsMat *out, GError **error);
/* Releases the `count` weights at `mats` whose data is set. */
void ns_weights_release (NsBackend *backend, NsMat *mats, size_t count);
/* NULL for a weight that was optional and absent, else the weight. */
static inline const NsMat *ns_weight_or_null (const NsMat *m) { return m->data ? m : NULL; }

struct NsModel {
  char *dir;
  char *vae_dir;
  NsModelKind kind;
  gboolean large_style;     /* NextStep-1-Large defaults (else 1.1) */
  NsModelConfig cfg;
  NsVaeConfig vae_cfg;
  NsTensorStore *weights;
  NsTensorStore *vae_weights;
  NsTokenizer *tokenizer;
  NsBackend *backend;
  NsBackendKind backend_kind;
  char *backend_note;
  NsTransformer *transformer;
  NsFmHead *head;
  NsVae *vae;
};

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

NsResult *ns_model_run_traced (NsModel *model, const NsRequest *request, NsRunTrace *trace,
                               GError **error);

G_END_DECLS
