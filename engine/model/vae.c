/* model/vae.c — the Flux-style VAE: its tensor layout derived from the
 * config (docs/model.md §11), the checkpoint check, loading, and the public
 * encode/decode entry points. The forward passes are in vae-net.c, tiling in
 * vae-tile.c, the preview map in vae-preview.c. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "nextstep.h"
#include "model/vae-private.h"

/* Largest latent side accepted (65536 px): keeps every size product far
 * from overflow. */
#define NS_VAE_MAX_LATENT_SIDE 8192

/* ---- tensor layout ---------------------------------------------------- */

static void
param_free (gpointer p)
{
  NsVaeParam *param = p;
  g_free (param->name);
  g_free (param);
}

static void
add_param (GPtrArray *params, NsMat *slot, int n_dims, const int64_t *shape,
           const char *prefix, const char *suffix)
{
  NsVaeParam *p = g_new0 (NsVaeParam, 1);
  p->name = g_strconcat (prefix, suffix, NULL);
  p->n_dims = n_dims;
  memcpy (p->shape, shape, sizeof (int64_t) * n_dims);
  p->slot = slot;
  g_ptr_array_add (params, p);
}

static void
add_conv (GPtrArray *params, NsVaeLayer *l, const char *prefix, int ci, int co, int k)
{
  const int64_t w_shape[4] = { co, ci, k, k }, b_shape[1] = { co };
  add_param (params, &l->weight, 4, w_shape, prefix, ".weight");
  add_param (params, &l->bias, 1, b_shape, prefix, ".bias");
}

static void
add_norm (GPtrArray *params, NsVaeLayer *l, const char *prefix, int c)
{
  const int64_t shape[1] = { c };
  add_param (params, &l->weight, 1, shape, prefix, ".weight");
  add_param (params, &l->bias, 1, shape, prefix, ".bias");
}

