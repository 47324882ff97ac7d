/* added.c — finding added tokens in text the way HF's AddedVocabulary does:
 * leftmost-longest matches (its Aho-Corasick in LeftmostLongest mode), then
 * single_word / lstrip / rstrip adjustments of each match. Patterns are
 * bucketed by first byte and kept longest first, so the first pattern that
 * matches at the leftmost position is the longest. */
#include <string.h>

#include "nextstep.h"
#include "tokenizer-private.h"

struct NsAddedMatcher {
  GPtrArray *by_byte[256];      /* NsAddedToken*, longest pattern first */
};

static gint
longer_first (gconstpointer a, gconstpointer b)
{
  const NsAddedToken *x = *(NsAddedToken *const *) a, *y = *(NsAddedToken *const *) b;
  gsize lx = strlen (x->pattern), ly = strlen (y->pattern);
  return lx == ly ? 0 : lx > ly ? -1 : 1;
}

NsAddedMatcher *
ns_added_matcher_new (NsAddedToken **tokens, guint n)
{
  NsAddedMatcher *m = g_new0 (NsAddedMatcher, 1);
  for (guint i = 0; i < n; i++)
    {
      guint8 first = (guint8) tokens[i]->pattern[0];
      if (first == 0)
        continue;               /* an empty pattern never matches in HF either */
      if (m->by_byte[first] == NULL)
        m->by_byte[first] = g_ptr_array_new ();
      g_ptr_array_add (m->by_byte[first], tokens[i]);
    }
  for (int b = 0; b < 256; b++)
    if (m->by_byte[b] != NULL)
      g_ptr_array_sort (m->by_byte[b], longer_first);
  return m;
}

void
ns_added_matcher_free (NsAddedMatcher *m)
{
  if (m == NULL)
    return;
  for (int b = 0; b < 256; b++)
    g_clear_pointer (&m->by_byte[b], g_ptr_array_unref);
  g_free (m);
}

/* Longest token matching at text[pos], or NULL. */
static const NsAddedToken *
match_at (const NsAddedMatcher *m, const char *text, gsize len, gsize pos)
{
  GPtrArray *bucket = m->by_byte[(guint8) text[pos]];
  if (bucket == NULL)
    return NULL;
  for (guint i = 0; i < bucket->len; i++)
    {
      const NsAddedToken *t = bucket->pdata[i];
      gsize n = strlen (t->pattern);
      if (n <= len - pos && memcmp (text + pos, t->pattern, n) == 0)
        return t;
    }
  return NULL;
}

/* HF's "word" test for single_word: Rust regex \w = Alphabetic, marks,
 * Nd, Pc and the joiners. Alphabetic is the letters, Nl and
 * Other_Alphabetic, which outside the marks is only the circled and
 * squared Latin letters. */
static gboolean
is_word_char (gunichar c)
{
  switch (g_unichar_type (c))
    {
    case G_UNICODE_LOWERCASE_LETTER: case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER: case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER: case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_NON_SPACING_MARK: case G_UNICODE_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK: case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_CONNECT_PUNCTUATION:
      return TRUE;
    default:
      return c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9)
             || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169)
             || (c >= 0x1F170 && c <= 0x1F189);
    }
}

static gboolean
single_word_ok (const char *text, gsize len, gsize start, gsize stop)
{
  if (start > 0 && is_word_char (g_utf8_get_char (g_utf8_find_prev_char (text, text + start))))
    return FALSE;
  return stop == len || !is_word_char (g_utf8_get_char (text + stop));
}

/* Start of the run of White_Space ending at `pos`. */
static gsize
space_start_before (const char *text, gsize pos)
{
  while (pos > 0)
    {
      const char *prev = g_utf8_find_prev_char (text, text + pos);
      if (!ns_unichar_is_white_space (g_utf8_get_char (prev)))
        break;
      pos = prev - text;
    }
  return pos;
}

/* End of the run of White_Space starting at `pos`. */
static gsize
space_end_after (const char *text, gsize len, gsize pos)
{
  while (pos < len && ns_unichar_is_white_space (g_utf8_get_char (text + pos)))
    pos = g_utf8_next_char (text + pos) - text;
  return pos;
}

static void
push_segment (GArray *segments, gsize start, gsize end, int32_t id)
{
  NsSegment s = { start, end, id };
  g_array_append_val (segments, s);
}

void
ns_added_matcher_split (const NsAddedMatcher *m, const char *text, gsize len, GArray *segments)
{
  gsize done = 0;               /* end of the last segment pushed */
  for (gsize pos = 0; pos < len;)
    {
      const NsAddedToken *t = match_at (m, text, len, pos);
      if (t == NULL)
        {
          pos++;
          continue;
        }
      gsize start = pos, stop = pos + strlen (t->pattern);
      pos = stop;               /* the search goes on after the raw match */
      if (t->single_word && !single_word_ok (text, len, start, stop))
        continue;
      if (t->lstrip)
        start = MAX (space_start_before (text, start), done);
      if (t->rstrip)
        stop = space_end_after (text, len, stop);
      if (done < start)
        push_segment (segments, done, start, -1);
      push_segment (segments, start, stop, t->id);
      done = stop;
    }
  if (done < len)
    push_segment (segments, done, len, -1);
}
