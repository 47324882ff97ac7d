/* vae.h — the Flux-style f8 VAE (encoder for editing, decoder for every
 * image), written once against the backend ops table. Model doc §11,
 * docs/model.md §11. */
#pragma once

#include <glib.h>
#include <gio/gio.h>
#include "backend.h"
#include "files/tensor.h"
#include "files/config.h"

G_BEGIN_DECLS

typedef struct NsVae NsVae;

/* One tensor of a VAE checkpoint. */
typedef struct {
  char *name;
  int n_dims;
  int64_t shape[4];
} NsVaeTensor;

/* The tensors a VAE checkpoint for `cfg` holds, in module order: the one
 * layout the loader checks, the memory plan counts and make-tiny writes. A
 * GArray of NsVaeTensor that frees the names itself; NULL with an error
 * when the config is invalid. */
GArray *ns_vae_expected_tensors (const NsVaeConfig *cfg, GError **error);

/* Appends one line per missing / unexpected / mis-shaped tensor of a VAE
 * state_dict for this config (encoder and decoder). TRUE when none. */
gboolean ns_vae_check (const NsTensorStore *store, const NsVaeConfig *cfg, GPtrArray *problems);

/* Uploads the weights to the backend; refuses any missing or mis-shaped key
 * (the official loader's strict=False hides those). `store` must outlive the
 * NsVae (the CPU backend points into it). */
NsVae *ns_vae_new (NsBackend *backend, const NsTensorStore *store, const NsVaeConfig *cfg,
                   GError **error);
void   ns_vae_free (NsVae *vae);
const NsVaeConfig *ns_vae_get_config (const NsVae *vae);

/* Decoder: latent [z, h, w] (host, already latent/scale + shift) →
 * rgb [3, 8h, 8w] (host, unclamped, ≈ [-1, 1]). Large outputs are decoded
 * in tiles so the activations of the whole image are never held at once. */
gboolean ns_vae_decode (NsVae *vae, const float *latent, int h, int w, float *rgb,
                        GCancellable *cancellable, GError **error);

/* Encoder: pixels [3, H, W] (host, in [-1, 1]; H, W multiples of 8, of
 * 8·psz with encoder_norm) →
 * latents [z, H/8, W/8] = (mean after encoder_norm − shift) · scale (host).
 * `moments` [2z, H/8, W/8] (raw encoder output) may be NULL. The latent is
 * the posterior mean even when the config says deterministic false (the
 * official code would add exp(0.5·logvar)·ε there; the engine never samples). */
gboolean ns_vae_encode (NsVae *vae, const float *pixels, int height, int width,
                        float *latents, float *moments, GCancellable *cancellable,
                        GError **error);

/* The instant-preview map fitted from this VAE's own decoder: for a latent
 * pixel (z values, in the decoder's input space) rgb[c] ≈ bias[c] +
 * Σ_k weight[c·z + k] · latent[k]. Computed once at load (least squares on
 * decodes of random latents); `weight` has 3·z entries. */
void ns_vae_preview_map (const NsVae *vae, const float **weight, const float **bias);

G_END_DECLS
