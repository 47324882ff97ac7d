/* tokenizer.c — loading tokenizer.json and the encode/decode pipeline of HF
 * `tokenizers` for byte-level BPE files (Qwen2 and GPT-2 style):
 *
 *   added tokens found in the raw text (non-normalized ones)
 *   → NFC on the text between them → normalized added tokens
 *   → Split(regex, Isolated) → ByteLevel → BPE.
 *
 * Anything in the file that would change ids and is not implemented here is
 * refused with NS_ERROR_UNSUPPORTED rather than tokenized differently. */
#include <string.h>
#include <json-glib/json-glib.h>

#include "nextstep.h"
#include "files/config.h"
#include "files/json-load.h"
#include "tokenizer.h"
#include "tokenizer-private.h"

struct NsTokenizer {
  char *label;
  NsBpe *bpe;
  gboolean nfc;
  GRegex *split;                /* NULL: the ByteLevel pre-tokenizer alone */
  GPtrArray *added;             /* NsAddedToken*, file order */
  GHashTable *added_by_content; /* content → NsAddedToken* */
  GHashTable *added_by_id;      /* GINT_TO_POINTER (id) → NsAddedToken* */
  NsAddedMatcher *raw_matcher;  /* tokens with normalized = false */
  NsAddedMatcher *norm_matcher; /* tokens with normalized = true */
  char *bos_token;
  guint n_ids;
};

/* ---- JSON access with type checks (bad input must not reach json-glib's
 * g_return_if_fail paths) ---- */

typedef struct {
  const char *label;            /* file, for messages */
  GError **error;
  const char *json;             /* the file: model.vocab and model.merges are read from it */
  NsJsonTables tables;
} Ctx;

static gboolean
fail (Ctx *cx, int code, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
fail (Ctx *cx, int code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (cx->error, NS_ERROR, code, "%s: %s", cx->label, msg);
  return FALSE;
}

/* Member `name` of `o`, NULL when absent or null. */
static JsonNode *
member (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);
  return n == NULL || JSON_NODE_HOLDS_NULL (n) ? NULL : n;
}

static gboolean
is_string (JsonNode *n)
{
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING;
}

/* A string member, or NULL (absent/null); FALSE when of another type. */
static gboolean
get_string (Ctx *cx, JsonObject *o, const char *where, const char *name, const char **out)
{
  JsonNode *n = member (o, name);
  *out = NULL;
  if (n == NULL)
    return TRUE;
  if (!is_string (n))
    return fail (cx, NS_ERROR_FORMAT, "%s.%s must be a string or null", where, name);
  *out = json_node_get_string (n);
  return TRUE;
}

static gboolean
get_bool (Ctx *cx, JsonObject *o, const char *where, const char *name, gboolean dflt,
          gboolean *out)
{
  JsonNode *n = member (o, name);
  *out = dflt;
  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return fail (cx, NS_ERROR_FORMAT, "%s.%s must be true or false", where, name);
  *out = json_node_get_boolean (n);
  return TRUE;
}

static JsonObject *
get_object (Ctx *cx, JsonObject *o, const char *where, const char *name)
{
  JsonNode *n = member (o, name);
  if (n == NULL || !JSON_NODE_HOLDS_OBJECT (n))
    return fail (cx, NS_ERROR_FORMAT, "%s.%s must be an object", where, name), NULL;
  return json_node_get_object (n);
}

static JsonArray *
get_array (Ctx *cx, JsonObject *o, const char *where, const char *name)
{
  JsonNode *n = member (o, name);
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    return fail (cx, NS_ERROR_FORMAT, "%s.%s must be an array", where, name), NULL;
  return json_node_get_array (n);
}

/* The "type" of a component object ("" when missing). */
static const char *
type_of (JsonObject *o)
{
  JsonNode *n = member (o, "type");
  return is_string (n) ? json_node_get_string (n) : "";
}

/* An option that must hold a given boolean for the result to be ours. */
static gboolean
require_bool (Ctx *cx, JsonObject *o, const char *where, const char *name, gboolean want)
{
  gboolean v;
  if (!get_bool (cx, o, where, name, want, &v))
    return FALSE;
  if (v != want)
    return fail (cx, NS_ERROR_UNSUPPORTED, "%s.%s = %s is not supported (only %s)",
                 where, name, v ? "true" : "false", want ? "true" : "false");
  return TRUE;
}

