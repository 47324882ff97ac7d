/* transformer.c — the Qwen2 backbone (docs/model.md §3) with a KV cache, and the
 * image projectors, written against the backend ops table.
 *
 * Layer: n1 = RMSNorm(x); q,k,v = W n1 + b (one linear_multi); RoPE
 * (rotate_half, angles in double); causal GQA attention over the cache with
 * pads masked as keys; x += Wo a; x += Wdown(silu(Wgate n2) ⊙ Wup n2) with
 * n2 = RMSNorm(x) (the product in one linear_swiglu).
 * Positions are the slot index (pads included), as in the official code. */
#include <string.h>

#include "model/pipeline-private.h"

typedef struct {
  NsMat ln1, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
  NsMat ln2, gate_w, gate_b, up_w, up_b, down_w, down_b;
} Layer;

typedef struct {
  NsMat embed, norm, in_w, in_b, out_w, out_b;
} Globals;

struct NsTransformer {
  NsBackend *b;
  int hidden, heads, kv_heads, head_dim, inter, n_layers, token_dim;
  double theta;
  float eps;
  Globals g;
  Layer *layers;
  float *pos_embed;         /* gen_pos_embed [side², hidden] (backend), or NULL */
  int pos_side;
};

struct NsKvCache {
  NsTransformer *tr;
  int rows, capacity, max_step;
  int len;                  /* positions of prefills so far (host; decode steps count
                             * only on the backend, in *pos) */
  int32_t *pos;             /* backend int32: positions cached so far (the `start` of ops) */
  float **k, **v;           /* per layer [rows, kv_heads, capacity, head_dim] */
  float *key_valid;         /* [rows, capacity] 1/0; 1 until a prefill marks pads */
  float *norm, *q, *kn, *vn, *attn, *gate;   /* scratch for rows·max_step */
};

#define N_MATS(s) (sizeof (s) / sizeof (NsMat))

static gboolean
upload_layer (NsTransformer *tr, const NsTensorStore *store, const NsModelConfig *cfg, int l,
              GError **error)
{
  Layer *ly = &tr->layers[l];
  const struct { NsMat *m; const char *name; gboolean optional; } w[] = {
    { &ly->ln1, "input_layernorm.weight", FALSE },
    { &ly->q_w, "self_attn.q_proj.weight", FALSE },
    { &ly->q_b, "self_attn.q_proj.bias", !cfg->attention_bias },
    { &ly->k_w, "self_attn.k_proj.weight", FALSE },
    { &ly->k_b, "self_attn.k_proj.bias", !cfg->attention_bias },
    { &ly->v_w, "self_attn.v_proj.weight", FALSE },
    { &ly->v_b, "self_attn.v_proj.bias", !cfg->attention_bias },
    { &ly->o_w, "self_attn.o_proj.weight", FALSE },
    { &ly->o_b, "self_attn.o_proj.bias", !cfg->o_attention_bias },
    { &ly->ln2, "post_attention_layernorm.weight", FALSE },
    { &ly->gate_w, "mlp.gate_proj.weight", FALSE },
    { &ly->gate_b, "mlp.gate_proj.bias", !cfg->mlp_bias },
    { &ly->up_w, "mlp.up_proj.weight", FALSE },
    { &ly->up_b, "mlp.up_proj.bias", !cfg->mlp_bias },
    { &ly->down_w, "mlp.down_proj.weight", FALSE },
    { &ly->down_b, "mlp.down_proj.bias", !cfg->mlp_bias },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (w); i++)
    {
      g_autofree char *name = g_strdup_printf ("layers.%d.%s", l, w[i].name);
      if (!ns_weight_upload (tr->b, store, name, w[i].optional, w[i].m, error))
        return FALSE;
    }
  return TRUE;
}

/* gen_pos_embed [1, side², hidden] as float32 in backend memory. */
static gboolean
load_pos_embed (NsTransformer *tr, const NsTensorStore *store, GError **error)
{
  const NsTensorView *t = ns_tensor_store_find (store, "gen_pos_embed");
  int64_t count = t ? ns_tensor_n_elements (t) / tr->hidden : 0;
  int side = 1;
  while ((int64_t) (side + 1) * (side + 1) <= count)
    side++;
  if (t == NULL || count * tr->hidden != ns_tensor_n_elements (t) || (int64_t) side * side != count)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "config.json sets use_gen_pos_embed but the weights have no "
                   "gen_pos_embed tensor of shape [1, side², %d]", tr->hidden);
      return FALSE;
    }
  tr->pos_embed = tr->b->ops->alloc (tr->b, (size_t) count * tr->hidden, error);
  if (tr->pos_embed == NULL)
    return FALSE;
  g_autofree float *host = ns_tensor_to_f32 (t);
  tr->b->ops->write (tr->b, tr->pos_embed, host, (size_t) count * tr->hidden);
  tr->pos_side = side;
  return TRUE;
}

