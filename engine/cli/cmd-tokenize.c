/* cmd-tokenize.c — `nextstep tokenize`: text → ids (or back with --decode),
 * one text on the command line or JSON lines on stdin; and
 * `nextstep bench tokenizer`: load time and encode speed. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <json-glib/json-glib.h>

#include "nextstep.h"
#include "commands.h"
#include "files/json-load.h"
#include "tokenizer/tokenizer.h"

static gboolean opt_jsonl, opt_decode;

static const GOptionEntry tokenize_options[] = {
  { "jsonl", 0, 0, G_OPTION_ARG_NONE, &opt_jsonl,
    "Read JSON lines on stdin ({\"text\": …}, or {\"ids\": […]} with --decode), "
    "write one JSON line per input line", NULL },
  { "decode", 0, 0, G_OPTION_ARG_NONE, &opt_decode, "Turn ids back into text", NULL },
  G_OPTION_ENTRY_NULL
};

static int
report (const char *cmd, const GError *error)
{
  fprintf (stderr, "%s: %s\n", cmd, error->message);
  return 1;
}

static void
print_ids (const GArray *ids, gboolean json)
{
  GString *s = g_string_new (json ? "{\"ids\": [" : "");
  for (guint i = 0; i < ids->len; i++)
    g_string_append_printf (s, i ? (json ? ", %d" : " %d") : "%d",
                            g_array_index (ids, int32_t, i));
  g_string_append (s, json ? "]}\n" : "\n");
  fwrite (s->str, 1, s->len, stdout);
  g_string_free (s, TRUE);
}

/* {"text": "…"} with JSON escapes (NUL included: json-glib stops at it). */
static void
print_text_json (const char *text, gsize len)
{
  GString *s = g_string_new ("{\"text\": \"");
  for (gsize i = 0; i < len; i++)
    {
      guint8 c = (guint8) text[i];
      if (c == '"' || c == '\\')
        g_string_append_printf (s, "\\%c", c);
      else if (c == '\n')
        g_string_append (s, "\\n");
      else if (c < 0x20)
        g_string_append_printf (s, "\\u%04x", c);
      else
        g_string_append_c (s, (char) c);
    }
  g_string_append (s, "\"}\n");
  fwrite (s->str, 1, s->len, stdout);
  g_string_free (s, TRUE);
}

static gboolean
parse_id (const char *s, int32_t *out, GError **error)
{
  gint64 v;
  if (!g_ascii_string_to_signed (s, 10, G_MININT32, G_MAXINT32, &v, NULL))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "\"%s\" is not a token id (an integer)", s);
      return FALSE;
    }
  *out = (int32_t) v;
  return TRUE;
}

static gboolean
decode_ids (NsTokenizer *tok, const GArray *ids, gboolean json, GError **error)
{
  gsize len;
  g_autofree char *text = ns_tokenizer_decode_len (tok, (const int32_t *) ids->data, ids->len,
                                                   &len, error);
  if (text == NULL)
    return FALSE;
  if (json)
    print_text_json (text, len);
  else
    fwrite (text, 1, len, stdout), fputc ('\n', stdout);
  return TRUE;
}

/* A "\u0000" escape in a JSON line: json-glib would silently cut the
 * string there, so such input is refused. */
static gboolean
has_nul_escape (const char *line)
{
  for (const char *p = line; *p; p++)
    if (*p == '\\')
      {
        if (g_ascii_strncasecmp (p + 1, "u0000", 5) == 0)
          return TRUE;
        if (p[1] != '\0')
          p++;
      }
  return FALSE;
}

/* One JSON line → ids or text on stdout. */
static gboolean
jsonl_line (NsTokenizer *tok, const char *line, GError **error)
{
  if (!g_utf8_validate (line, -1, NULL))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "the line is not valid UTF-8"), FALSE;
  if (has_nul_escape (line))
    return g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                        "\\u0000 (NUL) in JSON input is not supported; pass such text "
                        "on the command line instead"), FALSE;
  g_autoptr (JsonNode) root = ns_json_load (line, strlen (line), "the line", NULL, 0, error);
  if (root == NULL)
    return FALSE;
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *member = o ? json_object_get_member (o, opt_decode ? "ids" : "text") : NULL;
  if (!opt_decode)
    {
      if (member == NULL || !JSON_NODE_HOLDS_VALUE (member)
          || json_node_get_value_type (member) != G_TYPE_STRING)
        return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                            "expected {\"text\": \"…\"}"), FALSE;
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
      if (!ns_tokenizer_encode (tok, json_node_get_string (member), -1, ids, error))
        return FALSE;
      print_ids (ids, TRUE);
      return TRUE;
    }
  JsonArray *list = member && JSON_NODE_HOLDS_ARRAY (member) ? json_node_get_array (member) : NULL;
  if (list == NULL)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "expected {\"ids\": [integers]}"), FALSE;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonNode *n = json_array_get_element (list, i);
      if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64
          || json_node_get_int (n) < G_MININT32 || json_node_get_int (n) > G_MAXINT32)
        return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                            "ids[%u] is not a token id", i), FALSE;
      int32_t id = (int32_t) json_node_get_int (n);
      g_array_append_val (ids, id);
    }
  return decode_ids (tok, ids, TRUE, error);
}

static int
run_jsonl (const char *cmd, NsTokenizer *tok)
{
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int rc = 0;
  for (guint lineno = 1; rc == 0 && (n = getline (&line, &cap, stdin)) >= 0; lineno++)
    {
      g_autoptr (GError) error = NULL;
      if (memchr (line, '\0', n) != NULL)
        g_set_error (&error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, "a NUL byte in the input");
      else if (g_strstrip (line)[0] != '\0')
        jsonl_line (tok, line, &error);
      if (error != NULL)
        {
          fprintf (stderr, "%s: stdin line %u: %s\n", cmd, lineno, error->message);
          rc = 1;
        }
    }
  free (line);
  return rc;
}

