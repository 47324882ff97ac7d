/* pipeline.c — one generation or edit request (docs/model.md §10):
 * prompt rows → (edit: VAE encode of the input into the placeholders) →
 * prefill → per token: condition, flow-matching sampling with CFG, use_norm,
 * feed back → unpatchify → VAE decode → RGBA8. */
#include <math.h>
#include <string.h>

#include "model/pipeline-private.h"

typedef struct {
  NsLocalModel *m;
  NsRequest r;              /* resolved copy */
  NsBackend *b;
  NsRunTrace *trace;
  int n, gh, gw, ntok, dim, hidden, rows, cfg_mult, p, evals;
  double scale, shift;
  NsPromptRows *prompt;
  NsKvCache *kv;
  NsTokenLoop *loop;
  float *x, *in_emb;        /* backend: prompt embeddings, edit input tokens */
  int32_t *ids;             /* backend: prompt ids */
  float *tokens;            /* host [n, ntok, dim] */
  guint8 **preview;         /* n RGBA8 pictures, when on_preview is set */
  int token;
  NsRunTimings timings;
} Run;

static gboolean
cancelled (const Run *run, GError **error)
{
  if (!g_cancellable_is_cancelled (run->r.cancellable))
    return FALSE;
  g_set_error (error, NS_ERROR, NS_ERROR_CANCELLED, "Generation was cancelled");
  return TRUE;
}

static void
run_clear (Run *run)
{
  if (run->b == NULL)
    return;
  void *bufs[] = { run->x, run->in_emb, run->ids };
  for (size_t i = 0; i < G_N_ELEMENTS (bufs); i++)
    ns_backend_free_any (run->b, bufs[i]);
  ns_token_loop_free (run->loop);
  ns_prompt_rows_free (run->prompt);
  ns_kv_cache_free (run->kv);
  for (int i = 0; run->preview && i < run->n; i++)
    g_free (run->preview[i]);
  g_free (run->preview);
  g_free (run->tokens);
}

static float *
balloc (Run *run, size_t n, GError **error)
{
  return run->b->ops->alloc (run->b, n, error);
}

static double
ms_since (gint64 t0)
{
  return (g_get_monotonic_time () - t0) / 1000.0;
}

static void
stage (const Run *run, NsStage what, int done, int total)
{
  if (run->r.on_stage)
    run->r.on_stage (what, done, total, run->r.user_data);
}

/* round-half-even(clamp(x/2 + 0.5, 0, 1) · 255) in float32, as the pipeline. */
static guint8
to_u8 (float x)
{
  float v = x / 2.0f + 0.5f;
  v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
  return (guint8) nearbyintf (v * 255.0f);
}

/* ---- edit input ----------------------------------------------------------- */

/* Bilinear sample (half-pixel centres) of channel ch of an RGBA8 image. */
static double
bilinear (const NsImage *im, int ch, double y, double x)
{
  y = CLAMP (y, 0.0, im->height - 1.0);
  x = CLAMP (x, 0.0, im->width - 1.0);
  int y0 = (int) y, x0 = (int) x;
  int y1 = MIN (y0 + 1, im->height - 1), x1 = MIN (x0 + 1, im->width - 1);
  double fy = y - y0, fx = x - x0;
#define PX(yy, xx) ((double) im->rgba[(size_t) (yy) * im->stride + (size_t) (xx) * 4 + ch])
  return (1 - fy) * ((1 - fx) * PX (y0, x0) + fx * PX (y0, x1))
         + fy * ((1 - fx) * PX (y1, x0) + fx * PX (y1, x1));
#undef PX
}

/* pixels [3, H, W] = (u8/255 − 0.5)/0.5 of the input resized to H×W (a plain
 * copy when the sizes match). */
