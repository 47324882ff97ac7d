/* config.c — NextStep config.json, VAE config.json and tokenizer_config.json
 * (see config.h). Every field is read with a type check; absent or null
 * fields take the defaults of the official classes (NextStepConfig on top of
 * the Qwen2 backbone, AutoEncoderParams of modeling_flux_vae.py). */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "nextstep.h"
#include "files/config.h"
#include "files/json-load.h"

/* The object being read and the file name used in every message. */
typedef struct {
  JsonObject *obj;
  const char *label;
} Fields;

/* The member `name`, or NULL when it is absent or JSON null. */
static JsonNode *
field_node (const Fields *f, const char *name)
{
  JsonNode *node = json_object_get_member (f->obj, name);
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return NULL;
  return node;
}

static gboolean
bad_field (const Fields *f, const char *name, const char *expected, GError **error)
{
  g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
               "%s: field '%s' must be %s", f->label, name, expected);
  return FALSE;
}

/* JSON numbers without a fraction; 1e6-style floats with an integral value
 * are accepted too, as Python's json writes large ints that way sometimes. */
static gboolean
read_int (const Fields *f, const char *name, int64_t def, int64_t *out, GError **error)
{
  JsonNode *node = field_node (f, name);
  *out = def;
  if (node == NULL)
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64)
    {
      *out = json_node_get_int (node);
      return TRUE;
    }
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_DOUBLE)
    {
      double v = json_node_get_double (node);
      if (v == floor (v) && fabs (v) < 9.0e18)
        {
          *out = (int64_t) v;
          return TRUE;
        }
    }
  return bad_field (f, name, "an integer", error);
}

static gboolean
read_double (const Fields *f, const char *name, double def, double *out, GError **error)
{
  JsonNode *node = field_node (f, name);
  *out = def;
  if (node == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node)
      || (json_node_get_value_type (node) != G_TYPE_INT64
          && json_node_get_value_type (node) != G_TYPE_DOUBLE))
    return bad_field (f, name, "a number", error);
  *out = json_node_get_double (node);
  if (!isfinite (*out))
    return bad_field (f, name, "a finite number", error);
  return TRUE;
}

static gboolean
read_bool (const Fields *f, const char *name, gboolean def, gboolean *out, GError **error)
{
  JsonNode *node = field_node (f, name);
  *out = def;
  if (node == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
    return bad_field (f, name, "true or false", error);
  *out = json_node_get_boolean (node);
  return TRUE;
}

/* A newly allocated string, NULL when absent. */
static gboolean
read_string (const Fields *f, const char *name, char **out, GError **error)
{
  JsonNode *node = field_node (f, name);
  *out = NULL;
  if (node == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    return bad_field (f, name, "a string", error);
  *out = g_strdup (json_node_get_string (node));
  return TRUE;
}

/* A size field: an integer in [1, INT_MAX]. */
static gboolean
read_size (const Fields *f, const char *name, int def, int *out, GError **error)
{
  int64_t v;
  if (!read_int (f, name, def, &v, error))
    return FALSE;
  if (v < 1 || v > G_MAXINT)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: field '%s' is %" G_GINT64_FORMAT ", it must be a positive size",
                   f->label, name, v);
      return FALSE;
    }
  *out = (int) v;
  return TRUE;
}

static gboolean
read_positive_double (const Fields *f, const char *name, double def, double *out,
                      GError **error)
{
  if (!read_double (f, name, def, out, error))
    return FALSE;
  if (*out <= 0)
    return bad_field (f, name, "a positive number", error);
  return TRUE;
}

/* Parses `json` and hands back its top-level object (a new reference). */
static JsonObject *
parse_object (const char *json, gsize size, const char *label, GError **error)
{
  return ns_json_load_object (json, size, label,
                              "the file is damaged: download or copy it again", 0, error);
}

/* The whole text of `path` (g_free it). */
static char *
read_text (const char *path, gsize *size, GError **error)
{
  char *text = NULL;
  g_autoptr (GError) local = NULL;
  if (!g_file_get_contents (path, &text, size, &local))
    g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot read %s: %s", path, local->message);
  return text;
}

/* ---- NextStep config.json ------------------------------------------------ */

typedef struct {
  const char *name;
  size_t offset;
  int def;
} SizeField;

