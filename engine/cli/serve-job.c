/* serve-job.c — one image request of `nextstep serve`: see serve.h.
 *
 * Threads: the main loop owns the SoupServerMessage; the worker owns the
 * run. With "stream": true the worker formats its events (progress, preview
 * tiles) into `out` under `lock` and posts one idle callback that moves them
 * into the reply; the job is reference-counted because such a callback may
 * still be pending when the run ends. A timer on the main loop watches the
 * client's socket and cancels the run when the client goes away. */
#include <string.h>
#include <sys/socket.h>

#include "serve.h"
#include "files/png.h"

#define WATCH_MS 200          /* how often a client's socket is checked */
#define PING_S 5              /* keep-alive comments while streaming */

typedef struct {
  Server *server;
  SoupServerMessage *msg;
  JsonObject *fields;         /* the request's strings point into it */
  NsApiRequest api;
  guint8 *input;
  NsModel *model;
  GCancellable *cancellable;
  gulong stop_id;             /* on server->stopping */
  guint watch_id, ping_id;
  gboolean msg_done;          /* libsoup finished the message (main thread) */
  /* worker → main */
  GMutex lock;
  GString *out;
  gboolean out_posted;
  guint8 **frames;            /* worker: the last preview sent of each image */
  NsResult *result;
  GError *error;
} Job;

static void
job_clear (Job *job)
{
  g_clear_handle_id (&job->watch_id, g_source_remove);
  g_clear_handle_id (&job->ping_id, g_source_remove);
  if (!job->msg_done)
    g_signal_handlers_disconnect_by_data (job->msg, job);
  g_object_unref (job->msg);
  json_object_unref (job->fields);
  g_free (job->input);
  g_cancellable_disconnect (job->server->stopping, job->stop_id);
  g_object_unref (job->cancellable);
  g_mutex_clear (&job->lock);
  g_string_free (job->out, TRUE);
  for (int i = 0; job->frames && i < job->api.request.images; i++)
    g_free (job->frames[i]);
  g_free (job->frames);
  ns_result_free (job->result);
  g_clear_error (&job->error);
}

static void
job_unref (Job *job)
{
  g_atomic_rc_box_release_full (job, (GDestroyNotify) job_clear);
}

/* ---- replies -------------------------------------------------------------- */

void
serve_reply_error (SoupServerMessage *msg, guint status, const char *message)
{
  const char *type = status == 401 ? "authentication_error"
                   : status == 429 ? "rate_limit_error"
                   : status >= 500 ? "server_error" : "invalid_request_error";
  char *body = ns_api_error_json (message, type);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE, body,
                                    strlen (body));
}

guint
serve_status_for (const GError *e)
{
  if (e->domain != NS_ERROR)
    return 500;
  switch (e->code)
    {
    case NS_ERROR_INVALID_ARGUMENT:
    case NS_ERROR_UNSUPPORTED:
    case NS_ERROR_FORMAT:
      return 400;
    case NS_ERROR_CANCELLED:   /* the client went away, or the server is stopping */
      return 503;
    default:
      return 500;
    }
}

/* {"created", "data": [{"b64_json"}], "nextstep": {"model", "seed"}} */
static char *
reply_json (const Job *job, GError **error)
{
  const NsResult *res = job->result;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, g_get_real_time () / G_USEC_PER_SEC);
  json_builder_set_member_name (b, "data");
  json_builder_begin_array (b);
  for (int i = 0; i < res->n_images; i++)
    {
      g_autoptr (GBytes) png = ns_png_encode_rgba (res->rgba[i], res->width, res->height, error);
      if (png == NULL)
        return NULL;
      g_autofree char *b64 = g_base64_encode (g_bytes_get_data (png, NULL),
                                              g_bytes_get_size (png));
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "b64_json");
      json_builder_add_string_value (b, b64);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "nextstep");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, ns_model_get_name (job->model));
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, (gint64) res->seed);
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

/* ---- server-sent events ------------------------------------------------- */

/* Main thread: moves the worker's events into the reply. */
static gboolean
flush_events (gpointer data)
{
  Job *job = data;
  g_mutex_lock (&job->lock);
  job->out_posted = FALSE;
  gsize len = job->out->len;
  char *text = g_string_free (g_steal_pointer (&job->out), FALSE);
  job->out = g_string_new (NULL);
  g_mutex_unlock (&job->lock);
  if (len > 0 && !job->msg_done)
    {
      soup_message_body_append (soup_server_message_get_response_body (job->msg),
                                SOUP_MEMORY_TAKE, text, len);
      soup_server_message_unpause (job->msg);
    }
  else
    g_free (text);
  return G_SOURCE_REMOVE;
}

