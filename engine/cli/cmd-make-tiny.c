/* cmd-make-tiny.c — `nextstep make-tiny OUT [--edit] [--seed N] [--vocab DIR]`:
 * writes a tiny random-weight NextStep model in the published layout
 * (config.json, generation_config.json, three bf16 safetensors shards with
 * their index, tokenizer files, vae/{config.json, checkpoint.pt}), small
 * enough for the CPU engine to run in well under a second per image.
 *
 * Weights follow the recipe of the golden tiny models: matrices
 * N(0, 1/fan_in) (embeddings and lm_head N(0, 1), adaLN ×0.5,
 * image_in_projector ×2, VAE decoder.conv_out ×0.5), norm gains 1 + 0.1 N,
 * biases 0.05 N — non-zero where the official init zeroes (adaLN, final
 * layer) so that every part of the network changes the output. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "nextstep.h"
#include "commands.h"
#include "tiny-tokenizer.h"
#include "files/config.h"
#include "files/safetensors.h"
#include "files/torch-checkpoint.h"
#include "model/arch.h"
#include "tokenizer/tokenizer.h"

#define N_SHARDS 3
/* The official class saves a 32 × 32 sin-cos gen_pos_embed grid. */
#define GEN_POS_GRID 32

typedef struct {
  char *name;
  int n_dims;
  int64_t shape[4];
} Spec;

static void
spec_free (gpointer p)
{
  Spec *s = p;
  g_free (s->name);
  g_free (s);
}

static void
add_spec (GPtrArray *specs, char *name, int n_dims, int64_t d0, int64_t d1, int64_t d2,
          int64_t d3)
{
  Spec *s = g_new0 (Spec, 1);
  s->name = name;
  s->n_dims = n_dims;
  s->shape[0] = d0, s->shape[1] = d1, s->shape[2] = d2, s->shape[3] = d3;
  g_ptr_array_add (specs, s);
}

static int64_t
spec_elements (const Spec *s)
{
  int64_t n = 1;
  for (int i = 0; i < s->n_dims; i++)
    n *= s->shape[i];
  return n;
}

/* ---- random values ------------------------------------------------------ */

/* N(0, 1) draws by Box–Muller on GRand (Mersenne Twister: the same stream
 * for a seed on every machine); each pair of uniforms gives two draws. */
typedef struct {
  GRand *rand;
  gboolean has_spare;
  double spare;
} Normal;

static double
normal (Normal *n)
{
  if (n->has_spare)
    {
      n->has_spare = FALSE;
      return n->spare;
    }
  double r = sqrt (-2.0 * log (1.0 - g_rand_double (n->rand)));
  double a = 2.0 * G_PI * g_rand_double (n->rand);
  n->spare = r * sin (a);
  n->has_spare = TRUE;
  return r * cos (a);
}

/* The scale of a weight matrix's entries by the tensor's role. */
static double
matrix_std (const Spec *s)
{
  double fan_in = (double) spec_elements (s) / (double) s->shape[0];
  double std = 1.0 / sqrt (fan_in);
  if (strcmp (s->name, "embed_tokens.weight") == 0 || strcmp (s->name, "lm_head.weight") == 0)
    return 1.0;
  if (strstr (s->name, "adaLN_modulation") != NULL
      || strcmp (s->name, "decoder.conv_out.weight") == 0)
    return 0.5 * std;
  if (g_str_has_prefix (s->name, "image_in_projector."))
    return 2.0 * std;
  return std;
}

static float *
random_values (Normal *rand, const Spec *s)
{
  int64_t n = spec_elements (s);
  float *v = g_new (float, n);
  gboolean bias = g_str_has_suffix (s->name, ".bias");
  gboolean gain = s->n_dims == 1 && !bias;
  double std = s->n_dims >= 2 ? matrix_std (s) : bias ? 0.05 : 0.1;
  for (int64_t i = 0; i < n; i++)
    v[i] = (float) ((gain ? 1.0 : 0.0) + std * normal (rand));
  return v;
}

/* ---- the model ---------------------------------------------------------- */

/* gen_pos_embed as the official get_2d_sincos_pos_embed builds it: for grid
 * cell (row i, column j), [sin(j ω), cos(j ω), sin(i ω), cos(i ω)] with
 * ω_k = 10000^(−k / (D/4)). */