/* Backbone sizes default to Qwen2Config, image fields to NextStepConfig. */
static const SizeField model_sizes[] = {
  { "hidden_size", offsetof (NsModelConfig, hidden_size), 4096 },
  { "num_hidden_layers", offsetof (NsModelConfig, num_hidden_layers), 32 },
  { "num_attention_heads", offsetof (NsModelConfig, num_attention_heads), 32 },
  { "intermediate_size", offsetof (NsModelConfig, intermediate_size), 22016 },
  { "max_position_embeddings", offsetof (NsModelConfig, max_position_embeddings), 32768 },
  { "latent_channels", offsetof (NsModelConfig, latent_channels), 16 },
  { "latent_patch_size", offsetof (NsModelConfig, latent_patch_size), 2 },
  { "latent_size", offsetof (NsModelConfig, latent_size), 32 },
  { "fm_head_dim", offsetof (NsModelConfig, fm_head_dim), 1536 },
  { "fm_head_layers", offsetof (NsModelConfig, fm_head_layers), 12 },
};

static gboolean
read_sizes (const Fields *f, const SizeField *table, gsize n, gpointer cfg, GError **error)
{
  for (gsize i = 0; i < n; i++)
    if (!read_size (f, table[i].name, table[i].def,
                    &G_STRUCT_MEMBER (int, cfg, table[i].offset), error))
      return FALSE;
  return TRUE;
}

/* A token id in [0, vocab_size); `required` ids may not be absent, the others
 * become -1. A list (eos_token_id may be one) gives its first entry. */
static gboolean
read_token_id (const Fields *f, const char *name, int64_t vocab, gboolean required, int *out,
               GError **error)
{
  JsonNode *node = field_node (f, name);
  *out = -1;
  if (node != NULL && JSON_NODE_HOLDS_ARRAY (node)
      && json_array_get_length (json_node_get_array (node)) > 0)
    node = json_array_get_element (json_node_get_array (node), 0);
  if (node == NULL)
    {
      if (!required)
        return TRUE;
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "%s: field '%s' is missing; a NextStep config names this token id",
                   f->label, name);
      return FALSE;
    }
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return bad_field (f, name, "an integer token id", error);
  int64_t v = json_node_get_int (node);
  if (v < 0 || v >= vocab)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: field '%s' is %" G_GINT64_FORMAT ", outside the vocabulary [0, %"
                   G_GINT64_FORMAT ")", f->label, name, v, vocab);
      return FALSE;
    }
  *out = (int) v;
  return TRUE;
}

/* model_type must be "nextstep": a plain Qwen2/Llama folder has no image
 * head, and saying so beats listing a hundred missing tensors. */
static gboolean
check_model_type (const Fields *f, NsModelConfig *cfg, GError **error)
{
  if (!read_string (f, "model_type", &cfg->model_type, error))
    return FALSE;
  if (cfg->model_type == NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "%s has no 'model_type': it is not a NextStep config; point --model at "
                   "a NextStep-1 folder", f->label);
      return FALSE;
    }
  if (strcmp (cfg->model_type, "nextstep") != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "%s is a '%s' model, not NextStep: point --model at a NextStep-1 folder",
                   f->label, cfg->model_type);
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_backbone (const Fields *f, NsModelConfig *cfg, GError **error)
{
  g_autofree char *act = NULL;
  if (!read_sizes (f, model_sizes, G_N_ELEMENTS (model_sizes), cfg, error)
      || !read_size (f, "num_key_value_heads", cfg->num_attention_heads,
                     &cfg->num_key_value_heads, error)
      || !read_size (f, "head_dim", MAX (1, cfg->hidden_size / cfg->num_attention_heads),
                     &cfg->head_dim, error)
      || !read_int (f, "vocab_size", 151936, &cfg->vocab_size, error)
      || !read_positive_double (f, "rope_theta", 10000.0, &cfg->rope_theta, error)
      || !read_positive_double (f, "rms_norm_eps", 1e-6, &cfg->rms_norm_eps, error)
      /* Qwen2 puts biases on q, k, v only; NextStepConfig copies
       * attention_bias into o_attention_bias when that is null. */
      || !read_bool (f, "attention_bias", TRUE, &cfg->attention_bias, error)
      || !read_bool (f, "o_attention_bias", cfg->attention_bias, &cfg->o_attention_bias, error)
      || !read_bool (f, "mlp_bias", FALSE, &cfg->mlp_bias, error)
      || !read_bool (f, "tie_word_embeddings", FALSE, &cfg->tie_word_embeddings, error)
      || !read_string (f, "hidden_act", &act, error))
    return FALSE;
  if (cfg->vocab_size < 1 || cfg->vocab_size > G_MAXINT)
    return bad_field (f, "vocab_size", "a positive size", error);
  if (act != NULL && strcmp (act, "silu") != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "%s: field 'hidden_act' is '%s'; NextStep uses 'silu' and no other "
                   "activation is implemented", f->label, act);
      return FALSE;
    }
  if (field_node (f, "rope_scaling") != NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "%s: field 'rope_scaling' is set; NextStep uses plain RoPE and scaled "
                   "variants are not implemented", f->label);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_backbone (const Fields *f, const NsModelConfig *cfg, GError **error)
{
  if (cfg->num_attention_heads % cfg->num_key_value_heads != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                   f->label, cfg->num_attention_heads, cfg->num_key_value_heads);
      return FALSE;
    }
  if (cfg->head_dim % 2 != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: field 'head_dim' is %d; RoPE rotates pairs, so it must be even",
                   f->label, cfg->head_dim);
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_nextstep (const Fields *f, NsModelConfig *cfg, GError **error)
{
  int64_t vocab = cfg->vocab_size;
  return read_bool (f, "use_gen_pos_embed", FALSE, &cfg->use_gen_pos_embed, error)
         && read_positive_double (f, "fm_head_mlp_ratio", 1.0, &cfg->fm_head_mlp_ratio, error)
         && read_token_id (f, "boi", vocab, TRUE, &cfg->boi, error)
         && read_token_id (f, "eoi", vocab, TRUE, &cfg->eoi, error)
         && read_token_id (f, "image_placeholder_id", vocab, TRUE, &cfg->image_placeholder_id,
                           error)
         && read_token_id (f, "pad_token_id", vocab, TRUE, &cfg->pad_token_id, error)
         && read_token_id (f, "bos_token_id", vocab, FALSE, &cfg->bos_token_id, error)
         && read_token_id (f, "eos_token_id", vocab, FALSE, &cfg->eos_token_id, error)
         && read_string (f, "vae_name_or_path", &cfg->vae_name_or_path, error)
         && read_string (f, "_name_or_path", &cfg->name_or_path, error);
}

