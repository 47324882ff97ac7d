/* tiny-tokenizer.c — see tiny-tokenizer.h. The merges are learnt the way BPE
 * training does it (most frequent adjacent pair first, ties broken by the
 * pair's text so the result never depends on hash order), so common English
 * words of the built-in text become single tokens. */
#include <stdlib.h>
#include <string.h>
#include <json-glib/json-glib.h>

#include "nextstep.h"
#include "tiny-tokenizer.h"

#define N_MERGES 400

/* Qwen2's pre-tokenizer split pattern, as in its tokenizer.json. */
static const char qwen2_split[] =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
  "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char training_text[] =
  "A photo of a cat sitting on a red chair in the living room. A dog running on the beach "
  "at sunset, with waves and a bright orange sky. The quick brown fox jumps over the lazy "
  "dog. A beautiful landscape with mountains, a lake and green trees under a blue sky. "
  "A portrait of a young woman with long hair, soft light, high quality, detailed. "
  "An old man reading a book in a small library. A city street at night with lights, "
  "cars and people walking in the rain. A bowl of fresh fruit on a wooden table. "
  "Make the sky blue. Change the color of the car to red. Remove the person from the "
  "picture. Add a hat to the cat. Turn the photo into a painting in the style of an old "
  "master. masterpiece, film grained, best quality. lowres, bad anatomy, bad hands, text, "
  "error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, "
  "normal quality, jpeg artifacts, signature, watermark, username, blurry. "
  "The garden is full of flowers and the birds are singing in the trees. "
  "There is a house on the hill and a river in the valley below it. "
  "It's a sunny day; we're going to the park, and they'll meet us there at 10:30.\n"
  "The children are playing with a ball, the parents are sitting on the grass.\n";

typedef struct {
  const char *content;
  gboolean special;
} AddedToken;

/* Qwen2.5's added tokens, then NextStep's (docs/model.md §4), in id order. */
static const AddedToken added_tokens[] = {
  { "<|endoftext|>", TRUE }, { "<|im_start|>", TRUE }, { "<|im_end|>", TRUE },
  { "<|object_ref_start|>", TRUE }, { "<|object_ref_end|>", TRUE },
  { "<|box_start|>", TRUE }, { "<|box_end|>", TRUE }, { "<|quad_start|>", TRUE },
  { "<|quad_end|>", TRUE }, { "<|vision_start|>", TRUE }, { "<|vision_end|>", TRUE },
  { "<|vision_pad|>", TRUE }, { "<|image_pad|>", TRUE }, { "<|video_pad|>", TRUE },
  { "<tool_call>", FALSE }, { "</tool_call>", FALSE }, { "<|fim_prefix|>", FALSE },
  { "<|fim_middle|>", FALSE }, { "<|fim_suffix|>", FALSE }, { "<|fim_pad|>", FALSE },
  { "<|repo_name|>", FALSE }, { "<|file_sep|>", FALSE },
  { "[PAD]", TRUE }, { "<|image_area|>", TRUE }, { "<|begin_of_image|>", TRUE },
  { "<|end_of_image|>", TRUE }, { "<|image_placeholder|>", TRUE },
  { "<|begin_of_prompt_refinement|>", TRUE }, { "<|end_of_prompt_refinement|>", TRUE },
  { "<|begin_of_thinking|>", TRUE }, { "<|end_of_thinking|>", TRUE },
};

/* The first of NextStep's tokens, which special_tokens_map lists apart. */
#define FIRST_ADDITIONAL 23

typedef struct {
  char byte_sym[256][8];   /* byte → its symbol text */
  GPtrArray *vocab;        /* id → symbol text (owned) */
  GHashTable *ids;         /* symbol text → id + 1 (keys borrowed from vocab) */
  GPtrArray *merges;       /* "left right" strings (owned) */
} Bpe;

