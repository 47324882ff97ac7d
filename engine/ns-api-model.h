/* ns-api-model.h — loading a model, describing a request, running it.
 * Included by nextstep.h; do not include directly. */
#pragma once

#include <glib.h>
#include <gio/gio.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum { NS_MODEL_KIND_T2I, NS_MODEL_KIND_EDIT } NsModelKind;
/* REMOTE: the model runs on an HTTP server (`nextstep serve` or vLLM-Omni). */
typedef enum { NS_BACKEND_AUTO, NS_BACKEND_CPU, NS_BACKEND_CUDA, NS_BACKEND_REMOTE } NsBackendKind;
/* Q4: 4-bit codes with an f16 scale per group of 32 (docs/model.md, "4-bit
 * weights"), int8 where the rule of cpu/quant.h keeps 8 bits. */
typedef enum { NS_WEIGHTS_AUTO, NS_WEIGHTS_BF16, NS_WEIGHTS_FP8, NS_WEIGHTS_INT8, NS_WEIGHTS_Q4 } NsWeightFormat;
typedef enum { NS_SAMPLER_DEFAULT = -1, NS_SAMPLER_HF_SDE = 0, NS_SAMPLER_GH_GRID, NS_SAMPLER_ODE } NsSampler;
typedef enum { NS_CFG_CONSTANT, NS_CFG_LINEAR } NsCfgSchedule;
typedef enum { NS_MODE_GENERATE, NS_MODE_EDIT } NsMode;

const char *ns_sampler_name (NsSampler sampler);               /* "hf-sde" … */
gboolean    ns_sampler_from_name (const char *name, NsSampler *out);
const char *ns_backend_name (NsBackendKind backend);
gboolean    ns_backend_from_name (const char *name, NsBackendKind *out);
const char *ns_weight_format_name (NsWeightFormat format);
gboolean    ns_weight_format_from_name (const char *name, NsWeightFormat *out);

/* ---- Model discovery ---------------------------------------------------
 * ns_model_find: `explicit_dir` if non-NULL; else $NEXTSTEP_MODEL; else the
 * Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
 * ~/.cache/huggingface/hub) snapshots of stepfun-ai/NextStep-1.1,
 * NextStep-1-Large, NextStep-1-Large-Edit (refs/main names the snapshot).
 * `want_edit` prefers the edit model. Returns a newly allocated folder. */
char *ns_model_find (const char *explicit_dir, gboolean want_edit, GError **error);
/* The VAE folder for a model: `explicit_dir`; else <model>/vae; else the
 * config's vae_name_or_path (relative to the model folder); else the
 * NextStep-1-f8ch16-Tokenizer snapshot in the same cache. */
char *ns_vae_find (const char *model_dir, const char *explicit_dir, GError **error);

/* ---- Loading ---------------------------------------------------------- */
typedef void (*NsLoadProgressFunc) (double fraction, const char *what, gpointer user_data);

typedef struct {
  const char *model_dir;          /* required (use ns_model_find); with NS_BACKEND_REMOTE the
                                   * server's model name (NULL: the server's first, its edit
                                   * model first with want_edit) */
  const char *vae_dir;            /* NULL: ns_vae_find */
  NsBackendKind backend;
  NsWeightFormat weights;
  int threads;                    /* CPU threads, 0 = all cores */
  guint64 device_memory_cap;      /* test hook: pretend the GPU has this many bytes (0 = real);
                                   * on the CPU backend the memory plan is checked against it */
  int64_t quant_min_elements;     /* int8/fp8: quantize 2-D weights of at least this many
                                   * elements (0 = 1 Mi, as the real model; tests use 1) */
  NsLoadProgressFunc progress;
  gpointer progress_data;
  GCancellable *cancellable;
  const char *server;             /* NS_BACKEND_REMOTE: base URL, http://host:port */
  const char *api_key;            /* NS_BACKEND_REMOTE: Bearer key, NULL for none */
  gboolean want_edit;             /* NS_BACKEND_REMOTE: prefer the server's edit model */
} NsLoadOptions;

/* An NsModel is a local checkpoint on a backend or a model on a server
 * (NS_BACKEND_REMOTE); the calls below work the same on both. */
typedef struct NsModel NsModel;

/* Loads a local model, or with NS_BACKEND_REMOTE asks the server which
 * models it has (GET /v1/models) and binds to one; nothing is uploaded. */
NsModel    *ns_model_load (const NsLoadOptions *options, GError **error);
void        ns_model_free (NsModel *model);
NsModelKind ns_model_get_kind (const NsModel *model);
/* A warning to show before running `mode` on this checkpoint (editing with
 * one that does not look like an edit model runs, but may edit poorly), or
 * NULL; g_free it. */