/* ---- model ---- */

/* BPE options that would need code we do not have must be off. */
static gboolean
check_bpe_options (Ctx *cx, JsonObject *model)
{
  const char *prefix, *suffix;
  JsonNode *dropout = member (model, "dropout");
  if (dropout != NULL)
    return fail (cx, NS_ERROR_UNSUPPORTED, "model.dropout must be null (BPE dropout is "
                 "random and not supported)");
  if (!get_string (cx, model, "model", "continuing_subword_prefix", &prefix)
      || !get_string (cx, model, "model", "end_of_word_suffix", &suffix))
    return FALSE;
  if ((prefix != NULL && *prefix) || (suffix != NULL && *suffix))
    return fail (cx, NS_ERROR_UNSUPPORTED, "model.continuing_subword_prefix and "
                 "model.end_of_word_suffix must be empty or null for a byte-level BPE");
  return TRUE;
}

static gboolean
load_model (NsTokenizer *tok, Ctx *cx, JsonObject *root)
{
  JsonObject *model = get_object (cx, root, "tokenizer", "model");
  if (model == NULL)
    return FALSE;
  if (strcmp (type_of (model), "BPE") != 0)
    return fail (cx, NS_ERROR_UNSUPPORTED, "model type \"%s\" is not supported (only BPE)",
                 type_of (model));
  NsBpeOptions opt = { 0 };
  if (!check_bpe_options (cx, model)
      || !get_bool (cx, model, "model", "ignore_merges", FALSE, &opt.ignore_merges)
      || !get_bool (cx, model, "model", "byte_fallback", FALSE, &opt.byte_fallback)
      || !get_bool (cx, model, "model", "fuse_unk", FALSE, &opt.fuse_unk)
      || !get_string (cx, model, "model", "unk_token", &opt.unk_token)
      || !ns_json_read_vocab (tok->bpe, cx->json, cx->tables.vocab, cx->label, cx->error)
      || !ns_bpe_finish_vocab (tok->bpe, &opt, cx->label, cx->error))
    return FALSE;
  return ns_json_read_merges (tok->bpe, cx->json, cx->tables.merges, cx->label, cx->error);
}

/* ---- normalizer, pre-tokenizer, decoder ---- */

/* null, NFC, or a Sequence of those (NFC is idempotent). */
static gboolean
load_normalizer (NsTokenizer *tok, Ctx *cx, JsonNode *node, guint depth)
{
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node) || depth > 8)
    return fail (cx, NS_ERROR_FORMAT, "normalizer must be an object or null");
  JsonObject *o = json_node_get_object (node);
  const char *type = type_of (o);
  if (strcmp (type, "NFC") == 0)
    return tok->nfc = TRUE;
  if (strcmp (type, "Sequence") != 0)
    return fail (cx, NS_ERROR_UNSUPPORTED, "normalizer \"%s\" is not supported "
                 "(only NFC, a Sequence of NFC, or null)", type);
  JsonArray *list = get_array (cx, o, "normalizer", "normalizers");
  if (list == NULL)
    return FALSE;
  for (guint i = 0; i < json_array_get_length (list); i++)
    if (!load_normalizer (tok, cx, json_array_get_element (list, i), depth + 1))
      return FALSE;
  return TRUE;
}

static gboolean
load_split (NsTokenizer *tok, Ctx *cx, JsonObject *split)
{
  const char *behavior;
  JsonObject *pattern = get_object (cx, split, "Split", "pattern");
  if (pattern == NULL || !require_bool (cx, split, "Split", "invert", FALSE)
      || !get_string (cx, split, "Split", "behavior", &behavior))
    return FALSE;
  if (g_strcmp0 (behavior, "Isolated") != 0)
    return fail (cx, NS_ERROR_UNSUPPORTED, "Split behavior \"%s\" is not supported "
                 "(only Isolated)", behavior ? behavior : "null");
  const char *regex, *literal;
  if (!get_string (cx, pattern, "Split.pattern", "Regex", &regex)
      || !get_string (cx, pattern, "Split.pattern", "String", &literal))
    return FALSE;
  if (regex == NULL && literal == NULL)
    return fail (cx, NS_ERROR_FORMAT, "Split.pattern must hold \"Regex\" or \"String\"");
  g_autofree char *escaped = literal ? g_regex_escape_string (literal, -1) : NULL;
  tok->split = ns_split_regex_new (regex ? regex : escaped, cx->error);
  return tok->split != NULL;
}

