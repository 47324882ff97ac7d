/* bpe.c — the byte-level BPE model of HF `tokenizers` (models::bpe):
 * vocabulary, merge ranks, the heap-driven merge loop of Word::merge_all and
 * a bounded cache of encoded words. Pre-tokens arrive as raw bytes; each
 * byte is one symbol of the GPT-2 byte alphabet, so the per-byte start ids
 * are looked up once at load time. */
#include <string.h>

#include "nextstep.h"
#include "tokenizer-private.h"

#define CACHE_MAX_WORD 256      /* HF caches words shorter than this */
#define CACHE_MAX_ENTRIES 10000 /* HF's default cache capacity */
#define EMPTY_KEY G_MAXUINT64
#define NO_TOKEN G_MAXUINT32    /* hole in id_to_token */

typedef struct {
  guint64 key;                  /* left id << 32 | right id */
  int32_t rank, new_id;
} MergeSlot;

/* Vocabulary entry, in an open-addressing table keyed by the text. */
typedef struct {
  guint32 hash, len;
  guint32 offset;               /* of the NUL-terminated text in the arena */
  int32_t id;                   /* -1: empty slot */
} VocabSlot;

struct NsBpe {
  char *arena;                  /* all vocabulary texts: one allocation, not 150k */
  gsize arena_len, arena_cap;
  VocabSlot *vocab;             /* capacity a power of two, at most 2/3 full */
  gsize vocab_cap, n_vocab;
  guint32 *id_to_token;         /* [n_ids] arena offsets, NO_TOKEN for holes */
  guint n_ids;
  MergeSlot *merges;            /* open addressing, capacity a power of two */
  gsize merge_cap, n_merges;
  NsBpeOptions options;
  int32_t unk_id;               /* -1: none */
  int32_t byte_id[256];         /* id of the one-char token of byte b, -1 */
  int32_t fallback[256][2];     /* byte_fallback ids of that char's UTF-8 bytes */
  gboolean has_fallback[256];
  char byte_char[256][3];       /* UTF-8 of the alphabet char of byte b */
  guint8 byte_char_len[256];
  int16_t char_byte[324];       /* alphabet code point → byte, -1 */
  GMutex cache_lock;
  GHashTable *cache;            /* CacheKey → int32 [1 + n] = {n, ids…} */
};

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * others take code points 256, 257, … in byte order. */
static void
build_byte_alphabet (NsBpe *bpe)
{
  gunichar next = 256;
  memset (bpe->char_byte, 0xff, sizeof bpe->char_byte);
  for (int b = 0; b < 256; b++)
    {
      gboolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      gunichar c = printable ? (gunichar) b : next++;
      bpe->byte_char_len[b] = g_unichar_to_utf8 (c, bpe->byte_char[b]);
      bpe->char_byte[c] = b;
    }
}

static VocabSlot *
vocab_table_new (gsize cap)
{
  VocabSlot *t = g_new (VocabSlot, cap);
  for (gsize i = 0; i < cap; i++)
    t[i].id = -1;
  return t;
}

NsBpe *
ns_bpe_new (void)
{
  NsBpe *bpe = g_new0 (NsBpe, 1);
  bpe->vocab_cap = 1024;
  bpe->vocab = vocab_table_new (bpe->vocab_cap);
  bpe->unk_id = -1;
  g_mutex_init (&bpe->cache_lock);
  build_byte_alphabet (bpe);
  return bpe;
}

void
ns_bpe_free (NsBpe *bpe)
{
  if (bpe == NULL)
    return;
  g_clear_pointer (&bpe->cache, g_hash_table_unref);
  g_mutex_clear (&bpe->cache_lock);
  g_free (bpe->vocab);
  g_free (bpe->arena);
  g_free (bpe->id_to_token);
  g_free (bpe->merges);
  g_free (bpe);
}

/* ---- vocabulary table ---- */

/* FNV-1a, folded to 32 bits: tokens are short, so a byte loop is cheap. */
static inline guint32
text_hash (const char *text, gsize len)
{
  guint64 h = G_GUINT64_CONSTANT (0xcbf29ce484222325);
  for (gsize i = 0; i < len; i++)
    h = (h ^ (guint8) text[i]) * G_GUINT64_CONSTANT (0x100000001b3);
  return (guint32) (h ^ (h >> 32));
}

