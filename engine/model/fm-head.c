/* fm-head.c — the flow-matching head `image_head.net` (docs/model.md §6).
 *
 * y = time_embed([cos(t f) ‖ sin(t f)]) + cond_embed(c), f_k = 10000^(−k/half)
 * x = input_proj(x_in); per block: (shift, scale, gate) = W_ada silu(y) + b,
 * x += gate ⊙ mlp(LN_affine(x) (1 + scale) + shift); final: (shift, scale),
 * v = linear(LN(x) (1 + scale) + shift).
 * y, and so every block's modulation, does not depend on x (docs/model.md
 * §6): time_embed of the schedule is computed once per request
 * (ns_fm_head_set_times), and once per token ns_fm_head_set_cond computes the
 * shift/scale/gate of every step and CFG row in one GEMM per block with
 * steps·rows rows. The sequential loop (ns_fm_head_forward) then runs only
 * the x path: per block the norm, modulation, mlp.0 and SiLU are one
 * norm_modulate_linear and mlp.2 with the gated residual one
 * linear_gated_add; the final layer is one norm_modulate_linear. */
#include <math.h>

#include "model/pipeline-private.h"

#define FM_LN_EPS 1e-6f
#define FM_PREFIX "image_head.net."

typedef struct {
  NsMat ln_w, ln_b, ada_w, ada_b, mlp0_w, mlp0_b, mlp2_w, mlp2_b;
} Block;

typedef struct {
  NsMat in_w, in_b, t0_w, t0_b, t2_w, t2_b, cond_w, cond_b, fada_w, fada_b, out_w, out_b;
} Globals;

struct NsFmHead {
  NsBackend *b;
  int dim, token_dim, n_features, mlp_hidden, n_blocks;
  Globals g;
  Block *blocks;
};

/* Buffers in backend memory: B_TEMB, B_Y, B_SY, B_FEAT, B_TH and the
 * modulations hold steps·rows rows (step-major); the rest `rows` rows. */
enum { B_TEMB, B_COND, B_Y, B_SY, B_MODS, B_FMOD, B_FEAT, B_TH, B_H, B_M1, N_BUFS };

struct NsFmState {
  NsBackend *b;
  int rows, steps;
  float *buf[N_BUFS];
};

#define N_MATS(s) (sizeof (s) / sizeof (NsMat))

static gboolean
upload_all (NsFmHead *head, const NsTensorStore *store, const char *prefix, NsMat *mats,
            const char *const *names, size_t n, GError **error)
{
  for (size_t i = 0; i < n; i++)
    {
      g_autofree char *name = g_strconcat (FM_PREFIX, prefix, names[i], NULL);
      if (!ns_weight_upload (head->b, store, name, FALSE, &mats[i], error))
        return FALSE;
    }
  return TRUE;
}

static const char *const global_names[] = {
  "input_proj.weight", "input_proj.bias",
  "time_embed.mlp.0.weight", "time_embed.mlp.0.bias",
  "time_embed.mlp.2.weight", "time_embed.mlp.2.bias",
  "cond_embed.weight", "cond_embed.bias",
  "final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias",
  "final_layer.linear.weight", "final_layer.linear.bias",
};

static const char *const block_names[] = {
  "in_ln.weight", "in_ln.bias", "adaLN_modulation.1.weight", "adaLN_modulation.1.bias",
  "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
};

NsFmHead *
ns_fm_head_new (NsBackend *backend, const NsTensorStore *store, const NsModelConfig *cfg,
                GError **error)
{
  G_STATIC_ASSERT (G_N_ELEMENTS (global_names) == N_MATS (Globals));
  G_STATIC_ASSERT (G_N_ELEMENTS (block_names) == N_MATS (Block));
  NsFmHead *head = g_new0 (NsFmHead, 1);
  head->b = backend;
  head->dim = cfg->fm_head_dim;
  head->n_blocks = cfg->fm_head_layers;
  head->blocks = g_new0 (Block, head->n_blocks);
  gboolean ok = upload_all (head, store, "", (NsMat *) &head->g, global_names,
                            N_MATS (Globals), error);
  for (int k = 0; ok && k < head->n_blocks; k++)
    {
      g_autofree char *prefix = g_strdup_printf ("res_blocks.%d.", k);
      ok = upload_all (head, store, prefix, (NsMat *) &head->blocks[k], block_names,
                       N_MATS (Block), error);
    }
  if (!ok)
    {
      ns_fm_head_free (head);
      return NULL;
    }
  head->token_dim = head->g.out_w.rows;
  head->n_features = head->g.t0_w.cols;
  head->mlp_hidden = head->n_blocks > 0 ? head->blocks[0].mlp0_w.rows : head->dim;
  if (head->n_features % 2 != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   FM_PREFIX "time_embed.mlp.0.weight has %d input features; the sinusoid "
                   "time embedding needs an even count", head->n_features);
      ns_fm_head_free (head);
      return NULL;
    }
  return head;
}