static float *
gen_pos_embed (int dim)
{
  int quarter = dim / 4;
  float *v = g_new0 (float, (gsize) GEN_POS_GRID * GEN_POS_GRID * dim);
  for (int i = 0; i < GEN_POS_GRID; i++)
    for (int j = 0; j < GEN_POS_GRID; j++)
      for (int k = 0; k < quarter; k++)
        {
          float *row = v + ((gsize) i * GEN_POS_GRID + j) * dim;
          double omega = 1.0 / pow (10000.0, (double) k / quarter);
          row[k] = (float) sin (j * omega);
          row[quarter + k] = (float) cos (j * omega);
          row[2 * quarter + k] = (float) sin (i * omega);
          row[3 * quarter + k] = (float) cos (i * omega);
        }
  return v;
}

/* Shard k (0-based) of a tensor: embeddings, lm_head, then the rest, as the
 * golden checkpoints are split. */
static int
shard_of (const char *name)
{
  if (strcmp (name, "embed_tokens.weight") == 0)
    return 0;
  return strcmp (name, "lm_head.weight") == 0 ? 1 : 2;
}

static void
add_bf16 (NsSafetensorsWriter *w, const Spec *s, const float *values)
{
  int64_t n = spec_elements (s);
  g_autofree uint16_t *bits = g_new (uint16_t, n);
  for (int64_t i = 0; i < n; i++)
    bits[i] = ns_f32_to_bf16 (values[i]);
  ns_safetensors_writer_add (w, s->name, NS_DTYPE_BF16, s->n_dims, s->shape, bits);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp ((*(Spec *const *) a)->name, (*(Spec *const *) b)->name);
}

static gboolean
write_index (const char *dir, GPtrArray *specs, guint64 total, char **shards, GError **error)
{
  g_autoptr (GPtrArray) sorted = g_ptr_array_copy (specs, NULL, NULL);
  g_ptr_array_set_free_func (sorted, NULL);   /* the copy borrows the specs */
  g_ptr_array_sort (sorted, compare_names);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "metadata");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "total_size");
  json_builder_add_int_value (b, (gint64) total);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "weight_map");
  json_builder_begin_object (b);
  for (guint i = 0; i < sorted->len; i++)
    {
      const Spec *s = sorted->pdata[i];
      json_builder_set_member_name (b, s->name);
      json_builder_add_string_value (b, shards[shard_of (s->name)]);
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
  return ns_tiny_save_json (dir, "model.safetensors.index.json", b, error);
}

/* Every tensor of the architecture plus gen_pos_embed, as bf16 shards. */
static gboolean
write_weights (const char *dir, const NsModelConfig *cfg, Normal *rand, GError **error)
{
  g_autoptr (GPtrArray) specs = g_ptr_array_new_with_free_func (spec_free);
  g_autoptr (GArray) arch = ns_arch_expected_tensors (cfg);
  for (guint i = 0; i < arch->len; i++)
    {
      const NsArchTensor *t = &g_array_index (arch, NsArchTensor, i);
      add_spec (specs, g_strdup (t->name), t->n_dims, t->shape[0], t->shape[1], t->shape[2], 0);
    }
  NsSafetensorsWriter *w[N_SHARDS];
  char *names[N_SHARDS];
  for (int k = 0; k < N_SHARDS; k++)
    {
      w[k] = ns_safetensors_writer_new ();
      ns_safetensors_writer_set_metadata (w[k], "format", "pt");
      names[k] = g_strdup_printf ("model-%05d-of-%05d.safetensors", k + 1, N_SHARDS);
    }
  for (guint i = 0; i < specs->len; i++)
    {
      const Spec *s = specs->pdata[i];
      g_autofree float *values = random_values (rand, s);
      add_bf16 (w[shard_of (s->name)], s, values);
    }
  add_spec (specs, g_strdup ("gen_pos_embed"), 3, 1, GEN_POS_GRID * GEN_POS_GRID,
            cfg->hidden_size, 0);
  g_autofree float *pos = gen_pos_embed (cfg->hidden_size);
  add_bf16 (w[shard_of ("gen_pos_embed")], specs->pdata[specs->len - 1], pos);

  guint64 total = 0;
  gboolean ok = TRUE;
  for (int k = 0; k < N_SHARDS; k++)
    {
      g_autofree char *path = g_build_filename (dir, names[k], NULL);
      total += ns_safetensors_writer_data_size (w[k]);
      ok = ok && ns_safetensors_writer_save (w[k], path, error);
      ns_safetensors_writer_free (w[k]);
    }
  ok = ok && write_index (dir, specs, total, names, error);
  for (int k = 0; k < N_SHARDS; k++)
    g_free (names[k]);
  return ok;
}

