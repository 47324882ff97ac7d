/* arch.c — the tensor set of a NextStep checkpoint, derived from config.json
 * (docs/model.md §2; names and shapes as the official class saves them,
 * checked against the golden shards), and the t2i/edit guess. */
#include <stdarg.h>
#include <string.h>

#include "model/arch.h"

/* Width of the FM head's sinusoidal timestep features (time_embed.mlp.0 in),
 * fixed by the official FlowMatchingHead whatever fm_head_dim is. */
#define FM_TIME_FEATURES 256

static void
expected_clear (gpointer p)
{
  g_free (((NsArchTensor *) p)->name);
}

static void
add_tensor (GArray *list, char *name, int n_dims, int64_t d0, int64_t d1, gboolean optional)
{
  NsArchTensor e = { name, n_dims, { d0, d1, 0 }, optional };
  g_array_append_val (list, e);
}

/* A vector [n] named printf-style. */
static void G_GNUC_PRINTF (3, 4)
add_vector (GArray *list, int64_t n, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  add_tensor (list, g_strdup_vprintf (fmt, ap), 1, n, 0, FALSE);
  va_end (ap);
}

/* A torch Linear `prefix`.weight [out, in] and, with `bias`, `prefix`.bias [out]. */
static void G_GNUC_PRINTF (5, 6)
add_linear (GArray *list, gboolean bias, int64_t out, int64_t in, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *prefix = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  add_tensor (list, g_strconcat (prefix, ".weight", NULL), 2, out, in, FALSE);
  if (bias)
    add_vector (list, out, "%s.bias", prefix);
}

static void
add_backbone (GArray *list, const NsModelConfig *cfg)
{
  int64_t h = cfg->hidden_size, q = (int64_t) cfg->num_attention_heads * cfg->head_dim;
  int64_t kv = (int64_t) cfg->num_key_value_heads * cfg->head_dim;
  int64_t ff = cfg->intermediate_size;
  add_tensor (list, g_strdup ("embed_tokens.weight"), 2, cfg->vocab_size, h, FALSE);
  for (int l = 0; l < cfg->num_hidden_layers; l++)
    {
      add_linear (list, cfg->attention_bias, q, h, "layers.%d.self_attn.q_proj", l);
      add_linear (list, cfg->attention_bias, kv, h, "layers.%d.self_attn.k_proj", l);
      add_linear (list, cfg->attention_bias, kv, h, "layers.%d.self_attn.v_proj", l);
      add_linear (list, cfg->o_attention_bias, h, q, "layers.%d.self_attn.o_proj", l);
      add_linear (list, cfg->mlp_bias, ff, h, "layers.%d.mlp.gate_proj", l);
      add_linear (list, cfg->mlp_bias, ff, h, "layers.%d.mlp.up_proj", l);
      add_linear (list, cfg->mlp_bias, h, ff, "layers.%d.mlp.down_proj", l);
      add_vector (list, h, "layers.%d.input_layernorm.weight", l);
      add_vector (list, h, "layers.%d.post_attention_layernorm.weight", l);
    }
  add_vector (list, h, "norm.weight");
  /* A tied checkpoint may still carry lm_head (transformers saves it). */
  add_tensor (list, g_strdup ("lm_head.weight"), 2, cfg->vocab_size, h,
              cfg->tie_word_embeddings);
}