/* The slot holding `text`, or the empty slot where it would go. */
static VocabSlot *
vocab_slot (const NsBpe *bpe, const char *text, gsize len, guint32 hash)
{
  gsize mask = bpe->vocab_cap - 1;
  for (gsize i = hash & mask;; i = (i + 1) & mask)
    {
      VocabSlot *v = &bpe->vocab[i];
      if (v->id < 0 || (v->hash == hash && v->len == len
                        && memcmp (bpe->arena + v->offset, text, len) == 0))
        return v;
    }
}

static void
vocab_grow (NsBpe *bpe)
{
  VocabSlot *old = bpe->vocab;
  gsize old_cap = bpe->vocab_cap;
  bpe->vocab_cap *= 2;
  bpe->vocab = vocab_table_new (bpe->vocab_cap);
  for (gsize i = 0; i < old_cap; i++)
    if (old[i].id >= 0)
      {
        gsize mask = bpe->vocab_cap - 1, k = old[i].hash & mask;
        while (bpe->vocab[k].id >= 0)
          k = (k + 1) & mask;
        bpe->vocab[k] = old[i];
      }
  g_free (old);
}

static int32_t
vocab_lookup (const NsBpe *bpe, const char *text, gsize len)
{
  return vocab_slot (bpe, text, len, text_hash (text, len))->id;
}

void
ns_bpe_reserve_text (NsBpe *bpe, gsize bytes)
{
  if (bpe->arena_len + bytes > bpe->arena_cap)
    {
      bpe->arena_cap = MAX (bpe->arena_len + bytes, bpe->arena_cap * 2);
      bpe->arena = g_realloc (bpe->arena, bpe->arena_cap);
    }
}

gboolean
ns_bpe_add_token (NsBpe *bpe, const char *text, gsize len, gint64 id, const char *label,
                  GError **error)
{
  if (id < 0 || id >= NS_TOKENIZER_MAX_ID)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: vocabulary token \"%.*s\" has id %" G_GINT64_FORMAT
                   ", outside 0..%d", label, (int) len, text, id, NS_TOKENIZER_MAX_ID - 1);
      return FALSE;
    }
  /* Arena offsets are 32-bit. */
  if (bpe->arena_len + len + 1 > G_MAXUINT32)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: the vocabulary texts add up to more than 4 GiB", label);
      return FALSE;
    }
  guint32 hash = text_hash (text, len);
  VocabSlot *v = vocab_slot (bpe, text, len, hash);
  if (v->id >= 0)
    {
      v->id = (int32_t) id;     /* a repeated key: the last one wins, as in HF's HashMap */
      return TRUE;
    }
  ns_bpe_reserve_text (bpe, len + 1);
  memcpy (bpe->arena + bpe->arena_len, text, len);
  bpe->arena[bpe->arena_len + len] = '\0';
  *v = (VocabSlot) { hash, (guint32) len, (guint32) bpe->arena_len, (int32_t) id };
  bpe->arena_len += len + 1;
  if (++bpe->n_vocab * 3 > bpe->vocab_cap * 2)
    vocab_grow (bpe);
  return TRUE;
}

int32_t
ns_bpe_token_id (const NsBpe *bpe, const char *text)
{
  return vocab_lookup (bpe, text, strlen (text));
}

/* id → text. Runs after the last add_token, so n_ids comes from the final
 * ids (a repeated key keeps only its last one). */
static gboolean
build_id_table (NsBpe *bpe, const char *label, GError **error)
{
  bpe->n_ids = 0;
  for (gsize i = 0; i < bpe->vocab_cap; i++)
    bpe->n_ids = MAX (bpe->n_ids, (guint) (bpe->vocab[i].id + 1));
  bpe->id_to_token = g_new (guint32, MAX (bpe->n_ids, 1));
  memset (bpe->id_to_token, 0xff, sizeof (guint32) * MAX (bpe->n_ids, 1));
  for (gsize i = 0; i < bpe->vocab_cap; i++)
    {
      const VocabSlot *v = &bpe->vocab[i];
      if (v->id < 0)
        continue;
      if (bpe->id_to_token[v->id] != NO_TOKEN)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                       "%s: vocabulary tokens \"%s\" and \"%s\" share id %d; "
                       "each id must name one token", label,
                       bpe->arena + bpe->id_to_token[v->id], bpe->arena + v->offset, v->id);
          return FALSE;
        }
      bpe->id_to_token[v->id] = v->offset;
    }
  return TRUE;
}

/* Start symbols of each byte: its alphabet char, else (byte_fallback) the
 * "<0xXX>" tokens of that char's UTF-8 bytes, as HF's merge_word does. */
