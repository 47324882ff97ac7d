/* fuzz-encode.c — encoding arbitrary bytes with the real NextStep tokenizer
 * (loaded once from $NS_FUZZ_TOKENIZER, default the golden tokenizer), and
 * decoding what came out: never a crash, invalid UTF-8 is an error. */
#include "fuzz.h"
#include "tokenizer/tokenizer.h"

static NsTokenizer *
shared_tokenizer (void)
{
  static NsTokenizer *tok;
  if (tok == NULL)
    {
      const char *dir = g_getenv ("NS_FUZZ_TOKENIZER");
      g_autoptr (GError) error = NULL;
      tok = ns_tokenizer_load (dir != NULL ? dir : "../shared/golden/tokenizer", &error);
      if (tok == NULL)
        g_error ("fuzz-encode needs a tokenizer (set NS_FUZZ_TOKENIZER): %s", error->message);
    }
  return tok;
}

/* libFuzzer calls this before its per-input timer starts: loading the
 * 11 MB golden tokenizer.json takes seconds under ASan and would otherwise
 * count as a timeout of the first input. */
int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  (void) argc;
  (void) argv;
  shared_tokenizer ();
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  NsTokenizer *tok = shared_tokenizer ();
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  GError *error = NULL;
  /* g_utf8_validate refuses NUL bytes, which are valid text for the tokenizer:
   * only NUL-free valid UTF-8 must encode. */
  gboolean plain_utf8 = g_utf8_validate ((const char *) data, (gssize) size, NULL);
  gboolean ok = ns_tokenizer_encode (tok, (const char *) data, (gssize) size, ids, &error);
  if (plain_utf8 && !ok)
    g_error ("encode refused valid UTF-8: %s", error->message);
  if (!ok && error == NULL)
    g_error ("encode failed without an error");
  g_clear_error (&error);
  if (ok)
    {
      char *text = ns_tokenizer_decode (tok, (const int32_t *) ids->data, ids->len, &error);
      g_clear_error (&error);
      g_free (text);
    }
  g_array_unref (ids);
  return 0;
}