NsTransformer *
ns_transformer_new (NsBackend *backend, const NsTensorStore *store, const NsModelConfig *cfg,
                    GError **error)
{
  NsTransformer *tr = g_new0 (NsTransformer, 1);
  tr->b = backend;
  tr->hidden = cfg->hidden_size;
  tr->heads = cfg->num_attention_heads;
  tr->kv_heads = cfg->num_key_value_heads;
  tr->head_dim = cfg->head_dim;
  tr->inter = cfg->intermediate_size;
  tr->n_layers = cfg->num_hidden_layers;
  tr->token_dim = cfg->latent_channels * cfg->latent_patch_size * cfg->latent_patch_size;
  tr->theta = cfg->rope_theta;
  tr->eps = (float) cfg->rms_norm_eps;
  tr->layers = g_new0 (Layer, tr->n_layers);
  gboolean ok = ns_weight_upload (backend, store, "embed_tokens.weight", FALSE, &tr->g.embed, error)
    && ns_weight_upload (backend, store, "norm.weight", FALSE, &tr->g.norm, error)
    && ns_weight_upload (backend, store, "image_in_projector.weight", FALSE, &tr->g.in_w, error)
    && ns_weight_upload (backend, store, "image_in_projector.bias", FALSE, &tr->g.in_b, error)
    && ns_weight_upload (backend, store, "image_out_projector.weight", FALSE, &tr->g.out_w, error)
    && ns_weight_upload (backend, store, "image_out_projector.bias", FALSE, &tr->g.out_b, error)
    && (!cfg->use_gen_pos_embed || load_pos_embed (tr, store, error));
  for (int l = 0; ok && l < tr->n_layers; l++)
    ok = upload_layer (tr, store, cfg, l, error);
  if (!ok)
    {
      ns_transformer_free (tr);
      return NULL;
    }
  return tr;
}

void
ns_transformer_free (NsTransformer *tr)
{
  if (tr == NULL)
    return;
  ns_weights_release (tr->b, (NsMat *) &tr->g, N_MATS (Globals));
  for (int l = 0; l < tr->n_layers; l++)
    ns_weights_release (tr->b, (NsMat *) &tr->layers[l], N_MATS (Layer));
  if (tr->pos_embed)
    tr->b->ops->free (tr->b, tr->pos_embed);
  g_free (tr->layers);
  g_free (tr);
}

void
ns_transformer_embed (NsTransformer *tr, float *out, const int32_t *ids, int n)
{
  tr->b->ops->embedding (tr->b, out, &tr->g.embed, ids, n);
}

void
ns_transformer_project_in (NsTransformer *tr, float *out, const float *tokens, int n)
{
  tr->b->ops->linear (tr->b, out, tokens, &tr->g.in_w, &tr->g.in_b, n, FALSE);
}

/* The official code (HF remote code as copied in vLLM-Omni) adds
 * gen_pos_embed_with_ar(H_px, W_px)[token] to the normed hidden state: the
 * side×side table cropped to [:H_px, :W_px] (pixel sizes, so usually the
 * whole table) and flattened; we index it the same way. */
int
ns_transformer_pos_embed_tokens (const NsTransformer *tr, int height_px, int width_px)
{
  if (tr->pos_embed == NULL)
    return G_MAXINT;
  return MIN (height_px, tr->pos_side) * MIN (width_px, tr->pos_side);
}

gboolean
ns_transformer_pos_embed_rows (const NsTransformer *tr, int ntok, int width_px, int32_t *rows_of)
{
  if (tr->pos_embed == NULL)
    return FALSE;
  int crop_w = MIN (width_px, tr->pos_side);
  for (int t = 0; t < ntok; t++)
    rows_of[t] = (t / crop_w) * tr->pos_side + t % crop_w;
  return TRUE;
}