static gboolean
check_byte_level (Ctx *cx, JsonObject *o, const char *where)
{
  return require_bool (cx, o, where, "add_prefix_space", FALSE)
         && require_bool (cx, o, where, "use_regex", FALSE);
}

/* Sequence[Split(Regex, Isolated), ByteLevel(no prefix space, no regex)],
 * or that ByteLevel alone. */
static gboolean
load_pre_tokenizer (NsTokenizer *tok, Ctx *cx, JsonObject *root)
{
  static const char *const expected =
    "only Sequence[Split(Isolated), ByteLevel(add_prefix_space=false, use_regex=false)] "
    "or that ByteLevel alone";
  JsonNode *node = member (root, "pre_tokenizer");
  JsonObject *o = node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  if (o == NULL)
    return fail (cx, NS_ERROR_UNSUPPORTED, "a missing pre_tokenizer is not supported (%s)",
                 expected);
  if (strcmp (type_of (o), "ByteLevel") == 0)
    return check_byte_level (cx, o, "pre_tokenizer");
  JsonArray *list = strcmp (type_of (o), "Sequence") == 0
                    ? get_array (cx, o, "pre_tokenizer", "pretokenizers") : NULL;
  if (list == NULL || json_array_get_length (list) != 2
      || !JSON_NODE_HOLDS_OBJECT (json_array_get_element (list, 0))
      || !JSON_NODE_HOLDS_OBJECT (json_array_get_element (list, 1)))
    return fail (cx, NS_ERROR_UNSUPPORTED, "pre_tokenizer \"%s\" is not supported (%s)",
                 type_of (o), expected);
  JsonObject *split = json_array_get_object_element (list, 0);
  JsonObject *bytes = json_array_get_object_element (list, 1);
  if (strcmp (type_of (split), "Split") != 0 || strcmp (type_of (bytes), "ByteLevel") != 0)
    return fail (cx, NS_ERROR_UNSUPPORTED, "pre_tokenizer Sequence[%s, %s] is not supported "
                 "(%s)", type_of (split), type_of (bytes), expected);
  return check_byte_level (cx, bytes, "pre_tokenizer ByteLevel") && load_split (tok, cx, split);
}

/* Parts that change ids on every call when present: truncation, padding;
 * the decoder must be the ByteLevel one decode implements. The
 * post-processor only adds special tokens when asked to, which encode never
 * does (HF add_special_tokens=False), so it is not read. */
static gboolean
check_other_parts (Ctx *cx, JsonObject *root)
{
  if (member (root, "truncation") != NULL || member (root, "padding") != NULL)
    return fail (cx, NS_ERROR_UNSUPPORTED, "truncation and padding must be null");
  JsonNode *dec = member (root, "decoder");
  if (dec == NULL || !JSON_NODE_HOLDS_OBJECT (dec)
      || strcmp (type_of (json_node_get_object (dec)), "ByteLevel") != 0)
    return fail (cx, NS_ERROR_UNSUPPORTED, "only the ByteLevel decoder is supported");
  return TRUE;
}

/* ---- added tokens ---- */

static void
added_token_free (NsAddedToken *t)
{
  g_free (t->content);
  g_free (t->pattern);
  g_free (t);
}

static char *
normalize (const NsTokenizer *tok, const char *text, gsize len, gsize *out_len);

/* The id HF gives an added token: its vocabulary id, else the next free id
 * after the vocabulary and the added tokens so far (AddedVocabulary::add_tokens;
 * HF uses this, not the "id" written in the file). */
static int32_t
added_token_id (NsTokenizer *tok, const char *content, int32_t *max_added)
{
  int32_t id = ns_bpe_token_id (tok->bpe, content);
  guint vocab_len = ns_bpe_vocab_len (tok->bpe);
  if (id < 0)
    id = *max_added >= 0 && ((guint) *max_added >= vocab_len || vocab_len == 0)
         ? *max_added + 1 : (int32_t) vocab_len;
  *max_added = MAX (*max_added, id);
  return id;
}

