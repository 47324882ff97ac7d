/* ns-controller.c — see ns-controller.h.
 *
 * Threading: `busy` is set on the main thread before a job's worker starts
 * and cleared by the *_finish call, so while it is set only the worker
 * touches `model`, `key_*` and `defaults`. The worker talks to the main
 * context through a mailbox (guarded by `lock`): it overwrites the newest
 * value and posts one idle callback only if none is pending. */
#include <string.h>
#ifdef __linux__
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "ns-controller.h"

/* Token rows between VAE-decoded previews on the GPU (8 rows = a quarter of 512²). */
#define GPU_PREVIEW_EVERY 8

struct _NsController {
  GObject parent_instance;
  GMainContext *context;
  gboolean busy;

  NsModel *model;
  char *key_model_dir, *key_vae_dir, *key_server, *key_api_key;
  NsBackendKind key_backend;
  NsWeightFormat key_weights;
  gboolean key_want_edit;
  NsModelDefaults defaults[2];    /* by NsMode */

  GMutex lock;
  gboolean load_posted, token_posted, preview_posted;
  double load_fraction;
  char *load_what;
  int token_image, token, n_tokens;
  GBytes *preview;
  int preview_image, preview_width, preview_height, preview_tokens;
  gboolean preview_vae;
};

enum { SIGNAL_LOAD_PROGRESS, SIGNAL_TOKEN, SIGNAL_PREVIEW, SIGNAL_WORKER_TOKEN, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (NsController, ns_controller, G_TYPE_OBJECT)

/* ---- A job: what the worker needs, owned by the GTask ---------------- */

typedef struct {
  char *model_dir, *vae_dir, *server, *api_key;
  NsBackendKind backend;
  NsWeightFormat weights;
  gboolean want_edit;
  gboolean run;
  NsRequest request;     /* its strings point into the fields below */
  char *prompt, *positive, *negative, *noise_file;
  GBytes *input;
  NsRecipe *recipe;      /* made by the worker after a successful run */
} Job;

static void
job_free (Job *job)
{
  g_free (job->model_dir);
  g_free (job->vae_dir);
  g_free (job->server);
  g_free (job->api_key);
  g_free (job->prompt);
  g_free (job->positive);
  g_free (job->negative);
  g_free (job->noise_file);
  g_clear_pointer (&job->input, g_bytes_unref);
  ns_recipe_free (job->recipe);
  g_free (job);
}

static Job *
job_new (const NsModelKey *key)
{
  Job *job = g_new0 (Job, 1);
  job->model_dir = g_strdup (key->model_dir);
  job->vae_dir = g_strdup (key->vae_dir);
  job->backend = key->backend;
  job->weights = key->weights;
  job->server = g_strdup (key->server);
  job->api_key = g_strdup (key->api_key);
  job->want_edit = key->want_edit;
  return job;
}

static void
job_set_request (Job *job, const NsRequest *request)
{
  job->run = TRUE;
  job->request = *request;
  job->request.prompt = job->prompt = g_strdup (request->prompt);
  job->request.positive = job->positive = g_strdup (request->positive);
  job->request.negative = job->negative = g_strdup (request->negative);
  job->request.noise_file = job->noise_file = g_strdup (request->noise_file);
  if (request->input.rgba != NULL)
    {
      /* Packed copy: the caller's buffer may have any stride. */
      int row = request->input.width * 4;
      guint8 *pixels = g_malloc ((gsize) row * request->input.height);
      for (int y = 0; y < request->input.height; y++)
        memcpy (pixels + (gsize) y * row,
                request->input.rgba + (gsize) y * request->input.stride, row);
      job->input = g_bytes_new_take (pixels, (gsize) row * request->input.height);
      job->request.input.rgba = pixels;
      job->request.input.stride = row;
    }
}

/* ---- Mailbox: worker → main context ------------------------------------ */

/* Called with `lock` held. An idle source, not g_main_context_invoke: that
 * one runs the function right here, on the worker, whenever the context
 * happens to be free. At the priority of GTask's completion source, so that
 * sources of one priority dispatch in the order they were attached: the last
 * token and preview of a run reach the dialog before the run's result, even
 * when the main thread gets no time until the run has ended (a loaded
 * machine, a fast server). Each kind is posted at most once at a time, so
 * this cannot starve redraws. */
static void
post_locked (NsController *self, gboolean *posted, GSourceFunc dispatch)
{
  if (*posted)
    return;
  *posted = TRUE;
  GSource *source = g_idle_source_new ();
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, dispatch, g_object_ref (self), g_object_unref);
  g_source_attach (source, self->context);
  g_source_unref (source);
}

