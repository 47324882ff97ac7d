/* test-faults.c — faults during work, through the public API on one
 * `make-tiny` model: 1,000 runs stopped at random points (from the token
 * callback, or from another thread after a random delay) must each end in
 * NS_ERROR_CANCELLED or a whole result, never a crash or a partial result;
 * 100 consecutive runs in one NsModel must keep host memory flat. Leaks are
 * caught by LeakSanitizer in the -Db_sanitize=address build. */
#include <stdio.h>
#include <unistd.h>

#include "nextstep.h"
#include "test-util.h"

#if defined(__SANITIZE_ADDRESS__)
#define NS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NS_TEST_ASAN 1
#endif
#endif

static NsModel *model;
static char *model_dir;

typedef struct {
  GCancellable *cancellable;
  int cancel_at;                  /* token to cancel at, or µs before cancelling */
  gboolean cancelled_early;       /* cancelled before the last token */
} CancelPlan;

static void
cancel_on_token (int image, int token, int n_tokens, gpointer data)
{
  CancelPlan *plan = data;
  if (image == 0 && token == plan->cancel_at)
    {
      plan->cancelled_early = token < n_tokens - 1;
      g_cancellable_cancel (plan->cancellable);
    }
}

static gpointer
cancel_after_delay (gpointer data)
{
  CancelPlan *plan = data;
  g_usleep (plan->cancel_at);
  g_cancellable_cancel (plan->cancellable);
  return NULL;
}

static void
small_request (NsRequest *r, int images)
{
  ns_request_init (r);
  r->prompt = "a small red fox";
  r->width = r->height = 32;
  r->steps = 2;
  r->images = images;
}

/* A finished result must be whole: every picture present and sized. */
static void
assert_whole (const NsResult *res, int images)
{
  g_assert_cmpint (res->n_images, ==, images);
  g_assert_cmpint (res->width, ==, 32);
  g_assert_cmpint (res->height, ==, 32);
  for (int i = 0; i < images; i++)
    g_assert_nonnull (res->rgba[i]);
}

/* One run with a random stop; TRUE when it ended cancelled. */
static gboolean
run_cancelled (GRand *rand, gboolean from_thread)
{
  NsRequest r;
  int images = g_rand_int_range (rand, 1, 3);
  small_request (&r, images);
  CancelPlan plan = { g_cancellable_new (), -1, FALSE };
  r.cancellable = plan.cancellable;
  GThread *thread = NULL;
  if (from_thread)
    {
      plan.cancel_at = g_rand_int_range (rand, 0, 20000);   /* µs */
      thread = g_thread_new ("cancel", cancel_after_delay, &plan);
    }
  else
    {
      plan.cancel_at = g_rand_int_range (rand, 0, 4);        /* 32×32: 4 tokens */
      r.on_token = cancel_on_token;
      r.user_data = &plan;
    }
  g_autoptr (GError) error = NULL;
  NsResult *res = ns_model_run (model, &r, &error);
  if (thread != NULL)
    g_thread_join (thread);
  if (res == NULL)
    g_assert_error (error, NS_ERROR, NS_ERROR_CANCELLED);
  else
    {
      g_assert_no_error (error);
      g_assert_false (plan.cancelled_early);
      assert_whole (res, images);
      ns_result_free (res);
    }
  g_object_unref (plan.cancellable);
  return res == NULL;
}

static void
test_random_cancel (void)
{
  GRand *rand = g_rand_new_with_seed (g_test_rand_int ());
  int cancelled = 0;
  for (int i = 0; i < 1000; i++)
    cancelled += run_cancelled (rand, i % 2 == 1);
  g_rand_free (rand);
  g_test_message ("%d of 1000 runs ended cancelled, the others finished whole", cancelled);
  g_assert_cmpint (cancelled, >=, 500);   /* every token-callback stop must cancel */
  /* The model still works after all that. */
  NsRequest r;
  small_request (&r, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (NsResult) res = ns_model_run (model, &r, &error);
  g_assert_no_error (error);
  assert_whole (res, 1);
}

static guint64
resident_bytes (void)
{
  g_autofree char *statm = NULL;
  g_assert_true (g_file_get_contents ("/proc/self/statm", &statm, NULL, NULL));
  guint64 pages = 0;
  g_assert_cmpint (sscanf (statm, "%*u %" G_GUINT64_FORMAT, &pages), ==, 1);
  return pages * (guint64) sysconf (_SC_PAGESIZE);
}

static void
run_once (guint64 seed)
{
  NsRequest r;
  small_request (&r, 1);
  r.seed = seed;
  g_autoptr (GError) error = NULL;
  g_autoptr (NsResult) res = ns_model_run (model, &r, &error);
  g_assert_no_error (error);
  assert_whole (res, 1);
}

static void
test_flat_memory (void)
{
  const int warm_up = 10, runs = 100;
  for (int i = 0; i < warm_up; i++)
    run_once (i);
  guint64 before = resident_bytes ();
  for (int i = 0; i < runs; i++)
    run_once (warm_up + i);
  guint64 after = resident_bytes ();
  g_test_message ("RSS after %d warm-up runs: %.1f MiB; after %d more: %.1f MiB", warm_up,
                  before / 1048576.0, runs, after / 1048576.0);
#ifdef NS_TEST_ASAN
  /* ASan keeps freed blocks in quarantine, so RSS grows by design; its
   * LeakSanitizer checks the same loop for leaks at exit. */
  g_test_message ("ASan build: RSS growth not checked");
#else
  /* Allow 4 MiB for allocator fragmentation; a leak of one 32×32 picture
   * per run alone is 400 KiB over 100 runs, of the model's buffers far more. */
  g_assert_cmpuint (after, <=, before + 4 * 1048576);
#endif
}

static void
load_tiny_model (void)
{
  model_dir = ns_test_tmpdir ();
  const char *cli = g_getenv ("NS_CLI");
  g_assert_nonnull (cli);
  g_autofree char *out = g_build_filename (model_dir, "tiny", NULL);
  const char *argv[] = { cli, "make-tiny", out, NULL };
  g_autoptr (GError) error = NULL;
  int status = 0;
  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, NULL,
                &status, &error);
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  NsLoadOptions o = { .model_dir = out, .backend = NS_BACKEND_CPU, .threads = 1 };
  model = ns_model_load (&o, &error);
  g_assert_no_error (error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  load_tiny_model ();
  g_test_add_func ("/robust/random-cancel", test_random_cancel);
  g_test_add_func ("/robust/flat-memory", test_flat_memory);
  int rc = g_test_run ();
  ns_model_free (model);
  ns_test_rmtree (model_dir);
  g_free (model_dir);
  return rc;
}