char       *ns_model_mode_warning (const NsModel *model, NsMode mode);
const char *ns_model_get_dir (const NsModel *model);     /* remote: the server URL */
/* The model's name for recipes: the folder's base name, or the server's model id. */
const char *ns_model_get_name (const NsModel *model);
NsBackendKind ns_model_get_backend (const NsModel *model);
/* Why AUTO chose the CPU (NULL when CUDA is used or CPU was asked for). */
const char *ns_model_get_backend_note (const NsModel *model);
/* The weight format really used (AUTO resolved: bf16 when it fits, else int8). */
NsWeightFormat ns_model_get_weight_format (const NsModel *model);

/* ---- Requests --------------------------------------------------------- */
typedef struct {
  int width, height;              /* multiples of 16 */
  const guint8 *rgba;             /* RGBA8, rows of `stride` bytes */
  int stride;
} NsImage;

/* Per-token progress; called on the worker thread. */
typedef void (*NsTokenFunc) (int image, int token, int n_tokens, gpointer user_data);
/* A preview of image `image`: a full-size RGBA8 picture (width×height,
 * stride width*4) where the tokens decoded so far are filled in; `final_decode`
 * is TRUE when it comes from a real VAE decode, FALSE for the instant linear
 * latent→RGB map. Called on the worker thread; copy what you keep. */
typedef void (*NsPreviewFunc) (int image, const guint8 *rgba, int width, int height,
                               int tokens_done, gboolean vae_decoded, gpointer user_data);

/* The stages of a run, for progress: each is reported when it starts
 * (done = 0) and when it ends (done = total); TOKENS also after every token
 * (done = tokens of every image so far, total = n_images · ntok). */
typedef enum { NS_STAGE_ENCODE, NS_STAGE_PREFILL, NS_STAGE_TOKENS, NS_STAGE_DECODE } NsStage;
typedef void (*NsStageFunc) (NsStage stage, int done, int total, gpointer user_data);

typedef struct {
  NsMode mode;
  const char *prompt;             /* caption (generate) or instruction (edit) */
  const char *positive;           /* NULL: model default; "" : none */
  const char *negative;           /* NULL: model default; "" : empty */
  int width, height;              /* 0: model default (edit: input size) */
  int images;                     /* ≥ 1 */
  int steps;                      /* 0: default */
  double cfg;                     /* 0: default; must be ≥ 1 */
  double cfg_img;                 /* 0: default (edit) */
  NsCfgSchedule cfg_schedule;
  double shift;                   /* 0: default */
  NsSampler sampler;              /* NS_SAMPLER_DEFAULT: model default */
  int use_norm;                   /* -1 auto, 0 off, 1 on */
  guint64 seed;
  NsImage input;                  /* edit input (rgba NULL for generate) */
  const char *noise_file;         /* test hook: take the draws from a golden run's `noise` */
  int preview_every;              /* VAE preview decode every N token rows (0 = never) */
  gboolean timings;               /* split each token's time into backbone and head
                                   * (waits for the backend twice per token) */
  NsTokenFunc on_token;
  NsPreviewFunc on_preview;
  NsStageFunc on_stage;
  gpointer user_data;
  GCancellable *cancellable;
} NsRequest;

void ns_request_init (NsRequest *request);   /* all defaults */
/* Fills every "default" field with the values for this model's kind
 * (docs/model.md §9) and validates the rest. */
gboolean ns_request_resolve (const NsModel *model, NsRequest *request, GError **error);

/* Wall-clock milliseconds of a run's stages. backbone_ms and head_ms sum
 * over the image tokens and are measured only with NsRequest.timings. */
typedef struct {
  double encode_ms, prefill_ms, tokens_ms, backbone_ms, head_ms, vae_ms, total_ms;
} NsRunTimings;

typedef struct {
  int n_images;
  int width, height;
  guint8 **rgba;                  /* n_images pictures, stride width*4 */
  /* what --save-tokens writes (float32, shapes as in docs/model.md §5) */
  float *tokens;                  /* [n, ntok, 64] */
  float *latents;                 /* [n, 16, H/8, W/8] */
  float *decoded;                 /* [n, 3, H, W] */
  int ntok, token_dim, latent_channels;
  guint64 seed;                   /* the seed really used */
  NsRunTimings timings;
} NsResult;

NsResult *ns_model_run (NsModel *model, const NsRequest *request, GError **error);
void      ns_result_free (NsResult *result);
/* Fails for a remote result: a server sends only the pictures. */
gboolean  ns_result_save_tokens (const NsResult *result, const char *path, GError **error);

/* ---- Servers ------------------------------------------------------------
 * What a server offers (GET /v1/models), for `nextstep inspect --server` and
 * the dialog's "Test connection". */
typedef struct {
  char *id;                       /* the model name requests use */
  NsModelKind kind;
  gboolean nextstep;              /* `nextstep serve`: edits and preview streams */
  gboolean large_style;           /* `nextstep serve`: NextStep-1-Large defaults */
} NsServerModel;

/* The models `server` offers, as a new array of NsServerModel (freed with it). */
GPtrArray *ns_server_list_models (const char *server, const char *api_key,
                                  GCancellable *cancellable, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsModel, ns_model_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsResult, ns_result_free)

G_END_DECLS