static gboolean
dispatch_load_progress (gpointer data)
{
  NsController *self = data;
  g_mutex_lock (&self->lock);
  self->load_posted = FALSE;
  double fraction = self->load_fraction;
  char *what = g_steal_pointer (&self->load_what);
  g_mutex_unlock (&self->lock);
  g_signal_emit (self, signals[SIGNAL_LOAD_PROGRESS], 0, fraction, what);
  g_free (what);
  return G_SOURCE_REMOVE;
}

static gboolean
dispatch_token (gpointer data)
{
  NsController *self = data;
  g_mutex_lock (&self->lock);
  self->token_posted = FALSE;
  int image = self->token_image, token = self->token, n_tokens = self->n_tokens;
  g_mutex_unlock (&self->lock);
  g_signal_emit (self, signals[SIGNAL_TOKEN], 0, image, token, n_tokens);
  return G_SOURCE_REMOVE;
}

static gboolean
dispatch_preview (gpointer data)
{
  NsController *self = data;
  g_mutex_lock (&self->lock);
  self->preview_posted = FALSE;
  GBytes *rgba = g_steal_pointer (&self->preview);
  int image = self->preview_image, width = self->preview_width, height = self->preview_height;
  int tokens = self->preview_tokens;
  gboolean vae = self->preview_vae;
  g_mutex_unlock (&self->lock);
  /* NULL when the run finished first and dropped it. */
  if (rgba != NULL)
    g_signal_emit (self, signals[SIGNAL_PREVIEW], 0, image, rgba, width, height, tokens, vae);
  g_clear_pointer (&rgba, g_bytes_unref);
  return G_SOURCE_REMOVE;
}

static void
worker_load_progress (double fraction, const char *what, gpointer user_data)
{
  NsController *self = user_data;
  g_mutex_lock (&self->lock);
  self->load_fraction = fraction;
  g_free (self->load_what);
  self->load_what = g_strdup (what);
  post_locked (self, &self->load_posted, dispatch_load_progress);
  g_mutex_unlock (&self->lock);
}

static void
worker_token (int image, int token, int n_tokens, gpointer user_data)
{
  NsController *self = user_data;
  g_signal_emit (self, signals[SIGNAL_WORKER_TOKEN], 0, image, token, n_tokens);
  g_mutex_lock (&self->lock);
  self->token_image = image;
  self->token = token;
  self->n_tokens = n_tokens;
  post_locked (self, &self->token_posted, dispatch_token);
  g_mutex_unlock (&self->lock);
}

static void
worker_preview (int image, const guint8 *rgba, int width, int height,
                int tokens_done, gboolean vae_decoded, gpointer user_data)
{
  NsController *self = user_data;
  /* Copy outside the lock: the main thread must never wait for a memcpy. */
  GBytes *copy = g_bytes_new (rgba, (gsize) width * height * 4);
  g_mutex_lock (&self->lock);
  g_clear_pointer (&self->preview, g_bytes_unref);
  self->preview = copy;
  self->preview_image = image;
  self->preview_width = width;
  self->preview_height = height;
  self->preview_tokens = tokens_done;
  self->preview_vae = vae_decoded;
  post_locked (self, &self->preview_posted, dispatch_preview);
  g_mutex_unlock (&self->lock);
}

/* ---- Worker ------------------------------------------------------------ */

static void
defaults_clear (NsModelDefaults *defaults)
{
  g_free (defaults->name);
  g_free (defaults->mode_warning);
  g_free (defaults->backend_note);
  g_free (defaults->negative);
  memset (defaults, 0, sizeof *defaults);
}

static void
all_defaults_clear (NsController *self)
{
  defaults_clear (&self->defaults[NS_MODE_GENERATE]);
  defaults_clear (&self->defaults[NS_MODE_EDIT]);
}

/* ns_request_resolve on a minimal request of `mode` gives the defaults the
 * engine will use (an edit request needs some input to validate). */
static void
resolve_defaults (NsController *self, NsMode mode)
{
  NsModelDefaults *d = &self->defaults[mode];
  d->name = g_strdup (ns_model_get_name (self->model));
  d->kind = ns_model_get_kind (self->model);
  d->mode_warning = ns_model_mode_warning (self->model, mode);
  d->backend = ns_model_get_backend (self->model);
  d->backend_note = g_strdup (ns_model_get_backend_note (self->model));

  static const guint8 pixels[16 * 16 * 4];
  NsRequest request;
  ns_request_init (&request);
  request.mode = mode;
  request.prompt = "a";
  if (mode == NS_MODE_EDIT)
    request.input = (NsImage) { .width = 16, .height = 16, .rgba = pixels, .stride = 16 * 4 };
  g_autoptr (GError) error = NULL;
  if (!ns_request_resolve (self->model, &request, &error))
    {
      g_warning ("Could not read the model's default settings: %s", error->message);
      return;
    }
  d->negative = g_strdup (request.negative != NULL ? request.negative : "");
  d->steps = request.steps;
  d->cfg = request.cfg;
  d->cfg_img = request.cfg_img;
  d->sampler = request.sampler;
  d->width = request.width;
  d->height = request.height;
}