static void
input_pixels (const NsImage *im, int H, int W, float *pixels)
{
  gboolean same = im->width == W && im->height == H;
  for (int ch = 0; ch < 3; ch++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        {
          double u = same ? im->rgba[(size_t) y * im->stride + (size_t) x * 4 + ch]
                          : bilinear (im, ch, (y + 0.5) * im->height / H - 0.5,
                                      (x + 0.5) * im->width / W - 0.5);
          u = round (CLAMP (u, 0.0, 255.0));
          pixels[((size_t) ch * H + y) * W + x] = (float) ((u / 255.0 - 0.5) / 0.5);
        }
}

static int
snap16 (int px)
{
  return MAX (16, (int) lround (px / 16.0) * 16);
}

/* Encodes the input image; run->in_emb [in_ntok, hidden] = image_in_projector of
 * its patchified latents. */
static gboolean
encode_input (Run *run, int *in_gh, int *in_gw, GError **error)
{
  const NsImage *im = &run->r.input;
  int H = snap16 (im->height), W = snap16 (im->width);
  int C = run->m->cfg.latent_channels, p = run->p;
  *in_gh = H / (8 * p);
  *in_gw = W / (8 * p);
  int in_ntok = *in_gh * *in_gw;
  size_t lat_n = (size_t) C * (H / 8) * (W / 8);
  g_autofree float *pixels = g_new (float, (size_t) 3 * H * W);
  g_autofree float *latents = g_new (float, lat_n);
  input_pixels (im, H, W, pixels);
  if (!ns_vae_encode (run->m->vae, pixels, H, W, latents, NULL, run->r.cancellable, error))
    return FALSE;
  float *lat_b = balloc (run, lat_n, error);
  float *tok_b = lat_b ? balloc (run, (size_t) in_ntok * run->dim, error) : NULL;
  gboolean ok = tok_b && (run->in_emb = balloc (run, (size_t) in_ntok * run->hidden, error));
  if (ok)
    {
      run->b->ops->write (run->b, lat_b, latents, lat_n);
      run->b->ops->patchify (run->b, tok_b, lat_b, C, *in_gh, *in_gw, p);
      ns_transformer_project_in (run->m->transformer, run->in_emb, tok_b, in_ntok);
    }
  if (tok_b)
    run->b->ops->free (run->b, tok_b);
  if (lat_b)
    run->b->ops->free (run->b, lat_b);
  return ok;
}

/* Replaces every placeholder embedding, in row-major (row, position) order,
 * with the next input-image token (the same image for every copy). */
static gboolean
fill_placeholders (Run *run, int in_ntok, GError **error)
{
  const NsPromptRows *pr = run->prompt;
  int32_t placeholder = run->m->cfg.image_placeholder_id;
  size_t k = 0;
  for (size_t slot = 0; slot < (size_t) pr->rows * pr->len; slot++)
    if (pr->ids[slot] == placeholder)
      {
        run->b->ops->copy (run->b, run->x + slot * run->hidden,
                           run->in_emb + (k % in_ntok) * run->hidden, run->hidden);
        k++;
      }
  if (k != (size_t) pr->n_placeholder_images * in_ntok)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "The prompt holds %zu image placeholders but the input image fills %d; "
                   "remove '<|image_placeholder|>' from the prompt text",
                   k, pr->n_placeholder_images * in_ntok);
      return FALSE;
    }
  return TRUE;
}

/* ---- setup ----------------------------------------------------------------- */

static gboolean
build_prompt (Run *run, int in_gh, int in_gw, GError **error)
{
  const NsModelConfig *cfg = &run->m->cfg;
  NsPromptSpec spec = {
    .edit = run->r.mode == NS_MODE_EDIT, .caption = run->r.prompt,
    .positive = run->r.positive, .negative = run->r.negative,
    .out_h = run->gh, .out_w = run->gw, .in_h = in_gh, .in_w = in_gw, .images = run->n,
    .cfg = run->r.cfg, .cfg_img = run->r.cfg_img,
    .pad_id = cfg->pad_token_id, .boi_id = cfg->boi, .eoi_id = cfg->eoi,
    .placeholder_id = cfg->image_placeholder_id,
  };
  run->prompt = ns_prompt_build (run->m->tokenizer, &spec, error);
  if (run->prompt == NULL)
    return FALSE;
  run->cfg_mult = 1 + (run->r.cfg > 1.0) + (spec.edit && run->r.cfg_img > 1.0);
  run->rows = run->cfg_mult * run->n;
  if (run->prompt->rows != run->rows)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "The prompt builder made %d rows for %d guidance blocks of %d images",
                   run->prompt->rows, run->cfg_mult, run->n);
      return FALSE;
    }
  if ((int64_t) run->prompt->len + run->ntok > cfg->max_position_embeddings)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "The prompt (%d tokens) and the image (%d tokens) exceed the model's %d "
                   "positions; shorten the prompt or lower the size",
                   run->prompt->len, run->ntok, cfg->max_position_embeddings);
      return FALSE;
    }
  int covered = ns_transformer_pos_embed_tokens (run->m->transformer, run->r.height,
                                                 run->r.width);
  if (run->ntok > covered)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "This model's gen_pos_embed covers %d image tokens; %d×%d needs %d",
                   covered, run->r.width, run->r.height, run->ntok);
      return FALSE;
    }
  return TRUE;
}