static gboolean
load_added_token (NsTokenizer *tok, Ctx *cx, JsonNode *node, guint i, int32_t *max_added)
{
  const char *content = NULL;
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  if (o == NULL)
    return fail (cx, NS_ERROR_FORMAT, "added_tokens[%u] must be an object", i);
  if (!get_string (cx, o, "added_tokens[]", "content", &content))
    return FALSE;
  if (content == NULL || *content == '\0' || !g_utf8_validate (content, -1, NULL))
    return fail (cx, NS_ERROR_FORMAT, "added_tokens[%u] has no content or content that "
                 "is not UTF-8", i);
  if (g_hash_table_contains (tok->added_by_content, content))
    return fail (cx, NS_ERROR_FORMAT, "added token \"%s\" is listed twice", content);
  NsAddedToken *t = g_new0 (NsAddedToken, 1);
  t->content = g_strdup (content);
  g_ptr_array_add (tok->added, t);
  if (!get_bool (cx, o, "added_tokens[]", "special", FALSE, &t->special)
      || !get_bool (cx, o, "added_tokens[]", "single_word", FALSE, &t->single_word)
      || !get_bool (cx, o, "added_tokens[]", "lstrip", FALSE, &t->lstrip)
      || !get_bool (cx, o, "added_tokens[]", "rstrip", FALSE, &t->rstrip)
      || !get_bool (cx, o, "added_tokens[]", "normalized", !t->special, &t->normalized))
    return FALSE;
  t->id = added_token_id (tok, content, max_added);
  gsize unused;
  t->pattern = t->normalized ? normalize (tok, content, strlen (content), &unused)
                             : g_strdup (content);
  g_hash_table_insert (tok->added_by_content, t->content, t);
  g_hash_table_insert (tok->added_by_id, GINT_TO_POINTER (t->id), t);
  tok->n_ids = MAX (tok->n_ids, (guint) t->id + 1);
  return TRUE;
}

static gboolean
load_added_tokens (NsTokenizer *tok, Ctx *cx, JsonObject *root)
{
  JsonNode *node = member (root, "added_tokens");
  JsonArray *list = node && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  if (node != NULL && list == NULL)
    return fail (cx, NS_ERROR_FORMAT, "added_tokens must be an array");
  int32_t max_added = -1;
  guint n = list ? json_array_get_length (list) : 0;
  for (guint i = 0; i < n; i++)
    if (!load_added_token (tok, cx, json_array_get_element (list, i), i, &max_added))
      return FALSE;
  if (max_added >= NS_TOKENIZER_MAX_ID)
    return fail (cx, NS_ERROR_FORMAT, "too many tokens");
  g_autoptr (GPtrArray) raw = g_ptr_array_new (), norm = g_ptr_array_new ();
  for (guint i = 0; i < n; i++)
    {
      NsAddedToken *t = tok->added->pdata[i];
      g_ptr_array_add (t->normalized ? norm : raw, t);
    }
  tok->raw_matcher = ns_added_matcher_new ((NsAddedToken **) raw->pdata, raw->len);
  tok->norm_matcher = ns_added_matcher_new ((NsAddedToken **) norm->pdata, norm->len);
  return TRUE;
}

/* ---- construction ---- */

static gboolean
load_config (NsTokenizer *tok, const char *json, gsize size, GError **error)
{
  NsTokenizerConfig cfg = { 0 };
  /* Messages must name the file that is wrong: the config beside
   * tokenizer.json when the label is that file's path. */
  g_autofree char *base = g_path_get_basename (tok->label);
  g_autofree char *dir = g_path_get_dirname (tok->label);
  g_autofree char *label = strcmp (base, "tokenizer.json") == 0
                           ? g_build_filename (dir, "tokenizer_config.json", NULL)
                           : g_strdup_printf ("%s (tokenizer_config)", tok->label);
  if (!ns_tokenizer_config_parse (&cfg, json, size, label, error))
    return FALSE;
  tok->bos_token = g_steal_pointer (&cfg.bos_token);
  ns_tokenizer_config_clear (&cfg);
  return TRUE;
}

