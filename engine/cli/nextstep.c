/* nextstep.c — the command-line front of libnextstep: dispatches to the
 * sub-commands, each of which parses its own options with GOption. */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "nextstep.h"
#include "commands.h"

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
  { "generate",  ns_cmd_generate,  "Generate images from a prompt" },
  { "edit",      ns_cmd_edit,      "Edit an image following an instruction" },
  { "inspect",   ns_cmd_inspect,   "Check a model folder and print what it holds" },
  { "tokenize",  ns_cmd_tokenize,  "Turn text into token ids (or back, with --decode)" },
  { "make-tiny", ns_cmd_make_tiny, "Write a tiny random-weight model in the published layout" },
  { "bench",     ns_cmd_bench,     "Measure the engine's speed on synthetic full-size weights" },
  { "convert",   ns_cmd_convert,   "Quantize a model's weights once to int8, fp8 or q4" },
  { "serve",     ns_cmd_serve,     "Serve the image API over HTTP with a model kept loaded" },
};

static void
print_usage (FILE *out)
{
  fprintf (out, "Usage: nextstep COMMAND [OPTION…]\n\n"
                "NextStep-1 image generation and editing.\n\nCommands:\n");
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nRun 'nextstep COMMAND --help' for the options of a command.\n"
                "  --version  print the version\n");
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)
    {
      print_usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? 2 : 0;
    }
  if (strcmp (argv[1], "--version") == 0)
    {
      printf ("nextstep %s\n", ns_version ());
      return 0;
    }
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      {
        char *name = g_strdup_printf ("nextstep %s", commands[i].name);
        argv[1] = name;
        int rc = commands[i].run (argc - 1, argv + 1);
        g_free (name);
        return rc;
      }
  fprintf (stderr, "nextstep: unknown command '%s'\n\n", argv[1]);
  print_usage (stderr);
  return 2;
}