/* ---- config files --------------------------------------------------------- */

static void
member_int (JsonBuilder *b, const char *key, int64_t v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_int_value (b, v);
}

static void
member_double (JsonBuilder *b, const char *key, double v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_double_value (b, v);
}

static void
member_bool (JsonBuilder *b, const char *key, gboolean v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_boolean_value (b, v);
}

static void
member_string (JsonBuilder *b, const char *key, const char *v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_string_value (b, v);
}

static gboolean
write_model_config (const char *dir, const NsModelConfig *c, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  member_string (b, "_name_or_path", c->name_or_path);
  json_builder_set_member_name (b, "architectures");
  json_builder_begin_array (b);
  json_builder_add_string_value (b, "NextStep");
  json_builder_end_array (b);
  member_bool (b, "attention_bias", c->attention_bias);
  member_int (b, "boi", c->boi);
  member_int (b, "bos_token_id", c->bos_token_id);
  member_int (b, "eoi", c->eoi);
  member_int (b, "eos_token_id", c->eos_token_id);
  member_int (b, "fm_head_dim", c->fm_head_dim);
  member_int (b, "fm_head_layers", c->fm_head_layers);
  member_int (b, "head_dim", c->head_dim);
  member_string (b, "hidden_act", "silu");
  member_int (b, "hidden_size", c->hidden_size);
  member_int (b, "image_placeholder_id", c->image_placeholder_id);
  member_int (b, "intermediate_size", c->intermediate_size);
  member_int (b, "latent_channels", c->latent_channels);
  member_int (b, "latent_patch_size", c->latent_patch_size);
  member_int (b, "latent_size", c->latent_size);
  member_int (b, "max_position_embeddings", c->max_position_embeddings);
  member_bool (b, "mlp_bias", c->mlp_bias);
  member_string (b, "model_type", "nextstep");
  member_int (b, "num_attention_heads", c->num_attention_heads);
  member_int (b, "num_hidden_layers", c->num_hidden_layers);
  member_int (b, "num_key_value_heads", c->num_key_value_heads);
  member_bool (b, "o_attention_bias", c->o_attention_bias);
  member_int (b, "pad_token_id", c->pad_token_id);
  member_double (b, "rms_norm_eps", c->rms_norm_eps);
  member_double (b, "rope_theta", c->rope_theta);
  member_bool (b, "tie_word_embeddings", c->tie_word_embeddings);
  member_string (b, "torch_dtype", "bfloat16");
  member_bool (b, "use_gen_pos_embed", c->use_gen_pos_embed);
  member_string (b, "vae_name_or_path", c->vae_name_or_path);
  member_int (b, "vocab_size", c->vocab_size);
  json_builder_end_object (b);
  return ns_tiny_save_json (dir, "config.json", b, error);
}

static gboolean
write_generation_config (const char *dir, const NsModelConfig *c, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  member_bool (b, "_from_model_config", TRUE);
  member_int (b, "bos_token_id", c->bos_token_id);
  member_int (b, "eos_token_id", c->eos_token_id);
  member_int (b, "pad_token_id", c->pad_token_id);
  json_builder_end_object (b);
  return ns_tiny_save_json (dir, "generation_config.json", b, error);
}

/* ---- tokenizer ------------------------------------------------------------ */

