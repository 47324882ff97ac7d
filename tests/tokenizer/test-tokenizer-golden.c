/* test-tokenizer-golden.c — every line of golden tokenizer/cases.jsonl
 * (Hugging Face `tokenizers` encode(text, add_special_tokens=False)):
 * exact ids, and decoding them back. */
#include <string.h>

#include "test-util.h"
#include "nextstep.h"
#include "tokenizer/tokenizer.h"

static gunichar
hex4 (const char *p)
{
  char buf[5] = { 0 };
  memcpy (buf, p, 4);
  return (gunichar) g_ascii_strtoull (buf, NULL, 16);
}

/* Decodes the JSON string literal starting at `p` (after its opening quote)
 * into `out`, keeping \u0000 (json-glib stops strings at NUL). */
static gboolean
json_unescape (const char *p, GString *out)
{
  g_string_truncate (out, 0);
  for (; *p != '"'; p++)
    {
      if (*p == '\0')
        return FALSE;
      if (*p != '\\')
        {
          g_string_append_c (out, *p);
          continue;
        }
      p++;
      const char *simple = strchr ("\"\"\\\\//b\bf\fn\nr\rt\t", *p);
      if (*p != 'u')
        {
          if (simple == NULL || *p == '\0')
            return FALSE;
          g_string_append_c (out, simple[1]);
          continue;
        }
      if (strnlen (p + 1, 4) < 4)
        return FALSE;
      gunichar c = hex4 (p + 1);
      p += 4;
      if (c >= 0xD800 && c <= 0xDBFF && p[1] == '\\' && p[2] == 'u' && strnlen (p + 3, 4) == 4)
        {
          c = 0x10000 + ((c - 0xD800) << 10) + (hex4 (p + 3) - 0xDC00);
          p += 6;
        }
      g_string_append_unichar (out, c);
    }
  return TRUE;
}

/* The "text" of a cases.jsonl line (they all start {"text": "). */
static void
case_text (const char *line, GString *out)
{
  static const char prefix[] = "{\"text\": \"";
  g_assert_true (g_str_has_prefix (line, prefix));
  g_assert_true (json_unescape (line + strlen (prefix), out));
}

static GArray *
case_ids (const char *line)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, line, -1, NULL));
  JsonArray *list = json_object_get_array_member (
    json_node_get_object (json_parser_get_root (parser)), "ids");
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      int32_t id = (int32_t) json_array_get_int_element (list, i);
      g_array_append_val (ids, id);
    }
  return ids;
}

static void
assert_ids_equal (const GArray *ours, const GArray *ref, guint lineno, const char *what)
{
  /* (an empty GArray's data may be NULL, which memcmp must not get) */
  gboolean same = ours->len == ref->len
                  && (ref->len == 0
                      || memcmp (ours->data, ref->data, ref->len * sizeof (int32_t)) == 0);
  if (!same)
    g_error ("cases.jsonl line %u: %s: %u ids, expected %u", lineno, what, ours->len, ref->len);
}

/* Decoding gives the text back, up to the NFC the tokenizer applies
 * between added tokens: exactly when the text is already NFC, else
 * NFC-equal and encoding to the same ids. */
static gboolean
check_decode (NsTokenizer *tok, const GString *text, const GArray *ref, guint lineno)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  g_autofree char *back = ns_tokenizer_decode_len (tok, (const int32_t *) ref->data, ref->len,
                                                   &len, &error);
  g_assert_no_error (error);
  gboolean has_nul = memchr (text->str, '\0', text->len) != NULL;
  g_autofree char *nfc = has_nul ? NULL : g_utf8_normalize (text->str, -1, G_NORMALIZE_NFC);
  if (has_nul || strcmp (nfc, text->str) == 0)
    {
      if (len != text->len || memcmp (back, text->str, len) != 0)
        g_error ("cases.jsonl line %u: decode differs from the text", lineno);
      return TRUE;
    }
  g_autofree char *back_nfc = g_utf8_normalize (back, -1, G_NORMALIZE_NFC);
  g_assert_cmpstr (back_nfc, ==, nfc);
  g_autoptr (GArray) again = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_assert_true (ns_tokenizer_encode (tok, back, len, again, &error));
  assert_ids_equal (again, ref, lineno, "re-encoding the decoded text");
  return FALSE;
}

static void
test_cases (void)
{
  g_autofree char *dir = ns_test_golden_path ("tokenizer", NULL);
  if (dir == NULL)
    {
      g_test_skip ("no golden data");
      return;
    }
  g_autoptr (GError) error = NULL;
  g_autoptr (NsTokenizer) tok = ns_tokenizer_load (dir, &error);
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (dir, "cases.jsonl", NULL);
  g_autofree char *all = NULL;
  g_assert_true (g_file_get_contents (path, &all, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (all, "\n", -1);
  g_autoptr (GString) text = g_string_new (NULL);
  guint cases = 0, exact_decodes = 0;
  for (guint i = 0; lines[i] != NULL; i++)
    {
      if (lines[i][0] == '\0')
        continue;
      case_text (lines[i], text);
      g_autoptr (GArray) ref = case_ids (lines[i]);
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
      if (!ns_tokenizer_encode (tok, text->str, text->len, ids, &error))
        g_error ("cases.jsonl line %u: %s", i + 1, error->message);
      assert_ids_equal (ids, ref, i + 1, "encode");
      exact_decodes += check_decode (tok, text, ref, i + 1);
      cases++;
    }
  g_test_message ("%u cases encode exactly; %u decode to the exact text, the others "
                  "to its NFC form", cases, exact_decodes);
  g_assert_cmpuint (cases, >, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tokenizer/golden-cases", test_cases);
  return g_test_run ();
}