static void
build_byte_ids (NsBpe *bpe)
{
  for (int b = 0; b < 256; b++)
    {
      bpe->byte_id[b] = vocab_lookup (bpe, bpe->byte_char[b], bpe->byte_char_len[b]);
      bpe->has_fallback[b] = bpe->options.byte_fallback;
      for (int k = 0; k < bpe->byte_char_len[b]; k++)
        {
          char name[8];
          g_snprintf (name, sizeof name, "<0x%02X>", (guint8) bpe->byte_char[b][k]);
          bpe->fallback[b][k] = ns_bpe_token_id (bpe, name);
          bpe->has_fallback[b] &= bpe->fallback[b][k] >= 0;
        }
    }
}

gboolean
ns_bpe_finish_vocab (NsBpe *bpe, const NsBpeOptions *options, const char *label, GError **error)
{
  bpe->options = *options;
  bpe->options.unk_token = NULL;  /* the caller's string; unk_id is kept instead */
  if (options->unk_token != NULL)
    {
      bpe->unk_id = ns_bpe_token_id (bpe, options->unk_token);
      if (bpe->unk_id < 0)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                       "%s: model.unk_token \"%s\" is not in model.vocab",
                       label, options->unk_token);
          return FALSE;
        }
    }
  if (!build_id_table (bpe, label, error))
    return FALSE;
  build_byte_ids (bpe);
  return TRUE;
}

guint
ns_bpe_vocab_len (const NsBpe *bpe)
{
  return (guint) bpe->n_vocab;
}

guint
ns_bpe_n_ids (const NsBpe *bpe)
{
  return bpe->n_ids;
}

/* ---- merge table ---- */

static inline gsize
merge_hash (guint64 key, gsize mask)
{
  key *= G_GUINT64_CONSTANT (0x9E3779B97F4A7C15);
  return (gsize) (key >> 29) & mask;
}

static MergeSlot *
merge_slot (const NsBpe *bpe, guint64 key)
{
  gsize mask = bpe->merge_cap - 1;
  for (gsize i = merge_hash (key, mask);; i = (i + 1) & mask)
    if (bpe->merges[i].key == key || bpe->merges[i].key == EMPTY_KEY)
      return &bpe->merges[i];
}

/* Rehashes into a table of at least `want` slots (a power of two). */
static void
merge_table_resize (NsBpe *bpe, gsize want)
{
  MergeSlot *old = bpe->merges;
  gsize old_cap = bpe->merge_cap;
  bpe->merge_cap = 1024;
  while (bpe->merge_cap < want)
    bpe->merge_cap *= 2;
  bpe->merges = g_new (MergeSlot, bpe->merge_cap);
  for (gsize i = 0; i < bpe->merge_cap; i++)
    bpe->merges[i].key = EMPTY_KEY;
  for (gsize i = 0; i < old_cap; i++)
    if (old[i].key != EMPTY_KEY)
      *merge_slot (bpe, old[i].key) = old[i];
  g_free (old);
}

void
ns_bpe_reserve_merges (NsBpe *bpe, gsize n)
{
  if (n * 2 > bpe->merge_cap)
    merge_table_resize (bpe, n * 2);
}

int32_t
ns_bpe_merge (const NsBpe *bpe, int32_t left, int32_t right, int32_t *rank)
{
  if (bpe->n_merges == 0)
    return -1;
  const MergeSlot *s = merge_slot (bpe, (guint64) left << 32 | (guint32) right);
  if (s->key == EMPTY_KEY)
    return -1;
  *rank = s->rank;
  return s->new_id;
}

gboolean
ns_bpe_add_merge (NsBpe *bpe, const char *pair, gsize left_len, gsize right_len, guint rank,
                  const char *label, GError **error)
{
  const char *right = pair + left_len;
  int32_t a = vocab_lookup (bpe, pair, left_len), b = vocab_lookup (bpe, right, right_len);
  int32_t c = vocab_lookup (bpe, pair, left_len + right_len);
  if (a < 0 || b < 0 || c < 0)
    {
      int missing = a < 0 ? (int) left_len : b < 0 ? (int) right_len : (int) (left_len + right_len);
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: merge %u (\"%.*s\" \"%.*s\") names a token missing from "
                   "model.vocab (\"%.*s\")", label, rank, (int) left_len, pair,
                   (int) right_len, right, missing, a >= 0 && b < 0 ? right : pair);
      return FALSE;
    }
  if ((bpe->n_merges + 1) * 2 > bpe->merge_cap)
    merge_table_resize (bpe, bpe->merge_cap * 2);
  MergeSlot *s = merge_slot (bpe, (guint64) a << 32 | (guint32) b);
  if (s->key == EMPTY_KEY)
    bpe->n_merges++;
  /* A repeated pair keeps its last rank, as HF's HashMap collect does. */
  *s = (MergeSlot) { (guint64) a << 32 | (guint32) b, (int32_t) rank, c };
  return TRUE;
}

