/* model.c — loading a NextStep checkpoint (model, tokenizer, VAE) onto a
 * backend, request defaults and validation, results. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "model/pipeline-private.h"
#include "model/arch.h"
#include "model/memory-plan.h"
#include "model/weight-cache.h"
#include "cpu/quant.h"
#include "files/safetensors.h"
#include "files/torch-checkpoint.h"

/* Model doc §9 prompts (NextStep-1-Large, also HF/vLLM-Omni NextStep-1.1). */
#define LARGE_POSITIVE "masterpiece, film grained, best quality."
#define LARGE_NEGATIVE "lowres, bad anatomy, bad hands, text, error, missing fingers, " \
  "extra digit, fewer digits, cropped, worst quality, low quality, normal quality, "      \
  "jpeg artifacts, signature, watermark, username, blurry."
#define EDIT_NEGATIVE "Copy original image."
#define DEFAULT_SIZE 512
#define DEFAULT_SEED 42

gboolean
ns_weight_upload (NsBackend *backend, const NsTensorStore *store, const char *name,
                  gboolean optional, NsMat *out, GError **error)
{
  memset (out, 0, sizeof *out);
  const NsTensorView *t = ns_tensor_store_find (store, name);
  if (t == NULL)
    {
      if (optional)
        return TRUE;
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "The model weights have no tensor '%s'; the checkpoint is incomplete", name);
      return FALSE;
    }
  if (t->dtype == NS_DTYPE_I8 || t->dtype == NS_DTYPE_F8_E4M3)
    {
      /* A tensor from a `nextstep convert` cache: its scales sit beside it. */
      g_autofree char *scale_name = g_strconcat (name, NS_WEIGHT_CACHE_SCALE_SUFFIX, NULL);
      const NsTensorView *scale = ns_tensor_store_find (store, scale_name);
      if (scale == NULL)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                       "%s: quantized tensor '%s' has no '%s'; delete the file and run "
                       "nextstep convert again", t->file ? t->file : "model", name, scale_name);
          return FALSE;
        }
      return backend->ops->upload_quantized (backend, t, scale, out, error);
    }
  return backend->ops->upload (backend, t, out, error);
}

void
ns_weights_release (NsBackend *backend, NsMat *mats, size_t count)
{
  for (size_t i = 0; i < count; i++)
    if (mats[i].data != NULL)
      backend->ops->release (backend, &mats[i]);
}

/* ---- loading ------------------------------------------------------------ */

static void
report (const NsLoadOptions *o, double fraction, const char *what)
{
  if (o->progress)
    o->progress (fraction, what, o->progress_data);
}

static gboolean
not_cancelled (const NsLoadOptions *o, GError **error)
{
  if (!g_cancellable_is_cancelled (o->cancellable))
    return TRUE;
  g_set_error (error, NS_ERROR, NS_ERROR_CANCELLED, "Loading the model was cancelled");
  return FALSE;
}

static gboolean
fail_with_problems (GPtrArray *problems, const char *what, const char *dir, GError **error)
{
  g_autoptr (GString) msg = g_string_new (NULL);
  g_string_printf (msg, "The %s in %s does not match its config.json:", what, dir);
  for (guint i = 0; i < problems->len && i < 20; i++)
    g_string_append_printf (msg, "\n  %s", (const char *) problems->pdata[i]);
  if (problems->len > 20)
    g_string_append_printf (msg, "\n  … and %u more", problems->len - 20);
  g_string_append_printf (msg, "\nThe files in %s are damaged or belong to another model: "
                          "re-download them; `nextstep inspect` on the model folder lists "
                          "every problem", dir);
  g_set_error_literal (error, NS_ERROR, NS_ERROR_MODEL, msg->str);
  return FALSE;
}

