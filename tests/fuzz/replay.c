/* replay.c — runs a fuzz target over files and folders given on the command
 * line (a corpus), once each, so the normal test suite replays the seed
 * corpus and every past finding under the regular (and sanitizer) builds. */
#include <glib.h>
#include <stdio.h>

#include "fuzz.h"

static int
replay_file (const char *path)
{
  g_autofree char *data = NULL;
  gsize size = 0;
  g_autoptr (GError) error = NULL;
  if (!g_file_get_contents (path, &data, &size, &error))
    {
      fprintf (stderr, "replay: %s\n", error->message);
      return 1;
    }
  LLVMFuzzerTestOneInput ((const uint8_t *) data, size);
  return 0;
}

static int
replay_path (const char *path, int *count)
{
  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      (*count)++;
      return replay_file (path);
    }
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;
  int failures = 0;
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      failures += replay_path (child, count);
    }
  return failures;
}

int
main (int argc, char **argv)
{
  int failures = 0, count = 0;
  for (int i = 1; i < argc; i++)
    failures += replay_path (argv[i], &count);
  printf ("replayed %d inputs\n", count);
  return failures == 0 ? 0 : 1;
}
