/* tokenizer-private.h — pieces of the tokenizer shared between its files:
 * the byte-level BPE model (bpe.c), the reader of its two huge
 * tokenizer.json members (json-tables.c), the Split pre-tokenizer regex
 * (split.c) and the added-token matcher (added.c). Not part of the contract. */
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
/* Room for `bytes` more bytes of vocabulary text (loading is then one
 * allocation). */
void     ns_bpe_reserve_text (NsBpe *bpe, gsize bytes);
/* Vocabulary entry text[0, len) (no NUL inside); a repeated text keeps its
 * last id. `label` names the file in messages. */
gboolean ns_bpe_add_token (NsBpe *bpe, const char *text, gsize len, gint64 id,
                           const char *label, GError **error);
/* After the last add_token: builds the id table and the byte alphabet. */
gboolean ns_bpe_finish_vocab (NsBpe *bpe, const NsBpeOptions *options, const char *label,
                              GError **error);
/* Sizes the merge table for `n` merges (loading is then one pass). */
void     ns_bpe_reserve_merges (NsBpe *bpe, gsize n);
/* Adds merge number `rank`: pair[0, left_len) + the right token that
 * follows it → the token pair[0, left_len + right_len). */
gboolean ns_bpe_add_merge (NsBpe *bpe, const char *pair, gsize left_len, gsize right_len,
                           guint rank, const char *label, GError **error);
/* The token merging ids left and right make, with its rank; -1 when none. */
int32_t  ns_bpe_merge (const NsBpe *bpe, int32_t left, int32_t right, int32_t *rank);
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

/* ---- model.vocab and model.merges without a JSON tree (json-tables.c) ---- */

/* Where a member's value lies in the file: bytes [start, end); end = 0
 * when the member is absent. */
typedef struct {
  gsize start, end;
} NsJsonSpan;

typedef struct {
  NsJsonSpan vocab, merges;     /* of the top-level "model" object */
} NsJsonTables;

/* Checks that json[0, size) is one JSON value (RFC 8259, as HF's serde_json
 * reads it) and finds model.vocab and model.merges in it. */
gboolean ns_json_find_tables (const char *json, gsize size, const char *label,
                              NsJsonTables *tables, GError **error);
/* A copy of json with both values replaced by null, for json-glib: the rest
 * of the file is small. */
char    *ns_json_without_tables (const char *json, gsize size, const NsJsonTables *tables,
                                 gsize *len);
/* Reads model.vocab (an object of token → id) into `bpe`. */
gboolean ns_json_read_vocab (NsBpe *bpe, const char *json, NsJsonSpan span,
                             const char *label, GError **error);
/* Reads model.merges (["left", "right"] pairs or "left right" strings) into
 * `bpe`, after ns_bpe_finish_vocab. */
gboolean ns_json_read_merges (NsBpe *bpe, const char *json, NsJsonSpan span,
                              const char *label, GError **error);

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