static gboolean
load_files (NsModel *m, const NsLoadOptions *o, GError **error)
{
  g_autofree char *cfg_path = g_build_filename (m->dir, "config.json", NULL);
  if (!ns_model_config_load (&m->cfg, cfg_path, error))
    return FALSE;
  m->vae_dir = ns_vae_find (m->dir, o->vae_dir, error);
  if (m->vae_dir == NULL)
    return FALSE;
  g_autofree char *vae_cfg_path = g_build_filename (m->vae_dir, "config.json", NULL);
  if (!ns_vae_config_load (&m->vae_cfg, vae_cfg_path, error))
    return FALSE;
  if (m->vae_cfg.z_channels != m->cfg.latent_channels)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "%s has z_channels %d but the model's config.json has latent_channels %d; "
                   "this VAE does not belong to this model", vae_cfg_path,
                   m->vae_cfg.z_channels, m->cfg.latent_channels);
      return FALSE;
    }
  report (o, 0.02, "tokenizer");
  if ((m->tokenizer = ns_tokenizer_load (m->dir, error)) == NULL || !not_cancelled (o, error))
    return FALSE;
  report (o, 0.05, "model weights");
  if ((m->weights = ns_safetensors_load_dir (m->dir, error)) == NULL || !not_cancelled (o, error))
    return FALSE;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  if (!ns_arch_check_model (m->weights, &m->cfg, problems))
    return fail_with_problems (problems, "model weights", m->dir, error);
  report (o, 0.1, "VAE weights");
  g_autofree char *ckpt = g_build_filename (m->vae_dir, "checkpoint.pt", NULL);
  if ((m->vae_weights = ns_torch_checkpoint_load (ckpt, error)) == NULL || !not_cancelled (o, error))
    return FALSE;
  if (!ns_vae_check (m->vae_weights, &m->vae_cfg, problems))
    return fail_with_problems (problems, "VAE checkpoint", m->vae_dir, error);
  m->kind = ns_arch_guess_kind (m->dir, &m->cfg);
  return TRUE;
}

static gboolean
choose_backend (NsModel *m, const NsLoadOptions *o, GError **error)
{
  if (o->backend == NS_BACKEND_CUDA || o->backend == NS_BACKEND_AUTO)
    {
#ifdef NS_HAVE_CUDA
      g_autoptr (GError) cuda_error = NULL;
      m->backend = ns_backend_cuda_new (0, o->device_memory_cap, &cuda_error);
      if (m->backend != NULL)
        {
          m->backend_kind = NS_BACKEND_CUDA;
          return TRUE;
        }
      if (o->backend == NS_BACKEND_CUDA)
        {
          g_propagate_prefixed_error (error, g_steal_pointer (&cuda_error),
                                      "--backend cuda: use --backend cpu, or auto to fall back "
                                      "to the CPU: ");
          return FALSE;
        }
      m->backend_note = g_strdup_printf ("CUDA unavailable: %s", cuda_error->message);
#else
      if (o->backend == NS_BACKEND_CUDA)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                       "This build has no CUDA backend; use the CPU backend or rebuild "
                       "with -Dcuda=enabled");
          return FALSE;
        }
      m->backend_note = g_strdup ("built without CUDA support");
#endif
    }
  m->backend = ns_backend_cpu_new (o->threads);
  m->backend_kind = NS_BACKEND_CPU;
  return TRUE;
}

/* The request the load-time plan covers: the default size, one image. */
static NsPlanRequest
planned_request (const NsModel *m)
{
  gboolean edit = m->kind == NS_MODEL_KIND_EDIT;
  int input_tokens = edit ? (DEFAULT_SIZE / 16) * (DEFAULT_SIZE / 16) : 0;
  return (NsPlanRequest) { DEFAULT_SIZE, DEFAULT_SIZE, 1, edit ? 3 : 2,
                           NS_PLAN_PROMPT_TOKENS + input_tokens };
}

/* The memory the plan is checked against and how much of it there is (0:
 * none to check): the GPU's free memory, the test cap, or on the CPU the
 * available RAM — only for AUTO there, as a format asked for by name may
 * page from disk if the user wants it to. */
static NsPlanMemory
plan_memory (const NsModel *m, const NsLoadOptions *o, guint64 *available)
{
  *available = o->device_memory_cap;
#ifdef NS_HAVE_CUDA
  if (m->backend_kind == NS_BACKEND_CUDA)
    {
      *available = ns_backend_cuda_free_memory (m->backend);
      return NS_PLAN_GPU;
    }
#else
  (void) m;
#endif
  if (*available > 0)
    return NS_PLAN_CAP;
  if (o->weights == NS_WEIGHTS_AUTO)
    *available = ns_memory_available_ram ();
  return NS_PLAN_RAM;
}

/* Picks the weight format (AUTO: bf16 when the plan fits, else int8) and
 * refuses a load whose plan exceeds the memory (plan_memory). */
static gboolean
choose_weights (NsModel *m, const NsLoadOptions *o, GError **error)
{
  int64_t min_quant = o->quant_min_elements > 0 ? o->quant_min_elements : NS_QUANT_MIN_ELEMENTS;
#ifdef NS_HAVE_CUDA
  if (m->backend_kind == NS_BACKEND_CUDA && o->weights == NS_WEIGHTS_FP8
      && !ns_backend_cuda_has_fp8 (m->backend))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "--weights fp8 needs a GPU with fp8 support (Ada or Hopper, sm_89 and "
                   "newer); use --weights int8 on this one");
      return FALSE;
    }