gboolean
ns_model_config_parse (NsModelConfig *cfg, const char *json, gsize size, const char *label,
                       GError **error)
{
  g_return_val_if_fail (cfg != NULL && json != NULL && label != NULL, FALSE);
  memset (cfg, 0, sizeof *cfg);
  JsonObject *obj = parse_object (json, size, label, error);
  if (obj == NULL)
    return FALSE;
  Fields f = { obj, label };
  gboolean ok = check_model_type (&f, cfg, error)
                && read_backbone (&f, cfg, error)
                && check_backbone (&f, cfg, error)
                && read_nextstep (&f, cfg, error);
  json_object_unref (obj);
  if (!ok)
    ns_model_config_clear (cfg);
  return ok;
}

gboolean
ns_model_config_load (NsModelConfig *cfg, const char *path, GError **error)
{
  gsize size = 0;
  g_autofree char *text = read_text (path, &size, error);
  memset (cfg, 0, sizeof *cfg);
  return text != NULL && ns_model_config_parse (cfg, text, size, path, error);
}

void
ns_model_config_clear (NsModelConfig *cfg)
{
  if (cfg == NULL)
    return;
  g_clear_pointer (&cfg->vae_name_or_path, g_free);
  g_clear_pointer (&cfg->model_type, g_free);
  g_clear_pointer (&cfg->name_or_path, g_free);
}

/* ---- VAE config.json ------------------------------------------------------ */

static const SizeField vae_sizes[] = {
  { "resolution", offsetof (NsVaeConfig, resolution), 256 },
  { "in_channels", offsetof (NsVaeConfig, in_channels), 3 },
  { "out_ch", offsetof (NsVaeConfig, out_ch), 3 },
  { "ch", offsetof (NsVaeConfig, ch), 128 },
  { "num_res_blocks", offsetof (NsVaeConfig, num_res_blocks), 2 },
  { "z_channels", offsetof (NsVaeConfig, z_channels), 16 },
  { "psz", offsetof (NsVaeConfig, psz), 1 },
};

/* ch_mult: 1..8 positive multipliers; every level's width ch·mult feeds a
 * 32-group GroupNorm, so it must be a multiple of 32. */
static gboolean
read_ch_mult (const Fields *f, NsVaeConfig *cfg, GError **error)
{
  static const int def[] = { 1, 2, 4, 4 };
  JsonNode *node = field_node (f, "ch_mult");
  if (node == NULL)
    {
      memcpy (cfg->ch_mult, def, sizeof def);
      cfg->n_ch_mult = G_N_ELEMENTS (def);
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_ARRAY (node))
    return bad_field (f, "ch_mult", "a list of integers", error);
  JsonArray *list = json_node_get_array (node);
  guint n = json_array_get_length (list);
  if (n < 1 || n > G_N_ELEMENTS (cfg->ch_mult))
    return bad_field (f, "ch_mult", "a list of 1 to 8 multipliers", error);
  for (guint i = 0; i < n; i++)
    {
      JsonNode *e = json_array_get_element (list, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64
          || json_node_get_int (e) < 1 || json_node_get_int (e) > 64)
        return bad_field (f, "ch_mult", "a list of positive integers", error);
      cfg->ch_mult[i] = (int) json_node_get_int (e);
      if ((int64_t) cfg->ch * cfg->ch_mult[i] % 32 != 0)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                       "%s: ch (%d) × ch_mult[%u] (%d) is not a multiple of 32, the "
                       "GroupNorm group count", f->label, cfg->ch, i, cfg->ch_mult[i]);
          return FALSE;
        }
    }
  cfg->n_ch_mult = (int) n;
  return TRUE;
}