void
ns_transformer_project_out (NsTransformer *tr, float *out, const float *h, float *tmp, int n,
                            const int32_t *pos_rows, const int32_t *token)
{
  const NsBackendOps *ops = tr->b->ops;
  if (pos_rows != NULL)
    {
      ops->add_indexed_row (tr->b, tmp, h, tr->pos_embed, pos_rows, token, n, tr->hidden);
      h = tmp;
    }
  ops->linear (tr->b, out, h, &tr->g.out_w, &tr->g.out_b, n, FALSE);
}

NsKvCache *
ns_kv_cache_new (NsTransformer *tr, int rows, int capacity, int max_step, GError **error)
{
  NsKvCache *kv = g_new0 (NsKvCache, 1);
  kv->tr = tr;
  kv->rows = rows;
  kv->capacity = capacity;
  kv->max_step = max_step;
  kv->k = g_new0 (float *, tr->n_layers);
  kv->v = g_new0 (float *, tr->n_layers);
  NsBackend *b = tr->b;
  size_t cache = (size_t) rows * tr->kv_heads * capacity * tr->head_dim;
  size_t r = (size_t) rows * max_step;
  gboolean ok = TRUE;
  for (int l = 0; ok && l < tr->n_layers; l++)
    ok = (kv->k[l] = b->ops->alloc (b, cache, error)) != NULL
      && (kv->v[l] = b->ops->alloc (b, cache, error)) != NULL;
  ok = ok && (kv->pos = ns_backend_alloc_i32 (b, 1, error)) != NULL
    && (kv->key_valid = b->ops->alloc (b, (size_t) rows * capacity, error)) != NULL
    && (kv->norm = b->ops->alloc (b, r * tr->hidden, error)) != NULL
    && (kv->q = b->ops->alloc (b, r * tr->heads * tr->head_dim, error)) != NULL
    && (kv->attn = b->ops->alloc (b, r * tr->heads * tr->head_dim, error)) != NULL
    && (kv->kn = b->ops->alloc (b, r * tr->kv_heads * tr->head_dim, error)) != NULL
    && (kv->vn = b->ops->alloc (b, r * tr->kv_heads * tr->head_dim, error)) != NULL
    && (kv->gate = b->ops->alloc (b, r * tr->inter, error)) != NULL;
  if (!ok)
    {
      ns_kv_cache_free (kv);
      return NULL;
    }
  g_autofree float *ones = g_new (float, (size_t) rows * capacity);
  for (size_t i = 0; i < (size_t) rows * capacity; i++)
    ones[i] = 1.0f;
  b->ops->write (b, kv->key_valid, ones, (size_t) rows * capacity);
  return kv;
}

void
ns_kv_cache_skip (NsKvCache *kv, int n)
{
  g_return_if_fail (kv->len + n <= kv->capacity);
  kv->tr->b->ops->counter_add (kv->tr->b, kv->pos, 1, n);
  kv->len += n;
}

int
ns_transformer_get_hidden (const NsTransformer *tr)
{
  return tr->hidden;
}

void
ns_kv_cache_free (NsKvCache *kv)
{
  if (kv == NULL)
    return;
  NsBackend *b = kv->tr->b;
  float *bufs[] = { kv->key_valid, kv->norm, kv->q, kv->attn, kv->kn, kv->vn, kv->gate };
  for (size_t i = 0; i < G_N_ELEMENTS (bufs); i++)
    if (bufs[i])
      b->ops->free (b, bufs[i]);
  for (int l = 0; l < kv->tr->n_layers; l++)
    {
      if (kv->k[l])
        b->ops->free (b, kv->k[l]);
      if (kv->v[l])
        b->ops->free (b, kv->v[l]);
    }
  ns_backend_free_any (b, kv->pos);
  g_free (kv->k);
  g_free (kv->v);
  g_free (kv);
}

/* Marks the n new positions of each row as valid keys or pads (the cache
 * starts all valid, so decode steps write nothing). */
static void
store_key_mask (NsKvCache *kv, const int32_t *mask, int n)
{
  if (mask == NULL)
    return;
  g_autofree float *valid = g_new (float, n);
  for (int s = 0; s < kv->rows; s++)
    {
      for (int i = 0; i < n; i++)
        valid[i] = mask[(size_t) s * n + i] != 0 ? 1.0f : 0.0f;
      kv->tr->b->ops->write (kv->tr->b, kv->key_valid + (size_t) s * kv->capacity + kv->len,
                             valid, n);
    }
}