#endif
  guint64 available;
  NsPlanMemory memory = plan_memory (m, o, &available);
  NsWeightFormat format = o->weights == NS_WEIGHTS_AUTO ? NS_WEIGHTS_BF16 : o->weights;
  NsPlanRequest request = planned_request (m);
  NsMemoryPlan plan;
  ns_memory_plan (&m->cfg, &m->vae_cfg, format, min_quant, &request, &plan);
  if (available > 0 && o->weights == NS_WEIGHTS_AUTO && plan.total > available)
    {
      format = NS_WEIGHTS_INT8;
      ns_memory_plan (&m->cfg, &m->vae_cfg, format, min_quant, &request, &plan);
    }
  if (available > 0 && !ns_memory_plan_check (&plan, available, memory, format, error))
    return FALSE;
  ns_backend_set_weight_format (m->backend, format, min_quant);
  return TRUE;
}

/* int8/fp8: the `nextstep convert` cache replaces the published weights when
 * it was made from them with the same settings (else quantize at upload). */
static gboolean
use_weight_cache (NsModel *m, GError **error)
{
  NsBackend *b = m->backend;
  if (b->weight_format != NS_WEIGHTS_INT8 && b->weight_format != NS_WEIGHTS_FP8)
    return TRUE;
  g_autofree char *path = ns_weight_cache_default_path (m->dir, b->weight_format);
  g_autoptr (GError) local = NULL;
  NsTensorStore *cache = ns_weight_cache_open (path, m->dir, b->weight_format,
                                               b->quant_min_elements, &local);
  if (local != NULL)
    {
      g_propagate_prefixed_error (error, g_steal_pointer (&local),
                                  "The converted weights %s cannot be read (delete the file): ",
                                  path);
      return FALSE;
    }
  if (cache != NULL)
    {
      ns_tensor_store_free (m->weights);
      m->weights = cache;
    }
  return TRUE;
}

static gboolean
upload (NsModel *m, const NsLoadOptions *o, GError **error)
{
  report (o, 0.15, "uploading the transformer");
  if ((m->transformer = ns_transformer_new (m->backend, m->weights, &m->cfg, error)) == NULL
      || !not_cancelled (o, error))
    return FALSE;
  report (o, 0.85, "uploading the flow-matching head");
  if ((m->head = ns_fm_head_new (m->backend, m->weights, &m->cfg, error)) == NULL
      || !not_cancelled (o, error))
    return FALSE;
  report (o, 0.9, "uploading the VAE");
  if ((m->vae = ns_vae_new (m->backend, m->vae_weights, &m->vae_cfg, error)) == NULL)
    return FALSE;
  return m->backend->ops->sync (m->backend, error) && not_cancelled (o, error);
}

/* NextStep-1-Large defaults when the checkpoint names itself "Large" (model
 * doc §9); otherwise NextStep-1.1's. */
static gboolean
guess_large_style (const NsModel *m)
{
  g_autofree char *text = g_ascii_strdown (m->cfg.name_or_path ? m->cfg.name_or_path : m->dir, -1);
  g_autofree char *dir = g_ascii_strdown (m->dir, -1);
  gboolean is_11 = strstr (text, "1.1") || strstr (dir, "1.1");
  return !is_11 && (strstr (text, "large") || strstr (dir, "large"));
}

NsModel *
ns_model_load (const NsLoadOptions *options, GError **error)
{
  g_return_val_if_fail (options != NULL, NULL);
  if (options->model_dir == NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "No model folder given (use ns_model_find or --model)");
      return NULL;
    }
  NsModel *m = g_new0 (NsModel, 1);
  m->dir = g_strdup (options->model_dir);
  report (options, 0.0, "config");
  if (!load_files (m, options, error) || !choose_backend (m, options, error)
      || !choose_weights (m, options, error) || !use_weight_cache (m, error)
      || !upload (m, options, error))
    {
      ns_model_free (m);
      return NULL;
    }
  m->large_style = guess_large_style (m);
  report (options, 1.0, "ready");
  return m;
}

void
ns_model_free (NsModel *m)
{
  if (m == NULL)
    return;
  ns_vae_free (m->vae);
  ns_fm_head_free (m->head);
  ns_transformer_free (m->transformer);
  ns_backend_destroy (m->backend);
  ns_tensor_store_free (m->weights);
  ns_tensor_store_free (m->vae_weights);
  ns_tokenizer_free (m->tokenizer);
  ns_model_config_clear (&m->cfg);
  g_free (m->backend_note);
  g_free (m->vae_dir);
  g_free (m->dir);
  g_free (m);
}