/* ---- the merge loop (Word::merge_all) ---- */

typedef struct {
  int32_t id;
  int prev, next;               /* -1 at the ends */
  gboolean gone;                /* merged into its left neighbour */
} Symbol;

typedef struct {
  int32_t rank, new_id;
  int pos;
} Candidate;

/* Min-heap order: lowest rank first, then leftmost. */
static inline gboolean
cand_before (const Candidate *a, const Candidate *b)
{
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void
heap_push (GArray *heap, Candidate c)
{
  g_array_append_val (heap, c);
  Candidate *h = (Candidate *) heap->data;
  for (guint i = heap->len - 1; i > 0;)
    {
      guint parent = (i - 1) / 2;
      if (!cand_before (&h[i], &h[parent]))
        break;
      Candidate t = h[i]; h[i] = h[parent]; h[parent] = t;
      i = parent;
    }
}

static Candidate
heap_pop (GArray *heap)
{
  Candidate *h = (Candidate *) heap->data;
  Candidate top = h[0];
  h[0] = h[heap->len - 1];
  g_array_set_size (heap, heap->len - 1);
  for (guint i = 0;;)
    {
      guint l = 2 * i + 1, r = l + 1, m = i;
      if (l < heap->len && cand_before (&h[l], &h[m]))
        m = l;
      if (r < heap->len && cand_before (&h[r], &h[m]))
        m = r;
      if (m == i)
        break;
      Candidate t = h[i]; h[i] = h[m]; h[m] = t;
      i = m;
    }
  return top;
}

static void
push_pair (const NsBpe *bpe, GArray *heap, const Symbol *sym, int pos)
{
  if (pos < 0 || sym[pos].next < 0)
    return;
  int32_t rank, new_id = ns_bpe_merge (bpe, sym[pos].id, sym[sym[pos].next].id, &rank);
  if (new_id >= 0)
    heap_push (heap, (Candidate) { rank, new_id, pos });
}

static void
merge_all (const NsBpe *bpe, GArray *symbols)
{
  Symbol *sym = (Symbol *) symbols->data;
  int n = (int) symbols->len;
  GArray *heap = g_array_sized_new (FALSE, FALSE, sizeof (Candidate), n);
  for (int i = 0; i < n; i++)
    push_pair (bpe, heap, sym, i);
  while (heap->len > 0)
    {
      Candidate top = heap_pop (heap);
      Symbol *s = &sym[top.pos];
      if (s->gone || s->next < 0)
        continue;
      /* Skip entries made stale by an earlier merge of either side. */
      int32_t rank;
      if (ns_bpe_merge (bpe, s->id, sym[s->next].id, &rank) != top.new_id)
        continue;
      Symbol *right = &sym[s->next];
      s->id = top.new_id;
      right->gone = TRUE;
      s->next = right->next;
      if (s->next >= 0)
        sym[s->next].prev = top.pos;
      push_pair (bpe, heap, sym, s->prev);
      push_pair (bpe, heap, sym, top.pos);
    }
  g_array_unref (heap);
}

/* ---- start symbols (merge_word) ---- */

static void
add_symbol (GArray *symbols, int32_t id)
{
  Symbol s = { id, (int) symbols->len - 1, -1, FALSE };
  if (symbols->len > 0)
    g_array_index (symbols, Symbol, symbols->len - 1).next = (int) symbols->len;
  g_array_append_val (symbols, s);
}

/* One symbol per byte; bytes missing from the vocabulary go to byte
 * fallback, then to the unknown token (fused or not), else are dropped —
 * in HF's order, including its late flush of a pending unknown token. */
static void
start_symbols (const NsBpe *bpe, const guint8 *bytes, gsize len, GArray *symbols)
{
  int32_t pending_unk = -1;
  for (gsize i = 0; i < len; i++)
    {
      int b = bytes[i];
      if (bpe->byte_id[b] >= 0)
        {
          if (pending_unk >= 0)
            add_symbol (symbols, pending_unk);
          pending_unk = -1;
          add_symbol (symbols, bpe->byte_id[b]);
        }
      else if (bpe->has_fallback[b])
        {
          for (int k = 0; k < bpe->byte_char_len[b]; k++)
            add_symbol (symbols, bpe->fallback[b][k]);
        }
      else if (bpe->unk_id >= 0)
        {
          if (pending_unk >= 0 && !bpe->options.fuse_unk)
            add_symbol (symbols, pending_unk);
          pending_unk = bpe->unk_id;
        }
    }
  if (pending_unk >= 0)
    add_symbol (symbols, pending_unk);
}

/* The word as the model sees it: its bytes in the byte alphabet. */
static char *
byte_level_text (const NsBpe *bpe, const guint8 *bytes, gsize len)
{
  GString *s = g_string_sized_new (len * 2);
  for (gsize i = 0; i < len; i++)
    g_string_append_len (s, bpe->byte_char[bytes[i]], bpe->byte_char_len[bytes[i]]);
  return g_string_free (s, FALSE);
}

static int32_t *
encode_uncached (const NsBpe *bpe, const guint8 *bytes, gsize len)
{
  if (bpe->options.ignore_merges)
    {
      g_autofree char *text = byte_level_text (bpe, bytes, len);
      int32_t id = vocab_lookup (bpe, text, strlen (text));
      if (id >= 0)
        {
          int32_t *one = g_new (int32_t, 2);
          one[0] = 1, one[1] = id;
          return one;
        }
    }
  GArray *symbols = g_array_sized_new (FALSE, FALSE, sizeof (Symbol), len);
  start_symbols (bpe, bytes, len, symbols);
  merge_all (bpe, symbols);
  int32_t *out = g_new (int32_t, symbols->len + 1);
  out[0] = 0;
  for (guint i = 0; i < symbols->len; i++)
    if (!g_array_index (symbols, Symbol, i).gone)
      out[++out[0]] = g_array_index (symbols, Symbol, i).id;
  g_array_unref (symbols);
  return out;
}

/* ---- word cache: keys are length-prefixed byte strings (words may hold NUL) ---- */

static guint
cache_key_hash (gconstpointer key)
{
  const guint8 *k = key;
  guint h = 5381;
  for (guint i = 0; i <= k[0]; i++)
    h = h * 33 + k[i];
  return h;
}

static gboolean
cache_key_equal (gconstpointer a, gconstpointer b)
{
  const guint8 *x = a, *y = b;
  return x[0] == y[0] && memcmp (x + 1, y + 1, x[0]) == 0;
}

static void
append_ids (GArray *ids, const int32_t *word)
{
  g_array_append_vals (ids, word + 1, word[0]);
}

void
ns_bpe_encode_word (NsBpe *bpe, const char *bytes, gsize len, GArray *ids)
{
  if (len == 0)
    return;
  if (len >= CACHE_MAX_WORD)
    {
      g_autofree int32_t *word = encode_uncached (bpe, (const guint8 *) bytes, len);
      append_ids (ids, word);
      return;
    }
  guint8 key[CACHE_MAX_WORD + 1];
  key[0] = (guint8) len;
  memcpy (key + 1, bytes, len);
  g_mutex_lock (&bpe->cache_lock);
  if (bpe->cache == NULL)
    bpe->cache = g_hash_table_new_full (cache_key_hash, cache_key_equal, g_free, g_free);
  const int32_t *hit = g_hash_table_lookup (bpe->cache, key);
  if (hit != NULL)
    append_ids (ids, hit);
  g_mutex_unlock (&bpe->cache_lock);
  if (hit != NULL)
    return;

  int32_t *word = encode_uncached (bpe, (const guint8 *) bytes, len);
  append_ids (ids, word);
  g_mutex_lock (&bpe->cache_lock);
  /* Bounded: start over when full (HF stops inserting; either is only speed). */
  if (g_hash_table_size (bpe->cache) >= CACHE_MAX_ENTRIES)
    g_hash_table_remove_all (bpe->cache);
  g_hash_table_replace (bpe->cache, g_memdup2 (key, len + 1), word);
  g_mutex_unlock (&bpe->cache_lock);
}

/* ---- decoding ---- */

gboolean
ns_bpe_token_bytes (const NsBpe *bpe, int32_t id, GByteArray *out)
{
  if (id < 0 || (guint) id >= bpe->n_ids || bpe->id_to_token[id] == NO_TOKEN)
    return FALSE;
  const char *text = bpe->arena + bpe->id_to_token[id];
  guint start = out->len;
  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (c >= G_N_ELEMENTS (bpe->char_byte) || bpe->char_byte[c] < 0)
        {
          /* Not byte-level text: HF keeps the token's own bytes. */
          g_byte_array_set_size (out, start);
          g_byte_array_append (out, (const guint8 *) text, strlen (text));
          return TRUE;
        }
      guint8 b = (guint8) bpe->char_byte[c];
      g_byte_array_append (out, &b, 1);
    }
  return TRUE;
}