static void
key_clear (NsController *self)
{
  g_clear_pointer (&self->key_model_dir, g_free);
  g_clear_pointer (&self->key_vae_dir, g_free);
  g_clear_pointer (&self->key_server, g_free);
  g_clear_pointer (&self->key_api_key, g_free);
}

static gboolean
key_matches (NsController *self, const Job *job)
{
  return self->model != NULL
      && g_strcmp0 (self->key_model_dir, job->model_dir) == 0
      && g_strcmp0 (self->key_vae_dir, job->vae_dir) == 0
      && self->key_backend == job->backend
      && self->key_weights == job->weights
      && g_strcmp0 (self->key_server, job->server) == 0
      && g_strcmp0 (self->key_api_key, job->api_key) == 0
      && self->key_want_edit == job->want_edit;
}

static gboolean
ensure_model (NsController *self, const Job *job, GCancellable *cancellable, GError **error)
{
  if (key_matches (self, job))
    return TRUE;
  /* Free the old model first: two full-size models rarely fit together. */
  g_clear_pointer (&self->model, ns_model_free);
  all_defaults_clear (self);
  NsLoadOptions options = {
    .model_dir = job->model_dir,
    .vae_dir = job->vae_dir,
    .backend = job->backend,
    .weights = job->weights,
    .progress = worker_load_progress,
    .progress_data = self,
    .cancellable = cancellable,
    .server = job->server,
    .api_key = job->api_key,
    .want_edit = job->want_edit,
  };
  self->model = ns_model_load (&options, error);
  if (self->model == NULL)
    return FALSE;
  key_clear (self);
  self->key_model_dir = g_strdup (job->model_dir);
  self->key_vae_dir = g_strdup (job->vae_dir);
  self->key_server = g_strdup (job->server);
  self->key_api_key = g_strdup (job->api_key);
  self->key_backend = job->backend;
  self->key_weights = job->weights;
  self->key_want_edit = job->want_edit;
  resolve_defaults (self, NS_MODE_GENERATE);
  resolve_defaults (self, NS_MODE_EDIT);
  return TRUE;
}

/* The recipe of a resolved request: the values really used, the seed of
 * the result; on a server, its model's name, so that "regenerate" asks for
 * it again. */
static NsRecipe *
recipe_new (NsController *self, const Job *job, const NsRequest *resolved, const NsResult *result)
{
  NsRequest used = *resolved;
  used.seed = result->seed;
  used.width = result->width;
  used.height = result->height;
  used.images = result->n_images;
  g_autoptr (NsSettings) settings =
    ns_settings_new_for_run (&used, job->backend == NS_BACKEND_REMOTE
                                    ? ns_model_get_name (self->model) : job->model_dir,
                             ns_model_get_backend (self->model), job->weights);
  return ns_recipe_new (resolved->mode, settings);
}

/* The engine uses every core; the dialog must still get the CPU at once
 * when it wakes up. On Linux the nice value is per thread and inherited by
 * the threads it creates (the engine's OpenMP team is made by the first
 * parallel region, on this worker), so lowering it here ranks the whole
 * computation below the main loop. Pool threads keep it, which is fine:
 * only the controller runs jobs in this process's GTask pool. */
static void
lower_worker_priority (void)
{
#ifdef __linux__
  static _Thread_local gboolean lowered;
  if (!lowered && setpriority (PRIO_PROCESS, (id_t) gettid (), 10) == 0)
    lowered = TRUE;
#endif
}