/* The kind is a hint, not a gate: the official pipeline edits with any
 * NextStep checkpoint, only NextStep-1-Large-Edit was trained for it. */
char *
ns_model_mode_warning (const NsModel *m, NsMode mode)
{
  if (mode != NS_MODE_EDIT || m->kind == NS_MODEL_KIND_EDIT)
    return NULL;
  return g_strdup_printf ("%s looks like a text-to-image checkpoint; edits may be poor "
                          "(NextStep-1-Large-Edit is the model trained for editing)", m->dir);
}

NsModelKind
ns_model_get_kind (const NsModel *m)
{
  return m->kind;
}

const char *
ns_model_get_dir (const NsModel *m)
{
  return m->dir;
}

NsBackendKind
ns_model_get_backend (const NsModel *m)
{
  return m->backend_kind;
}

const char *
ns_model_get_backend_note (const NsModel *m)
{
  return m->backend_note;
}

NsWeightFormat
ns_model_get_weight_format (const NsModel *m)
{
  return m->backend->weight_format;
}

/* ---- requests ------------------------------------------------------------ */

void
ns_request_init (NsRequest *r)
{
  memset (r, 0, sizeof *r);
  r->mode = NS_MODE_GENERATE;
  r->images = 1;
  r->sampler = NS_SAMPLER_DEFAULT;
  r->use_norm = -1;
  r->cfg_schedule = NS_CFG_CONSTANT;
  r->seed = DEFAULT_SEED;
}

typedef struct {
  NsSampler sampler;
  int steps;
  double cfg, cfg_img, shift;
  gboolean use_norm;
  const char *positive, *negative;
} Defaults;

static const Defaults defaults_11 = { NS_SAMPLER_HF_SDE, 28, 7.5, 1.0, 1.0, FALSE,
                                      LARGE_POSITIVE, LARGE_NEGATIVE };
static const Defaults defaults_large = { NS_SAMPLER_GH_GRID, 50, 7.5, 1.0, 1.0, TRUE,
                                         LARGE_POSITIVE, LARGE_NEGATIVE };
static const Defaults defaults_edit = { NS_SAMPLER_GH_GRID, 50, 7.5, 2.0, 3.2, TRUE,
                                        "", EDIT_NEGATIVE };

/* The token-grid size nearest to `px` (a multiple of 16, at least 16). */
static int
snap16 (int px)
{
  return MAX (16, (int) lround (px / 16.0) * 16);
}

static gboolean
invalid (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

static gboolean
invalid (GError **error, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error_literal (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, msg);
  return FALSE;
}

static gboolean
validate_edit_input (const NsModel *m, const NsRequest *r, GError **error)
{
  (void) m;
  if (r->mode != NS_MODE_EDIT)
    return TRUE;
  if (r->input.rgba == NULL || r->input.width <= 0 || r->input.height <= 0
      || r->input.stride < 4 * r->input.width)
    return invalid (error, "Editing needs an input image (RGBA8, positive size, stride ≥ 4·width)");
  return TRUE;
}

static gboolean
validate (const NsModel *m, const NsRequest *r, GError **error)
{
  if (r->prompt == NULL)
    return invalid (error, "The request has no prompt");
  if (r->width <= 0 || r->height <= 0 || r->width % 16 || r->height % 16)
    return invalid (error, "Image size %d×%d: width and height must be positive multiples of 16",
                    r->width, r->height);
  int64_t ntok = (int64_t) (r->width / 16) * (r->height / 16);
  if (ntok >= m->cfg.max_position_embeddings)
    {
      /* the largest square whose tokens (one per 16×16 pixels) still fit */
      int side = (int) floor (sqrt ((double) m->cfg.max_position_embeddings - 1)) * 16;
      return invalid (error, "Image size %d×%d needs %" G_GINT64_FORMAT " tokens, more than "
                      "the model's %d positions: use at most %d×%d pixels (or fewer than %d "
                      "pixels in total)", r->width, r->height, ntok,
                      m->cfg.max_position_embeddings, side, side,
                      m->cfg.max_position_embeddings * 256);
    }
  if (r->images < 1 || r->images > 64)
    return invalid (error, "Number of images %d: use 1 to 64", r->images);
  if (r->steps < 1 || r->steps > 10000)
    return invalid (error, "Sampling steps %d: use 1 to 10000", r->steps);
  if (!(r->cfg >= 1.0) || !(r->cfg_img >= 1.0) || !isfinite (r->cfg) || !isfinite (r->cfg_img))
    return invalid (error, "Guidance scales must be finite and ≥ 1 (cfg %g, cfg_img %g); the "
                    "official sampler breaks below 1", r->cfg, r->cfg_img);
  if (r->mode == NS_MODE_EDIT && r->cfg_img > 1.0 && r->cfg <= 1.0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "Image guidance (cfg_img %g) without text guidance (cfg 1) has no "
                   "official row layout; use cfg > 1 or cfg_img 1", r->cfg_img);
      return FALSE;
    }
  if (!(r->shift > 0.0) || !isfinite (r->shift))
    return invalid (error, "Time shift %g: must be a positive number", r->shift);
  if (r->sampler < NS_SAMPLER_HF_SDE || r->sampler > NS_SAMPLER_ODE)
    return invalid (error, "Unknown sampler %d", (int) r->sampler);
  if (r->cfg_schedule != NS_CFG_CONSTANT && r->cfg_schedule != NS_CFG_LINEAR)
    return invalid (error, "Unknown CFG schedule %d", (int) r->cfg_schedule);
  if (r->preview_every < 0)
    return invalid (error, "preview_every %d: must be ≥ 0", r->preview_every);
  return validate_edit_input (m, r, error);
}

