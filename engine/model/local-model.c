/* local-model.c — the local NsModel: a NextStep checkpoint (model,
 * tokenizer, VAE) loaded onto a backend; its runs are in pipeline.c. */
#include <math.h>
#include <string.h>

#include "model/pipeline-private.h"
#include "model/arch.h"
#include "model/memory-plan.h"
#include "model/weight-cache.h"
#include "cpu/quant.h"
#include "files/safetensors.h"
#include "files/torch-checkpoint.h"

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
load_files (NsLocalModel *m, const NsLoadOptions *o, GError **error)
{
  g_autofree char *cfg_path = g_build_filename (m->base.dir, "config.json", NULL);
  if (!ns_model_config_load (&m->cfg, cfg_path, error))
    return FALSE;
  m->vae_dir = ns_vae_find (m->base.dir, o->vae_dir, error);
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
  if ((m->tokenizer = ns_tokenizer_load (m->base.dir, error)) == NULL || !not_cancelled (o, error))
    return FALSE;
  report (o, 0.05, "model weights");
  if ((m->weights = ns_safetensors_load_dir (m->base.dir, error)) == NULL || !not_cancelled (o, error))
    return FALSE;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  if (!ns_arch_check_model (m->weights, &m->cfg, problems))
    return fail_with_problems (problems, "model weights", m->base.dir, error);
  report (o, 0.1, "VAE weights");
  g_autofree char *ckpt = g_build_filename (m->vae_dir, "checkpoint.pt", NULL);
  if ((m->vae_weights = ns_torch_checkpoint_load (ckpt, error)) == NULL || !not_cancelled (o, error))
    return FALSE;
  if (!ns_vae_check (m->vae_weights, &m->vae_cfg, problems))
    return fail_with_problems (problems, "VAE checkpoint", m->vae_dir, error);
  m->base.kind = ns_arch_guess_kind (m->base.dir, &m->cfg);
  return TRUE;
}

static gboolean
choose_backend (NsLocalModel *m, const NsLoadOptions *o, GError **error)
{
  if (o->backend == NS_BACKEND_CUDA || o->backend == NS_BACKEND_AUTO)
    {
#ifdef NS_HAVE_CUDA
      g_autoptr (GError) cuda_error = NULL;
      m->backend = ns_backend_cuda_new (0, o->device_memory_cap, &cuda_error);
      if (m->backend != NULL)
        {
          m->base.backend_kind = NS_BACKEND_CUDA;
          return TRUE;
        }
      if (o->backend == NS_BACKEND_CUDA)
        {
          g_propagate_prefixed_error (error, g_steal_pointer (&cuda_error),
                                      "--backend cuda: use --backend cpu, or auto to fall back "
                                      "to the CPU: ");
          return FALSE;
        }
      m->base.backend_note = g_strdup_printf ("CUDA unavailable: %s", cuda_error->message);
#else
      if (o->backend == NS_BACKEND_CUDA)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                       "This build has no CUDA backend; use the CPU backend or rebuild "
                       "with -Dcuda=enabled");
          return FALSE;
        }
      m->base.backend_note = g_strdup ("built without CUDA support");
#endif
    }
  m->backend = ns_backend_cpu_new (o->threads);
  m->base.backend_kind = NS_BACKEND_CPU;
  return TRUE;
}

/* The request the load-time plan covers: the default size, one image. */
static NsPlanRequest
planned_request (const NsLocalModel *m)
{
  gboolean edit = m->base.kind == NS_MODEL_KIND_EDIT;
  int input_tokens = edit ? (NS_REQUEST_DEFAULT_SIZE / 16) * (NS_REQUEST_DEFAULT_SIZE / 16) : 0;
  return (NsPlanRequest) { NS_REQUEST_DEFAULT_SIZE, NS_REQUEST_DEFAULT_SIZE, 1, edit ? 3 : 2,
                           NS_PLAN_PROMPT_TOKENS + input_tokens };
}

/* The memory the plan is checked against and how much of it there is (0:
 * none to check): the GPU's free memory, the test cap, or on the CPU the
 * available RAM — only for AUTO there, as a format asked for by name may
 * page from disk if the user wants it to. */
static NsPlanMemory
plan_memory (const NsLocalModel *m, const NsLoadOptions *o, guint64 *available)
{
  *available = o->device_memory_cap;
  if (m->base.backend_kind == NS_BACKEND_CUDA)
    {
      *available = ns_backend_cuda_free_memory (m->backend);
      return NS_PLAN_GPU;
    }
  if (*available > 0)
    return NS_PLAN_CAP;
  if (o->weights == NS_WEIGHTS_AUTO)
    *available = ns_memory_available_ram ();
  return NS_PLAN_RAM;
}

/* Picks the weight format (AUTO: bf16 when the plan fits, else int8 when
 * it fits, else q4) and
 * refuses a load whose plan exceeds the memory (plan_memory). */
