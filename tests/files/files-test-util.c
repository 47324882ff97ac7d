/* files-test-util.c — see files-test-util.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "files-test-util.h"

gboolean
ns_files_test_is_mapped_from (const void *p, const char *suffix)
{
  g_autofree char *maps = NULL;
  if (!g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL))
    return FALSE;
  g_auto (GStrv) lines = g_strsplit (maps, "\n", -1);
  for (char **l = lines; *l != NULL; l++)
    {
      guint64 lo, hi;
      int path_at = 0;
      if (sscanf (*l, "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x %*s %*s %*s %*s %n",
                  &lo, &hi, &path_at) < 2 || path_at == 0)
        continue;
      if ((guint64) (uintptr_t) p >= lo && (guint64) (uintptr_t) p < hi)
        return g_str_has_suffix (*l + path_at, suffix);
    }
  return FALSE;
}

void
ns_files_test_assert_error (const GError *error, const char *first, ...)
{
  g_assert_nonnull (error);
  g_assert_nonnull (error->message);
  g_test_message ("refused: %s", error->message);
  va_list ap;
  va_start (ap, first);
  for (const char *s = first; s != NULL; s = va_arg (ap, const char *))
    if (strstr (error->message, s) == NULL)
      g_error ("error message \"%s\" does not mention \"%s\"", error->message, s);
  va_end (ap);
}

void
ns_files_test_assert_same_tensor (const NsTensorView *a, const NsTensorView *b)
{
  g_assert_cmpstr (ns_dtype_name (a->dtype), ==, ns_dtype_name (b->dtype));
  g_assert_cmpint (a->n_dims, ==, b->n_dims);
  for (int d = 0; d < a->n_dims; d++)
    g_assert_cmpint (a->shape[d], ==, b->shape[d]);
  g_assert_cmpmem (a->data, a->n_bytes, b->data, b->n_bytes);
}

char *
ns_files_test_write (const char *dir, const char *name, const void *data, gsize size)
{
  g_autoptr (GError) error = NULL;
  char *path = g_build_filename (dir, name, NULL);
  g_file_set_contents (path, data, (gssize) size, &error);
  g_assert_no_error (error);
  return path;
}
