/* tokenizer.h — the Hugging Face byte-level BPE tokenizer NextStep ships
 * (tokenizer.json), exact to HF `tokenizers`, and the prompt builder that
 * turns a request into the id rows the official pipeline feeds the model. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct NsTokenizer NsTokenizer;

/* Loads <dir>/tokenizer.json and <dir>/tokenizer_config.json (optional: no
 * BOS without it). Refuses model types, normalizers, pre-tokenizers or
 * options it does not implement. A loaded tokenizer may encode and decode
 * from several threads at once. */
NsTokenizer *ns_tokenizer_load (const char *dir, GError **error);
/* From tokenizer.json text already in memory (fuzz entry point);
 * tokenizer_config may be NULL. */
NsTokenizer *ns_tokenizer_new_from_json (const char *tokenizer_json, gsize size,
                                         const char *tokenizer_config_json, gsize config_size,
                                         const char *label, GError **error);
void         ns_tokenizer_free (NsTokenizer *tok);

/* text → ids (no special tokens added), appended to `ids` (GArray of int32_t).
 * Invalid UTF-8 is an error. */
gboolean ns_tokenizer_encode (NsTokenizer *tok, const char *text, gssize len,
                              GArray *ids, GError **error);
/* ids → text; invalid byte runs become U+FFFD as HF does; unknown ids are an
 * error. */
char    *ns_tokenizer_decode (NsTokenizer *tok, const int32_t *ids, gsize n, GError **error);
/* Same, also giving the length: decoded text may contain NUL bytes (token
 * of byte 0), which ns_tokenizer_decode's callers cannot see past. */
char    *ns_tokenizer_decode_len (NsTokenizer *tok, const int32_t *ids, gsize n, gsize *len,
                                  GError **error);
/* Id of an added token or vocabulary entry given by its exact content; -1. */
int32_t  ns_tokenizer_token_id (const NsTokenizer *tok, const char *content);
/* The BOS token text from tokenizer_config.json, NULL when null. */
const char *ns_tokenizer_bos_token (const NsTokenizer *tok);
guint    ns_tokenizer_vocab_size (const NsTokenizer *tok);  /* highest id + 1 */

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsTokenizer, ns_tokenizer_free)

/* ---- Prompt builder (docs/model.md §4) ---- */

typedef struct {
  gboolean edit;
  const char *caption;        /* T2I caption, or edit instruction (without "<image>") */
  const char *positive;       /* NULL or "" : none */
  const char *negative;       /* NULL treated as "" */
  int out_h, out_w;           /* token grid of the output (pixels / 16) */
  int in_h, in_w;             /* edit: token grid of the input image */
  int images;                 /* n */
  double cfg, cfg_img;        /* rows: cond; + uncond when cfg != 1; edit 3-way when cfg_img != 1 */
  /* special token ids from the checkpoint (config.json) */
  int32_t pad_id, boi_id, eoi_id, placeholder_id;
} NsPromptSpec;

typedef struct {
  int rows;                   /* cfg_mult × n */
  int len;                    /* padded length L */
  int cfg_mult;
  int32_t *ids;               /* [rows, len], left-padded with pad_id */
  int32_t *mask;              /* [rows, len], 1 for real tokens */
  /* For each row, how many input-image copies its placeholders take, in
   * row-major order: placeholder slots are filled from the input latents
   * list [cond images…, then (3-way) the same again for uncond1 rows]. */
  int n_placeholder_images;   /* total image copies filled across rows */
} NsPromptRows;

NsPromptRows *ns_prompt_build (NsTokenizer *tok, const NsPromptSpec *spec, GError **error);
void          ns_prompt_rows_free (NsPromptRows *rows);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsPromptRows, ns_prompt_rows_free)

G_END_DECLS