static gboolean
copy_tokenizer (const char *from, const char *to, GError **error)
{
  static const char *const files[] = { "tokenizer.json", "tokenizer_config.json", "vocab.json",
                                       "merges.txt", "special_tokens_map.json",
                                       "added_tokens.json" };
  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *src = g_build_filename (from, files[i], NULL);
      g_autofree char *dst = g_build_filename (to, files[i], NULL);
      g_autofree char *data = NULL;
      gsize size = 0;
      g_autoptr (GError) local = NULL;
      /* The first two are what the engine reads; the rest only mirror a
       * save_pretrained folder and may be missing from the source. */
      if (!g_file_get_contents (src, &data, &size, &local))
        {
          if (i >= 2 && g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            continue;
          g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot read %s: %s", src, local->message);
          return FALSE;
        }
      if (!g_file_set_contents (dst, data, (gssize) size, &local))
        {
          g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot write %s: %s", dst, local->message);
          return FALSE;
        }
    }
  return TRUE;
}

/* The config's token ids, read back from the tokenizer just written. */
static gboolean
take_token_ids (const char *dir, NsModelConfig *cfg, GError **error)
{
  g_autoptr (NsTokenizer) tok = ns_tokenizer_load (dir, error);
  if (tok == NULL)
    return FALSE;
  int image_area;   /* not in config.json, but every prompt uses it */
  struct { const char *content; int *id; } wanted[] = {
    { "<|begin_of_image|>", &cfg->boi }, { "<|end_of_image|>", &cfg->eoi },
    { "<|image_placeholder|>", &cfg->image_placeholder_id }, { "[PAD]", &cfg->pad_token_id },
    { "<|endoftext|>", &cfg->bos_token_id }, { "<|image_area|>", &image_area },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (wanted); i++)
    {
      *wanted[i].id = ns_tokenizer_token_id (tok, wanted[i].content);
      if (*wanted[i].id < 0)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                       "The tokenizer in %s has no %s token, which NextStep prompts need",
                       dir, wanted[i].content);
          return FALSE;
        }
    }
  /* Qwen2's bos and eos are both <|endoftext|>. */
  cfg->eos_token_id = cfg->bos_token_id;
  /* Embedding rows rounded up to a multiple of 64, as published models pad. */
  cfg->vocab_size = ((int64_t) ns_tokenizer_vocab_size (tok) + 63) / 64 * 64;
  return TRUE;
}

static void
tiny_config (NsModelConfig *c, gboolean edit)
{
  memset (c, 0, sizeof *c);
  c->hidden_size = 64;
  c->num_hidden_layers = 2;
  c->num_attention_heads = 4;
  c->num_key_value_heads = 2;
  c->head_dim = 16;
  c->intermediate_size = 128;
  c->max_position_embeddings = 131072;
  c->rope_theta = 1e6;
  c->rms_norm_eps = 1e-5;
  c->attention_bias = TRUE;
  c->latent_channels = 16;
  c->latent_patch_size = 2;
  c->latent_size = 32;
  c->fm_head_dim = 64;
  c->fm_head_layers = 2;
  c->fm_head_mlp_ratio = 1.0;
  c->vae_name_or_path = g_strdup ("vae");
  c->model_type = g_strdup ("nextstep");
  /* ns_arch_guess_kind reads the kind from this name. */
  c->name_or_path = g_strdup (edit ? "stepfun-ai/NextStep-1-Large-Edit"
                                   : "stepfun-ai/NextStep-1.1");
}

/* ---- the VAE -------------------------------------------------------------- */

static void
add_conv (GPtrArray *specs, const char *prefix, int64_t out, int64_t in, int k)
{
  add_spec (specs, g_strconcat (prefix, ".weight", NULL), 4, out, in, k, k);
  add_spec (specs, g_strconcat (prefix, ".bias", NULL), 1, out, 0, 0, 0);
}

static void
add_norm (GPtrArray *specs, const char *prefix, int64_t c)
{
  add_spec (specs, g_strconcat (prefix, ".weight", NULL), 1, c, 0, 0, 0);
  add_spec (specs, g_strconcat (prefix, ".bias", NULL), 1, c, 0, 0, 0);
}

/* Name `prefix`.`part` (a temporary the callers pass straight on). */
static char *
sub (const char *prefix, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *part = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  return g_strconcat (prefix, ".", part, NULL);
}