/* model.vocab and model.merges are read by json-tables.c; ns_json_load
 * parses the rest, with those two values cut out. */
static gboolean
load_tokenizer_json (NsTokenizer *tok, const char *json, gsize size, GError **error)
{
  Ctx cx = { tok->label, error, json, { { 0, 0 }, { 0, 0 } } };
  if (!ns_json_find_tables (json, size, tok->label, &cx.tables, error))
    return FALSE;
  gsize rest_len;
  g_autofree char *rest = ns_json_without_tables (json, size, &cx.tables, &rest_len);
  g_autoptr (JsonObject) o = ns_json_load_object (rest, rest_len, tok->label,
                                                  "(positions count model.vocab and "
                                                  "model.merges as if each were null)", 0, error);
  if (o == NULL)
    return FALSE;
  return check_other_parts (&cx, o)
         && load_normalizer (tok, &cx, member (o, "normalizer"), 0)
         && load_pre_tokenizer (tok, &cx, o)
         && load_model (tok, &cx, o)
         && load_added_tokens (tok, &cx, o);
}

NsTokenizer *
ns_tokenizer_new_from_json (const char *tokenizer_json, gsize size,
                            const char *tokenizer_config_json, gsize config_size,
                            const char *label, GError **error)
{
  g_return_val_if_fail (tokenizer_json != NULL, NULL);
  g_autoptr (NsTokenizer) tok = g_new0 (NsTokenizer, 1);
  tok->label = g_strdup (label ? label : "tokenizer.json");
  tok->bpe = ns_bpe_new ();
  tok->added = g_ptr_array_new_with_free_func ((GDestroyNotify) added_token_free);
  tok->added_by_content = g_hash_table_new (g_str_hash, g_str_equal);
  tok->added_by_id = g_hash_table_new (NULL, NULL);
  if (!load_tokenizer_json (tok, tokenizer_json, size, error))
    return NULL;
  if (tokenizer_config_json != NULL
      && !load_config (tok, tokenizer_config_json, config_size, error))
    return NULL;
  tok->n_ids = MAX (tok->n_ids, ns_bpe_n_ids (tok->bpe));
  return g_steal_pointer (&tok);
}

NsTokenizer *
ns_tokenizer_load (const char *dir, GError **error)
{
  g_autofree char *path = g_build_filename (dir, "tokenizer.json", NULL);
  g_autofree char *config_path = g_build_filename (dir, "tokenizer_config.json", NULL);
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) file = g_mapped_file_new (path, FALSE, &local);
  if (file == NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "cannot read the tokenizer %s: %s "
                   "(a model folder must hold tokenizer.json)", path, local->message);
      return NULL;
    }
  /* tokenizer_config.json is optional: without it there is no BOS. */
  g_autofree char *config = NULL;
  gsize config_size = 0;
  if (g_file_test (config_path, G_FILE_TEST_EXISTS)
      && !g_file_get_contents (config_path, &config, &config_size, &local))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "cannot read %s: %s", config_path,
                   local->message);
      return NULL;
    }
  return ns_tokenizer_new_from_json (g_mapped_file_get_contents (file),
                                     g_mapped_file_get_length (file), config, config_size,
                                     path, error);
}

void
ns_tokenizer_free (NsTokenizer *tok)
{
  if (tok == NULL)
    return;
  ns_added_matcher_free (tok->raw_matcher);
  ns_added_matcher_free (tok->norm_matcher);
  g_hash_table_unref (tok->added_by_content);
  g_hash_table_unref (tok->added_by_id);
  g_ptr_array_unref (tok->added);
  g_clear_pointer (&tok->split, g_regex_unref);
  ns_bpe_free (tok->bpe);
  g_free (tok->bos_token);
  g_free (tok->label);
  g_free (tok);
}

/* ---- encode ---- */

#define NFC_CHUNK 256

/* Whether NFC can be split right before `c` (after `prev`): c is a starter
 * whose decomposition starts with a starter (so no reordering crosses it)
 * and it does not compose with the character before it (a starter only
 * ever composes with the one right before it). */
