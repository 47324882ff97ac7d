/* vae-private.h — the VAE's internal layout, shared by vae.c (weights,
 * checks, public entry points), vae-net.c (the forward passes), vae-tile.c
 * (tiled decode) and vae-preview.c (the preview map fit). */
#pragma once

#include "model/vae.h"

G_BEGIN_DECLS

#define NS_VAE_GROUPS 32        /* GroupNorm groups (docs/model.md §11) */
#define NS_VAE_EPS 1e-6f        /* GroupNorm and encoder_norm LayerNorm eps */
#define NS_VAE_FACTOR 8         /* pixels per latent pixel (the f8 contract) */
#define NS_VAE_LEVELS 4         /* resolution levels of an f8 VAE: 3 resamplings */

/* Whole-image decode up to NS_VAE_TILE_SIDE² latent pixels (64×64 = 512²
 * px, the largest common size, decodes exactly); larger latents decode in
 * tiles of at most NS_VAE_TILE_SIDE² whose neighbours share at least
 * NS_VAE_TILE_OVERLAP latent rows/columns, blended by a linear ramp.
 * GroupNorm statistics and the mid-block attention then see one tile, so
 * tiling is an approximation. Copied into each NsVae (tests shrink them). */
#define NS_VAE_TILE_SIDE 64
#define NS_VAE_TILE_OVERLAP 16

/* A conv (weight [co, ci, k, k], bias [co]) or a GroupNorm (gamma, beta). */
typedef struct {
  NsMat weight;
  NsMat bias;
} NsVaeLayer;

typedef struct {
  int ci, co;
  NsVaeLayer norm1, conv1, norm2, conv2;
  NsVaeLayer nin_shortcut;      /* only when ci != co */
} NsVaeRes;

typedef struct {
  int c;
  NsVaeLayer norm, q, k, v, proj_out;
} NsVaeAttn;

typedef struct {
  NsVaeRes *blocks;
  int n_blocks;
  gboolean has_resample;        /* downsample (encoder) / upsample (decoder) after the blocks */
  NsVaeLayer resample;
  int c_out;                    /* channels after the level */
} NsVaeLevel;

/* Levels are stored in the order they run: encoder 0 → last, decoder
 * last → 0 (decoder.up.{i} is indexed by resolution). */
typedef struct {
  gboolean down;                /* encoder (stride-2 downsample) or decoder (×2 upsample) */
  int c_in, c_out;              /* image/latent channels in and out */
  NsVaeLayer conv_in;
  NsVaeLevel levels[NS_VAE_LEVELS];
  int n_levels;
  NsVaeRes mid_1, mid_2;
  NsVaeAttn attn;
  NsVaeLayer norm_out, conv_out;
} NsVaeTower;

/* One expected tensor and the weight it becomes. */
typedef struct {
  char *name;
  int n_dims;
  int64_t shape[4];
  NsMat *slot;
} NsVaeParam;

struct NsVae {
  NsBackend *backend;
  NsVaeConfig cfg;
  NsVaeTower enc, dec;
  GPtrArray *params;            /* NsVaeParam*, slots into enc/dec */
  guint n_uploaded;             /* params[0 .. n_uploaded) hold backend weights */
  int tile_side, tile_overlap;  /* NS_VAE_TILE_SIDE, NS_VAE_TILE_OVERLAP */
  float *preview_weight;        /* [3 · z] */
  float preview_bias[3];
};

/* Activation buffers of one forward pass: four of `cap` floats (the largest
 * activation of the pass) and one for the mid attention's values. */
typedef struct {
  NsBackend *b;
  float *buf[4];
  float *extra;
  int cur;                      /* buffer holding the current activation */
  int c, h, w;                  /* its shape */
} NsVaeFlow;

gboolean ns_vae_flow_alloc (NsVaeFlow *f, NsBackend *b, const NsVaeTower *t, int h, int w,
                            GError **error);
void     ns_vae_flow_free (NsVaeFlow *f);

/* Runs a tower on the activation already written to f->buf[f->cur] with
 * shape (t->c_in, f->h, f->w); the result is left in f->buf[f->cur]. */
gboolean ns_vae_tower_run (const NsVaeTower *t, NsVaeFlow *f, GCancellable *cancellable,
                           GError **error);

/* Decodes one latent image in one piece with buffers from `f` (allocated
 * for at least h × w). */
gboolean ns_vae_decode_whole (NsVae *vae, NsVaeFlow *f, const float *latent, int h, int w,
                              float *rgb, GCancellable *cancellable, GError **error);

/* Decodes a latent larger than tile_side² in blended tiles. */
gboolean ns_vae_decode_tiled (NsVae *vae, const float *latent, int h, int w, float *rgb,
                              GCancellable *cancellable, GError **error);

/* Fits vae->preview_weight / preview_bias (called once by ns_vae_new). */
gboolean ns_vae_fit_preview (NsVae *vae, GError **error);

gboolean ns_vae_check_cancelled (GCancellable *cancellable, const char *what, GError **error);

G_END_DECLS