static void
run_layer (NsKvCache *kv, const Layer *ly, int l, float *x, int n)
{
  NsTransformer *tr = kv->tr;
  NsBackend *b = tr->b;
  const NsBackendOps *ops = b->ops;
  int rn = kv->rows * n;

  const NsLinearOut qkv[] = { { kv->q, &ly->q_w, ns_weight_or_null (&ly->q_b) },
                              { kv->kn, &ly->k_w, ns_weight_or_null (&ly->k_b) },
                              { kv->vn, &ly->v_w, ns_weight_or_null (&ly->v_b) } };
  ops->rmsnorm (b, kv->norm, x, &ly->ln1, rn, tr->hidden, tr->eps);
  ops->linear_multi (b, qkv, G_N_ELEMENTS (qkv), kv->norm, rn);
  ops->rope (b, kv->q, kv->pos, kv->rows, n, tr->heads, tr->head_dim, tr->theta);
  ops->rope (b, kv->kn, kv->pos, kv->rows, n, tr->kv_heads, tr->head_dim, tr->theta);
  ops->kv_store (b, kv->k[l], kv->kn, kv->rows, n, kv->pos, tr->kv_heads, tr->head_dim,
                 kv->capacity);
  ops->kv_store (b, kv->v[l], kv->vn, kv->rows, n, kv->pos, tr->kv_heads, tr->head_dim,
                 kv->capacity);
  ops->attention (b, kv->attn, kv->q, kv->k[l], kv->v[l], kv->key_valid, kv->rows, n, kv->pos,
                  tr->heads, tr->kv_heads, tr->head_dim, kv->capacity);
  ops->linear (b, x, kv->attn, &ly->o_w, ns_weight_or_null (&ly->o_b), rn, TRUE);

  ops->rmsnorm (b, kv->norm, x, &ly->ln2, rn, tr->hidden, tr->eps);
  ops->linear_swiglu (b, kv->gate, kv->norm, &ly->gate_w, ns_weight_or_null (&ly->gate_b),
                      &ly->up_w, ns_weight_or_null (&ly->up_b), rn);
  ops->linear (b, x, kv->gate, &ly->down_w, ns_weight_or_null (&ly->down_b), rn, TRUE);
}

static gboolean
check_cancelled (GCancellable *cancellable, GError **error)
{
  if (!g_cancellable_is_cancelled (cancellable))
    return TRUE;
  g_set_error (error, NS_ERROR, NS_ERROR_CANCELLED, "Cancelled");
  return FALSE;
}

/* Appends the n positions just run to the cache and puts the final-normed
 * hidden state of each row's last one into last [rows, hidden]. */
static void
finish_step (NsTransformer *tr, NsKvCache *kv, const float *x, int n, float *last)
{
  NsBackend *b = tr->b;
  b->ops->counter_add (b, kv->pos, 1, n);
  for (int s = 0; s < kv->rows; s++)
    b->ops->copy (b, kv->norm + (size_t) s * tr->hidden,
                  x + ((size_t) s * n + n - 1) * tr->hidden, tr->hidden);
  b->ops->rmsnorm (b, last, kv->norm, &tr->g.norm, kv->rows, tr->hidden, tr->eps);
}

gboolean
ns_transformer_forward (NsTransformer *tr, NsKvCache *kv, float *x, int n, const int32_t *mask,
                        float *last, NsBackboneTrace *trace, GCancellable *cancellable,
                        GError **error)
{
  g_return_val_if_fail (n <= kv->max_step && kv->len + n <= kv->capacity, FALSE);
  NsBackend *b = tr->b;
  size_t row_floats = (size_t) kv->rows * n * tr->hidden;
  store_key_mask (kv, mask, n);
  for (int l = 0; l < tr->n_layers; l++)
    {
      if (!check_cancelled (cancellable, error))
        return FALSE;
      if (trace && trace->layer_inputs)
        b->ops->read (b, trace->layer_inputs + (size_t) l * row_floats, x, row_floats);
      run_layer (kv, &tr->layers[l], l, x, n);
    }
  if (trace && trace->hidden)
    {
      b->ops->rmsnorm (b, kv->norm, x, &tr->g.norm, kv->rows * n, tr->hidden, tr->eps);
      b->ops->read (b, trace->hidden, kv->norm, row_floats);
    }
  finish_step (tr, kv, x, n, last);
  kv->len += n;
  return check_cancelled (cancellable, error);
}

void
ns_transformer_decode (NsTransformer *tr, NsKvCache *kv, float *x, float *last)
{
  for (int l = 0; l < tr->n_layers; l++)
    run_layer (kv, &tr->layers[l], l, x, 1);
  finish_step (tr, kv, x, 1, last);
}