static gboolean
setup (Run *run, GError **error)
{
  NsLocalModel *m = run->m;
  run->b = m->backend;
  run->n = run->r.images;
  run->p = m->cfg.latent_patch_size;
  run->gh = run->r.height / (8 * run->p);   /* VAE f8, then p×p patches */
  run->gw = run->r.width / (8 * run->p);
  run->ntok = run->gh * run->gw;
  run->dim = m->cfg.latent_channels * run->p * run->p;
  run->hidden = m->cfg.hidden_size;
  run->scale = m->vae_cfg.scaling_factor;
  run->shift = m->vae_cfg.shift_factor;
  run->evals = run->r.steps;
  int in_gh = 0, in_gw = 0;
  gint64 t0 = g_get_monotonic_time ();
  if (run->r.mode == NS_MODE_EDIT)
    {
      stage (run, NS_STAGE_ENCODE, 0, 1);
      if (!encode_input (run, &in_gh, &in_gw, error))
        return FALSE;
      run->timings.encode_ms = ms_since (t0);
      stage (run, NS_STAGE_ENCODE, 1, 1);
    }
  if (!build_prompt (run, in_gh, in_gw, error))
    return FALSE;
  run->tokens = g_new0 (float, (size_t) run->n * run->ntok * run->dim);
  size_t rh = (size_t) run->rows * run->hidden, L = run->prompt->len;
  NsTokenLoopSpec spec = {
    .n = run->n, .cfg_mult = run->cfg_mult, .ntok = run->ntok, .dim = run->dim,
    .sampler = run->r.sampler, .steps = run->r.steps, .shift = run->r.shift,
    .cfg = { run->r.cfg, run->r.cfg_img, run->r.cfg_schedule == NS_CFG_LINEAR, run->ntok },
    .seed = run->r.seed, .noise_file = run->r.noise_file, .use_norm = run->r.use_norm,
    .width_px = run->r.width, .timings = run->r.timings,
  };
  gboolean ok = run->b->ops->reserve (run->b, MAX (run->rows * (int) L, run->evals * run->rows),
                                      error)
    && (run->kv = ns_kv_cache_new (m->transformer, run->rows, L + run->ntok, L, error))
    && (run->loop = ns_token_loop_new (run->b, m->transformer, m->head, run->kv, &spec, error))
    && (run->x = balloc (run, rh * L, error))
    && (run->ids = ns_backend_alloc_i32 (run->b, (size_t) run->rows * L, error));
  if (!ok)
    return FALSE;
  if (run->trace)
    ns_token_loop_set_trace (run->loop, run->trace);
  ns_backend_write_i32 (run->b, run->ids, run->prompt->ids, (size_t) run->rows * L);
  ns_transformer_embed (m->transformer, run->x, run->ids, run->rows * (int) L);
  return run->r.mode != NS_MODE_EDIT || fill_placeholders (run, in_gh * in_gw, error);
}

/* ---- latents, decoding, previews ---------------------------------------- */

/* latents [C, p·gh, p·gw] = unpatchify(tokens of image i) / scale + shift. */
static void
image_latents (const Run *run, int i, float *latents)
{
  int C = run->m->cfg.latent_channels, p = run->p, lw = run->gw * p, lh = run->gh * p;
  const float *tok = run->tokens + (size_t) i * run->ntok * run->dim;
  for (int ch = 0; ch < C; ch++)
    for (int y = 0; y < lh; y++)
      for (int x = 0; x < lw; x++)
        {
          int t = (y / p) * run->gw + x / p;
          float v = tok[(size_t) t * run->dim + ch * p * p + (y % p) * p + x % p];
          latents[((size_t) ch * lh + y) * lw + x] = (float) (v / run->scale + run->shift);
        }
}