/* Formats "<prefix>.<name>" for the add_* helpers. */
static char *
join (const char *prefix, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static char *
join (const char *prefix, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *tail = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  return g_strconcat (prefix, ".", tail, NULL);
}

static void
add_res (GPtrArray *params, NsVaeRes *r, const char *prefix, int ci, int co)
{
  r->ci = ci;
  r->co = co;
  g_autofree char *norm1 = join (prefix, "norm1"), *conv1 = join (prefix, "conv1");
  g_autofree char *norm2 = join (prefix, "norm2"), *conv2 = join (prefix, "conv2");
  add_norm (params, &r->norm1, norm1, ci);
  add_conv (params, &r->conv1, conv1, ci, co, 3);
  add_norm (params, &r->norm2, norm2, co);
  add_conv (params, &r->conv2, conv2, co, co, 3);
  if (ci != co)
    {
      g_autofree char *nin = join (prefix, "nin_shortcut");
      add_conv (params, &r->nin_shortcut, nin, ci, co, 1);
    }
}

static void
add_mid (GPtrArray *params, NsVaeTower *t, const char *tower, int c)
{
  g_autofree char *b1 = join (tower, "mid.block_1"), *b2 = join (tower, "mid.block_2");
  g_autofree char *norm = join (tower, "mid.attn_1.norm"), *q = join (tower, "mid.attn_1.q");
  g_autofree char *k = join (tower, "mid.attn_1.k"), *v = join (tower, "mid.attn_1.v");
  g_autofree char *proj = join (tower, "mid.attn_1.proj_out");
  add_res (params, &t->mid_1, b1, c, c);
  t->attn.c = c;
  add_norm (params, &t->attn.norm, norm, c);
  add_conv (params, &t->attn.q, q, c, c, 1);
  add_conv (params, &t->attn.k, k, c, c, 1);
  add_conv (params, &t->attn.v, v, c, c, 1);
  add_conv (params, &t->attn.proj_out, proj, c, c, 1);
  add_res (params, &t->mid_2, b2, c, c);
}

static void
add_out (GPtrArray *params, NsVaeTower *t, const char *tower, int c)
{
  g_autofree char *norm = join (tower, "norm_out"), *conv = join (tower, "conv_out");
  add_norm (params, &t->norm_out, norm, c);
  add_conv (params, &t->conv_out, conv, c, t->c_out, 3);
}

/* Level i: ch·in_mult[i] → ch·ch_mult[i] (in_mult = (1,) + ch_mult),
 * num_res_blocks ResBlocks, a Downsample after every level but the last. */
static void
add_encoder (GPtrArray *params, NsVaeTower *t, const NsVaeConfig *cfg)
{
  int n = cfg->n_ch_mult;
  t->down = TRUE;
  t->c_in = cfg->in_channels;
  t->c_out = 2 * cfg->z_channels;
  t->n_levels = n;
  add_conv (params, &t->conv_in, "encoder.conv_in", t->c_in, cfg->ch, 3);
  int c = cfg->ch;
  for (int i = 0; i < n; i++)
    {
      NsVaeLevel *lv = &t->levels[i];
      lv->n_blocks = cfg->num_res_blocks;
      lv->blocks = g_new0 (NsVaeRes, lv->n_blocks);
      for (int j = 0; j < lv->n_blocks; j++)
        {
          g_autofree char *prefix = g_strdup_printf ("encoder.down.%d.block.%d", i, j);
          add_res (params, &lv->blocks[j], prefix, c, cfg->ch * cfg->ch_mult[i]);
          c = cfg->ch * cfg->ch_mult[i];
        }
      lv->c_out = c;
      lv->has_resample = i < n - 1;
      if (lv->has_resample)
        {
          g_autofree char *prefix = g_strdup_printf ("encoder.down.%d.downsample.conv", i);
          add_conv (params, &lv->resample, prefix, c, c, 3);
        }
    }
  add_mid (params, t, "encoder", c);
  add_out (params, t, "encoder", c);
}

/* conv_in → ch·ch_mult[-1]; levels run from the last down to 0, each with
 * num_res_blocks + 1 ResBlocks and an Upsample after every level but 0. */
static void
add_decoder (GPtrArray *params, NsVaeTower *t, const NsVaeConfig *cfg)
{
  int n = cfg->n_ch_mult;
  int c = cfg->ch * cfg->ch_mult[n - 1];
  t->down = FALSE;
  t->c_in = cfg->z_channels;
  t->c_out = cfg->out_ch;
  t->n_levels = n;
  add_conv (params, &t->conv_in, "decoder.conv_in", t->c_in, c, 3);
  add_mid (params, t, "decoder", c);
  for (int step = 0; step < n; step++)
    {
      int i = n - 1 - step;
      NsVaeLevel *lv = &t->levels[step];
      lv->n_blocks = cfg->num_res_blocks + 1;
      lv->blocks = g_new0 (NsVaeRes, lv->n_blocks);
      for (int j = 0; j < lv->n_blocks; j++)
        {
          g_autofree char *prefix = g_strdup_printf ("decoder.up.%d.block.%d", i, j);
          add_res (params, &lv->blocks[j], prefix, c, cfg->ch * cfg->ch_mult[i]);
          c = cfg->ch * cfg->ch_mult[i];
        }
      lv->c_out = c;
      lv->has_resample = i > 0;
      if (lv->has_resample)
        {
          g_autofree char *prefix = g_strdup_printf ("decoder.up.%d.upsample.conv", i);
          add_conv (params, &lv->resample, prefix, c, c, 3);
        }
    }
  add_out (params, t, "decoder", c);
}

static void
tower_clear (NsVaeTower *t)
{
  for (int i = 0; i < t->n_levels; i++)
    g_free (t->levels[i].blocks);
}

/* A VAE with its layout and no weights. */
static NsVae *
vae_skeleton_new (const NsVaeConfig *cfg)
{
  NsVae *vae = g_new0 (NsVae, 1);
  vae->cfg = *cfg;
  vae->tile_side = NS_VAE_TILE_SIDE;
  vae->tile_overlap = NS_VAE_TILE_OVERLAP;
  vae->params = g_ptr_array_new_with_free_func (param_free);
  add_encoder (vae->params, &vae->enc, cfg);
  add_decoder (vae->params, &vae->dec, cfg);
  return vae;
}

/* What the engine can run: the f8 RGB contract of vae.h and channel counts
 * that GroupNorm's 32 groups divide. */
static gboolean
config_validate (const NsVaeConfig *cfg, GError **error)
{
  if (cfg->n_ch_mult != NS_VAE_LEVELS)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "VAE config.json: ch_mult has %d levels; the engine runs only f8 VAEs "
                   "(4 levels, e.g. [1, 2, 4, 4])", cfg->n_ch_mult);
      return FALSE;
    }
  if (cfg->in_channels != 3 || cfg->out_ch != 3)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "VAE config.json: in_channels %d, out_ch %d; the engine runs only RGB "
                   "VAEs (3 and 3)", cfg->in_channels, cfg->out_ch);
      return FALSE;
    }
  if (cfg->ch <= 0 || cfg->ch % NS_VAE_GROUPS != 0 || cfg->z_channels <= 0
      || cfg->num_res_blocks <= 0 || cfg->psz <= 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "VAE config.json: ch %d, z_channels %d, num_res_blocks %d, psz %d: ch must "
                   "be a positive multiple of %d and the others positive",
                   cfg->ch, cfg->z_channels, cfg->num_res_blocks, cfg->psz, NS_VAE_GROUPS);
      return FALSE;
    }
  for (int i = 0; i < cfg->n_ch_mult; i++)
    if (cfg->ch_mult[i] <= 0)
      {
        g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                     "VAE config.json: ch_mult[%d] is %d; it must be positive", i, cfg->ch_mult[i]);
        return FALSE;
      }
  return TRUE;
}