static void
add_resblock (GPtrArray *specs, const char *prefix, int64_t in, int64_t out)
{
  g_autofree char *n1 = sub (prefix, "norm1"), *c1 = sub (prefix, "conv1");
  g_autofree char *n2 = sub (prefix, "norm2"), *c2 = sub (prefix, "conv2");
  g_autofree char *skip = sub (prefix, "nin_shortcut");
  add_norm (specs, n1, in);
  add_conv (specs, c1, out, in, 3);
  add_norm (specs, n2, out);
  add_conv (specs, c2, out, out, 3);
  if (in != out)
    add_conv (specs, skip, out, in, 1);
}

static void
add_mid (GPtrArray *specs, const char *side, int64_t c)
{
  static const char *const attn[] = { "q", "k", "v", "proj_out" };
  g_autofree char *b1 = g_strdup_printf ("%s.mid.block_1", side);
  g_autofree char *b2 = g_strdup_printf ("%s.mid.block_2", side);
  g_autofree char *norm = g_strdup_printf ("%s.mid.attn_1.norm", side);
  add_resblock (specs, b1, c, c);
  add_norm (specs, norm, c);
  for (gsize i = 0; i < G_N_ELEMENTS (attn); i++)
    {
      g_autofree char *name = g_strdup_printf ("%s.mid.attn_1.%s", side, attn[i]);
      add_conv (specs, name, c, c, 1);
    }
  add_resblock (specs, b2, c, c);
}

/* The Flux AutoEncoder state_dict (docs/model.md §11). */
static void
vae_specs (GPtrArray *specs, const NsVaeConfig *v)
{
  int last = v->n_ch_mult - 1;
  int64_t c = v->ch;
  add_conv (specs, "encoder.conv_in", c, v->in_channels, 3);
  for (int i = 0; i <= last; i++)
    {
      int64_t out = (int64_t) v->ch * v->ch_mult[i];
      for (int b = 0; b < v->num_res_blocks; b++, c = out)
        {
          g_autofree char *name = g_strdup_printf ("encoder.down.%d.block.%d", i, b);
          add_resblock (specs, name, c, out);
        }
      g_autofree char *down = g_strdup_printf ("encoder.down.%d.downsample.conv", i);
      if (i != last)
        add_conv (specs, down, c, c, 3);
    }
  add_mid (specs, "encoder", c);
  add_norm (specs, "encoder.norm_out", c);
  add_conv (specs, "encoder.conv_out", 2 * (int64_t) v->z_channels, c, 3);

  add_conv (specs, "decoder.conv_in", c, v->z_channels, 3);
  add_mid (specs, "decoder", c);
  for (int i = last; i >= 0; i--)
    {
      int64_t out = (int64_t) v->ch * v->ch_mult[i];
      for (int b = 0; b <= v->num_res_blocks; b++, c = out)
        {
          g_autofree char *name = g_strdup_printf ("decoder.up.%d.block.%d", i, b);
          add_resblock (specs, name, c, out);
        }
      g_autofree char *up = g_strdup_printf ("decoder.up.%d.upsample.conv", i);
      if (i != 0)
        add_conv (specs, up, c, c, 3);
    }
  add_norm (specs, "decoder.norm_out", c);
  add_conv (specs, "decoder.conv_out", v->out_ch, c, 3);
}

static gboolean
write_vae_config (const char *dir, const NsVaeConfig *v, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  member_int (b, "resolution", v->resolution);
  member_int (b, "in_channels", v->in_channels);
  member_int (b, "out_ch", v->out_ch);
  member_int (b, "ch", v->ch);
  json_builder_set_member_name (b, "ch_mult");
  json_builder_begin_array (b);
  for (int i = 0; i < v->n_ch_mult; i++)
    json_builder_add_int_value (b, v->ch_mult[i]);
  json_builder_end_array (b);
  member_int (b, "num_res_blocks", v->num_res_blocks);
  member_int (b, "z_channels", v->z_channels);
  member_double (b, "scaling_factor", v->scaling_factor);
  member_double (b, "shift_factor", v->shift_factor);
  member_bool (b, "deterministic", v->deterministic);
  member_bool (b, "encoder_norm", v->encoder_norm);
  member_int (b, "psz", v->psz);
  json_builder_end_object (b);
  return ns_tiny_save_json (dir, "config.json", b, error);
}

/* A small VAE (ch 32, 4 levels, one block each); the edit model's also
 * exercises psz 2 and a non-trivial scale/shift, as the golden edit VAE does. */