static void
rgb_to_rgba (const float *rgb, int H, int W, guint8 *rgba, int rows_done_px)
{
  size_t plane = (size_t) H * W;
  for (size_t px = 0; px < (size_t) rows_done_px * W; px++)
    {
      for (int ch = 0; ch < 3; ch++)
        rgba[px * 4 + ch] = to_u8 (rgb[ch * plane + px]);
      rgba[px * 4 + 3] = 255;
    }
}

/* The instant preview: the VAE's linear latent→RGB map over the 8p×8p
 * pixels of the new token of each image. */
static void
preview_token (Run *run)
{
  const float *w, *bias;
  ns_vae_preview_map (run->m->vae, &w, &bias);
  int C = run->m->cfg.latent_channels, p = run->p, W = run->r.width;
  int ti = run->token / run->gw, tj = run->token % run->gw;
  for (int i = 0; i < run->n; i++)
    {
      const float *tok = run->tokens + ((size_t) i * run->ntok + run->token) * run->dim;
      for (int a = 0; a < p; a++)
        for (int bb = 0; bb < p; bb++)
          {
            guint8 px[4] = { 0, 0, 0, 255 };
            for (int c = 0; c < 3; c++)
              {
                double acc = bias[c];
                for (int k = 0; k < C; k++)
                  acc += w[c * C + k] * (tok[k * p * p + a * p + bb] / run->scale + run->shift);
                px[c] = to_u8 ((float) acc);
              }
            int y0 = (ti * p + a) * 8, x0 = (tj * p + bb) * 8;
            for (int y = y0; y < y0 + 8; y++)
              for (int x = x0; x < x0 + 8; x++)
                memcpy (run->preview[i] + ((size_t) y * W + x) * 4, px, 4);
          }
      run->r.on_preview (i, run->preview[i], W, run->r.height, run->token + 1, FALSE,
                         run->r.user_data);
    }
}

/* A real decode of every image's latent so far (later tokens are zero). */
static gboolean
preview_decode (Run *run, GError **error)
{
  int H = run->r.height, W = run->r.width, C = run->m->cfg.latent_channels;
  int rows_done_px = (run->token + 1) / run->gw * 8 * run->p;
  g_autofree float *lat = g_new (float, (size_t) C * (H / 8) * (W / 8));
  g_autofree float *rgb = g_new (float, (size_t) 3 * H * W);
  for (int i = 0; i < run->n; i++)
    {
      image_latents (run, i, lat);
      if (!ns_vae_decode (run->m->vae, lat, H / 8, W / 8, rgb, run->r.cancellable, error))
        return FALSE;
      rgb_to_rgba (rgb, H, W, run->preview[i], rows_done_px);
      run->r.on_preview (i, run->preview[i], W, H, run->token + 1, TRUE, run->r.user_data);
    }
  return TRUE;
}

static gboolean
report_token (Run *run, GError **error)
{
  const NsRequest *r = &run->r;
  for (int i = 0; r->on_token && i < run->n; i++)
    r->on_token (i, run->token, run->ntok, r->user_data);
  if (r->on_preview == NULL)
    return TRUE;
  preview_token (run);
  int done = run->token + 1;
  gboolean row_end = done % run->gw == 0 && done < run->ntok;
  if (r->preview_every > 0 && row_end && (done / run->gw) % r->preview_every == 0)
    return preview_decode (run, error);
  return TRUE;
}

static NsResult *
finish (Run *run, GError **error)
{
  int H = run->r.height, W = run->r.width, C = run->m->cfg.latent_channels;
  size_t lat_n = (size_t) C * (H / 8) * (W / 8), plane = (size_t) H * W;
  g_autoptr (NsResult) res = g_new0 (NsResult, 1);
  res->n_images = run->n;
  res->width = W;
  res->height = H;
  res->ntok = run->ntok;
  res->token_dim = run->dim;
  res->latent_channels = C;
  res->seed = run->r.seed;
  res->rgba = g_new0 (guint8 *, run->n);
  res->latents = g_new (float, run->n * lat_n);
  res->decoded = g_new (float, run->n * 3 * plane);
  for (int i = 0; i < run->n; i++)
    {
      image_latents (run, i, res->latents + i * lat_n);
      if (!ns_vae_decode (run->m->vae, res->latents + i * lat_n, H / 8, W / 8,
                          res->decoded + i * 3 * plane, run->r.cancellable, error))
        return NULL;
      res->rgba[i] = g_new (guint8, plane * 4);
      rgb_to_rgba (res->decoded + i * 3 * plane, H, W, res->rgba[i], H);
    }
  res->tokens = g_steal_pointer (&run->tokens);
  return g_steal_pointer (&res);
}

