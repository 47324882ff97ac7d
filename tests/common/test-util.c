/* test-util.c — see test-util.h. */
#include <math.h>
#include <stdarg.h>
#include <glib/gstdio.h>

#include "test-util.h"
#include "files/safetensors.h"

const char *
ns_test_golden_dir (void)
{
  const char *dir = g_getenv ("NS_GOLDEN_DIR");
  if (dir == NULL || !g_file_test (dir, G_FILE_TEST_IS_DIR))
    return NULL;
  return dir;
}

char *
ns_test_golden_path (const char *first, ...)
{
  const char *dir = ns_test_golden_dir ();
  if (dir == NULL)
    return NULL;
  GString *path = g_string_new (dir);
  va_list ap;
  va_start (ap, first);
  for (const char *part = first; part != NULL; part = va_arg (ap, const char *))
    {
      g_string_append_c (path, G_DIR_SEPARATOR);
      g_string_append (path, part);
    }
  va_end (ap);
  return g_string_free (path, FALSE);
}

NsTensorStore *
ns_test_load_safetensors (const char *path)
{
  g_autoptr (GError) error = NULL;
  NsTensorStore *store = ns_tensor_store_new ();
  if (!ns_safetensors_load_file (store, path, &error))
    g_error ("loading %s: %s", path, error->message);
  return store;
}

JsonParser *
ns_test_load_json (const char *path)
{
  g_autoptr (GError) error = NULL;
  JsonParser *parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, path, &error))
    g_error ("parsing %s: %s", path, error->message);
  return parser;
}

double
ns_test_tolerance (JsonObject *root, const char *name, double fallback)
{
  if (!json_object_has_member (root, "tolerance_rel_to_max_abs"))
    return fallback;
  JsonObject *tol = json_object_get_object_member (root, "tolerance_rel_to_max_abs");
  if (tol == NULL || !json_object_has_member (tol, name))
    return fallback;
  return json_object_get_double_member (tol, name);
}

double
ns_test_rel_error_masked (const float *ours, const NsTensorView *ref, size_t n,
                          const guint8 *keep)
{
  g_assert_cmpint (ns_tensor_n_elements (ref), ==, (int64_t) n);
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < n; i++)
    {
      if (keep != NULL && !keep[i])
        continue;
      double r = ns_tensor_get_f64 (ref, (int64_t) i);
      double d = fabs ((double) ours[i] - r);
      if (!isfinite (ours[i]) || !isfinite (r))
        return INFINITY;
      max_ref = MAX (max_ref, fabs (r));
      max_diff = MAX (max_diff, d);
    }
  if (max_ref == 0.0)
    return max_diff == 0.0 ? 0.0 : INFINITY;
  return max_diff / max_ref;
}

double
ns_test_rel_error (const float *ours, const NsTensorView *ref, size_t n)
{
  return ns_test_rel_error_masked (ours, ref, n, NULL);
}

void
ns_test_assert_close (const char *what, const float *ours, const NsTensorView *ref,
                      size_t n, double tol)
{
  double err = ns_test_rel_error (ours, ref, n);
  g_test_message ("%s: rel error %.3g (tolerance %.3g)", what, err, tol);
  if (!(err <= tol))
    g_test_fail_printf ("%s: rel error %.3g exceeds tolerance %.3g", what, err, tol);
}

char *
ns_test_tmpdir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("nextstep-test-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

void
ns_test_rmtree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      GDir *dir = g_dir_open (path, 0, NULL);
      const char *name;
      while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          ns_test_rmtree (child);
        }
      if (dir != NULL)
        g_dir_close (dir);
      g_rmdir (path);
    }
  else
    g_unlink (path);
}
