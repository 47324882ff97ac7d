/* model/vae-net.c — the VAE encoder and decoder forward passes on the
 * backend ops table (docs/model.md §11). Activations are [c, h, w] in four
 * rotating backend buffers sized for the largest activation of the pass. */
#include "nextstep.h"
#include "model/vae-private.h"

/* ---- buffers ---------------------------------------------------------- */

static void
next_size (int *h, int *w, gboolean down)
{
  *h = down ? *h / 2 : *h * 2;
  *w = down ? *w / 2 : *w * 2;
}

static size_t
level_max_channels (const NsVaeLevel *lv)
{
  int c = 0;
  for (int j = 0; j < lv->n_blocks; j++)
    c = MAX (c, MAX (lv->blocks[j].ci, lv->blocks[j].co));
  return (size_t) c;
}

/* The largest c·h·w of a pass over an h × w input, walking the levels in
 * run order (the mid block's channels equal those of the lowest level). */
static size_t
tower_capacity (const NsVaeTower *t, int h, int w)
{
  size_t cap = (size_t) t->c_in * h * w;
  for (int i = 0; i < t->n_levels; i++)
    {
      const NsVaeLevel *lv = &t->levels[i];
      cap = MAX (cap, level_max_channels (lv) * h * w);
      if (lv->has_resample)
        {
          next_size (&h, &w, t->down);
          cap = MAX (cap, (size_t) lv->c_out * h * w);
        }
    }
  return MAX (cap, (size_t) t->c_out * h * w);
}

/* The latent-resolution size of a pass over h × w (where the mid block runs). */
static size_t
tower_mid_size (const NsVaeTower *t, int h, int w)
{
  size_t plane = (size_t) h * w;
  if (t->down)
    plane /= (size_t) NS_VAE_FACTOR * NS_VAE_FACTOR;
  return (size_t) t->attn.c * plane;
}

gboolean
ns_vae_flow_alloc (NsVaeFlow *f, NsBackend *b, const NsVaeTower *t, int h, int w,
                   GError **error)
{
  *f = (NsVaeFlow) { .b = b, .cur = 0, .c = t->c_in, .h = h, .w = w };
  size_t cap = tower_capacity (t, h, w);
  gboolean ok = TRUE;
  for (int i = 0; ok && i < 4; i++)
    ok = (f->buf[i] = b->ops->alloc (b, cap, error)) != NULL;
  if (ok && (f->extra = b->ops->alloc (b, tower_mid_size (t, h, w), error)) != NULL)
    return TRUE;
  g_prefix_error (error, "VAE activations for a %d×%d input: ", h, w);
  ns_vae_flow_free (f);
  return FALSE;
}

void
ns_vae_flow_free (NsVaeFlow *f)
{
  for (int i = 0; i < 4; i++)
    if (f->buf[i] != NULL)
      f->b->ops->free (f->b, f->buf[i]);
  if (f->extra != NULL)
    f->b->ops->free (f->b, f->extra);
  *f = (NsVaeFlow) { 0 };
}

/* The k-th buffer after the current one (k = 0: the current activation). */
static float *
tmp (const NsVaeFlow *f, int k)
{
  return f->buf[(f->cur + k) % 4];
}

static void
take (NsVaeFlow *f, int k, int c)
{
  f->cur = (f->cur + k) % 4;
  f->c = c;
}

/* ---- layers ----------------------------------------------------------- */

static void
conv_same (NsVaeFlow *f, float *y, const float *x, const NsVaeLayer *l, int ci, int co, int k)
{
  int pad = k / 2;
  f->b->ops->conv2d (f->b, y, x, &l->weight, &l->bias, ci, f->h, f->w, co, k, 1,
                     pad, pad, pad, pad);
}

static void
norm (NsVaeFlow *f, float *y, const float *x, const NsVaeLayer *l, int c, gboolean swish)
{
  f->b->ops->groupnorm (f->b, y, x, &l->weight, &l->bias, c, f->h * f->w, NS_VAE_GROUPS,
                        NS_VAE_EPS, swish);
}

/* skip(x) + conv2(swish(GN(conv1(swish(GN(x)))))). */
static void
res_block (NsVaeFlow *f, const NsVaeRes *r)
{
  const float *x = tmp (f, 0);
  float *y = tmp (f, 1), *t1 = tmp (f, 2), *t2 = tmp (f, 3);
  norm (f, t1, x, &r->norm1, r->ci, TRUE);
  conv_same (f, t2, t1, &r->conv1, r->ci, r->co, 3);
  norm (f, t1, t2, &r->norm2, r->co, TRUE);
  conv_same (f, y, t1, &r->conv2, r->co, r->co, 3);
  if (r->ci != r->co)
    {
      conv_same (f, t2, x, &r->nin_shortcut, r->ci, r->co, 1);
      x = t2;
    }
  f->b->ops->add (f->b, y, y, x, (size_t) r->co * f->h * f->w);
  take (f, 1, r->co);
}

