/* split.c — HF's Split pre-tokenizer with a Regex pattern, on GRegex.
 *
 * HF compiles the pattern with Oniguruma (Ruby syntax, UTF-8). GRegex
 * (PCRE2, UTF mode) reads the same syntax with the same meaning for what
 * tokenizer files use — \p{L}, \p{N}, classes, (?i:…), look-ahead — except:
 *   \s  PCRE2 also counts U+180E as space; Oniguruma uses Unicode White_Space.
 *       Rewritten to the explicit White_Space list.
 *   \d  ASCII-only in PCRE2 unless UCP is on; Unicode Nd in Oniguruma.
 *       Rewritten to \p{Nd}.
 *   ^ $ always multi-line in Ruby syntax: G_REGEX_MULTILINE, newline = LF.
 * Escapes whose meaning differs or that we have not checked (\w \b \h \v
 * \R \X \Q …) are refused instead of being matched differently. */
#include <string.h>

#include "nextstep.h"
#include "tokenizer-private.h"

/* Unicode White_Space, as ranges for a character class. */
#define WHITE_SPACE_CLASS \
  "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
  "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

gboolean
ns_unichar_is_white_space (gunichar c)
{
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
         || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F
         || c == 0x205F || c == 0x3000;
}

/* Appends the PCRE2 form of escape `\e`; FALSE when refused. */
static gboolean
rewrite_escape (GString *out, char e, gboolean in_class, const char *pattern, GError **error)
{
  switch (e)
    {
    case 's':
      g_string_append (out, in_class ? WHITE_SPACE_CLASS : "[" WHITE_SPACE_CLASS "]");
      return TRUE;
    case 'S':
      if (!in_class)
        {
          g_string_append (out, "[^" WHITE_SPACE_CLASS "]");
          return TRUE;
        }
      break;
    case 'd':
      g_string_append (out, "\\p{Nd}");
      return TRUE;
    case 'D':
      g_string_append (out, "\\P{Nd}");
      return TRUE;
    case 'p': case 'P': case 'x': case 'n': case 'r': case 't': case 'f': case 'e': case 'a':
    case 'A': case 'z': case '0': case '1': case '2': case '3': case '4': case '5': case '6':
    case '7': case '8': case '9':
      g_string_append_c (out, '\\');
      g_string_append_c (out, e);
      return TRUE;
    default:
      if (e != '\0' && !g_ascii_isalnum (e))
        {
          g_string_append_c (out, '\\');
          g_string_append_c (out, e);
          return TRUE;
        }
    }
  g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
               "tokenizer pre-tokenizer regex \"%s\": the escape \\%c%s is not supported "
               "(its meaning differs between Oniguruma and PCRE2)",
               pattern, e, in_class ? " inside a character class" : "");
  return FALSE;
}

/* Copies the pattern, rewriting escapes; tracks character classes (a ']'
 * right after '[' or '[^' is literal, POSIX "[:name:]" nests). */
static char *
rewrite_pattern (const char *pattern, GError **error)
{
  GString *out = g_string_sized_new (strlen (pattern) + 256);
  gboolean in_class = FALSE;
  const char *class_start = NULL;
  for (const char *p = pattern; *p != '\0'; p++)
    {
      if (*p == '\\')
        {
          p++;
          if (!rewrite_escape (out, *p, in_class, pattern, error))
            return g_string_free (out, TRUE), NULL;
          continue;
        }
      if (!in_class && *p == '[')
        {
          in_class = TRUE;
          class_start = p + 1 + (p[1] == '^');
        }
      else if (in_class && *p == '[' && p[1] == ':')
        {
          const char *end = strstr (p, ":]");
          if (end != NULL)
            {
              g_string_append_len (out, p, end + 2 - p);
              p = end + 1;
              continue;
            }
        }
      else if (in_class && *p == ']' && p != class_start)
        in_class = FALSE;
      g_string_append_c (out, *p);
    }
  return g_string_free (out, FALSE);
}

GRegex *
ns_split_regex_new (const char *pattern, GError **error)
{
  /* json-glib lets a lone surrogate escape through as invalid UTF-8. */
  if (!g_utf8_validate (pattern, -1, NULL))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "tokenizer pre-tokenizer regex is not valid UTF-8");
      return NULL;
    }
  g_autofree char *rewritten = rewrite_pattern (pattern, error);
  if (rewritten == NULL)
    return NULL;
  g_autoptr (GError) local = NULL;
  GRegex *regex = g_regex_new (rewritten,
                               G_REGEX_OPTIMIZE | G_REGEX_MULTILINE | G_REGEX_NEWLINE_LF,
                               0, &local);
  if (regex == NULL)
    g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                 "tokenizer pre-tokenizer regex \"%s\" does not compile: %s",
                 pattern, local->message);
  return regex;
}

gboolean
ns_split_isolated (const GRegex *regex, const char *text, gsize len,
                   NsPieceFunc piece, gpointer user_data, GError **error)
{
  g_autoptr (GMatchInfo) info = NULL;
  g_autoptr (GError) local = NULL;
  gsize prev = 0;
  g_regex_match_full (regex, text, (gssize) len, 0, 0, &info, &local);
  while (local == NULL && g_match_info_matches (info))
    {
      int start, end;
      g_match_info_fetch_pos (info, 0, &start, &end);
      if ((gsize) start > prev)
        piece (text + prev, start - prev, user_data);
      if (end > start)
        piece (text + start, end - start, user_data);
      prev = end;
      g_match_info_next (info, &local);
    }
  if (local != NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "tokenizer pre-tokenizer regex failed on the text: %s", local->message);
      return FALSE;
    }
  if (prev < len)
    piece (text + prev, len - prev, user_data);
  return TRUE;
}
