/* tiny-tokenizer.h — a small but real Hugging Face byte-level BPE tokenizer
 * for make-tiny: the Qwen2 structure (NFC, Qwen2 split regex, ByteLevel)
 * with a few hundred merges learnt from a built-in English text, plus the
 * Qwen2.5 and NextStep added tokens, in the file set save_pretrained writes. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Writes tokenizer.json, tokenizer_config.json, vocab.json, merges.txt,
 * special_tokens_map.json and added_tokens.json into `dir`. */
gboolean ns_tiny_tokenizer_write (const char *dir, GError **error);

/* Writes the builder's document, indented, to dir/name (make-tiny's files). */
gboolean ns_tiny_save_json (const char *dir, const char *name, JsonBuilder *b, GError **error);

G_END_DECLS