void
ns_fm_head_free (NsFmHead *head)
{
  if (head == NULL)
    return;
  ns_weights_release (head->b, (NsMat *) &head->g, N_MATS (Globals));
  for (int k = 0; k < head->n_blocks; k++)
    ns_weights_release (head->b, (NsMat *) &head->blocks[k], N_MATS (Block));
  g_free (head->blocks);
  g_free (head);
}

int
ns_fm_head_get_dim (const NsFmHead *head)
{
  return head->dim;
}

NsFmState *
ns_fm_state_new (NsFmHead *head, int rows, int steps, GError **error)
{
  NsFmState *st = g_new0 (NsFmState, 1);
  st->b = head->b;
  st->rows = rows;
  st->steps = steps;
  size_t r = rows, sr = (size_t) steps * rows, d = head->dim;
  const size_t sizes[N_BUFS] = {
    [B_TEMB] = sr * d, [B_COND] = r * d, [B_Y] = sr * d, [B_SY] = sr * d,
    [B_MODS] = (size_t) MAX (head->n_blocks, 1) * sr * 3 * d, [B_FMOD] = sr * 2 * d,
    [B_FEAT] = sr * head->n_features, [B_TH] = sr * d, [B_H] = r * d,
    [B_M1] = r * head->mlp_hidden,
  };
  for (int i = 0; i < N_BUFS; i++)
    if ((st->buf[i] = head->b->ops->alloc (head->b, sizes[i], error)) == NULL)
      {
        ns_fm_state_free (st);
        return NULL;
      }
  return st;
}

void
ns_fm_state_free (NsFmState *st)
{
  if (st == NULL)
    return;
  for (int i = 0; i < N_BUFS; i++)
    if (st->buf[i])
      st->b->ops->free (st->b, st->buf[i]);
  g_free (st);
}

const float *
ns_fm_state_get_y (const NsFmState *st)
{
  return st->buf[B_Y];
}

void
ns_fm_head_set_times (NsFmHead *head, NsFmState *st, const double *t)
{
  NsBackend *b = head->b;
  const NsBackendOps *ops = b->ops;
  int sr = st->steps * st->rows;
  ops->time_features (b, st->buf[B_FEAT], t, sr, head->n_features);
  ops->linear (b, st->buf[B_TH], st->buf[B_FEAT], &head->g.t0_w, &head->g.t0_b, sr, FALSE);
  ops->silu (b, st->buf[B_TH], st->buf[B_TH], (size_t) sr * head->dim);
  ops->linear (b, st->buf[B_TEMB], st->buf[B_TH], &head->g.t2_w, &head->g.t2_b, sr, FALSE);
}

void
ns_fm_head_set_cond (NsFmHead *head, NsFmState *st, const float *c)
{
  NsBackend *b = head->b;
  const NsBackendOps *ops = b->ops;
  size_t rd = (size_t) st->rows * head->dim;
  int sr = st->steps * st->rows;
  ops->linear (b, st->buf[B_COND], c, &head->g.cond_w, &head->g.cond_b, st->rows, FALSE);
  for (int s = 0; s < st->steps; s++)
    ops->add (b, st->buf[B_Y] + s * rd, st->buf[B_TEMB] + s * rd, st->buf[B_COND], rd);
  ops->silu (b, st->buf[B_SY], st->buf[B_Y], (size_t) sr * head->dim);
  for (int k = 0; k < head->n_blocks; k++)
    ops->linear (b, st->buf[B_MODS] + (size_t) k * sr * 3 * head->dim, st->buf[B_SY],
                 &head->blocks[k].ada_w, &head->blocks[k].ada_b, sr, FALSE);
  ops->linear (b, st->buf[B_FMOD], st->buf[B_SY], &head->g.fada_w, &head->g.fada_b, sr, FALSE);
}

void
ns_fm_head_forward (NsFmHead *head, NsFmState *st, int step, const float *x, float *v)
{
  NsBackend *b = head->b;
  const NsBackendOps *ops = b->ops;
  int d = head->dim, rows = st->rows;
  size_t sr = (size_t) st->steps * rows;
  float *h = st->buf[B_H];
  ops->linear (b, h, x, &head->g.in_w, &head->g.in_b, rows, FALSE);
  for (int k = 0; k < head->n_blocks; k++)
    {
      const Block *bl = &head->blocks[k];
      const float *mod = st->buf[B_MODS] + ((size_t) k * sr + (size_t) step * rows) * 3 * d;
      const NsNormModulate nm = { &bl->ln_w, &bl->ln_b, FM_LN_EPS, mod, mod + d, 3 * d };
      ops->norm_modulate_linear (b, st->buf[B_M1], h, &nm, &bl->mlp0_w, &bl->mlp0_b, rows, TRUE);
      ops->linear_gated_add (b, h, mod + 2 * d, st->buf[B_M1], &bl->mlp2_w, &bl->mlp2_b, rows,
                             3 * d);
    }
  const float *fmod = st->buf[B_FMOD] + (size_t) step * rows * 2 * d;
  const NsNormModulate nm = { NULL, NULL, FM_LN_EPS, fmod, fmod + d, 2 * d };
  ops->norm_modulate_linear (b, v, h, &nm, &head->g.out_w, &head->g.out_b, rows, FALSE);
}