gboolean
ns_request_resolve (const NsModel *m, NsRequest *r, GError **error)
{
  gboolean edit = r->mode == NS_MODE_EDIT;
  const Defaults *d = edit ? &defaults_edit
                           : (m->large_style || m->kind == NS_MODEL_KIND_EDIT) ? &defaults_large
                                                                                : &defaults_11;
  if (r->sampler == NS_SAMPLER_DEFAULT)
    r->sampler = d->sampler;
  if (r->steps == 0)
    r->steps = d->steps;
  if (r->cfg == 0)
    r->cfg = d->cfg;
  if (r->cfg_img == 0)
    r->cfg_img = edit ? d->cfg_img : 1.0;
  if (r->shift == 0)
    r->shift = d->shift;
  if (r->use_norm < 0)
    r->use_norm = d->use_norm;
  if (r->positive == NULL)
    r->positive = d->positive;
  if (r->negative == NULL)
    r->negative = d->negative;
  if (r->width == 0 && r->height == 0)
    {
      gboolean has_input = edit && r->input.rgba != NULL;
      r->width = has_input ? snap16 (r->input.width) : DEFAULT_SIZE;
      r->height = has_input ? snap16 (r->input.height) : DEFAULT_SIZE;
    }
  return validate (m, r, error);
}

/* ---- results ----------------------------------------------------------- */

void
ns_result_free (NsResult *res)
{
  if (res == NULL)
    return;
  for (int i = 0; i < res->n_images && res->rgba; i++)
    g_free (res->rgba[i]);
  g_free (res->rgba);
  g_free (res->tokens);
  g_free (res->latents);
  g_free (res->decoded);
  g_free (res);
}

gboolean
ns_result_save_tokens (const NsResult *res, const char *path, GError **error)
{
  int n = res->n_images, H = res->height, W = res->width;
  g_autoptr (NsSafetensorsWriter) w = ns_safetensors_writer_new ();
  const int64_t tok_shape[3] = { n, res->ntok, res->token_dim };
  const int64_t lat_shape[4] = { n, res->latent_channels, H / 8, W / 8 };
  const int64_t dec_shape[4] = { n, 3, H, W };
  const int64_t img_shape[4] = { n, H, W, 3 };
  g_autofree guint8 *rgb = g_new (guint8, (size_t) n * H * W * 3);
  for (int i = 0; i < n; i++)
    for (size_t p = 0; p < (size_t) H * W; p++)
      memcpy (rgb + ((size_t) i * H * W + p) * 3, res->rgba[i] + p * 4, 3);
  ns_safetensors_writer_add (w, "tokens", NS_DTYPE_F32, 3, tok_shape, res->tokens);
  ns_safetensors_writer_add (w, "latents", NS_DTYPE_F32, 4, lat_shape, res->latents);
  ns_safetensors_writer_add (w, "decoded", NS_DTYPE_F32, 4, dec_shape, res->decoded);
  ns_safetensors_writer_add (w, "image_u8", NS_DTYPE_U8, 4, img_shape, rgb);
  g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, res->seed);
  ns_safetensors_writer_set_metadata (w, "seed", seed);
  return ns_safetensors_writer_save (w, path, error);
}