static void
worker (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
  NsController *self = source_object;
  Job *job = task_data;
  GError *error = NULL;
  lower_worker_priority ();
  if (!ensure_model (self, job, cancellable, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (!job->run)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  /* Resolve here rather than in the engine so the recipe records the
   * values really used, not "default". */
  NsRequest request = job->request;
  request.on_token = worker_token;
  request.on_preview = worker_preview;
  request.user_data = self;
  request.cancellable = cancellable;
  /* Real VAE previews cost milliseconds on a GPU but seconds on a CPU. */
  if (request.preview_every == 0 && ns_model_get_backend (self->model) == NS_BACKEND_CUDA)
    request.preview_every = GPU_PREVIEW_EVERY;
  NsResult *result = NULL;
  if (ns_request_resolve (self->model, &request, &error))
    result = ns_model_run (self->model, &request, &error);
  if (result == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  job->recipe = recipe_new (self, job, &request, result);
  g_task_return_pointer (task, result, (GDestroyNotify) ns_result_free);
}

static void
start_job (NsController *self, Job *job, GCancellable *cancellable,
           GAsyncReadyCallback callback, gpointer user_data, gpointer tag)
{
  g_return_if_fail (callback != NULL);
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, tag);
  g_task_set_task_data (task, job, (GDestroyNotify) job_free);
  /* The engine reports cancellation itself (NS_ERROR_CANCELLED), with the
   * partial state cleaned up; let it, rather than GTask, say so. */
  g_task_set_return_on_cancel (task, FALSE);
  self->busy = TRUE;
  g_task_run_in_thread (task, worker);
  g_object_unref (task);
}

/* Ends a job on the main thread: drops a preview the worker left behind. */
static void
finish_job (NsController *self)
{
  g_mutex_lock (&self->lock);
  g_clear_pointer (&self->preview, g_bytes_unref);
  g_mutex_unlock (&self->lock);
  self->busy = FALSE;
}

/* ---- Public API ---------------------------------------------------------- */

static gboolean
key_complete (const NsModelKey *key)
{
  return key->backend == NS_BACKEND_REMOTE ? key->server != NULL : key->model_dir != NULL;
}

NsController *
ns_controller_new (void)
{
  return g_object_new (NS_TYPE_CONTROLLER, NULL);
}

gboolean
ns_controller_is_busy (NsController *self)
{
  g_return_val_if_fail (NS_IS_CONTROLLER (self), FALSE);
  return self->busy;
}

const NsModelDefaults *
ns_controller_get_defaults (NsController *self, NsMode mode)
{
  g_return_val_if_fail (NS_IS_CONTROLLER (self), NULL);
  return self->busy || self->model == NULL ? NULL : &self->defaults[mode];
}

void
ns_controller_load_async (NsController *self, const NsModelKey *key, GCancellable *cancellable,
                          GAsyncReadyCallback callback, gpointer user_data)
{
  g_return_if_fail (NS_IS_CONTROLLER (self) && !self->busy && key_complete (key));
  start_job (self, job_new (key), cancellable, callback, user_data, ns_controller_load_async);
}

gboolean
ns_controller_load_finish (NsController *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  finish_job (self);
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
ns_controller_run_async (NsController *self, const NsModelKey *key, const NsRequest *request,
                         GCancellable *cancellable, GAsyncReadyCallback callback,
                         gpointer user_data)
{
  g_return_if_fail (NS_IS_CONTROLLER (self) && !self->busy && key_complete (key));
  Job *job = job_new (key);
  job_set_request (job, request);
  start_job (self, job, cancellable, callback, user_data, ns_controller_run_async);
}

NsResult *
ns_controller_run_finish (NsController *self, GAsyncResult *result, NsRecipe **recipe,
                          GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  finish_job (self);
  NsResult *run = g_task_propagate_pointer (G_TASK (result), error);
  Job *job = g_task_get_task_data (G_TASK (result));
  if (recipe != NULL)
    *recipe = run != NULL ? g_steal_pointer (&job->recipe) : NULL;
  return run;
}

/* ---- GObject ------------------------------------------------------------- */

static gpointer
free_model_thread (gpointer model)
{
  ns_model_free (model);
  return NULL;
}

static void
ns_controller_finalize (GObject *object)
{
  NsController *self = NS_CONTROLLER (object);
  /* Releasing gigabytes of weights (and GPU memory) can take a while; the
   * last reference may go on the main thread, so free them beside it. */
  if (self->model != NULL)
    g_thread_unref (g_thread_new ("ns-model-free", free_model_thread,
                                  g_steal_pointer (&self->model)));
  all_defaults_clear (self);
  key_clear (self);
  g_free (self->load_what);
  g_clear_pointer (&self->preview, g_bytes_unref);
  g_mutex_clear (&self->lock);
  g_main_context_unref (self->context);
  G_OBJECT_CLASS (ns_controller_parent_class)->finalize (object);
}

static void
ns_controller_init (NsController *self)
{
  g_mutex_init (&self->lock);
  self->context = g_main_context_ref_thread_default ();
}

static void
ns_controller_class_init (NsControllerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = ns_controller_finalize;
  signals[SIGNAL_LOAD_PROGRESS] =
    g_signal_new ("load-progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_DOUBLE, G_TYPE_STRING);
  signals[SIGNAL_TOKEN] =
    g_signal_new ("token", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_INT, G_TYPE_INT, G_TYPE_INT);
  signals[SIGNAL_PREVIEW] =
    g_signal_new ("preview", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 6, G_TYPE_INT, G_TYPE_BYTES,
                  G_TYPE_INT, G_TYPE_INT, G_TYPE_INT, G_TYPE_BOOLEAN);
  signals[SIGNAL_WORKER_TOKEN] =
    g_signal_new ("worker-token", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_INT, G_TYPE_INT, G_TYPE_INT);
}