/* ---- the request ---------------------------------------------------------- */

static void
trace_init (Run *run)
{
  NsRunTrace *t = run->trace;
  const NsPromptRows *pr = run->prompt;
  size_t rows_ids = (size_t) pr->rows * pr->len;
  t->rows = run->rows;
  t->len = pr->len;
  t->evals = run->evals;
  t->prompt_ids = g_memdup2 (pr->ids, rows_ids * sizeof (int32_t));
  t->attention_mask = g_memdup2 (pr->mask, rows_ids * sizeof (int32_t));
  t->h = g_new0 (float, (size_t) run->rows * run->ntok * run->hidden);
  t->c = g_new0 (float, (size_t) run->rows * run->ntok * run->hidden);
  t->v = g_new0 (float, (size_t) run->ntok * run->evals * run->n * run->dim);
}

static gboolean
prefill (Run *run, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  int len = run->prompt->len;
  stage (run, NS_STAGE_PREFILL, 0, len);
  if (!ns_transformer_forward (run->m->transformer, run->kv, run->x, len, run->prompt->mask,
                               ns_token_loop_last_hidden (run->loop), NULL, run->r.cancellable,
                               error)
      || !run->b->ops->sync (run->b, error))
    return FALSE;
  run->timings.prefill_ms = ms_since (t0);
  stage (run, NS_STAGE_PREFILL, len, len);
  return TRUE;
}

static gboolean
sample_tokens (Run *run, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  int total = run->n * run->ntok;
  stage (run, NS_STAGE_TOKENS, 0, total);
  for (run->token = 0; run->token < run->ntok; run->token++)
    {
      gboolean feed_back = run->token + 1 < run->ntok;   /* the official loop runs the
                                                          * backbone after the last token too;
                                                          * unused */
      if (cancelled (run, error)
          || !ns_token_loop_step (run->loop, run->token, feed_back, run->tokens, error)
          || !report_token (run, error))
        return FALSE;
      stage (run, NS_STAGE_TOKENS, run->n * (run->token + 1), total);
    }
  run->timings.tokens_ms = ms_since (t0);
  ns_token_loop_get_timings (run->loop, &run->timings.head_ms, &run->timings.backbone_ms);
  return !cancelled (run, error) && run->b->ops->sync (run->b, error);
}

static NsResult *
generate (Run *run, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  if (!setup (run, error))
    return NULL;
  if (run->trace)
    trace_init (run);
  if (run->r.on_preview)
    {
      run->preview = g_new0 (guint8 *, run->n);
      for (int i = 0; i < run->n; i++)
        run->preview[i] = g_new0 (guint8, (size_t) run->r.width * run->r.height * 4);
    }
  if (!prefill (run, error) || !sample_tokens (run, error))
    return NULL;
  gint64 t_vae = g_get_monotonic_time ();
  stage (run, NS_STAGE_DECODE, 0, run->n);
  NsResult *res = finish (run, error);
  if (res == NULL)
    return NULL;
  stage (run, NS_STAGE_DECODE, run->n, run->n);
  run->timings.vae_ms = ms_since (t_vae);
  run->timings.total_ms = ms_since (t0);
  res->timings = run->timings;
  return res;
}

NsResult *
ns_model_run_traced (NsModel *model, const NsRequest *request, NsRunTrace *trace,
                     GError **error)
{
  g_return_val_if_fail (model != NULL && request != NULL, NULL);
  if (model->backend_kind == NS_BACKEND_REMOTE)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "A run on a server cannot be traced; trace a local model");
      return NULL;
    }
  Run run = { .m = (NsLocalModel *) model, .r = *request, .trace = trace };
  if (!ns_request_resolve (model, &run.r, error))
    return NULL;
  NsResult *res = generate (&run, error);
  run_clear (&run);
  return res;
}

NsResult *
ns_local_model_run (NsModel *model, const NsRequest *request, GError **error)
{
  return ns_model_run_traced (model, request, NULL, error);
}