static gboolean
printable (int b)
{
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

/* GPT-2's byte → character map: printable Latin-1 bytes stand for
 * themselves, the others take code points 256… in byte order. Symbol ids
 * follow the printable bytes first, then the others, as in Qwen2's vocab. */
static void
add_byte_symbols (Bpe *bpe)
{
  int extra = 0;
  for (int b = 0; b < 256; b++)
    {
      memset (bpe->byte_sym[b], 0, sizeof bpe->byte_sym[b]);
      g_unichar_to_utf8 (printable (b) ? (gunichar) b : (gunichar) (256 + extra++),
                         bpe->byte_sym[b]);
    }
  for (int pass = 0; pass < 2; pass++)
    for (int b = 0; b < 256; b++)
      if (printable (b) == (pass == 0))
        {
          g_ptr_array_add (bpe->vocab, g_strdup (bpe->byte_sym[b]));
          g_hash_table_insert (bpe->ids, g_ptr_array_index (bpe->vocab, bpe->vocab->len - 1),
                               GINT_TO_POINTER (bpe->vocab->len));
        }
}

/* The byte-level symbols of one pre-token. */
static GPtrArray *
word_symbols (const Bpe *bpe, const char *text)
{
  GPtrArray *word = g_ptr_array_new_with_free_func (g_free);
  for (const guchar *p = (const guchar *) text; *p != '\0'; p++)
    g_ptr_array_add (word, g_strdup (bpe->byte_sym[*p]));
  return word;
}

typedef struct {
  GPtrArray *symbols;      /* current symbols of one distinct pre-token */
  int count;               /* its uses in the training text */
} Word;

static void
word_free (gpointer p)
{
  Word *w = p;
  g_ptr_array_unref (w->symbols);
  g_free (w);
}

/* Distinct pre-tokens of the training text: text → Word. */
static GHashTable *
training_words (const Bpe *bpe)
{
  g_autoptr (GRegex) split = g_regex_new (qwen2_split, G_REGEX_OPTIMIZE, 0, NULL);
  GHashTable *words = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, word_free);
  g_assert (split != NULL);
  GMatchInfo *match = NULL;
  g_regex_match (split, training_text, 0, &match);
  for (; g_match_info_matches (match); g_match_info_next (match, NULL))
    {
      char *piece = g_match_info_fetch (match, 0);
      Word *w = g_hash_table_lookup (words, piece);
      if (w == NULL)
        {
          w = g_new0 (Word, 1);
          w->symbols = word_symbols (bpe, piece);
          g_hash_table_insert (words, g_strdup (piece), w);
        }
      w->count++;
      g_free (piece);
    }
  g_match_info_free (match);
  return words;
}

/* The most frequent adjacent pair ("left right"); NULL when every word is a
 * single symbol. Pairs used once still merge: the text is short, and whole
 * words as tokens are what make-tiny's tokenizer should show. */
static char *
best_pair (GHashTable *words)
{
  g_autoptr (GHashTable) counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, words);
  while (g_hash_table_iter_next (&it, NULL, &value))
    {
      const Word *w = value;
      for (guint i = 0; i + 1 < w->symbols->len; i++)
        {
          char *pair = g_strconcat (w->symbols->pdata[i], " ", w->symbols->pdata[i + 1], NULL);
          int n = GPOINTER_TO_INT (g_hash_table_lookup (counts, pair)) + w->count;
          g_hash_table_replace (counts, pair, GINT_TO_POINTER (n));
        }
    }
  const char *best = NULL;
  int best_n = 0;
  g_hash_table_iter_init (&it, counts);
  while (g_hash_table_iter_next (&it, &key, &value))
    if (GPOINTER_TO_INT (value) > best_n
        || (GPOINTER_TO_INT (value) == best_n && best != NULL && strcmp (key, best) < 0))
      {
        best = key;
        best_n = GPOINTER_TO_INT (value);
      }
  return g_strdup (best);
}

static void
apply_merge (GHashTable *words, const char *left, const char *right)
{
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, words);
  while (g_hash_table_iter_next (&it, NULL, &value))
    {
      GPtrArray *s = ((Word *) value)->symbols;
      for (guint i = 0; i + 1 < s->len; i++)
        if (strcmp (s->pdata[i], left) == 0 && strcmp (s->pdata[i + 1], right) == 0)
          {
            char *joined = g_strconcat (left, right, NULL);
            g_free (s->pdata[i]);
            s->pdata[i] = joined;
            g_ptr_array_remove_index (s, i + 1);
          }
    }
}

static void
learn_merges (Bpe *bpe)
{
  g_autoptr (GHashTable) words = training_words (bpe);
  for (int m = 0; m < N_MERGES; m++)
    {
      char *pair = best_pair (words);
      if (pair == NULL)
        break;
      char *space = strchr (pair, ' ');
      *space = '\0';
      apply_merge (words, pair, space + 1);
      char *joined = g_strconcat (pair, space + 1, NULL);
      *space = ' ';
      g_ptr_array_add (bpe->merges, pair);
      if (g_hash_table_contains (bpe->ids, joined))
        {
          g_free (joined);
          continue;
        }
      g_ptr_array_add (bpe->vocab, joined);
      g_hash_table_insert (bpe->ids, joined, GINT_TO_POINTER (bpe->vocab->len));
    }
}

/* ---- files ------------------------------------------------------------------ */

gboolean
ns_tiny_save_json (const char *dir, const char *name, JsonBuilder *b, GError **error)
{
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = json_to_string (root, TRUE);
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) local = NULL;
  if (!g_file_set_contents (path, text, -1, &local))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot write %s: %s", path, local->message);
      return FALSE;
    }
  return TRUE;
}

static void
member_bool (JsonBuilder *b, const char *key, gboolean v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_boolean_value (b, v);
}