/* x + proj_out(attention(q, k, v)) with q, k, v 1×1 convs of GN(x). */
static void
attn_block (NsVaeFlow *f, const NsVaeAttn *a)
{
  const float *x = tmp (f, 0);
  float *n = tmp (f, 1), *q = tmp (f, 2), *k = tmp (f, 3), *v = f->extra;
  int c = a->c, hw = f->h * f->w;
  norm (f, n, x, &a->norm, c, FALSE);
  conv_same (f, q, n, &a->q, c, c, 1);
  conv_same (f, k, n, &a->k, c, c, 1);
  conv_same (f, v, n, &a->v, c, c, 1);
  f->b->ops->attention_spatial (f->b, n, q, k, v, c, hw);
  conv_same (f, q, n, &a->proj_out, c, c, 1);
  f->b->ops->add (f->b, q, q, x, (size_t) c * hw);
  take (f, 2, c);
}

/* Encoder: zero-pad right and bottom by 1, conv 3×3 stride 2. Decoder:
 * nearest ×2, conv 3×3 pad 1. */
static void
resample (NsVaeFlow *f, const NsVaeLevel *lv, gboolean down)
{
  int c = lv->c_out;
  if (down)
    {
      f->b->ops->conv2d (f->b, tmp (f, 1), tmp (f, 0), &lv->resample.weight,
                         &lv->resample.bias, c, f->h, f->w, c, 3, 2, 0, 0, 1, 1);
      next_size (&f->h, &f->w, TRUE);
      take (f, 1, c);
      return;
    }
  f->b->ops->upsample2x (f->b, tmp (f, 1), tmp (f, 0), c, f->h, f->w);
  next_size (&f->h, &f->w, FALSE);
  conv_same (f, tmp (f, 2), tmp (f, 1), &lv->resample, c, c, 3);
  take (f, 2, c);
}

/* ---- towers ----------------------------------------------------------- */

static gboolean
run_mid (const NsVaeTower *t, NsVaeFlow *f, GCancellable *cancellable, GError **error)
{
  const char *what = t->down ? "encode" : "decode";
  res_block (f, &t->mid_1);
  if (ns_vae_check_cancelled (cancellable, what, error))
    return FALSE;
  attn_block (f, &t->attn);
  if (ns_vae_check_cancelled (cancellable, what, error))
    return FALSE;
  res_block (f, &t->mid_2);
  return !ns_vae_check_cancelled (cancellable, what, error);
}

static gboolean
run_levels (const NsVaeTower *t, NsVaeFlow *f, GCancellable *cancellable, GError **error)
{
  const char *what = t->down ? "encode" : "decode";
  for (int i = 0; i < t->n_levels; i++)
    {
      const NsVaeLevel *lv = &t->levels[i];
      for (int j = 0; j < lv->n_blocks; j++)
        {
          res_block (f, &lv->blocks[j]);
          if (ns_vae_check_cancelled (cancellable, what, error))
            return FALSE;
        }
      if (lv->has_resample)
        resample (f, lv, t->down);
    }
  return TRUE;
}

gboolean
ns_vae_tower_run (const NsVaeTower *t, NsVaeFlow *f, GCancellable *cancellable,
                  GError **error)
{
  int c_first = t->down ? t->levels[0].blocks[0].ci : t->mid_1.ci;
  conv_same (f, tmp (f, 1), tmp (f, 0), &t->conv_in, t->c_in, c_first, 3);
  take (f, 1, c_first);
  gboolean ok = t->down
                ? run_levels (t, f, cancellable, error) && run_mid (t, f, cancellable, error)
                : run_mid (t, f, cancellable, error) && run_levels (t, f, cancellable, error);
  if (!ok)
    return FALSE;
  norm (f, tmp (f, 1), tmp (f, 0), &t->norm_out, f->c, TRUE);
  conv_same (f, tmp (f, 2), tmp (f, 1), &t->conv_out, f->c, t->c_out, 3);
  take (f, 2, t->c_out);
  return TRUE;
}

gboolean
ns_vae_decode_whole (NsVae *vae, NsVaeFlow *f, const float *latent, int h, int w,
                     float *rgb, GCancellable *cancellable, GError **error)
{
  NsBackend *b = f->b;
  f->cur = 0;
  f->c = vae->dec.c_in;
  f->h = h;
  f->w = w;
  b->ops->write (b, f->buf[0], latent, (size_t) f->c * h * w);
  if (!ns_vae_tower_run (&vae->dec, f, cancellable, error) || !b->ops->sync (b, error))
    return FALSE;
  b->ops->read (b, rgb, f->buf[f->cur], (size_t) f->c * f->h * f->w);
  return TRUE;
}
