/* memory-plan.c — see memory-plan.h. The counts mirror what the model code
 * allocates (transformer.c, fm-head.c, pipeline.c, vae-net.c); they are
 * estimates to a few percent, not a ledger. */
#include <string.h>

#include "model/memory-plan.h"
#include "cpu/quant.h"
#include "model/arch.h"
#include "model/vae-private.h"
#include "model/vae.h"

guint64
ns_plan_tensor_bytes (const char *name, int n_dims, int64_t rows, int64_t cols,
                      NsWeightFormat format, int64_t min_quant)
{
  guint64 n = (guint64) rows * (guint64) cols;
  gboolean quantized = (format == NS_WEIGHTS_INT8 || format == NS_WEIGHTS_FP8
                        || format == NS_WEIGHTS_Q4) && n_dims == 2 && (int64_t) n >= min_quant;
  if (quantized && format == NS_WEIGHTS_Q4 && !ns_q4_keeps_int8 (name, cols))
    return n / 2 + 2 * (guint64) rows * ns_q4_row_groups (cols);
  return quantized ? n + 4 * (guint64) rows : 2 * n;
}

static guint64
model_weight_bytes (const NsModelConfig *cfg, NsWeightFormat format, int64_t min_quant)
{
  g_autoptr (GArray) list = ns_arch_expected_tensors (cfg);
  guint64 total = 0;
  for (guint i = 0; i < list->len; i++)
    {
      const NsArchTensor *t = &g_array_index (list, NsArchTensor, i);
      /* The image loop never needs lm_head: the engine does not load it. */
      if (g_str_equal (t->name, "lm_head.weight"))
        continue;
      total += ns_plan_tensor_bytes (t->name, t->n_dims, t->shape[0],
                                     t->n_dims == 2 ? t->shape[1] : 1, format, min_quant);
    }
  if (cfg->use_gen_pos_embed)
    {
      /* The buffer covers the token grid of a latent_size² latent, in f32. */
      guint64 side = cfg->latent_size / MAX (cfg->latent_patch_size, 1);
      total += side * side * cfg->hidden_size * sizeof (float);
    }
  return total;
}

/* Elements of the VAE checkpoint, counted on the layout the loader checks
 * (0 for an invalid config, which the load refuses anyway). */
static guint64
vae_params (const NsVaeConfig *v)
{
  g_autoptr (GArray) list = ns_vae_expected_tensors (v, NULL);
  guint64 total = 0;
  for (guint i = 0; list && i < list->len; i++)
    {
      const NsVaeTensor *t = &g_array_index (list, NsVaeTensor, i);
      guint64 n = 1;
      for (int d = 0; d < t->n_dims; d++)
        n *= t->shape[d];
      total += n;
    }
  return total;
}

/* Decoder activations of one tile (vae-net.c: four buffers of the largest
 * c·h·w plus the mid block's attention scratch). */
static guint64
vae_workspace (const NsVaeConfig *v, int width, int height)
{
  guint64 lh = MIN (height / NS_VAE_FACTOR, NS_VAE_TILE_SIDE);
  guint64 lw = MIN (width / NS_VAE_FACTOR, NS_VAE_TILE_SIDE);
  guint64 cap = 0;
  for (int i = 0; i < v->n_ch_mult; i++)
    {
      guint64 c = (guint64) v->ch * v->ch_mult[i];
      guint64 scale = (guint64) NS_VAE_FACTOR >> i;
      cap = MAX (cap, c * lh * scale * lw * scale);
    }
  guint64 top = (guint64) v->ch * v->ch_mult[v->n_ch_mult - 1];
  /* attention scores are n × n over the latent positions */
  guint64 mid = top * lh * lw + lh * lw * lh * lw;
  return (4 * cap + mid) * sizeof (float);
}