/* ---- checking a state_dict -------------------------------------------- */


/* One problem line for `p` against the store's tensor, or NULL when it fits. */
static char *
param_problem (const NsVaeParam *p, const NsTensorView *t)
{
  g_autofree char *want = ns_shape_to_string (p->n_dims, p->shape);
  if (t == NULL)
    return g_strdup_printf ("missing tensor %s (expected shape %s)", p->name, want);
  if (t->n_dims != p->n_dims
      || memcmp (t->shape, p->shape, sizeof (int64_t) * p->n_dims) != 0)
    {
      g_autofree char *got = ns_shape_to_string (t->n_dims, t->shape);
      return g_strdup_printf ("%s has shape %s, expected %s", p->name, got, want);
    }
  if (!ns_dtype_is_weight (t->dtype))
    return g_strdup_printf ("%s has dtype %s, expected F32, F16 or BF16",
                            p->name, ns_dtype_name (t->dtype));
  return NULL;
}

static gboolean
check_params (const NsVae *vae, const NsTensorStore *store, GPtrArray *problems)
{
  guint before = problems->len;
  g_autoptr (GHashTable) expected = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < vae->params->len; i++)
    {
      const NsVaeParam *p = g_ptr_array_index (vae->params, i);
      g_hash_table_add (expected, p->name);
      char *problem = param_problem (p, ns_tensor_store_find (store, p->name));
      if (problem != NULL)
        g_ptr_array_add (problems, problem);
    }
  for (guint i = 0; i < ns_tensor_store_len (store); i++)
    {
      const NsTensorView *t = ns_tensor_store_get (store, i);
      if (!g_hash_table_contains (expected, t->name))
        g_ptr_array_add (problems, g_strdup_printf ("unexpected tensor %s", t->name));
    }
  return problems->len == before;
}

gboolean
ns_vae_check (const NsTensorStore *store, const NsVaeConfig *cfg, GPtrArray *problems)
{
  g_return_val_if_fail (store != NULL && cfg != NULL && problems != NULL, FALSE);
  g_autoptr (GError) error = NULL;
  if (!config_validate (cfg, &error))
    {
      g_ptr_array_add (problems, g_strdup (error->message));
      return FALSE;
    }
  NsVae *vae = vae_skeleton_new (cfg);
  gboolean ok = check_params (vae, store, problems);
  ns_vae_free (vae);
  return ok;
}

static void
tensor_clear (gpointer p)
{
  g_free (((NsVaeTensor *) p)->name);
}