gboolean
ns_vae_config_parse (NsVaeConfig *cfg, const char *json, gsize size, const char *label,
                     GError **error)
{
  g_return_val_if_fail (cfg != NULL && json != NULL && label != NULL, FALSE);
  memset (cfg, 0, sizeof *cfg);
  JsonObject *obj = parse_object (json, size, label, error);
  if (obj == NULL)
    return FALSE;
  Fields f = { obj, label };
  gboolean ok = read_sizes (&f, vae_sizes, G_N_ELEMENTS (vae_sizes), cfg, error)
                && read_ch_mult (&f, cfg, error)
                && read_double (&f, "scaling_factor", 1.0, &cfg->scaling_factor, error)
                && read_double (&f, "shift_factor", 0.0, &cfg->shift_factor, error)
                && read_bool (&f, "deterministic", TRUE, &cfg->deterministic, error)
                && read_bool (&f, "encoder_norm", TRUE, &cfg->encoder_norm, error);
  /* Decoding divides by the scaling factor. */
  if (ok && cfg->scaling_factor == 0)
    ok = bad_field (&f, "scaling_factor", "non-zero", error);
  json_object_unref (obj);
  return ok;
}

gboolean
ns_vae_config_load (NsVaeConfig *cfg, const char *path, GError **error)
{
  gsize size = 0;
  g_autofree char *text = read_text (path, &size, error);
  memset (cfg, 0, sizeof *cfg);
  return text != NULL && ns_vae_config_parse (cfg, text, size, path, error);
}

/* ---- tokenizer_config.json ------------------------------------------------ */

/* A special token: null, a string, or an AddedToken object {"content": …}. */
static gboolean
read_token_text (const Fields *f, const char *name, char **out, GError **error)
{
  JsonNode *node = field_node (f, name);
  *out = NULL;
  if (node != NULL && JSON_NODE_HOLDS_OBJECT (node))
    {
      Fields inner = { json_node_get_object (node), f->label };
      if (!read_string (&inner, "content", out, error))
        return FALSE;
      if (*out == NULL)
        return bad_field (f, name, "a string or an object with a \"content\" string", error);
      return TRUE;
    }
  return read_string (f, name, out, error);
}

gboolean
ns_tokenizer_config_parse (NsTokenizerConfig *cfg, const char *json, gsize size,
                           const char *label, GError **error)
{
  g_return_val_if_fail (cfg != NULL && json != NULL && label != NULL, FALSE);
  memset (cfg, 0, sizeof *cfg);
  JsonObject *obj = parse_object (json, size, label, error);
  if (obj == NULL)
    return FALSE;
  Fields f = { obj, label };
  double max_len;
  /* transformers writes "no limit" as 1e30, so read it as a double. */
  gboolean ok = read_token_text (&f, "bos_token", &cfg->bos_token, error)
                && read_token_text (&f, "eos_token", &cfg->eos_token, error)
                && read_token_text (&f, "pad_token", &cfg->pad_token, error)
                && read_bool (&f, "add_bos_token", FALSE, &cfg->add_bos_token, error)
                && read_positive_double (&f, "model_max_length", (double) G_MAXINT64, &max_len,
                                         error);
  if (ok)
    cfg->model_max_length = max_len >= (double) G_MAXINT64 ? G_MAXINT64 : (int64_t) max_len;
  json_object_unref (obj);
  if (!ok)
    ns_tokenizer_config_clear (cfg);
  return ok;
}

gboolean
ns_tokenizer_config_load (NsTokenizerConfig *cfg, const char *path, GError **error)
{
  gsize size = 0;
  g_autofree char *text = read_text (path, &size, error);
  memset (cfg, 0, sizeof *cfg);
  return text != NULL && ns_tokenizer_config_parse (cfg, text, size, path, error);
}

void
ns_tokenizer_config_clear (NsTokenizerConfig *cfg)
{
  if (cfg == NULL)
    return;
  g_clear_pointer (&cfg->bos_token, g_free);
  g_clear_pointer (&cfg->eos_token, g_free);
  g_clear_pointer (&cfg->pad_token, g_free);
}