/* Any thread: queues one event (`data` is a JSON object, taken). */
static void
post_event (Job *job, const char *event, JsonObject *data)
{
  g_autoptr (JsonNode) node = json_node_init_object (json_node_alloc (), data);
  g_autofree char *text = json_to_string (node, FALSE);
  json_object_unref (data);
  g_mutex_lock (&job->lock);
  g_string_append_printf (job->out, "event: %s\ndata: %s\n\n", event, text);
  if (!job->out_posted)
    {
      job->out_posted = TRUE;
      g_idle_add_full (G_PRIORITY_DEFAULT, flush_events, g_atomic_rc_box_acquire (job),
                       (GDestroyNotify) job_unref);
    }
  g_mutex_unlock (&job->lock);
}

static const char *const stage_names[] = { "encode", "prefill", "tokens", "decode" };

static void
on_stage (NsStage stage, int done, int total, gpointer data)
{
  JsonObject *o = json_object_new ();
  json_object_set_string_member (o, "stage", stage_names[stage]);
  json_object_set_int_member (o, "done", done);
  json_object_set_int_member (o, "total", total);
  post_event (data, "progress", o);
}

static void
on_token (int image, int token, int n_tokens, gpointer data)
{
  JsonObject *o = json_object_new ();
  json_object_set_int_member (o, "image", image);
  json_object_set_int_member (o, "token", token);
  json_object_set_int_member (o, "n_tokens", n_tokens);
  post_event (data, "progress", o);
}

/* The smallest rectangle where `a` and `b` (w×h RGBA) differ; FALSE if none. */
static gboolean
changed_rect (const guint8 *a, const guint8 *b, int w, int h, int rect[4])
{
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      if (memcmp (a + ((gsize) y * w + x) * 4, b + ((gsize) y * w + x) * 4, 4) != 0)
        {
          x0 = MIN (x0, x);
          x1 = MAX (x1, x);
          y0 = MIN (y0, y);
          y1 = MAX (y1, y);
        }
  rect[0] = x0, rect[1] = y0, rect[2] = x1 - x0 + 1, rect[3] = y1 - y0 + 1;
  return x1 >= 0;
}

/* Sends only the part of the preview that changed since the last one: a
 * token's tile, or the rows a VAE preview decoded. */
static void
on_preview (int image, const guint8 *rgba, int width, int height, int tokens_done,
            gboolean vae_decoded, gpointer data)
{
  Job *job = data;
  gsize size = (gsize) width * height * 4;
  if (job->frames == NULL)
    job->frames = g_new0 (guint8 *, job->api.request.images);
  if (job->frames[image] == NULL)
    job->frames[image] = g_malloc0 (size);
  int rect[4];
  if (!changed_rect (job->frames[image], rgba, width, height, rect))
    return;
  memcpy (job->frames[image], rgba, size);
  g_autofree guint8 *tile = g_malloc ((gsize) rect[2] * rect[3] * 4);
  for (int y = 0; y < rect[3]; y++)
    memcpy (tile + (gsize) y * rect[2] * 4, rgba + ((gsize) (rect[1] + y) * width + rect[0]) * 4,
            (gsize) rect[2] * 4);
  g_autofree char *b64 = g_base64_encode (tile, (gsize) rect[2] * rect[3] * 4);
  JsonObject *o = json_object_new ();
  const char *names[] = { "x", "y", "width", "height" };
  for (int i = 0; i < 4; i++)
    json_object_set_int_member (o, names[i], rect[i]);
  json_object_set_int_member (o, "image", image);
  json_object_set_int_member (o, "frame_width", width);
  json_object_set_int_member (o, "frame_height", height);
  json_object_set_int_member (o, "tokens_done", tokens_done);
  json_object_set_boolean_member (o, "vae", vae_decoded);
  json_object_set_string_member (o, "rgba", b64);
  post_event (job, "preview", o);
}

static gboolean
ping (gpointer data)
{
  Job *job = data;
  g_mutex_lock (&job->lock);
  g_string_append (job->out, ": ping\n\n");
  g_mutex_unlock (&job->lock);
  flush_events (job);
  return G_SOURCE_CONTINUE;
}

/* ---- the job ------------------------------------------------------------ */

