/* test-tokenize-cli.c — `nextstep tokenize` ($NS_CLI) on the golden
 * tokenizer: ids as the library gives them, decoding, JSON lines, and
 * clear errors (exit 1) for invalid UTF-8 and missing files. */
#include <string.h>
#include <gio/gio.h>

#include "test-util.h"
#include "nextstep.h"
#include "tokenizer/tokenizer.h"

static char *tokenizer_dir;
static NsTokenizer *tok;

/* Runs `nextstep tokenize ARGS…` with `input` on stdin; returns the exit
 * status, stdout and stderr. */
static int
run_cli (const char *const *args, const char *input, gsize input_len, char **out, char **err)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) g_getenv ("NS_CLI"));
  g_ptr_array_add (argv, "tokenize");
  for (; *args; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) p = g_subprocess_newv ((const char *const *) argv->pdata,
                                                 G_SUBPROCESS_FLAGS_STDIN_PIPE
                                                 | G_SUBPROCESS_FLAGS_STDOUT_PIPE
                                                 | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) in = g_bytes_new (input ? input : "", input ? input_len : 0);
  g_autoptr (GBytes) o = NULL, e = NULL;
  g_assert_true (g_subprocess_communicate (p, in, NULL, &o, &e, &error));
  *out = g_strndup (g_bytes_get_data (o, NULL), g_bytes_get_size (o));
  *err = g_strndup (g_bytes_get_data (e, NULL), g_bytes_get_size (e));
  g_assert_true (g_subprocess_get_if_exited (p));
  return g_subprocess_get_exit_status (p);
}

static char *
ids_text (const GArray *ids)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < ids->len; i++)
    g_string_append_printf (s, i ? " %d" : "%d", g_array_index (ids, int32_t, i));
  return g_string_free (s, FALSE);
}

static void
test_encode_decode (void)
{
  const char *text = "A cat on a windowsill<|image_area|>32*32<|begin_of_image|> “quoted”";
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_assert_true (ns_tokenizer_encode (tok, text, -1, ids, NULL));
  g_autofree char *want = ids_text (ids);
  g_autofree char *out = NULL, *err = NULL;
  const char *enc[] = { tokenizer_dir, text, NULL };
  g_assert_cmpint (run_cli (enc, NULL, 0, &out, &err), ==, 0);
  g_assert_cmpstr (g_strstrip (out), ==, want);

  g_auto (GStrv) id_args = g_strsplit (want, " ", -1);
  g_autoptr (GPtrArray) dec = g_ptr_array_new ();
  g_ptr_array_add (dec, "--decode");
  g_ptr_array_add (dec, tokenizer_dir);
  for (guint i = 0; id_args[i]; i++)
    g_ptr_array_add (dec, id_args[i]);
  g_ptr_array_add (dec, NULL);
  g_autofree char *out2 = NULL, *err2 = NULL;
  g_autofree char *want_text = g_strconcat (text, "\n", NULL);
  g_assert_cmpint (run_cli ((const char *const *) dec->pdata, NULL, 0, &out2, &err2), ==, 0);
  g_assert_cmpstr (out2, ==, want_text);
}

/* --jsonl both ways on texts that need JSON escapes. */
static void
test_jsonl (void)
{
  static const char *const texts[] = { "say \"hi\"\\", "two\nlines\ttab", "", "emoji 🐕 ok" };
  GString *in = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "text");
      json_builder_add_string_value (b, texts[i]);
      json_builder_end_object (b);
      g_autoptr (JsonNode) node = json_builder_get_root (b);
      g_autofree char *line = json_to_string (node, FALSE);
      g_string_append_printf (in, "%s\n", line);
    }
  g_autofree char *out = NULL, *err = NULL, *back = NULL, *err2 = NULL;
  const char *enc[] = { "--jsonl", tokenizer_dir, NULL };
  const char *dec[] = { "--jsonl", "--decode", tokenizer_dir, NULL };
  g_assert_cmpint (run_cli (enc, in->str, in->len, &out, &err), ==, 0);
  g_assert_cmpint (run_cli (dec, out, strlen (out), &back, &err2), ==, 0);
  g_auto (GStrv) ids_lines = g_strsplit (out, "\n", -1);
  g_auto (GStrv) lines = g_strsplit (back, "\n", -1);
  for (guint i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
      g_assert_true (ns_tokenizer_encode (tok, texts[i], -1, ids, NULL));
      g_autoptr (JsonParser) q = json_parser_new ();
      g_assert_true (json_parser_load_from_data (q, ids_lines[i], -1, NULL));
      JsonArray *got = json_object_get_array_member (
        json_node_get_object (json_parser_get_root (q)), "ids");
      g_assert_cmpuint (json_array_get_length (got), ==, ids->len);
      for (guint k = 0; k < ids->len; k++)
        g_assert_cmpint (json_array_get_int_element (got, k), ==, g_array_index (ids, int32_t, k));
      g_autoptr (JsonParser) p = json_parser_new ();
      g_assert_true (json_parser_load_from_data (p, lines[i], -1, NULL));
      g_assert_cmpstr (json_object_get_string_member (
        json_node_get_object (json_parser_get_root (p)), "text"), ==, texts[i]);
    }
  g_string_free (in, TRUE);
}

static void
test_errors (void)
{
  struct { const char *args[5]; const char *input; const char *message; } cases[] = {
    { { tokenizer_dir, "bad \xff text", NULL }, NULL, "UTF-8" },
    { { "--jsonl", tokenizer_dir, NULL }, "{\"text\": \"ok\"}\n\"\xc3\x28\"\n", "line 2" },
    { { "--jsonl", tokenizer_dir, NULL }, "{\"text\": 5}\n", "text" },
    { { "--decode", tokenizer_dir, "12", "x" }, NULL, "token id" },
    { { "--decode", tokenizer_dir, "999999999", NULL }, NULL, "999999999" },
    { { "/nonexistent-folder", "text", NULL }, NULL, "tokenizer.json" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *out = NULL, *err = NULL;
      const char *in = cases[i].input;
      int status = run_cli (cases[i].args, in, in ? strlen (in) : 0, &out, &err);
      g_test_message ("case %u: exit %d: %s", i, status, err);
      g_assert_cmpint (status, ==, 1);
      g_assert_nonnull (strstr (err, cases[i].message));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tokenizer_dir = ns_test_golden_path ("tokenizer", NULL);
  if (tokenizer_dir == NULL || g_getenv ("NS_CLI") == NULL)
    return 77;
  g_autoptr (GError) error = NULL;
  tok = ns_tokenizer_load (tokenizer_dir, &error);
  g_assert_no_error (error);
  g_test_add_func ("/tokenize-cli/encode-decode", test_encode_decode);
  g_test_add_func ("/tokenize-cli/jsonl", test_jsonl);
  g_test_add_func ("/tokenize-cli/errors", test_errors);
  int rc = g_test_run ();
  ns_tokenizer_free (tok);
  g_free (tokenizer_dir);
  return rc;
}