static gboolean
choose_weights (NsLocalModel *m, const NsLoadOptions *o, GError **error)
{
  int64_t min_quant = o->quant_min_elements > 0 ? o->quant_min_elements : NS_QUANT_MIN_ELEMENTS;
  if (m->base.backend_kind == NS_BACKEND_CUDA && o->weights == NS_WEIGHTS_FP8
      && !ns_backend_cuda_has_fp8 (m->backend))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "--weights fp8 needs a GPU with fp8 support (Ada or Hopper, sm_89 and "
                   "newer); use --weights int8 on this one");
      return FALSE;
    }
  guint64 available;
  NsPlanMemory memory = plan_memory (m, o, &available);
  NsWeightFormat format = o->weights == NS_WEIGHTS_AUTO ? NS_WEIGHTS_BF16 : o->weights;
  NsPlanRequest request = planned_request (m);
  NsMemoryPlan plan;
  ns_memory_plan (&m->cfg, &m->vae_cfg, format, min_quant, &request, &plan);
  const NsWeightFormat fallbacks[] = { NS_WEIGHTS_INT8, NS_WEIGHTS_Q4 };
  for (guint i = 0; i < G_N_ELEMENTS (fallbacks); i++)
    if (available > 0 && o->weights == NS_WEIGHTS_AUTO && plan.total > available)
      {
        format = fallbacks[i];
        ns_memory_plan (&m->cfg, &m->vae_cfg, format, min_quant, &request, &plan);
      }
  if (available > 0 && !ns_memory_plan_check (&plan, available, memory, format, error))
    return FALSE;
  ns_backend_set_weight_format (m->backend, format, min_quant);
  return TRUE;
}

/* int8/fp8/q4: the `nextstep convert` cache replaces the published weights
 * when it was made from them with the same settings (else quantize at
 * upload). */
static gboolean
use_weight_cache (NsLocalModel *m, GError **error)
{
  NsBackend *b = m->backend;
  if (b->weight_format != NS_WEIGHTS_INT8 && b->weight_format != NS_WEIGHTS_FP8
      && b->weight_format != NS_WEIGHTS_Q4)
    return TRUE;
  g_autofree char *path = ns_weight_cache_default_path (m->base.dir, b->weight_format);
  g_autoptr (GError) local = NULL;
  NsTensorStore *cache = ns_weight_cache_open (path, m->base.dir, b->weight_format,
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
upload (NsLocalModel *m, const NsLoadOptions *o, GError **error)
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

/* What recipes and servers call the model: the config's _name_or_path, else
 * the repository of a Hugging Face cache snapshot, else the folder's name. */
static char *
model_name (const NsLocalModel *m)
{
  if (m->cfg.name_or_path != NULL && m->cfg.name_or_path[0] != '\0')
    return g_strdup (m->cfg.name_or_path);
  const char *repo = strstr (m->base.dir, "/models--");
  const char *end = repo ? strstr (repo, "/snapshots/") : NULL;
  if (end == NULL)
    return g_path_get_basename (m->base.dir);
  g_autofree char *folder = g_strndup (repo + 9, end - repo - 9);
  g_auto (GStrv) parts = g_strsplit (folder, "--", -1);
  return g_strjoinv ("/", parts);
}

/* Positions: one per 16×16 pixels, plus the prompt (checked in the run). */
static gboolean
local_check (const NsModel *model, const NsRequest *r, GError **error)
{
  const NsLocalModel *m = (const NsLocalModel *) model;
  int64_t ntok = (int64_t) (r->width / 16) * (r->height / 16);
  if (ntok < m->cfg.max_position_embeddings)
    return TRUE;
  /* the largest square whose tokens still fit */
  int side = (int) floor (sqrt ((double) m->cfg.max_position_embeddings - 1)) * 16;
  return ns_request_invalid (error, "Image size %d×%d needs %" G_GINT64_FORMAT " tokens, more "
                             "than the model's %d positions: use at most %d×%d pixels (or "
                             "fewer than %d pixels in total)", r->width, r->height, ntok,
                             m->cfg.max_position_embeddings, side, side,
                             m->cfg.max_position_embeddings * 256);
}

static NsWeightFormat
local_weight_format (const NsModel *model)
{
  return ((const NsLocalModel *) model)->backend->weight_format;
}

static void
local_free (NsModel *model)
{
  NsLocalModel *m = (NsLocalModel *) model;
  ns_vae_free (m->vae);
  ns_fm_head_free (m->head);
  ns_transformer_free (m->transformer);
  ns_backend_destroy (m->backend);
  ns_tensor_store_free (m->weights);
  ns_tensor_store_free (m->vae_weights);
  ns_tokenizer_free (m->tokenizer);
  ns_model_config_clear (&m->cfg);
  g_free (m->vae_dir);
}

static const NsModelClass local_class = {
  local_check, ns_local_model_run, local_weight_format, local_free,
};

NsModel *
ns_local_model_load (const NsLoadOptions *options, GError **error)
{
  if (options->model_dir == NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "No model folder given (use ns_model_find or --model)");
      return NULL;
    }
  NsLocalModel *m = g_new0 (NsLocalModel, 1);
  ns_model_base_init (&m->base, &local_class, options->model_dir, NULL);
  report (options, 0.0, "config");
  if (!load_files (m, options, error) || !choose_backend (m, options, error)
      || !choose_weights (m, options, error) || !use_weight_cache (m, error)
      || !upload (m, options, error))
    {
      ns_model_free (&m->base);
      return NULL;
    }
  m->base.large_style = ns_model_guess_large_style (m->cfg.name_or_path, m->base.dir);
  m->base.name = model_name (m);
  report (options, 1.0, "ready");
  return &m->base;
}