static void
add_image_parts (GArray *list, const NsModelConfig *cfg)
{
  int64_t h = cfg->hidden_size, d = cfg->fm_head_dim;
  int64_t token = (int64_t) cfg->latent_channels * cfg->latent_patch_size * cfg->latent_patch_size;
  /* FlowMatchingHead: mlp hidden = int(dim * mlp_ratio). */
  int64_t mlp = (int64_t) (d * cfg->fm_head_mlp_ratio);
  add_linear (list, TRUE, h, token, "image_in_projector");
  add_linear (list, TRUE, h, h, "image_out_projector");
  add_linear (list, TRUE, d, token, "image_head.net.input_proj");
  add_linear (list, TRUE, d, FM_TIME_FEATURES, "image_head.net.time_embed.mlp.0");
  add_linear (list, TRUE, d, d, "image_head.net.time_embed.mlp.2");
  add_linear (list, TRUE, d, h, "image_head.net.cond_embed");
  for (int k = 0; k < cfg->fm_head_layers; k++)
    {
      add_vector (list, d, "image_head.net.res_blocks.%d.in_ln.weight", k);
      add_vector (list, d, "image_head.net.res_blocks.%d.in_ln.bias", k);
      add_linear (list, TRUE, 3 * d, d, "image_head.net.res_blocks.%d.adaLN_modulation.1", k);
      add_linear (list, TRUE, mlp, d, "image_head.net.res_blocks.%d.mlp.0", k);
      add_linear (list, TRUE, d, mlp, "image_head.net.res_blocks.%d.mlp.2", k);
    }
  add_linear (list, TRUE, 2 * d, d, "image_head.net.final_layer.adaLN_modulation.1");
  add_linear (list, TRUE, token, d, "image_head.net.final_layer.linear");
}

static gboolean
is_float (NsDType dtype)
{
  return dtype == NS_DTYPE_F32 || dtype == NS_DTYPE_F16 || dtype == NS_DTYPE_BF16
         || dtype == NS_DTYPE_F64 || dtype == NS_DTYPE_F8_E4M3;
}

/* "model-00003-of-00003.safetensors: " for messages. */
static char *
where (const NsTensorView *t)
{
  g_autofree char *base = t->file != NULL ? g_path_get_basename (t->file) : NULL;
  return base != NULL ? g_strconcat (base, ": ", NULL) : g_strdup ("");
}

static void
check_dtype (const NsTensorView *t, GPtrArray *problems)
{
  if (is_float (t->dtype))
    return;
  g_autofree char *at = where (t);
  g_ptr_array_add (problems, g_strdup_printf ("%s%s has dtype %s, expected a float type",
                                              at, t->name, ns_dtype_name (t->dtype)));
}

static void
check_one (const NsTensorStore *store, const NsArchTensor *e, GPtrArray *problems)
{
  const NsTensorView *t = ns_tensor_store_find (store, e->name);
  g_autofree char *want = ns_shape_to_string (e->n_dims, e->shape);
  if (t == NULL)
    {
      if (!e->optional)
        g_ptr_array_add (problems, g_strdup_printf ("missing tensor %s (expected shape %s)",
                                                    e->name, want));
      return;
    }
  if (t->n_dims != e->n_dims
      || memcmp (t->shape, e->shape, sizeof (int64_t) * (gsize) e->n_dims) != 0)
    {
      g_autofree char *have = ns_shape_to_string (t->n_dims, t->shape);
      g_autofree char *at = where (t);
      g_ptr_array_add (problems, g_strdup_printf ("%s%s has shape %s, expected %s",
                                                  at, e->name, have, want));
    }
  check_dtype (t, problems);
}

/* gen_pos_embed: the official class always saves a [1, g², hidden] 2-D
 * sin-cos buffer (g = 32 in the Aug-2025 code, base_image_grid_size later);
 * it is used only with use_gen_pos_embed, so it is required only then. */
static void
check_gen_pos_embed (const NsTensorStore *store, const NsModelConfig *cfg, GPtrArray *problems)
{
  const NsTensorView *t = ns_tensor_store_find (store, "gen_pos_embed");
  if (t == NULL)
    {
      if (cfg->use_gen_pos_embed)
        g_ptr_array_add (problems, g_strdup_printf (
          "missing tensor gen_pos_embed (expected shape [1, g², %d]; use_gen_pos_embed is "
          "true)", cfg->hidden_size));
      return;
    }
  int64_t g = 0;
  if (t->n_dims == 3)
    while ((g + 1) * (g + 1) <= t->shape[1])
      g++;
  if (t->n_dims != 3 || t->shape[0] != 1 || t->shape[2] != cfg->hidden_size
      || g * g != t->shape[1] || g == 0)
    {
      g_autofree char *have = ns_shape_to_string (t->n_dims, t->shape);
      g_autofree char *at = where (t);
      g_ptr_array_add (problems, g_strdup_printf (
        "%sgen_pos_embed has shape %s, expected [1, g², %d] (a square grid)",
        at, have, cfg->hidden_size));
    }
  check_dtype (t, problems);
}

