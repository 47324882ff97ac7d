/* cmd-convert.c — `nextstep convert`: quantize a model's weights to int8,
 * fp8 or q4 once and keep them where ns_model_load finds them (weight-cache.h), so
 * later loads skip the quantization. */
#include <stdio.h>

#include "nextstep.h"
#include "commands.h"
#include "files/safetensors.h"
#include "model/weight-cache.h"
#include "backend.h"
#include "progress.h"

static int
fail (GError *error)
{
  fprintf (stderr, "nextstep convert: %s\n", error->message);
  g_error_free (error);
  return 1;
}

/* Quantizing and writing go together, a chunk at a time: say which tensor. */
static void
on_progress (double fraction, const char *what, gpointer data)
{
  ns_cli_progress_fraction (data, "convert", fraction, what);
}

int
ns_cmd_convert (int argc, char **argv)
{
  g_autofree char *model = NULL, *weights = NULL, *output = NULL, *quant_min = NULL;
  gboolean quiet = FALSE;
  GOptionEntry entries[] = {
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &model, "Model folder (default: search)", "DIR" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &weights, "int8, fp8 or q4", "FORMAT" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
      "Write here (default: where model loading looks, under $XDG_CACHE_HOME/nextstep)", "FILE" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress on stderr", NULL },
    { "quant-min-elements", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &quant_min, NULL, NULL },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("[MODEL]");
  g_option_context_set_summary (ctx, "Quantize a model's weights once (int8 or fp8 with one "
                                "scale per output row, q4 with one per 32 weights) into a "
                                "cached safetensors file.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return fail (error);
  NsWeightFormat format;
  if (weights == NULL || !ns_weight_format_from_name (weights, &format)
      || (format != NS_WEIGHTS_INT8 && format != NS_WEIGHTS_FP8 && format != NS_WEIGHTS_Q4))
    {
      fprintf (stderr, "nextstep convert: give --weights int8, fp8 or q4\n");
      return 2;
    }
  guint64 min_quant = NS_QUANT_MIN_ELEMENTS;
  if (quant_min && !g_ascii_string_to_unsigned (quant_min, 10, 1, G_MAXINT64, &min_quant, NULL))
    {
      fprintf (stderr, "nextstep convert: --quant-min-elements %s: use a number ≥ 1\n", quant_min);
      return 2;
    }
  g_autofree char *dir = ns_model_find (argc > 1 ? argv[1] : model, FALSE, &error);
  if (dir == NULL)
    return fail (error);
  g_autoptr (NsTensorStore) store = ns_safetensors_load_dir (dir, &error);
  if (store == NULL)
    return fail (error);
  g_autofree char *path = output ? g_strdup (output) : ns_weight_cache_default_path (dir, format);
  NsCliProgress progress;
  ns_cli_progress_init (&progress, quiet);
  gboolean ok = ns_weight_cache_write (store, dir, format, (int64_t) min_quant, path,
                                       on_progress, &progress, &error);
  ns_cli_progress_finish (&progress);
  if (!ok)
    return fail (error);
  printf ("%s\n", path);
  return 0;
}
