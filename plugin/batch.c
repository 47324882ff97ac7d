/* batch.c — see batch.h. */
#include "batch.h"
#include "plugin-intl.h"

typedef struct {
  GMainLoop    *loop;
  GAsyncResult *result;
  int           images;
  gboolean      generating;  /* the first token came: loading is over */
} Wait;

static void
on_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Wait *wait = user_data;

  wait->result = g_object_ref (result);
  g_main_loop_quit (wait->loop);
}

/* Signals of the controller arrive here on the main thread, the only one
 * that may talk to GIMP. */
static void
on_load_progress (NsController *controller, double fraction, const char *what,
                  gpointer user_data)
{
  gimp_progress_update (fraction);
}

static void
on_token (NsController *controller, int image, int token, int n_tokens,
          Wait *wait)
{
  if (! wait->generating)
    {
      gimp_progress_set_text (_("Generating with NextStep…"));
      wait->generating = TRUE;
    }
  gimp_progress_update ((image * n_tokens + token + 1.0)
                        / ((double) wait->images * n_tokens));
}

NsResult *
ns_batch_run (const NsJob *job, NsRecipe **recipe, GError **error)
{
  g_autoptr (NsController) controller = ns_controller_new ();
  Wait wait = { g_main_loop_new (NULL, FALSE), NULL, MAX (job->request.images, 1), FALSE };
  NsResult *result;

  g_signal_connect (controller, "load-progress", G_CALLBACK (on_load_progress), NULL);
  g_signal_connect (controller, "token", G_CALLBACK (on_token), &wait);
  gimp_progress_init (_("Loading the NextStep model…"));
  ns_controller_run_async (controller, &job->key, &job->request, NULL, on_done, &wait);
  g_main_loop_run (wait.loop);
  result = ns_controller_run_finish (controller, wait.result, recipe, error);
  gimp_progress_end ();
  g_object_unref (wait.result);
  g_main_loop_unref (wait.loop);
  return result;
}