GArray *
ns_vae_expected_tensors (const NsVaeConfig *cfg, GError **error)
{
  if (!config_validate (cfg, error))
    return NULL;
  NsVae *vae = vae_skeleton_new (cfg);
  GArray *list = g_array_sized_new (FALSE, FALSE, sizeof (NsVaeTensor), vae->params->len);
  g_array_set_clear_func (list, tensor_clear);
  for (guint i = 0; i < vae->params->len; i++)
    {
      const NsVaeParam *p = g_ptr_array_index (vae->params, i);
      NsVaeTensor t = { g_strdup (p->name), p->n_dims, { 0 } };
      memcpy (t.shape, p->shape, sizeof t.shape);
      g_array_append_val (list, t);
    }
  ns_vae_free (vae);
  return list;
}

/* ---- loading ---------------------------------------------------------- */

static gboolean
upload_params (NsVae *vae, const NsTensorStore *store, GError **error)
{
  NsBackend *b = vae->backend;
  for (; vae->n_uploaded < vae->params->len; vae->n_uploaded++)
    {
      NsVaeParam *p = g_ptr_array_index (vae->params, vae->n_uploaded);
      if (!b->ops->upload (b, ns_tensor_store_find (store, p->name), p->slot, error))
        {
          g_prefix_error (error, "VAE tensor %s: ", p->name);
          return FALSE;
        }
    }
  return TRUE;
}

NsVae *
ns_vae_new (NsBackend *backend, const NsTensorStore *store, const NsVaeConfig *cfg,
            GError **error)
{
  g_return_val_if_fail (backend != NULL && store != NULL && cfg != NULL, NULL);
  if (!config_validate (cfg, error))
    return NULL;
  NsVae *vae = vae_skeleton_new (cfg);
  vae->backend = backend;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  if (!check_params (vae, store, problems))
    {
      g_autofree char *more = problems->len > 1
                              ? g_strdup_printf (" (and %u more)", problems->len - 1)
                              : g_strdup ("");
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "the VAE checkpoint does not fit its config.json: %s%s; `nextstep "
                   "inspect` on the model folder lists every problem",
                   (const char *) g_ptr_array_index (problems, 0), more);
      ns_vae_free (vae);
      return NULL;
    }
  if (!upload_params (vae, store, error) || !ns_vae_fit_preview (vae, error))
    {
      ns_vae_free (vae);
      return NULL;
    }
  return vae;
}

void
ns_vae_free (NsVae *vae)
{
  if (vae == NULL)
    return;
  for (guint i = 0; i < vae->n_uploaded; i++)
    {
      NsVaeParam *p = g_ptr_array_index (vae->params, i);
      vae->backend->ops->release (vae->backend, p->slot);
    }
  g_ptr_array_unref (vae->params);
  tower_clear (&vae->enc);
  tower_clear (&vae->dec);
  g_free (vae->preview_weight);
  g_free (vae);
}

const NsVaeConfig *
ns_vae_get_config (const NsVae *vae)
{
  g_return_val_if_fail (vae != NULL, NULL);
  return &vae->cfg;
}

void
ns_vae_preview_map (const NsVae *vae, const float **weight, const float **bias)
{
  g_return_if_fail (vae != NULL && weight != NULL && bias != NULL);
  *weight = vae->preview_weight;
  *bias = vae->preview_bias;
}

gboolean
ns_vae_check_cancelled (GCancellable *cancellable, const char *what, GError **error)
{
  if (!g_cancellable_is_cancelled (cancellable))
    return FALSE;
  g_set_error (error, NS_ERROR, NS_ERROR_CANCELLED, "the VAE %s was cancelled", what);
  return TRUE;
}

/* ---- decode / encode -------------------------------------------------- */

gboolean
ns_vae_decode (NsVae *vae, const float *latent, int h, int w, float *rgb,
               GCancellable *cancellable, GError **error)
{
  g_return_val_if_fail (vae != NULL && latent != NULL && rgb != NULL, FALSE);
  if (h < 1 || w < 1 || h > NS_VAE_MAX_LATENT_SIDE || w > NS_VAE_MAX_LATENT_SIDE)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "VAE decode: latent size %d×%d is outside 1..%d", h, w,
                   NS_VAE_MAX_LATENT_SIDE);
      return FALSE;
    }
  if (ns_vae_check_cancelled (cancellable, "decode", error))
    return FALSE;
  if ((gint64) h * w > (gint64) vae->tile_side * vae->tile_side)
    return ns_vae_decode_tiled (vae, latent, h, w, rgb, cancellable, error);
  NsVaeFlow f;
  if (!ns_vae_flow_alloc (&f, vae->backend, &vae->dec, h, w, error))
    return FALSE;
  gboolean ok = ns_vae_decode_whole (vae, &f, latent, h, w, rgb, cancellable, error);
  ns_vae_flow_free (&f);
  return ok;
}