/* TEXT or ID… from the command line, checked before the (slow) load. */
static gboolean
parse_args (int argc, char **argv, GArray *ids, GError **error)
{
  if (!opt_decode)
    {
      if (argc != 1)
        return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                            "give one TEXT argument (quote it), or use --jsonl"), FALSE;
      if (!g_utf8_validate (argv[0], -1, NULL))
        return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                            "the text is not valid UTF-8; convert it to UTF-8 first"), FALSE;
      return TRUE;
    }
  for (int i = 0; i < argc; i++)
    {
      int32_t id;
      if (!parse_id (argv[i], &id, error))
        return FALSE;
      g_array_append_val (ids, id);
    }
  return TRUE;
}

int
ns_cmd_tokenize (int argc, char **argv)
{
  const char *cmd = argv[0];
  g_autoptr (GOptionContext) ctx = g_option_context_new (
    "MODEL_OR_TOKENIZER_DIR [TEXT | ID…]");
  g_option_context_set_summary (ctx, "Turn text into token ids with the model's tokenizer.json, "
                                "or ids into text with --decode.");
  g_option_context_add_main_entries (ctx, tokenize_options, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return report (cmd, error) + 1;
  if (argc < 2 || (opt_jsonl && argc != 2))
    {
      fprintf (stderr, "%s: usage: %s [--jsonl] [--decode] DIR [TEXT | ID…]\n", cmd, cmd);
      return 2;
    }
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  if (!opt_jsonl && !parse_args (argc - 2, argv + 2, ids, &error))
    return report (cmd, error);
  g_autoptr (NsTokenizer) tok = ns_tokenizer_load (argv[1], &error);
  if (tok == NULL)
    return report (cmd, error);
  if (opt_jsonl)
    return run_jsonl (cmd, tok);
  if (opt_decode)
    return decode_ids (tok, ids, FALSE, &error) ? 0 : report (cmd, error);
  if (!ns_tokenizer_encode (tok, argv[2], -1, ids, &error))
    return report (cmd, error);
  print_ids (ids, FALSE);
  return 0;
}

/* ---- bench ---- */

static int
compare_double (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *v, int n)
{
  qsort (v, n, sizeof *v, compare_double);
  return v[n / 2];
}

/* A 2,000-character prompt of mixed prose, digits, punctuation and CJK. */
static char *
bench_prompt (void)
{
  static const char *const parts[] = {
    "A watercolor painting of a red fox sitting in a snowy birch forest at dawn, ",
    "soft golden light, 35mm film grain, highly detailed fur, (masterpiece:1.2), ",
    "1920x1080, f/2.8 — \"cinematic\" composition; it's the artist's best work. ",
    "一只戴着红色围巾的柴犬，水彩画风格。 ",
  };
  GString *s = g_string_new (NULL);
  for (int i = 0; g_utf8_strlen (s->str, -1) < 2000; i++)
    g_string_append (s, parts[i % G_N_ELEMENTS (parts)]);
  char *end = g_utf8_offset_to_pointer (s->str, 2000);
  g_string_truncate (s, end - s->str);
  return g_string_free (s, FALSE);
}

int
ns_bench_tokenizer (int argc, char **argv)
{
  const char *cmd = "nextstep bench tokenizer";
  g_autoptr (GOptionContext) ctx = g_option_context_new ("MODEL_OR_TOKENIZER_DIR");
  g_option_context_set_summary (ctx, "Time loading tokenizer.json (median of 5) and encoding "
                                "a 2,000-character prompt (median of 200).");
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return report (cmd, error) + 1;
  if (argc != 2)
    {
      fprintf (stderr, "%s: usage: %s MODEL_OR_TOKENIZER_DIR\n", cmd, cmd);
      return 2;
    }
  enum { LOADS = 5, RUNS = 200 };
  double load[LOADS], load_cpu[LOADS], enc[RUNS];
  g_autoptr (NsTokenizer) tok = NULL;
  for (int i = 0; i < LOADS; i++)
    {
      g_clear_pointer (&tok, ns_tokenizer_free);
      gint64 t0 = g_get_monotonic_time ();
      clock_t c0 = clock ();
      tok = ns_tokenizer_load (argv[1], &error);
      if (tok == NULL)
        return report (cmd, error);
      load[i] = (g_get_monotonic_time () - t0) / 1e6;
      load_cpu[i] = (double) (clock () - c0) / CLOCKS_PER_SEC;
    }
  g_autofree char *prompt = bench_prompt ();
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  for (int i = 0; i < RUNS; i++)
    {
      g_array_set_size (ids, 0);
      gint64 t0 = g_get_monotonic_time ();
      if (!ns_tokenizer_encode (tok, prompt, -1, ids, &error))
        return report (cmd, error);
      enc[i] = (g_get_monotonic_time () - t0) / 1e3;
    }
  double first = enc[0];
  printf ("tokenizer %s: %u ids\n", argv[1], ns_tokenizer_vocab_size (tok));
  /* CPU time too: on a shared machine the wall time includes waiting. */
  printf ("load: median %.3f s wall, %.3f s CPU, of %d\n", median (load, LOADS),
          median (load_cpu, LOADS), LOADS);
  printf ("encode 2000 chars (%u ids): first %.3f ms, median %.3f ms of %d\n",
          ids->len, first, median (enc, RUNS), RUNS);
  return 0;
}