static gboolean
write_vae (const char *model_dir, gboolean edit, Normal *rand, GError **error)
{
  NsVaeConfig v = { .resolution = 256, .in_channels = 3, .out_ch = 3, .ch = 32,
                    .ch_mult = { 1, 2, 2, 2 }, .n_ch_mult = 4, .num_res_blocks = 1,
                    .z_channels = 16, .scaling_factor = edit ? 0.3611 : 1.0,
                    .shift_factor = edit ? 0.1159 : 0.0, .deterministic = TRUE,
                    .encoder_norm = TRUE, .psz = edit ? 2 : 1 };
  g_autofree char *dir = g_build_filename (model_dir, "vae", NULL);
  g_autofree char *path = g_build_filename (dir, "checkpoint.pt", NULL);
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot create %s: %s", dir, g_strerror (errno));
      return FALSE;
    }
  g_autoptr (GPtrArray) specs = g_ptr_array_new_with_free_func (spec_free);
  vae_specs (specs, &v);
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  for (guint i = 0; i < specs->len; i++)
    {
      const Spec *s = specs->pdata[i];
      float *values = random_values (rand, s);
      NsTensorView view = { s->name, NS_DTYPE_F32, s->n_dims, { 0 }, values,
                            (size_t) spec_elements (s) * sizeof (float), NULL };
      memcpy (view.shape, s->shape, sizeof s->shape);
      ns_tensor_store_keep (store, values, g_free);
      if (!ns_tensor_store_add (store, &view, error))
        return FALSE;
    }
  return write_vae_config (dir, &v, error)
         && ns_torch_checkpoint_save (store, "checkpoint", path, error);
}

/* ---- the command ---------------------------------------------------------- */

static gboolean
make_tiny (const char *out, gboolean edit, guint64 seed, const char *vocab_dir, GError **error)
{
  if (g_mkdir_with_parents (out, 0755) != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot create %s: %s", out, g_strerror (errno));
      return FALSE;
    }
  gboolean ok = vocab_dir != NULL ? copy_tokenizer (vocab_dir, out, error)
                                  : ns_tiny_tokenizer_write (out, error);
  NsModelConfig cfg;
  tiny_config (&cfg, edit);
  /* GRand takes 32-bit seeds: fold the high half in so every bit counts. */
  Normal rand = { g_rand_new_with_seed ((guint32) (seed ^ (seed >> 32))), FALSE, 0 };
  ok = ok && take_token_ids (out, &cfg, error)
       && write_model_config (out, &cfg, error)
       && write_generation_config (out, &cfg, error)
       && write_weights (out, &cfg, &rand, error)
       && write_vae (out, edit, &rand, error);
  g_rand_free (rand.rand);
  ns_model_config_clear (&cfg);
  return ok;
}

int
ns_cmd_make_tiny (int argc, char **argv)
{
  gboolean edit = FALSE;
  gint64 seed = 42;
  g_autofree char *vocab_dir = NULL;
  GOptionEntry entries[] = {
    { "edit", 0, 0, G_OPTION_ARG_NONE, &edit,
      "Write an edit model (named like NextStep-1-Large-Edit)", NULL },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Seed of the random weights (default 42)", "N" },
    { "vocab", 0, 0, G_OPTION_ARG_FILENAME, &vocab_dir,
      "Copy the tokenizer files from this folder instead of generating a small one", "DIR" },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new (
    "OUT — write a tiny random-weight NextStep model in the published layout");
  g_option_context_set_summary (ctx,
    "OUT receives config.json, generation_config.json, three bf16 safetensors shards and\n"
    "their index, tokenizer files and vae/{config.json,checkpoint.pt}. The same seed\n"
    "writes the same files.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc != 2)
    {
      fprintf (stderr, "%s: %s\n", argv[0],
               error ? error->message : "give one output folder (see --help)");
      return 2;
    }
  if (!make_tiny (argv[1], edit, (guint64) seed, vocab_dir, &error))
    {
      fprintf (stderr, "%s: %s\n", argv[0], error->message);
      return 1;
    }
  printf ("Wrote a tiny %s model to %s\n", edit ? "edit" : "text-to-image", argv[1]);
  return 0;
}