static void
member_string (JsonBuilder *b, const char *key, const char *v)
{
  json_builder_set_member_name (b, key);
  if (v != NULL)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

/* The AddedToken flags save_pretrained writes ("special" only where asked). */
static void
token_flags (JsonBuilder *b, const AddedToken *t, gboolean with_special)
{
  member_string (b, "content", t->content);
  member_bool (b, "lstrip", FALSE);
  member_bool (b, "normalized", FALSE);
  member_bool (b, "rstrip", FALSE);
  member_bool (b, "single_word", FALSE);
  if (with_special)
    member_bool (b, "special", t->special);
}

static void
byte_level (JsonBuilder *b)
{
  json_builder_begin_object (b);
  member_string (b, "type", "ByteLevel");
  member_bool (b, "add_prefix_space", FALSE);
  member_bool (b, "trim_offsets", FALSE);
  member_bool (b, "use_regex", FALSE);
  json_builder_end_object (b);
}

static void
pre_tokenizer (JsonBuilder *b)
{
  json_builder_begin_object (b);
  member_string (b, "type", "Sequence");
  json_builder_set_member_name (b, "pretokenizers");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  member_string (b, "type", "Split");
  json_builder_set_member_name (b, "pattern");
  json_builder_begin_object (b);
  member_string (b, "Regex", qwen2_split);
  json_builder_end_object (b);
  member_string (b, "behavior", "Isolated");
  member_bool (b, "invert", FALSE);
  json_builder_end_object (b);
  byte_level (b);
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static void
bpe_model (JsonBuilder *b, const Bpe *bpe)
{
  json_builder_begin_object (b);
  member_string (b, "type", "BPE");
  member_string (b, "dropout", NULL);
  member_string (b, "unk_token", NULL);
  member_string (b, "continuing_subword_prefix", "");
  member_string (b, "end_of_word_suffix", "");
  member_bool (b, "fuse_unk", FALSE);
  member_bool (b, "byte_fallback", FALSE);
  member_bool (b, "ignore_merges", FALSE);
  json_builder_set_member_name (b, "vocab");
  json_builder_begin_object (b);
  for (guint i = 0; i < bpe->vocab->len; i++)
    {
      json_builder_set_member_name (b, bpe->vocab->pdata[i]);
      json_builder_add_int_value (b, i);
    }
  json_builder_end_object (b);
  json_builder_set_member_name (b, "merges");
  json_builder_begin_array (b);
  for (guint i = 0; i < bpe->merges->len; i++)
    {
      g_auto (GStrv) parts = g_strsplit (bpe->merges->pdata[i], " ", 2);
      json_builder_begin_array (b);
      json_builder_add_string_value (b, parts[0]);
      json_builder_add_string_value (b, parts[1]);
      json_builder_end_array (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static gboolean
write_tokenizer_json (const char *dir, const Bpe *bpe, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  member_string (b, "version", "1.0");
  member_string (b, "truncation", NULL);
  member_string (b, "padding", NULL);
  json_builder_set_member_name (b, "added_tokens");
  json_builder_begin_array (b);
  for (gsize i = 0; i < G_N_ELEMENTS (added_tokens); i++)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "id");
      json_builder_add_int_value (b, bpe->vocab->len + i);
      member_string (b, "content", added_tokens[i].content);
      member_bool (b, "single_word", FALSE);
      member_bool (b, "lstrip", FALSE);
      member_bool (b, "rstrip", FALSE);
      member_bool (b, "normalized", FALSE);
      member_bool (b, "special", added_tokens[i].special);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "normalizer");
  json_builder_begin_object (b);
  member_string (b, "type", "NFC");
  json_builder_end_object (b);
  json_builder_set_member_name (b, "pre_tokenizer");
  pre_tokenizer (b);
  json_builder_set_member_name (b, "post_processor");
  byte_level (b);
  json_builder_set_member_name (b, "decoder");
  byte_level (b);
  json_builder_set_member_name (b, "model");
  bpe_model (b, bpe);
  json_builder_end_object (b);
  return ns_tiny_save_json (dir, "tokenizer.json", b, error);
}

static gboolean
write_tokenizer_config (const char *dir, const Bpe *bpe, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  member_bool (b, "add_bos_token", FALSE);
  member_bool (b, "add_prefix_space", FALSE);
  json_builder_set_member_name (b, "added_tokens_decoder");
  json_builder_begin_object (b);
  for (gsize i = 0; i < G_N_ELEMENTS (added_tokens); i++)
    {
      g_autofree char *id = g_strdup_printf ("%" G_GSIZE_FORMAT, bpe->vocab->len + i);
      json_builder_set_member_name (b, id);
      json_builder_begin_object (b);
      token_flags (b, &added_tokens[i], TRUE);
      json_builder_end_object (b);
    }
  json_builder_end_object (b);
  json_builder_set_member_name (b, "additional_special_tokens");
  json_builder_begin_array (b);
  for (gsize i = FIRST_ADDITIONAL; i < G_N_ELEMENTS (added_tokens); i++)
    json_builder_add_string_value (b, added_tokens[i].content);
  json_builder_end_array (b);
  member_string (b, "bos_token", NULL);
  member_bool (b, "clean_up_tokenization_spaces", FALSE);
  member_string (b, "eos_token", "<|endoftext|>");
  member_string (b, "errors", "replace");
  json_builder_set_member_name (b, "model_max_length");
  json_builder_add_int_value (b, 131072);
  member_string (b, "pad_token", "[PAD]");
  member_bool (b, "split_special_tokens", FALSE);
  member_string (b, "tokenizer_class", "Qwen2Tokenizer");
  member_string (b, "unk_token", NULL);
  json_builder_end_object (b);
  return ns_tiny_save_json (dir, "tokenizer_config.json", b, error);
}

static gboolean
write_special_tokens_map (const char *dir, GError **error)
{
  const AddedToken eos = { "<|endoftext|>", TRUE }, pad = { "[PAD]", TRUE };
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "additional_special_tokens");
  json_builder_begin_array (b);
  for (gsize i = FIRST_ADDITIONAL; i < G_N_ELEMENTS (added_tokens); i++)
    {
      json_builder_begin_object (b);
      token_flags (b, &added_tokens[i], FALSE);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "eos_token");
  json_builder_begin_object (b);
  token_flags (b, &eos, FALSE);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "pad_token");
  json_builder_begin_object (b);
  token_flags (b, &pad, FALSE);
  json_builder_end_object (b);
  json_builder_end_object (b);
  return ns_tiny_save_json (dir, "special_tokens_map.json", b, error);
}

static int
compare_content (const void *a, const void *b)
{
  return strcmp (added_tokens[*(const gsize *) a].content,
                 added_tokens[*(const gsize *) b].content);
}

/* added_tokens.json (sorted by content, as save_pretrained writes it) and
 * vocab.json. */
static gboolean
write_id_maps (const char *dir, const Bpe *bpe, GError **error)
{
  gsize order[G_N_ELEMENTS (added_tokens)];
  for (gsize i = 0; i < G_N_ELEMENTS (order); i++)
    order[i] = i;
  qsort (order, G_N_ELEMENTS (order), sizeof order[0], compare_content);
  g_autoptr (JsonBuilder) added = json_builder_new ();
  json_builder_begin_object (added);
  for (gsize i = 0; i < G_N_ELEMENTS (order); i++)
    {
      json_builder_set_member_name (added, added_tokens[order[i]].content);
      json_builder_add_int_value (added, bpe->vocab->len + order[i]);
    }
  json_builder_end_object (added);
  g_autoptr (JsonBuilder) vocab = json_builder_new ();
  json_builder_begin_object (vocab);
  for (guint i = 0; i < bpe->vocab->len; i++)
    {
      json_builder_set_member_name (vocab, bpe->vocab->pdata[i]);
      json_builder_add_int_value (vocab, i);
    }
  json_builder_end_object (vocab);
  return ns_tiny_save_json (dir, "added_tokens.json", added, error)
         && ns_tiny_save_json (dir, "vocab.json", vocab, error);
}

static gboolean
write_merges (const char *dir, const Bpe *bpe, GError **error)
{
  g_autoptr (GString) text = g_string_new ("#version: 0.2\n");
  for (guint i = 0; i < bpe->merges->len; i++)
    g_string_append_printf (text, "%s\n", (char *) bpe->merges->pdata[i]);
  g_autofree char *path = g_build_filename (dir, "merges.txt", NULL);
  g_autoptr (GError) local = NULL;
  if (!g_file_set_contents (path, text->str, (gssize) text->len, &local))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot write %s: %s", path, local->message);
      return FALSE;
    }
  return TRUE;
}

gboolean
ns_tiny_tokenizer_write (const char *dir, GError **error)
{
  Bpe bpe;
  bpe.vocab = g_ptr_array_new_with_free_func (g_free);
  bpe.ids = g_hash_table_new (g_str_hash, g_str_equal);
  bpe.merges = g_ptr_array_new_with_free_func (g_free);
  add_byte_symbols (&bpe);
  learn_merges (&bpe);
  gboolean ok = write_tokenizer_json (dir, &bpe, error)
                && write_tokenizer_config (dir, &bpe, error)
                && write_special_tokens_map (dir, error)
                && write_id_maps (dir, &bpe, error)
                && write_merges (dir, &bpe, error);
  g_hash_table_unref (bpe.ids);
  g_ptr_array_unref (bpe.vocab);
  g_ptr_array_unref (bpe.merges);
  return ok;
}
