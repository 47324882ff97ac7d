/* config.h — the NextStep config.json, the VAE config.json and the parts of
 * tokenizer_config.json the engine needs. Absent fields take the documented
 * defaults (NextStepConfig / AutoEncoderParams defaults); impossible values
 * (non-positive sizes, heads not dividing, unknown activations…) are refused
 * with a message naming the file and field. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct {
  /* backbone */
  int hidden_size;
  int num_hidden_layers;
  int num_attention_heads;
  int num_key_value_heads;
  int head_dim;                  /* default hidden_size / num_attention_heads */
  int intermediate_size;
  int64_t vocab_size;
  int max_position_embeddings;
  double rope_theta;
  double rms_norm_eps;
  gboolean attention_bias;       /* q, k, v biases */
  gboolean o_attention_bias;
  gboolean mlp_bias;
  gboolean tie_word_embeddings;
  /* NextStep */
  int boi, eoi, image_placeholder_id, pad_token_id;
  int bos_token_id, eos_token_id; /* -1 when absent or null */
  int latent_channels;
  int latent_patch_size;
  int latent_size;
  gboolean use_gen_pos_embed;
  int fm_head_dim;
  int fm_head_layers;
  double fm_head_mlp_ratio;      /* default 1 */
  char *vae_name_or_path;        /* may be NULL */
  char *model_type;              /* "nextstep" expected */
  char *name_or_path;            /* "_name_or_path" when present, else NULL */
} NsModelConfig;

typedef struct {
  int resolution;
  int in_channels;
  int out_ch;
  int ch;
  int ch_mult[8];
  int n_ch_mult;
  int num_res_blocks;
  int z_channels;
  double scaling_factor;
  double shift_factor;
  gboolean deterministic;
  gboolean encoder_norm;
  int psz;                       /* 1 when absent/null */
} NsVaeConfig;

gboolean ns_model_config_parse (NsModelConfig *cfg, const char *json, gsize size,
                                const char *label, GError **error);
gboolean ns_model_config_load (NsModelConfig *cfg, const char *path, GError **error);
void     ns_model_config_clear (NsModelConfig *cfg);

gboolean ns_vae_config_parse (NsVaeConfig *cfg, const char *json, gsize size,
                              const char *label, GError **error);
gboolean ns_vae_config_load (NsVaeConfig *cfg, const char *path, GError **error);

/* tokenizer_config.json: bos_token (NULL when null/absent), add_bos_token,
 * eos/pad token strings, model_max_length. */
typedef struct {
  char *bos_token;
  char *eos_token;
  char *pad_token;
  gboolean add_bos_token;
  int64_t model_max_length;
} NsTokenizerConfig;

gboolean ns_tokenizer_config_parse (NsTokenizerConfig *cfg, const char *json, gsize size,
                                    const char *label, GError **error);
gboolean ns_tokenizer_config_load (NsTokenizerConfig *cfg, const char *path, GError **error);
void     ns_tokenizer_config_clear (NsTokenizerConfig *cfg);

G_END_DECLS