GArray *
ns_arch_expected_tensors (const NsModelConfig *cfg)
{
  GArray *list = g_array_new (FALSE, FALSE, sizeof (NsArchTensor));
  g_array_set_clear_func (list, expected_clear);
  add_backbone (list, cfg);
  add_image_parts (list, cfg);
  return list;
}

gboolean
ns_arch_check_model (const NsTensorStore *store, const NsModelConfig *cfg, GPtrArray *problems)
{
  g_return_val_if_fail (store != NULL && cfg != NULL && problems != NULL, FALSE);
  guint before = problems->len;
  g_autoptr (GArray) list = ns_arch_expected_tensors (cfg);

  g_autoptr (GHashTable) known = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_add (known, (gpointer) "gen_pos_embed");
  for (guint i = 0; i < list->len; i++)
    {
      const NsArchTensor *e = &g_array_index (list, NsArchTensor, i);
      g_hash_table_add (known, e->name);
      check_one (store, e, problems);
    }
  check_gen_pos_embed (store, cfg, problems);

  for (guint i = 0; i < ns_tensor_store_len (store); i++)
    {
      const NsTensorView *t = ns_tensor_store_get (store, i);
      if (g_hash_table_contains (known, t->name))
        continue;
      g_autofree char *have = ns_shape_to_string (t->n_dims, t->shape);
      g_autofree char *at = where (t);
      g_ptr_array_add (problems, g_strdup_printf ("%sunexpected tensor %s %s", at, t->name,
                                                  have));
    }
  return problems->len == before;
}

NsModelKind
ns_arch_guess_kind (const char *model_dir, const NsModelConfig *cfg)
{
  g_autofree char *path = model_dir != NULL ? g_canonicalize_filename (model_dir, NULL) : NULL;
  const char *names[] = { cfg != NULL ? cfg->name_or_path : NULL, path };
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *lower = names[i] != NULL ? g_ascii_strdown (names[i], -1) : NULL;
      if (lower != NULL && strstr (lower, "edit") != NULL)
        return NS_MODEL_KIND_EDIT;
    }
  return NS_MODEL_KIND_T2I;
}

/* The published NextStep-1.1 shapes (docs/model.md §2) for the
 * synthetic full-size models of `nextstep bench` and `make-tiny
 * --full-size`: real checkpoints are always read from their own
 * config.json. */
static const char full_size_config[] =
  "{\"model_type\": \"nextstep\", \"hidden_size\": 5120, \"num_hidden_layers\": 48,"
  " \"num_attention_heads\": 40, \"num_key_value_heads\": 8, \"head_dim\": 128,"
  " \"intermediate_size\": 13824, \"vocab_size\": 152064,"
  " \"max_position_embeddings\": 131072, \"rope_theta\": 1000000.0, \"rms_norm_eps\": 1e-05,"
  " \"attention_bias\": true, \"o_attention_bias\": false, \"mlp_bias\": false,"
  " \"tie_word_embeddings\": false, \"boi\": 151667, \"eoi\": 151668,"
  " \"image_placeholder_id\": 151669, \"pad_token_id\": 151665, \"bos_token_id\": 151643,"
  " \"eos_token_id\": 151643, \"latent_channels\": 16, \"latent_patch_size\": 2,"
  " \"latent_size\": 64, \"use_gen_pos_embed\": false, \"fm_head_dim\": 1536,"
  " \"fm_head_layers\": 12, \"vae_name_or_path\": \"vae\"}";

gboolean
ns_arch_full_size_config (NsModelConfig *cfg, GError **error)
{
  return ns_model_config_parse (cfg, full_size_config, sizeof full_size_config - 1,
                                "the built-in NextStep-1.1 shapes", error);
}