/* A peer that closed its end reads as end-of-file without blocking. */
static gboolean
watch_client (gpointer data)
{
  Job *job = data;
  GSocket *socket = job->msg_done ? NULL : soup_server_message_get_socket (job->msg);
  char byte;
  if (socket == NULL
      || recv (g_socket_get_fd (socket), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
    {
      g_cancellable_cancel (job->cancellable);
      job->watch_id = 0;
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
on_msg_finished (SoupServerMessage *msg, gpointer data)
{
  Job *job = data;
  (void) msg;
  job->msg_done = TRUE;
  g_signal_handlers_disconnect_by_data (job->msg, job);
  g_cancellable_cancel (job->cancellable);
}

static void
send_plain_reply (Job *job)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *body = job->result ? reply_json (job, &error) : NULL;
  if (body == NULL)
    {
      const GError *e = job->error ? job->error : error;
      serve_reply_error (job->msg, serve_status_for (e), e->message);
      return;
    }
  soup_server_message_set_status (job->msg, 200, NULL);
  soup_server_message_set_response (job->msg, "application/json", SOUP_MEMORY_TAKE,
                                    g_steal_pointer (&body), strlen (body));
}

/* The stream's last event: the reply, or the error. */
static void
send_final_event (Job *job)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *body = job->result ? reply_json (job, &error) : NULL;
  const GError *e = job->error ? job->error : error;
  if (body == NULL)
    body = ns_api_error_json (e->message, serve_status_for (e) >= 500 ? "server_error"
                                                                       : "invalid_request_error");
  g_mutex_lock (&job->lock);
  g_string_append_printf (job->out, "event: %s\ndata: %s\n\n", job->result ? "result" : "error",
                          body);
  g_mutex_unlock (&job->lock);
  flush_events (job);
  soup_message_body_complete (soup_server_message_get_response_body (job->msg));
}

/* Main thread, after the worker: answers and frees. */
static gboolean
job_done (gpointer data)
{
  Job *job = data;
  job->server->pending--;
  g_clear_handle_id (&job->ping_id, g_source_remove);
  if (!job->msg_done)
    {
      if (job->api.stream)
        send_final_event (job);
      else
        send_plain_reply (job);
      soup_server_message_unpause (job->msg);
    }
  job_unref (job);
  return G_SOURCE_REMOVE;
}

void
serve_job_run (gpointer data, gpointer user_data)
{
  Job *job = data;
  (void) user_data;
  NsRequest *r = &job->api.request;
  r->cancellable = job->cancellable;
  r->user_data = job;
  if (job->api.stream)
    {
      r->on_stage = on_stage;
      r->on_token = on_token;
      r->on_preview = on_preview;
      /* Real VAE previews cost milliseconds on a GPU but seconds on a CPU. */
      r->preview_every = ns_model_get_backend (job->model) == NS_BACKEND_CUDA ? 8 : 0;
    }
  /* Not when the client left while the job waited. */
  if (!g_cancellable_set_error_if_cancelled (job->cancellable, &job->error))
    job->result = ns_model_run (job->model, r, &job->error);
  g_idle_add (job_done, job);
}

static void
start_stream (Job *job)
{
  SoupMessageHeaders *h = soup_server_message_get_response_headers (job->msg);
  soup_message_headers_set_encoding (h, SOUP_ENCODING_CHUNKED);
  soup_message_headers_replace (h, "Content-Type", "text/event-stream");
  soup_message_headers_replace (h, "Cache-Control", "no-cache");
  soup_server_message_set_status (job->msg, 200, NULL);
  job->ping_id = g_timeout_add_seconds (PING_S, ping, job);
  g_mutex_lock (&job->lock);
  g_string_append (job->out, ": queued\n\n");
  g_mutex_unlock (&job->lock);
  flush_events (job);
}

/* Server shutdown: the "cancelled" handler of server->stopping. */
static void
cancel_job (GCancellable *stopping, gpointer job_cancellable)
{
  (void) stopping;
  g_cancellable_cancel (job_cancellable);
}

/* The model that serves a request: the one it names, else by mode. */
static NsModel *
choose_model (Server *s, const NsApiRequest *api, gboolean edit)
{
  if (edit)
    return s->edit;
  if (api->model && strcmp (api->model, ns_model_get_name (s->edit)) == 0)
    return s->edit;
  return s->t2i;
}

void
serve_job_start (Server *s, SoupServerMessage *msg, JsonObject *fields, gboolean edit,
                 guint8 *input, int input_width, int input_height)
{
  Job *job = g_atomic_rc_box_new0 (Job);
  job->server = s;
  job->msg = g_object_ref (msg);
  job->fields = fields;
  job->input = input;
  job->cancellable = g_cancellable_new ();
  job->stop_id = g_cancellable_connect (s->stopping, G_CALLBACK (cancel_job),
                                        job->cancellable, NULL);
  job->out = g_string_new (NULL);
  g_mutex_init (&job->lock);
  ns_request_init (&job->api.request);
  g_autoptr (GError) error = NULL;
  NsRequest *r = &job->api.request;
  r->mode = edit ? NS_MODE_EDIT : NS_MODE_GENERATE;
  r->input = (NsImage) { input_width, input_height, input, input_width * 4 };
  if (!ns_api_request_from_json (fields, &job->api, &error))
    serve_reply_error (msg, 400, error->message);
  else if (s->pending >= s->max_pending)
    {
      g_autofree char *text = g_strdup_printf ("The server is busy (1 run and %d waiting); "
                                               "try again shortly", s->max_pending - 1);
      soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                    "Retry-After", "5");
      serve_reply_error (msg, 429, text);
    }
  else
    {
      job->model = choose_model (s, &job->api, edit);
      s->pending++;
      g_signal_connect (msg, "finished", G_CALLBACK (on_msg_finished), job);
      job->watch_id = g_timeout_add (WATCH_MS, watch_client, job);
      soup_server_message_pause (msg);
      if (job->api.stream)
        start_stream (job);
      g_thread_pool_push (s->worker, job, NULL);
      return;
    }
  job_unref (job);
}
