/* cmd-make-tiny.c — `nextstep make-tiny OUT [--edit] [--seed N] [--vocab DIR]
 * [--full-size]`: writes a tiny random-weight NextStep model in the published
 * layout (config.json, generation_config.json, three bf16 safetensors shards
 * with their index, tokenizer files, vae/{config.json, checkpoint.pt}), small
 * enough for the CPU engine to run in well under a second per image. With
 * --full-size the same files hold the real NextStep-1.1 shapes (14.96 B
 * parameters in seven shards, the real VAE): a stand-in for the published
 * model to measure the engine on. Its 28 GB of weights are made while they
 * are written, a few MiB at a time, so it needs little memory.
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
#include "model/vae.h"
#include "tokenizer/tokenizer.h"

#define N_SHARDS 3
#define FULL_SHARDS 7           /* as NextStep-1.1 is published */
#define FULL_VOCAB 152064       /* NextStep-1.1's embedding rows */
/* The official class saves a 32 × 32 sin-cos gen_pos_embed grid. */
#define GEN_POS_GRID 32

typedef struct {
  char *name;
  int n_dims;
  int64_t shape[4];
  int shard;              /* 0-based shard file */
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

/* The mean and standard deviation random_values draws a tensor with. */
static void
draw_moments (const Spec *s, double *mean, double *std)
{
  gboolean bias = g_str_has_suffix (s->name, ".bias");
  *mean = s->n_dims == 1 && !bias ? 1.0 : 0.0;
  *std = s->n_dims >= 2 ? matrix_std (s) : bias ? 0.05 : 0.1;
}

static float *
random_values (Normal *rand, const Spec *s)
{
  int64_t n = spec_elements (s);
  float *v = g_new (float, n);
  double mean, std;
  draw_moments (s, &mean, &std);
  for (int64_t i = 0; i < n; i++)
    v[i] = (float) (mean + std * normal (rand));
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
tiny_shard_of (const char *name)
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
      json_builder_add_string_value (b, shards[s->shard]);
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
  return ns_tiny_save_json (dir, "model.safetensors.index.json", b, error);
}

/* Full size: uniform values with the draw's mean and standard deviation
 * (a uniform on ±√3·std has that std), made a chunk at a time from a
 * xorshift stream seeded by the tensor and the chunk's offset: Box–Muller on
 * GRand would take many minutes for 15 B values. */
typedef struct {
  float mean, half_width;
  guint64 seed;
} FastFill;

static void
fill_uniform_bf16 (guint8 *dst, guint64 offset, gsize size, gpointer data)
{
  const FastFill *f = data;
  uint16_t *out = (uint16_t *) dst;
  guint64 s = (f->seed ^ (offset * 0x9e3779b97f4a7c15ull)) | 1;
  for (gsize i = 0; i < size / sizeof *out; i++)
    {
      s ^= s >> 12;
      s ^= s << 25;
      s ^= s >> 27;
      float u = (float) ((s * 2685821657736338717ull) >> 40) / (float) (1 << 23) - 1.0f;
      out[i] = ns_f32_to_bf16 (f->mean + f->half_width * u);
    }
}

/* Shards of a full-size model: consecutive tensors, about equal bytes. */
static void
assign_full_shards (GPtrArray *specs)
{
  guint64 total = 0, before = 0;
  for (guint i = 0; i < specs->len; i++)
    total += (guint64) spec_elements (specs->pdata[i]);
  for (guint i = 0; i < specs->len; i++)
    {
      Spec *s = specs->pdata[i];
      s->shard = (int) MIN (FULL_SHARDS - 1, before * FULL_SHARDS / total);
      before += (guint64) spec_elements (s);
    }
}

/* Every tensor of the architecture plus gen_pos_embed, as bf16 shards:
 * normal draws held in memory for the tiny model, made while written at
 * full size (`fills` keeps their state until the save). */
static gboolean
write_weights (const char *dir, const NsModelConfig *cfg, Normal *rand, gboolean full,
               GError **error)
{
  g_autoptr (GPtrArray) specs = g_ptr_array_new_with_free_func (spec_free);
  g_autoptr (GArray) arch = ns_arch_expected_tensors (cfg);
  for (guint i = 0; i < arch->len; i++)
    {
      const NsArchTensor *t = &g_array_index (arch, NsArchTensor, i);
      add_spec (specs, g_strdup (t->name), t->n_dims, t->shape[0], t->shape[1], t->shape[2], 0);
    }
  add_spec (specs, g_strdup ("gen_pos_embed"), 3, 1, GEN_POS_GRID * GEN_POS_GRID,
            cfg->hidden_size, 0);
  int n_shards = full ? FULL_SHARDS : N_SHARDS;
  for (guint i = 0; i < specs->len; i++)
    ((Spec *) specs->pdata[i])->shard = tiny_shard_of (((Spec *) specs->pdata[i])->name);
  if (full)
    assign_full_shards (specs);
  NsSafetensorsWriter *w[FULL_SHARDS];
  char *names[FULL_SHARDS];
  for (int k = 0; k < n_shards; k++)
    {
      w[k] = ns_safetensors_writer_new ();
      ns_safetensors_writer_set_metadata (w[k], "format", "pt");
      names[k] = g_strdup_printf ("model-%05d-of-%05d.safetensors", k + 1, n_shards);
    }
  g_autofree FastFill *fills = g_new0 (FastFill, specs->len);
  for (guint i = 0; i < specs->len; i++)
    {
      const Spec *s = specs->pdata[i];
      if (strcmp (s->name, "gen_pos_embed") == 0)
        {
          g_autofree float *pos = gen_pos_embed (cfg->hidden_size);
          add_bf16 (w[s->shard], s, pos);
        }
      else if (full)
        {
          double mean, std;
          draw_moments (s, &mean, &std);
          fills[i] = (FastFill) { (float) mean, (float) (std * sqrt (3.0)),
                                  g_rand_int (rand->rand) * 0x100000001ull + i };
          ns_safetensors_writer_add_fill (w[s->shard], s->name, NS_DTYPE_BF16, s->n_dims,
                                          s->shape, fill_uniform_bf16, &fills[i]);
        }
      else
        {
          g_autofree float *values = random_values (rand, s);
          add_bf16 (w[s->shard], s, values);
        }
    }

  guint64 total = 0;
  gboolean ok = TRUE;
  for (int k = 0; k < n_shards; k++)
    {
      g_autofree char *path = g_build_filename (dir, names[k], NULL);
      total += ns_safetensors_writer_data_size (w[k]);
      ok = ok && ns_safetensors_writer_save (w[k], path, error);
      ns_safetensors_writer_free (w[k]);
      if (full && ok)
        fprintf (stderr, "wrote %s\n", path);
    }
  ok = ok && write_index (dir, specs, total, names, error);
  for (int k = 0; k < n_shards; k++)
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
 * exercises psz 2 and a non-trivial scale/shift, as the golden edit VAE does.
 * Full size: the published Flux VAE shapes (ch 128, ch_mult 1 2 4 4, two
 * blocks per level), scale 1 and shift 0 (docs/model.md §11). */
static void
vae_config (NsVaeConfig *v, gboolean edit, gboolean full)
{
  *v = (NsVaeConfig) { .resolution = 256, .in_channels = 3, .out_ch = 3, .ch = 32,
                       .ch_mult = { 1, 2, 2, 2 }, .n_ch_mult = 4, .num_res_blocks = 1,
                       .z_channels = 16, .scaling_factor = edit ? 0.3611 : 1.0,
                       .shift_factor = edit ? 0.1159 : 0.0, .deterministic = TRUE,
                       .encoder_norm = TRUE, .psz = edit ? 2 : 1 };
  if (full)
    {
      v->ch = 128;
      v->ch_mult[2] = v->ch_mult[3] = 4;
      v->num_res_blocks = 2;
    }
}

/* The tensors come from the loader's own layout (ns_vae_expected_tensors). */
static gboolean
write_vae (const char *model_dir, const NsVaeConfig *v, Normal *rand, GError **error)
{
  g_autofree char *dir = g_build_filename (model_dir, "vae", NULL);
  g_autofree char *path = g_build_filename (dir, "checkpoint.pt", NULL);
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot create %s: %s", dir, g_strerror (errno));
      return FALSE;
    }
  g_autoptr (GArray) layout = ns_vae_expected_tensors (v, error);
  if (layout == NULL)
    return FALSE;
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  for (guint i = 0; i < layout->len; i++)
    {
      const NsVaeTensor *t = &g_array_index (layout, NsVaeTensor, i);
      Spec s = { t->name, t->n_dims, { 0 }, 0 };
      memcpy (s.shape, t->shape, sizeof s.shape);
      float *values = random_values (rand, &s);
      NsTensorView view = { t->name, NS_DTYPE_F32, t->n_dims, { 0 }, values,
                            (size_t) spec_elements (&s) * sizeof (float), NULL };
      memcpy (view.shape, t->shape, sizeof t->shape);
      ns_tensor_store_keep (store, values, g_free);
      if (!ns_tensor_store_add (store, &view, error))
        return FALSE;
    }
  return write_vae_config (dir, v, error)
         && ns_torch_checkpoint_save (store, "checkpoint", path, error);
}

/* ---- the command ---------------------------------------------------------- */

/* NextStep-1.1's shapes (docs/model.md). */
static void
full_config (NsModelConfig *c)
{
  c->hidden_size = 5120;
  c->num_hidden_layers = 48;
  c->num_attention_heads = 40;
  c->num_key_value_heads = 8;
  c->head_dim = 128;
  c->intermediate_size = 13824;
  c->fm_head_dim = 1536;
  c->fm_head_layers = 12;
  c->vocab_size = MAX (c->vocab_size, FULL_VOCAB);
}

static gboolean
make_tiny (const char *out, gboolean edit, gboolean full, guint64 seed, const char *vocab_dir,
           GError **error)
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
  NsVaeConfig vae;
  vae_config (&vae, edit, full);
  /* GRand takes 32-bit seeds: fold the high half in so every bit counts. */
  Normal rand = { g_rand_new_with_seed ((guint32) (seed ^ (seed >> 32))), FALSE, 0 };
  ok = ok && take_token_ids (out, &cfg, error);
  if (full)
    full_config (&cfg);
  ok = ok && write_model_config (out, &cfg, error)
       && write_generation_config (out, &cfg, error)
       && write_weights (out, &cfg, &rand, full, error)
       && write_vae (out, &vae, &rand, error);
  g_rand_free (rand.rand);
  ns_model_config_clear (&cfg);
  return ok;
}

int
ns_cmd_make_tiny (int argc, char **argv)
{
  gboolean edit = FALSE, full = FALSE;
  gint64 seed = 42;
  g_autofree char *vocab_dir = NULL;
  GOptionEntry entries[] = {
    { "edit", 0, 0, G_OPTION_ARG_NONE, &edit,
      "Write an edit model (named like NextStep-1-Large-Edit)", NULL },
    { "full-size", 0, 0, G_OPTION_ARG_NONE, &full,
      "The real NextStep-1.1 shapes (28 GB of bf16 in seven shards, the real VAE shapes), "
      "made while written; give --vocab with the real tokenizer", NULL },
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
  if (!make_tiny (argv[1], edit, full, (guint64) seed, vocab_dir, &error))
    {
      fprintf (stderr, "%s: %s\n", argv[0], error->message);
      return 1;
    }
  printf ("Wrote a %s %s model to %s\n", full ? "full-size" : "tiny",
          edit ? "edit" : "text-to-image", argv[1]);
  return 0;
}