static gboolean
encode_size_ok (const NsVaeConfig *cfg, int height, int width, GError **error)
{
  int multiple = NS_VAE_FACTOR * (cfg->encoder_norm ? cfg->psz : 1);
  if (height < multiple || width < multiple || height % multiple || width % multiple
      || height > NS_VAE_MAX_LATENT_SIDE * NS_VAE_FACTOR
      || width > NS_VAE_MAX_LATENT_SIDE * NS_VAE_FACTOR)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "VAE encode: image size %d×%d must be a positive multiple of %d (8, "
                   "times psz with encoder_norm) and at most %d", height, width, multiple,
                   NS_VAE_MAX_LATENT_SIDE * NS_VAE_FACTOR);
      return FALSE;
    }
  return TRUE;
}

/* encoder_norm: LayerNorm (no affine) over the z·psz² values of each
 * psz×psz patch of the mean; returns the buffer holding the result (the
 * mean itself stays intact). */
static float *
encoder_norm (NsVae *vae, NsVaeFlow *f, const float *mean)
{
  NsBackend *b = f->b;
  int z = vae->cfg.z_channels, p = vae->cfg.psz;
  int gh = f->h / p, gw = f->w / p;
  float *tokens = f->buf[(f->cur + 1) % 4], *normed = f->buf[(f->cur + 2) % 4];
  b->ops->patchify (b, tokens, mean, z, gh, gw, p);
  b->ops->layernorm (b, normed, tokens, NULL, NULL, gh * gw, z * p * p, NS_VAE_EPS);
  b->ops->unpatchify (b, tokens, normed, z, gh, gw, p);
  return tokens;
}

/* The latent is always the posterior mean: with deterministic true that is
 * what the official code returns; with deterministic false it would add
 * exp(0.5·logvar)·ε, noise this API does not carry, so the engine takes the
 * noise-free choice there too (the mode of the posterior). */
static gboolean
encode_run (NsVae *vae, NsVaeFlow *f, const float *pixels, float *latents, float *moments,
            GCancellable *cancellable, GError **error)
{
  NsBackend *b = f->b;
  b->ops->write (b, f->buf[f->cur], pixels, (size_t) 3 * f->h * f->w);
  if (!ns_vae_tower_run (&vae->enc, f, cancellable, error))
    return FALSE;
  size_t n = (size_t) vae->cfg.z_channels * f->h * f->w;
  const float *out = f->buf[f->cur];
  const float *mean = vae->cfg.encoder_norm ? encoder_norm (vae, f, out) : out;
  if (!b->ops->sync (b, error))
    return FALSE;
  if (moments != NULL)
    b->ops->read (b, moments, out, 2 * n);
  b->ops->read (b, latents, mean, n);
  float shift = (float) vae->cfg.shift_factor, scale = (float) vae->cfg.scaling_factor;
  for (size_t i = 0; i < n; i++)
    latents[i] = (latents[i] - shift) * scale;
  return TRUE;
}

gboolean
ns_vae_encode (NsVae *vae, const float *pixels, int height, int width, float *latents,
               float *moments, GCancellable *cancellable, GError **error)
{
  g_return_val_if_fail (vae != NULL && pixels != NULL && latents != NULL, FALSE);
  if (!encode_size_ok (&vae->cfg, height, width, error)
      || ns_vae_check_cancelled (cancellable, "encode", error))
    return FALSE;
  NsVaeFlow f;
  if (!ns_vae_flow_alloc (&f, vae->backend, &vae->enc, height, width, error))
    return FALSE;
  gboolean ok = encode_run (vae, &f, pixels, latents, moments, cancellable, error);
  ns_vae_flow_free (&f);
  return ok;
}