static gboolean
nfc_boundary (gunichar prev, gunichar c)
{
  gunichar first[G_UNICHAR_MAX_DECOMPOSITION_LENGTH], composed;
  if (c < 0x80)
    return TRUE;              /* ASCII never takes part in a composition as its second half */
  if (g_unichar_combining_class (c) != 0
      || (g_unichar_fully_decompose (c, FALSE, first, G_N_ELEMENTS (first)) > 0
          && g_unichar_combining_class (first[0]) != 0))
    return FALSE;
  return !g_unichar_compose (prev, c, &composed);
}

/* End of the next chunk of text[pos, len) to normalize on its own: about
 * NFC_CHUNK bytes, cut at an NFC boundary or a NUL (g_utf8_normalize stops
 * at NUL, and its composition step is quadratic in the input length). */
static gsize
nfc_chunk_end (const char *text, gsize len, gsize pos)
{
  gunichar prev = 0;
  for (gsize i = pos; i < len; i = g_utf8_next_char (text + i) - text)
    {
      gunichar c = g_utf8_get_char (text + i);
      if (c == 0)
        return i;
      if (i - pos >= NFC_CHUNK && nfc_boundary (prev, c))
        return i;
      prev = c;
    }
  return len;
}

/* NFC of text[0, len) (or a copy without a normalizer), chunk by chunk. */
static char *
normalize (const NsTokenizer *tok, const char *text, gsize len, gsize *out_len)
{
  if (!tok->nfc)
    {
      *out_len = len;
      return g_strndup (text, len);
    }
  GString *out = g_string_sized_new (len + 16);
  for (gsize pos = 0; pos < len;)
    {
      if (text[pos] == '\0')
        {
          g_string_append_c (out, '\0');
          pos++;
          continue;
        }
      gsize end = nfc_chunk_end (text, len, pos);
      g_autofree char *nfc = g_utf8_normalize (text + pos, (gssize) (end - pos),
                                               G_NORMALIZE_NFC);
      g_string_append (out, nfc);
      pos = end;
    }
  *out_len = out->len;
  return g_string_free (out, FALSE);
}

typedef struct {
  NsTokenizer *tok;
  GArray *ids;
} EncodeCtx;

static void
encode_piece (const char *piece, gsize len, gpointer user_data)
{
  EncodeCtx *ec = user_data;
  ns_bpe_encode_word (ec->tok->bpe, piece, len, ec->ids);
}

/* Pre-tokenizer + model on normalized text without added tokens. */
static gboolean
encode_plain (NsTokenizer *tok, const char *text, gsize len, GArray *ids, GError **error)
{
  EncodeCtx ec = { tok, ids };
  if (tok->split == NULL)
    {
      encode_piece (text, len, &ec);
      return TRUE;
    }
  return ns_split_isolated (tok->split, text, len, encode_piece, &ec, error);
}

/* Normalizes a text segment, then finds the normalized added tokens in it. */
static gboolean
encode_segment (NsTokenizer *tok, const char *text, gsize len, GArray *ids, GError **error)
{
  gsize norm_len;
  g_autofree char *norm = normalize (tok, text, len, &norm_len);
  g_autoptr (GArray) segs = g_array_new (FALSE, FALSE, sizeof (NsSegment));
  ns_added_matcher_split (tok->norm_matcher, norm, norm_len, segs);
  for (guint i = 0; i < segs->len; i++)
    {
      NsSegment *s = &g_array_index (segs, NsSegment, i);
      if (s->id >= 0)
        g_array_append_val (ids, s->id);
      else if (!encode_plain (tok, norm + s->start, s->end - s->start, ids, error))
        return FALSE;
    }
  return TRUE;
}

/* UTF-8 check that allows NUL (valid in Rust strings, not in g_utf8_validate). */
static gboolean
check_utf8 (const char *text, gsize len, GError **error)
{
  const char *end;
  for (const char *p = text; !g_utf8_validate_len (p, len - (p - text), &end); p = end + 1)
    if (end >= text + len || *end != '\0')
      {
        g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                     "the text is not valid UTF-8 (bad byte 0x%02x at offset %"
                     G_GSIZE_FORMAT "); convert it to UTF-8 first",
                     (guint8) *end, (gsize) (end - text));
        return FALSE;
      }
  return TRUE;
}