void
ns_memory_plan (const NsModelConfig *cfg, const NsVaeConfig *vae, NsWeightFormat format,
                int64_t min_quant, const NsPlanRequest *r, NsMemoryPlan *plan)
{
  guint64 p = cfg->latent_patch_size, dim = cfg->latent_channels * p * p;
  guint64 ntok = (guint64) (r->width / (8 * p)) * (r->height / (8 * p));
  guint64 rows = (guint64) r->cfg_mult * r->images, len = r->prompt_tokens;
  guint64 kv = (guint64) cfg->num_key_value_heads * cfg->head_dim;
  guint64 q = (guint64) cfg->num_attention_heads * cfg->head_dim;
  guint64 h = cfg->hidden_size, d = cfg->fm_head_dim, steps = 50;
  *plan = (NsMemoryPlan) { 0 };
  plan->weights = model_weight_bytes (cfg, format, min_quant);
  plan->vae_weights = vae_params (vae) * sizeof (float);
  plan->kv_cache = (2 * cfg->num_hidden_layers * kv + 1) * rows * (len + ntok) * sizeof (float);
  /* prefill runs all prompt rows at once; the FM head keeps per-step adaLN
   * outputs for every block (steps ≤ 50 by default) */
  guint64 step = rows * len * (3 * h + 2 * q + 2 * kv + 2 * cfg->intermediate_size);
  guint64 head = (guint64) MAX (cfg->fm_head_layers, 1) * steps * rows * 3 * d + rows * 8 * d;
  plan->activations = (step + head + rows * 4 * h + 4 * rows * dim) * sizeof (float);
  plan->vae_workspace = vae_workspace (vae, r->width, r->height);
  plan->total = plan->weights + plan->vae_weights + plan->kv_cache + plan->activations
                + plan->vae_workspace;
}

/* What to try instead, for the refusal. */
static const char *
plan_advice (NsPlanMemory memory, NsWeightFormat format)
{
  gboolean q4 = format == NS_WEIGHTS_Q4;
  gboolean quantized = q4 || format == NS_WEIGHTS_INT8 || format == NS_WEIGHTS_FP8;
  switch (memory)
    {
    case NS_PLAN_GPU:
      return q4 ? "try a smaller image or --backend cpu"
             : quantized ? "try --weights q4, a smaller image or --backend cpu"
                         : "try --weights int8, a smaller image or --backend cpu";
    case NS_PLAN_RAM:
      return q4 ? "close other programs, try a smaller image, or use a machine with more RAM"
             : quantized ? "try --weights q4 (quantize once with `nextstep convert --weights "
                           "q4`), a smaller image, or close other programs"
                         : "try --weights int8 (quantize once with `nextstep convert --weights "
                           "int8`), a smaller image, or close other programs";
    default:
      return q4 ? "try a smaller image or a larger --device-memory-cap"
             : quantized ? "try --weights q4, a smaller image or a larger --device-memory-cap"
                         : "try --weights int8, a smaller image or a larger --device-memory-cap";
    }
}

gboolean
ns_memory_plan_check (const NsMemoryPlan *plan, guint64 available, NsPlanMemory memory,
                      NsWeightFormat format, GError **error)
{
  if (plan->total <= available)
    return TRUE;
  static const char *const names[] = { "GPU memory", "RAM", "device memory" };
  g_set_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY,
               "needs %.1f GB of %s, %.1f GB %s: %s (%s weights %.1f GB, KV cache %.1f GB, "
               "VAE %.1f GB, activations %.1f GB)",
               plan->total / 1e9, names[memory], available / 1e9,
               memory == NS_PLAN_RAM ? "available" : "free", plan_advice (memory, format),
               ns_weight_format_name (format == NS_WEIGHTS_AUTO ? NS_WEIGHTS_BF16 : format),
               plan->weights / 1e9, plan->kv_cache / 1e9,
               (plan->vae_weights + plan->vae_workspace) / 1e9, plan->activations / 1e9);
  return FALSE;
}

guint64
ns_memory_available_ram (void)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents ("/proc/meminfo", &text, NULL, NULL))
    return 0;
  const char *line = strstr (text, "MemAvailable:");
  return line ? g_ascii_strtoull (line + strlen ("MemAvailable:"), NULL, 10) * 1024 : 0;
}
