/* tokenizer-private.h — pieces of the tokenizer shared between its files:
 * the byte-level BPE model (bpe.c), the Split pre-tokenizer regex (split.c)
 * and the added-token matcher (added.c). Not part of the contract. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Ids above this are refused: they would only size tables for nothing. */
#define NS_TOKENIZER_MAX_ID (1 << 24)

/* ---- Byte-level BPE model (bpe.c) ---- */

typedef struct NsBpe NsBpe;

typedef struct {
  gboolean ignore_merges;
  gboolean byte_fallback;
  gboolean fuse_unk;
  const char *unk_token;            /* NULL: characters missing from the vocab are dropped, as HF does */
} NsBpeOptions;

NsBpe   *ns_bpe_new (void);
void     ns_bpe_free (NsBpe *bpe);
/* Vocabulary entry; `label` names the file in messages. */
gboolean ns_bpe_add_token (NsBpe *bpe, const char *text, gint64 id, const char *label,
                           GError **error);
/* After the last add_token: builds the id table and the byte alphabet. */
gboolean ns_bpe_finish_vocab (NsBpe *bpe, const NsBpeOptions *options, const char *label,
                              GError **error);
/* Sizes the merge table for `n` merges (loading is then one pass). */
void     ns_bpe_reserve_merges (NsBpe *bpe, gsize n);
/* Adds merge number `rank` (left + right → "leftright"). */
gboolean ns_bpe_add_merge (NsBpe *bpe, const char *left, const char *right, guint rank,
                           const char *label, GError **error);
/* Encodes one pre-token given as raw bytes (the ByteLevel mapping happens
 * here), appending ids. Thread-safe. */
void     ns_bpe_encode_word (NsBpe *bpe, const char *bytes, gsize len, GArray *ids);
/* Vocabulary id of `text`, -1. */
int32_t  ns_bpe_token_id (const NsBpe *bpe, const char *text);
/* Appends the bytes vocabulary token `id` stands for (the byte-level
 * alphabet reversed; a token with other characters is copied as it is, as
 * HF's ByteLevel decoder does). FALSE when `id` is not in the vocabulary. */
gboolean ns_bpe_token_bytes (const NsBpe *bpe, int32_t id, GByteArray *out);
/* Number of vocabulary entries (HF's get_vocab_size) and highest id + 1. */
guint    ns_bpe_vocab_len (const NsBpe *bpe);
guint    ns_bpe_n_ids (const NsBpe *bpe);

/* ---- Split pre-tokenizer (split.c) ---- */

/* Compiles an HF Split regex (Oniguruma, Ruby syntax) as a GRegex with the
 * same meaning, or refuses the constructs whose meaning would differ. */
GRegex  *ns_split_regex_new (const char *pattern, GError **error);
/* Calls `piece` for each piece of `text`: the matches and the gaps between
 * them (HF's "Isolated" behaviour), empty pieces skipped. */
typedef void (*NsPieceFunc) (const char *piece, gsize len, gpointer user_data);
gboolean ns_split_isolated (const GRegex *regex, const char *text, gsize len,
                            NsPieceFunc piece, gpointer user_data, GError **error);
/* Unicode White_Space (Rust char::is_whitespace, Oniguruma's \s). */
gboolean ns_unichar_is_white_space (gunichar c);

/* ---- Added tokens (added.c) ---- */

typedef struct {
  char *content;
  char *pattern;              /* what is searched: content, or its NFC form when normalized */
  int32_t id;
  gboolean single_word, lstrip, rstrip, normalized, special;
} NsAddedToken;

typedef struct NsAddedMatcher NsAddedMatcher;

/* A leftmost-longest matcher over tokens[i]->pattern (tokens borrowed). */
NsAddedMatcher *ns_added_matcher_new (NsAddedToken **tokens, guint n);
void            ns_added_matcher_free (NsAddedMatcher *m);

/* One segment of a split: an added token (id ≥ 0) or text (id = -1). */
typedef struct {
  gsize start, end;
  int32_t id;
} NsSegment;

/* HF's AddedVocabulary::find_matches on text[0, len): appends the segments
 * (offsets relative to `text`). */
void ns_added_matcher_split (const NsAddedMatcher *m, const char *text, gsize len,
                             GArray *segments);

G_END_DECLS