gboolean
ns_tokenizer_encode (NsTokenizer *tok, const char *text, gssize len, GArray *ids,
                     GError **error)
{
  g_return_val_if_fail (tok != NULL && ids != NULL, FALSE);
  gsize n = len < 0 ? strlen (text) : (gsize) len;
  if (!check_utf8 (text, n, error))
    return FALSE;
  g_autoptr (GArray) segs = g_array_new (FALSE, FALSE, sizeof (NsSegment));
  ns_added_matcher_split (tok->raw_matcher, text, n, segs);
  guint start = ids->len;
  for (guint i = 0; i < segs->len; i++)
    {
      NsSegment *s = &g_array_index (segs, NsSegment, i);
      if (s->id >= 0)
        g_array_append_val (ids, s->id);
      else if (!encode_segment (tok, text + s->start, s->end - s->start, ids, error))
        {
          g_array_set_size (ids, start);
          return FALSE;
        }
    }
  return TRUE;
}

/* ---- decode ---- */

/* Length of the valid UTF-8 character at p[0, n), 0 when invalid; `*bad` is
 * then the length of the maximal invalid prefix (1–3 bytes), the rule of
 * Rust's String::from_utf8_lossy. */
static gsize
utf8_char_len (const guint8 *p, gsize n, gsize *bad)
{
  guint8 b = p[0];
  gsize want = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3
               : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
  /* Allowed range of the second byte (the others are 80..BF). */
  guint8 lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
  guint8 hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
  gsize i = 1;
  for (; i < want && i < n; i++)
    {
      guint8 c = p[i];
      if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF))
        break;
    }
  if (want != 0 && i == want)
    return want;
  *bad = i;
  return 0;
}

/* Appends bytes as UTF-8, each maximal invalid subsequence → U+FFFD. */
static void
append_lossy (GString *out, const GByteArray *bytes)
{
  const guint8 *p = bytes->data;
  gsize n = bytes->len;
  for (gsize i = 0; i < n;)
    {
      gsize bad = 0, ok = utf8_char_len (p + i, n - i, &bad);
      if (ok)
        g_string_append_len (out, (const char *) p + i, ok), i += ok;
      else
        g_string_append (out, "\xEF\xBF\xBD"), i += bad;
    }
}

char *
ns_tokenizer_decode_len (NsTokenizer *tok, const int32_t *ids, gsize n, gsize *len,
                         GError **error)
{
  g_return_val_if_fail (tok != NULL && (ids != NULL || n == 0), NULL);
  GString *out = g_string_new (NULL);
  g_autoptr (GByteArray) pending = g_byte_array_new ();
  for (gsize i = 0; i < n; i++)
    {
      const NsAddedToken *t = g_hash_table_lookup (tok->added_by_id, GINT_TO_POINTER (ids[i]));
      if (t == NULL && ns_bpe_token_bytes (tok->bpe, ids[i], pending))
        continue;
      if (t == NULL)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                       "token id %d (position %" G_GSIZE_FORMAT ") is not in the "
                       "tokenizer %s", ids[i], i, tok->label);
          return g_string_free (out, TRUE), NULL;
        }
      /* Added tokens are copied as they are; the bytes before them are
       * decoded on their own. */
      append_lossy (out, pending);
      g_byte_array_set_size (pending, 0);
      g_string_append (out, t->content);
    }
  append_lossy (out, pending);
  if (len != NULL)
    *len = out->len;
  return g_string_free (out, FALSE);
}

char *
ns_tokenizer_decode (NsTokenizer *tok, const int32_t *ids, gsize n, GError **error)
{
  return ns_tokenizer_decode_len (tok, ids, n, NULL, error);
}

int32_t
ns_tokenizer_token_id (const NsTokenizer *tok, const char *content)
{
  g_return_val_if_fail (tok != NULL && content != NULL, -1);
  const NsAddedToken *t = g_hash_table_lookup (tok->added_by_content, content);
  return t != NULL ? t->id : ns_bpe_token_id (tok->bpe, content);
}

const char *
ns_tokenizer_bos_token (const NsTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return tok->bos_token;
}

guint
ns_tokenizer_vocab_size (const NsTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, 0);
  return tok->n_ids;
}
