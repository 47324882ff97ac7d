/* test-discovery.c — ns_model_find / ns_vae_find on a fake Hugging Face
 * cache in a temporary folder, driven by $HF_HUB_CACHE, $HF_HOME and
 * $NEXTSTEP_MODEL. */
#include <string.h>
#include <glib/gstdio.h>

#include "nextstep.h"
#include "test-util.h"

typedef struct {
  char *root;     /* temporary folder */
  char *hub;      /* <root>/hf/hub */
} Fixture;

static void
touch (const char *dir, const char *name, const char *text)
{
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

/* <hub>/models--stepfun-ai--<repo>/snapshots/<hash>/ with the given files
 * (NULL-terminated), and refs/main naming it when `ref`. Returns the
 * snapshot folder. */
static char *
add_snapshot (const Fixture *f, const char *repo, const char *hash, gboolean ref,
              const char *const *files)
{
  g_autofree char *folder = g_strdup_printf ("models--stepfun-ai--%s", repo);
  g_autofree char *refs = g_build_filename (f->hub, folder, "refs", NULL);
  char *snap = g_build_filename (f->hub, folder, "snapshots", hash, NULL);
  g_assert_cmpint (g_mkdir_with_parents (snap, 0755), ==, 0);
  for (; *files != NULL; files++)
    touch (snap, *files, "{\"model_type\": \"nextstep\"}");
  if (ref)
    {
      g_autofree char *line = g_strconcat (hash, "\n", NULL);
      touch (refs, "main", line);
    }
  return snap;
}

static const char *const model_files[] = { "config.json", NULL };
static const char *const vae_files[] = { "config.json", "checkpoint.pt", NULL };

static void
setup (Fixture *f, gconstpointer data)
{
  (void) data;
  f->root = ns_test_tmpdir ();
  f->hub = g_build_filename (f->root, "hf", "hub", NULL);
  g_assert_cmpint (g_mkdir_with_parents (f->hub, 0755), ==, 0);
  g_setenv ("HF_HUB_CACHE", f->hub, TRUE);
  g_unsetenv ("HF_HOME");
  g_unsetenv ("NEXTSTEP_MODEL");
}

static void
teardown (Fixture *f, gconstpointer data)
{
  (void) data;
  ns_test_rmtree (f->root);
  g_free (f->root);
  g_free (f->hub);
}

static void
assert_found (const char *expected, const char *explicit_dir, gboolean edit)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = ns_model_find (explicit_dir, edit, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (dir, ==, expected);
}

static void
test_cache_order (Fixture *f, gconstpointer data)
{
  (void) data;
  g_autofree char *large = add_snapshot (f, "NextStep-1-Large", "aaa", TRUE, model_files);
  assert_found (large, NULL, FALSE);
  /* Without another model, edit requests take what there is. */
  assert_found (large, NULL, TRUE);
  g_autofree char *v11 = add_snapshot (f, "NextStep-1.1", "bbb", TRUE, model_files);
  g_autofree char *edit = add_snapshot (f, "NextStep-1-Large-Edit", "ccc", TRUE, model_files);
  assert_found (v11, NULL, FALSE);
  assert_found (edit, NULL, TRUE);
}

static void
test_refs_main (Fixture *f, gconstpointer data)
{
  (void) data;
  /* refs/main picks the newer snapshot even though "old" sorts first. */
  g_autofree char *old = add_snapshot (f, "NextStep-1.1", "0ld", FALSE, model_files);
  g_autofree char *cur = add_snapshot (f, "NextStep-1.1", "fff", TRUE, model_files);
  assert_found (cur, NULL, FALSE);
  /* A stale ref falls back to a complete snapshot. */
  g_autofree char *refs = g_build_filename (f->hub, "models--stepfun-ai--NextStep-1.1", "refs",
                                            NULL);
  touch (refs, "main", "deadbeef");
  assert_found (old, NULL, FALSE);
}

static void
test_hf_home (Fixture *f, gconstpointer data)
{
  (void) data;
  g_autofree char *snap = add_snapshot (f, "NextStep-1.1", "abc", TRUE, model_files);
  g_autofree char *home = g_build_filename (f->root, "hf", NULL);
  g_unsetenv ("HF_HUB_CACHE");
  g_setenv ("HF_HOME", home, TRUE);
  assert_found (snap, NULL, FALSE);
}

static void
test_explicit (Fixture *f, gconstpointer data)
{
  (void) data;
  g_autofree char *cached = add_snapshot (f, "NextStep-1.1", "abc", TRUE, model_files);
  g_autofree char *own = g_build_filename (f->root, "mine", NULL);
  touch (own, "config.json", "{}");
  /* $NEXTSTEP_MODEL wins over the cache, an explicit folder over both. */
  g_setenv ("NEXTSTEP_MODEL", own, TRUE);
  assert_found (own, NULL, FALSE);
  assert_found (cached, cached, FALSE);
  /* A cache repo folder resolves to its snapshot. */
  g_autofree char *repo = g_build_filename (f->hub, "models--stepfun-ai--NextStep-1.1", NULL);
  assert_found (cached, repo, FALSE);

  g_autoptr (GError) error = NULL;
  g_setenv ("NEXTSTEP_MODEL", f->root, TRUE);
  g_assert_null (ns_model_find (NULL, FALSE, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_FILE);
  g_assert_nonnull (strstr (error->message, "$NEXTSTEP_MODEL"));
  g_assert_nonnull (strstr (error->message, f->root));
  g_clear_error (&error);
  g_assert_null (ns_model_find ("/nonexistent/model", FALSE, &error));
  g_assert_nonnull (strstr (error->message, "/nonexistent/model"));
}

static void
test_not_found (Fixture *f, gconstpointer data)
{
  (void) data;
  g_autoptr (GError) error = NULL;
  g_assert_null (ns_model_find (NULL, FALSE, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_FILE);
  g_assert_nonnull (strstr (error->message, f->hub));
  g_assert_nonnull (strstr (error->message, "download stepfun-ai/NextStep-1.1"));
  g_assert_nonnull (strstr (error->message, "--model"));
  g_assert_nonnull (strstr (error->message, "NEXTSTEP_MODEL"));
  g_clear_error (&error);
  g_assert_null (ns_model_find (NULL, TRUE, &error));
  g_assert_nonnull (strstr (error->message, "download stepfun-ai/NextStep-1-Large-Edit"));
}

static void
assert_vae (const char *expected, const char *model, const char *explicit_dir)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = ns_vae_find (model, explicit_dir, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (dir, ==, expected);
}

static void
test_vae (Fixture *f, gconstpointer data)
{
  (void) data;
  g_autofree char *model = add_snapshot (f, "NextStep-1-Large", "m1", TRUE, model_files);
  g_autoptr (GError) error = NULL;
  g_assert_null (ns_vae_find (model, NULL, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_FILE);
  g_assert_nonnull (strstr (error->message, "NextStep-1-f8ch16-Tokenizer"));
  g_assert_nonnull (strstr (error->message, "--vae"));
  g_clear_error (&error);

  /* The VAE repo in the same cache. */
  g_autofree char *cached = add_snapshot (f, "NextStep-1-f8ch16-Tokenizer", "v1", TRUE, vae_files);
  assert_vae (cached, model, NULL);

  /* vae_name_or_path, relative to the model folder, beats the cache. */
  g_autofree char *beside = g_build_filename (f->root, "beside", NULL);
  g_autofree char *model2 = g_build_filename (f->root, "model2", NULL);
  touch (beside, "config.json", "{}");
  touch (beside, "checkpoint.pt", "");
  touch (model2, "config.json", "{\"model_type\": \"nextstep\", \"boi\": 1, \"eoi\": 2, "
                                "\"image_placeholder_id\": 3, \"pad_token_id\": 4, "
                                "\"vae_name_or_path\": \"../beside\"}");
  assert_vae (beside, model2, NULL);

  /* <model>/vae beats both; an explicit folder beats everything. */
  g_autofree char *inside = g_build_filename (model2, "vae", NULL);
  touch (inside, "config.json", "{}");
  touch (inside, "checkpoint.pt", "");
  assert_vae (inside, model2, NULL);
  assert_vae (cached, model2, cached);

  /* An explicit folder without checkpoint.pt is refused, not replaced. */
  g_autofree char *half = g_build_filename (f->root, "half", NULL);
  touch (half, "config.json", "{}");
  g_assert_null (ns_vae_find (model2, half, &error));
  g_assert_nonnull (strstr (error->message, half));
  g_assert_nonnull (strstr (error->message, "checkpoint.pt"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/discovery/cache-order", Fixture, NULL, setup, test_cache_order, teardown);
  g_test_add ("/discovery/refs-main", Fixture, NULL, setup, test_refs_main, teardown);
  g_test_add ("/discovery/hf-home", Fixture, NULL, setup, test_hf_home, teardown);
  g_test_add ("/discovery/explicit", Fixture, NULL, setup, test_explicit, teardown);
  g_test_add ("/discovery/not-found", Fixture, NULL, setup, test_not_found, teardown);
  g_test_add ("/discovery/vae", Fixture, NULL, setup, test_vae, teardown);
  return g_test_run ();
}
