/* remote-model.c — the remote NsModel: requests go to an image server
 * (`nextstep serve`, or vLLM-Omni) over HTTP with libsoup 3.
 *
 * Calls are synchronous on the caller's thread (the CLI's main thread, the
 * dialog's worker), cancellable through the request's GCancellable, and
 * made on a session created per call: a SoupSession belongs to the thread
 * that made it, and the controller's worker thread may change between runs.
 * Only a failure to connect is retried: once a request has reached the
 * server, sending it again could run it twice. */
#include <string.h>
#include <libsoup/soup.h>

#include "model/model-iface.h"
#include "remote/protocol.h"
#include "files/png.h"

#define CONNECT_TRIES 4
#define INFO_TIMEOUT_S 15        /* GET /v1/models */
/* Our server sends an event at least every few seconds while streaming; a
 * plain request (vLLM-Omni) is silent until the pictures are done. */
#define STREAM_TIMEOUT_S 120
#define PLAIN_TIMEOUT_S 1800
#define MAX_REPLY_BYTES ((gsize) 1 << 30)
#define MAX_EVENT_BYTES ((gsize) 256 << 20)

typedef struct {
  NsModel base;
  char *api_key;
  gboolean nextstep;        /* our server: edits, streams with previews */
} NsRemoteModel;

/* ---- HTTP ----------------------------------------------------------------- */

typedef struct {
  const char *server, *api_key, *method, *path;
  const char *content_type;   /* of body */
  GBytes *body;               /* NULL for GET */
  guint timeout_s;
  GCancellable *cancellable;
} Call;

static gboolean
is_connect_failure (const GError *e)
{
  return e->domain == G_RESOLVER_ERROR
      || g_error_matches (e, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED)
      || g_error_matches (e, G_IO_ERROR, G_IO_ERROR_HOST_UNREACHABLE)
      || g_error_matches (e, G_IO_ERROR, G_IO_ERROR_NETWORK_UNREACHABLE);
}

/* The engine's error for a transport failure. */
static void
set_transport_error (GError **error, const Call *call, const GError *e)
{
  if (g_error_matches (e, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_set_error (error, NS_ERROR, NS_ERROR_CANCELLED, "Generation was cancelled");
  else if (is_connect_failure (e))
    g_set_error (error, NS_ERROR, NS_ERROR_BACKEND,
                 "Cannot connect to the server %s: %s; check the address and that the server "
                 "is running (nextstep serve, or vllm serve … --omni)", call->server, e->message);
  else
    g_set_error (error, NS_ERROR, NS_ERROR_BACKEND,
                 "Lost the connection to the server %s during %s %s: %s; the server may have "
                 "stopped: check it and try again", call->server, call->method, call->path,
                 e->message);
}

static SoupMessage *
message_new (const Call *call, GError **error)
{
  g_autofree char *url = g_strconcat (call->server, call->path, NULL);
  g_autoptr (GError) local = NULL;
  g_autoptr (GUri) uri = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, &local);
  if (uri == NULL || (g_strcmp0 (g_uri_get_scheme (uri), "http") != 0
                      && g_strcmp0 (g_uri_get_scheme (uri), "https") != 0))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "Server address '%s': use http://HOST:PORT or https://HOST:PORT",
                   call->server);
      return NULL;
    }
  SoupMessage *msg = soup_message_new_from_uri (call->method, uri);
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  if (call->api_key != NULL && call->api_key[0] != '\0')
    {
      g_autofree char *auth = g_strconcat ("Bearer ", call->api_key, NULL);
      soup_message_headers_replace (headers, "Authorization", auth);
    }
  if (call->body != NULL)
    soup_message_set_request_body_from_bytes (msg, call->content_type, call->body);
  return msg;
}

/* Waits `ms` unless cancelled first (then FALSE). */
static gboolean
wait_ms (guint ms, GCancellable *cancellable)
{
  for (guint t = 0; t < ms; t += 50)
    {
      if (g_cancellable_is_cancelled (cancellable))
        return FALSE;
      g_usleep (50 * 1000);
    }
  return TRUE;
}

/* Sends the call and returns the reply's body stream; *msg_out is the
 * message (for the status). Retries only when connecting fails. */
static GInputStream *
send_call (SoupSession *session, const Call *call, SoupMessage **msg_out, GError **error)
{
  for (int attempt = 0;; attempt++)
    {
      g_autoptr (SoupMessage) msg = message_new (call, error);
      g_autoptr (GError) local = NULL;
      if (msg == NULL)
        return NULL;
      GInputStream *in = soup_session_send (session, msg, call->cancellable, &local);
      if (in != NULL)
        {
          *msg_out = g_steal_pointer (&msg);
          return in;
        }
      if (!is_connect_failure (local) || attempt + 1 == CONNECT_TRIES
          || !wait_ms (250u << attempt, call->cancellable))
        {
          set_transport_error (error, call, local);
          return NULL;
        }
    }
}

static GBytes *
read_all (GInputStream *in, const Call *call, GError **error)
{
  g_autoptr (GOutputStream) out = g_memory_output_stream_new_resizable ();
  guint8 buf[65536];
  gsize total = 0;
  g_autoptr (GError) local = NULL;
  for (;;)
    {
      gssize n = g_input_stream_read (in, buf, sizeof buf, call->cancellable, &local);
      if (n < 0)
        {
          set_transport_error (error, call, local);
          return NULL;
        }
      if (n == 0)
        break;
      if ((total += (gsize) n) > MAX_REPLY_BYTES)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                       "The server %s sent more than %zu MiB; is it an image server?",
                       call->server, MAX_REPLY_BYTES >> 20);
          return NULL;
        }
      g_output_stream_write_all (out, buf, (gsize) n, NULL, NULL, NULL);
    }
  g_output_stream_close (out, NULL, NULL);
  return g_memory_output_stream_steal_as_bytes (G_MEMORY_OUTPUT_STREAM (out));
}

/* The message of a {"error": {"message"}} body, or the body's start. */
static char *
error_message (GBytes *body)
{
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  g_autoptr (JsonObject) o = ns_api_parse_object (data, len, 2, "The error reply", NULL);
  JsonObject *e = o && json_object_has_member (o, "error")
                  && JSON_NODE_HOLDS_OBJECT (json_object_get_member (o, "error"))
                  ? json_object_get_object_member (o, "error") : NULL;
  const char *m = e ? json_object_get_string_member_with_default (e, "message", NULL) : NULL;
  if (m != NULL)
    return g_strdup (m);
  if (o && json_object_has_member (o, "detail"))   /* FastAPI's own errors (vLLM-Omni) */
    {
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      json_generator_set_root (gen, json_object_get_member (o, "detail"));
      return json_generator_to_data (gen, NULL);
    }
  return g_strndup (data, MIN (len, 200));
}

static gboolean
check_status (SoupMessage *msg, const Call *call, GBytes *body, GError **error)
{
  guint status = soup_message_get_status (msg);
  if (status >= 200 && status < 300)
    return TRUE;
  g_autofree char *text = error_message (body);
  const char *hint = status == 401 ? " (check the API key: --api-key, or the dialog's key)"
                   : status == 429 ? " (the server is busy with other requests; try again "
                                     "in a moment)"
                   : status == 404 ? " (is this an image server? nextstep serve, or vllm "
                                     "serve … --omni)" : "";
  g_set_error (error, NS_ERROR, status >= 400 && status < 500 && status != 401 && status != 429
                                  && status != 404 ? NS_ERROR_INVALID_ARGUMENT : NS_ERROR_BACKEND,
               "The server %s refused %s %s with HTTP %u: %s%s", call->server, call->method,
               call->path, status, text, hint);
  return FALSE;
}

/* A whole call: its reply body, when the status says success. */
static GBytes *
call_for_bytes (const Call *call, GError **error)
{
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", call->timeout_s,
                                                                  "user-agent", "nextstep/"
                                                                  NS_VERSION, NULL);
  g_autoptr (SoupMessage) msg = NULL;
  g_autoptr (GInputStream) in = send_call (session, call, &msg, error);
  g_autoptr (GBytes) body = in ? read_all (in, call, error) : NULL;
  if (body == NULL || !check_status (msg, call, body, error))
    return NULL;
  return g_steal_pointer (&body);
}

/* ---- the models a server offers ------------------------------------------ */

static void
server_model_free (gpointer p)
{
  NsServerModel *sm = p;
  g_free (sm->id);
  g_free (sm);
}

static NsServerModel *
server_model_from_json (JsonNode *node)
{
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  const char *id = o ? json_object_get_string_member_with_default (o, "id", NULL) : NULL;
  if (id == NULL)
    return NULL;
  NsServerModel *sm = g_new0 (NsServerModel, 1);
  sm->id = g_strdup (id);
  JsonNode *ext = json_object_get_member (o, "nextstep");
  if (ext != NULL && JSON_NODE_HOLDS_OBJECT (ext))
    {
      const char *kind = json_object_get_string_member_with_default (json_node_get_object (ext),
                                                                     "kind", "");
      sm->nextstep = TRUE;
      sm->kind = strcmp (kind, "edit") == 0 ? NS_MODEL_KIND_EDIT : NS_MODEL_KIND_T2I;
      sm->large_style = json_object_get_boolean_member_with_default (json_node_get_object (ext),
                                                                     "large_style", FALSE);
    }
  return sm;
}

GPtrArray *
ns_server_list_models (const char *server, const char *api_key, GCancellable *cancellable,
                       GError **error)
{
  Call call = { server, api_key, "GET", "/v1/models", NULL, NULL, INFO_TIMEOUT_S, cancellable };
  g_autoptr (GBytes) body = call_for_bytes (&call, error);
  if (body == NULL)
    return NULL;
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  g_autoptr (JsonObject) o = ns_api_parse_object (data, len, 4, "The server's model list",
                                                  error);
  JsonNode *list = o ? json_object_get_member (o, "data") : NULL;
  if (o != NULL && (list == NULL || !JSON_NODE_HOLDS_ARRAY (list)))
    g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                 "The server %s answered GET /v1/models without a \"data\" list; is it an "
                 "OpenAI-style image server?", server);
  if (list == NULL || !JSON_NODE_HOLDS_ARRAY (list))
    return NULL;
  GPtrArray *models = g_ptr_array_new_with_free_func (server_model_free);
  JsonArray *array = json_node_get_array (list);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      NsServerModel *sm = server_model_from_json (json_array_get_element (array, i));
      if (sm != NULL)
        g_ptr_array_add (models, sm);
    }
  return models;
}

/* The model named `name`, else the first of the wanted kind, else the first. */
static const NsServerModel *
pick_model (GPtrArray *models, const char *name, gboolean want_edit, const char *server,
            GError **error)
{
  g_autoptr (GString) ids = g_string_new (NULL);
  for (guint i = 0; i < models->len; i++)
    {
      const NsServerModel *sm = models->pdata[i];
      if (name != NULL && strcmp (sm->id, name) == 0)
        return sm;
      g_string_append_printf (ids, "%s%s", i ? ", " : "", sm->id);
    }
  for (guint i = 0; name == NULL && i < models->len; i++)
    if ((((NsServerModel *) models->pdata[i])->kind == NS_MODEL_KIND_EDIT) == want_edit)
      return models->pdata[i];
  if (name == NULL && models->len > 0)
    return models->pdata[0];
  g_set_error (error, NS_ERROR, NS_ERROR_MODEL, "The server %s has no model%s%s%s; it offers: "
               "%s", server, name ? " '" : "", name ? name : "", name ? "'" : "",
               ids->len ? ids->str : "none");
  return NULL;
}

/* ---- running ------------------------------------------------------------- */

typedef struct {
  const NsRequest *r;
  guint8 **canvas;          /* per image, for preview tiles (allocated on the first) */
  int canvas_w, canvas_h;
  NsResult *result;
} Stream;

static gboolean
remote_check (const NsModel *model, const NsRequest *r, GError **error)
{
  const NsRemoteModel *m = (const NsRemoteModel *) model;
  if (r->images > NS_API_MAX_IMAGES)
    return ns_request_invalid (error, "Number of images %d: a server makes 1 to %d per "
                               "request", r->images, NS_API_MAX_IMAGES);
  if (r->width > NS_API_MAX_SIDE || r->height > NS_API_MAX_SIDE)
    return ns_request_invalid (error, "Image size %d×%d: a server makes at most %d pixels a "
                               "side", r->width, r->height, NS_API_MAX_SIDE);
  if (r->seed > G_MAXINT64)
    return ns_request_invalid (error, "Seed %" G_GUINT64_FORMAT ": a server takes seeds up to "
                               "%" G_GINT64_FORMAT, r->seed, G_MAXINT64);
  if (r->mode == NS_MODE_EDIT && !m->nextstep)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "The server %s does not edit images (vLLM-Omni's NextStep pipeline makes "
                   "pictures from text only); edit on `nextstep serve` or locally", model->dir);
      return FALSE;
    }
  if (r->noise_file != NULL)
    return ns_request_invalid (error, "Injected noise (--noise) works only locally");
  return TRUE;
}

static NsResult *
result_from_reply (const NsRequest *r, JsonObject *reply, GError **error)
{
  JsonNode *data = json_object_get_member (reply, "data");
  JsonArray *list = data && JSON_NODE_HOLDS_ARRAY (data) ? json_node_get_array (data) : NULL;
  if (list == NULL || json_array_get_length (list) != (guint) r->images)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "The server's reply does not hold the %d picture(s) asked for", r->images);
      return NULL;
    }
  g_autoptr (NsResult) res = g_new0 (NsResult, 1);
  res->rgba = g_new0 (guint8 *, r->images);
  res->seed = r->seed;
  for (int i = 0; i < r->images; i++)
    {
      JsonNode *item = json_array_get_element (list, i);
      const char *b64 = JSON_NODE_HOLDS_OBJECT (item)
        ? json_object_get_string_member_with_default (json_node_get_object (item), "b64_json",
                                                      NULL) : NULL;
      gsize len = 0;
      g_autofree guint8 *png = b64 ? g_base64_decode (b64, &len) : NULL;
      int w = 0, h = 0;
      res->rgba[i] = png ? ns_png_read_rgba (png, len, "the server's picture", &w, &h, error)
                         : NULL;
      res->n_images = i + 1;
      if (res->rgba[i] == NULL && b64 == NULL)
        g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                     "Picture %d of the server's reply has no \"b64_json\"", i + 1);
      if (res->rgba[i] == NULL)
        return NULL;
      if (i > 0 && (w != res->width || h != res->height))
        {
          g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                       "The server's pictures differ in size (%d×%d, %d×%d)",
                       res->width, res->height, w, h);
          return NULL;
        }
      res->width = w;
      res->height = h;
    }
  return g_steal_pointer (&res);
}

static NsResult *
result_from_bytes (const NsRequest *r, GBytes *body, GError **error)
{
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  g_autoptr (JsonObject) reply = ns_api_parse_object (data, len, 3, "The server's reply", error);
  return reply ? result_from_reply (r, reply, error) : NULL;
}

static int
member_int (JsonObject *o, const char *name, int lo, int hi)
{
  gint64 v = json_object_get_int_member_with_default (o, name, lo);
  return (int) CLAMP (v, lo, hi);
}

/* Pastes a preview tile into the image's canvas and reports the canvas. */
static void
on_preview_event (Stream *s, JsonObject *o)
{
  const NsRequest *r = s->r;
  int image = member_int (o, "image", 0, r->images - 1);
  int fw = member_int (o, "frame_width", 1, NS_API_MAX_SIDE);
  int fh = member_int (o, "frame_height", 1, NS_API_MAX_SIDE);
  int x = member_int (o, "x", 0, fw - 1), y = member_int (o, "y", 0, fh - 1);
  int w = member_int (o, "width", 1, fw - x), h = member_int (o, "height", 1, fh - y);
  const char *b64 = json_object_get_string_member_with_default (o, "rgba", "");
  gsize len = 0;
  g_autofree guint8 *tile = g_base64_decode (b64, &len);
  if (len != (gsize) w * h * 4 || r->on_preview == NULL)
    return;
  if (s->canvas == NULL || s->canvas_w != fw || s->canvas_h != fh)
    {
      for (int i = 0; s->canvas && i < r->images; i++)
        g_free (s->canvas[i]);
      g_free (s->canvas);
      s->canvas = g_new0 (guint8 *, r->images);
      for (int i = 0; i < r->images; i++)
        s->canvas[i] = g_malloc0 ((gsize) fw * fh * 4);
      s->canvas_w = fw;
      s->canvas_h = fh;
    }
  for (int row = 0; row < h; row++)
    memcpy (s->canvas[image] + ((gsize) (y + row) * fw + x) * 4, tile + (gsize) row * w * 4,
            (gsize) w * 4);
  r->on_preview (image, s->canvas[image], fw, fh,
                 member_int (o, "tokens_done", 0, G_MAXINT),
                 json_object_get_boolean_member_with_default (o, "vae", FALSE), r->user_data);
}

static const char *const stage_names[] = { "encode", "prefill", "tokens", "decode" };

static void
on_progress_event (Stream *s, JsonObject *o)
{
  const NsRequest *r = s->r;
  const char *stage = json_object_get_string_member_with_default (o, "stage", NULL);
  for (int i = 0; stage && r->on_stage && i < (int) G_N_ELEMENTS (stage_names); i++)
    if (strcmp (stage, stage_names[i]) == 0)
      r->on_stage ((NsStage) i, member_int (o, "done", 0, G_MAXINT),
                   member_int (o, "total", 0, G_MAXINT), r->user_data);
  if (stage == NULL && r->on_token)
    r->on_token (member_int (o, "image", 0, r->images - 1),
                 member_int (o, "token", 0, G_MAXINT - 1),
                 member_int (o, "n_tokens", 1, G_MAXINT), r->user_data);
}

/* One server-sent event; FALSE with `error` set ends the stream. */
static gboolean
dispatch_event (Stream *s, const char *event, GString *data, GError **error)
{
  g_autoptr (JsonObject) o = ns_api_parse_object (data->str, data->len, 3, "A server event",
                                                  error);
  if (o == NULL)
    return FALSE;
  if (strcmp (event, "progress") == 0)
    on_progress_event (s, o);
  else if (strcmp (event, "preview") == 0)
    on_preview_event (s, o);
  else if (strcmp (event, "result") == 0)
    return (s->result = result_from_reply (s->r, o, error)) != NULL;
  else if (strcmp (event, "error") == 0)
    {
      g_autoptr (GBytes) bytes = g_bytes_new (data->str, data->len);
      g_autofree char *text = error_message (bytes);
      g_set_error (error, NS_ERROR, NS_ERROR_BACKEND, "The server failed the run: %s", text);
      return FALSE;
    }
  return TRUE;
}

/* Reads `event:`/`data:` lines until the result or an error. */
static NsResult *
read_stream (Stream *s, GInputStream *in, const Call *call, GError **error)
{
  g_autoptr (GDataInputStream) lines = g_data_input_stream_new (in);
  g_autoptr (GString) data = g_string_new (NULL);
  g_autofree char *event = g_strdup ("message");
  while (s->result == NULL)
    {
      gsize len = 0;
      g_autoptr (GError) local = NULL;
      /* Buffered lines are read without looking at the cancellable: Stop
       * must not wait for them. */
      if (g_cancellable_set_error_if_cancelled (call->cancellable, &local))
        return set_transport_error (error, call, local), NULL;
      g_autofree char *line = g_data_input_stream_read_line (lines, &len, call->cancellable,
                                                             &local);
      if (local != NULL)
        return set_transport_error (error, call, local), NULL;
      if (line == NULL)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_BACKEND,
                       "The server %s closed the connection before the run finished; it may "
                       "have stopped: check it and try again", call->server);
          return NULL;
        }
      if (g_str_has_prefix (line, "event: "))
        g_free (event), event = g_strdup (line + 7);
      else if (g_str_has_prefix (line, "data: ") && data->len + len < MAX_EVENT_BYTES)
        g_string_append (data, line + 6);
      else if (len == 0 && data->len > 0)
        {
          if (!dispatch_event (s, event, data, error))
            return NULL;
          g_string_truncate (data, 0);
        }
    }
  return g_steal_pointer (&s->result);
}

static GBytes *
json_bytes (JsonObject *o)
{
  g_autoptr (JsonNode) node = json_node_init_object (json_node_alloc (), o);
  char *text = json_to_string (node, FALSE);
  return g_bytes_new_take (text, strlen (text));
}

/* The edit form: every JSON field as a text part, and the picture. */
static GBytes *
edit_form (const NsRequest *r, JsonObject *fields, char **content_type, GError **error)
{
  g_autofree guint8 *packed = g_malloc ((gsize) r->input.width * r->input.height * 4);
  for (int y = 0; y < r->input.height; y++)
    memcpy (packed + (gsize) y * r->input.width * 4, r->input.rgba + (gsize) y * r->input.stride,
            (gsize) r->input.width * 4);
  g_autoptr (GBytes) png = ns_png_encode_rgba (packed, r->input.width, r->input.height, error);
  if (png == NULL)
    return NULL;
  g_autoptr (SoupMultipart) form = soup_multipart_new (SOUP_FORM_MIME_TYPE_MULTIPART);
  JsonObjectIter iter;
  const char *name;
  JsonNode *node;
  json_object_iter_init (&iter, fields);
  while (json_object_iter_next (&iter, &name, &node))
    {
      g_autofree char *text = JSON_NODE_HOLDS_VALUE (node)
                              && json_node_get_value_type (node) == G_TYPE_STRING
                              ? g_strdup (json_node_get_string (node))
                              : json_to_string (node, FALSE);
      soup_multipart_append_form_string (form, name, text);
    }
  soup_multipart_append_form_file (form, "image", "image.png", "image/png", png);
  g_autoptr (SoupMessageHeaders) headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_MULTIPART);
  GBytes *body = NULL;
  soup_multipart_to_message (form, headers, &body);
  *content_type = g_strdup (soup_message_headers_get_one (headers, "Content-Type"));
  return body;
}

static NsResult *
remote_run (NsModel *model, const NsRequest *request, GError **error)
{
  NsRemoteModel *m = (NsRemoteModel *) model;
  NsRequest r = *request;
  if (!ns_request_resolve (model, &r, error))
    return NULL;
  gboolean edit = r.mode == NS_MODE_EDIT;
  g_autoptr (JsonObject) fields = ns_api_request_to_json (&r, model->name, m->nextstep,
                                                          m->nextstep);
  g_autofree char *form_type = NULL;
  g_autoptr (GBytes) body = edit ? edit_form (&r, fields, &form_type, error)
                                 : json_bytes (fields);
  if (body == NULL)
    return NULL;
  Call call = { model->dir, m->api_key, "POST",
                edit ? "/v1/images/edits" : "/v1/images/generations",
                edit ? form_type : "application/json", body,
                m->nextstep ? STREAM_TIMEOUT_S : PLAIN_TIMEOUT_S, r.cancellable };
  if (!m->nextstep)
    {
      g_autoptr (GBytes) reply = call_for_bytes (&call, error);
      return reply ? result_from_bytes (&r, reply, error) : NULL;
    }
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", call.timeout_s,
                                                                  NULL);
  g_autoptr (SoupMessage) msg = NULL;
  g_autoptr (GInputStream) in = send_call (session, &call, &msg, error);
  if (in == NULL)
    return NULL;
  if (soup_message_get_status (msg) != SOUP_STATUS_OK)
    {
      g_autoptr (GBytes) reply = read_all (in, &call, error);
      if (reply != NULL)
        check_status (msg, &call, reply, error);
      return NULL;
    }
  Stream s = { .r = &r };
  NsResult *res = read_stream (&s, in, &call, error);
  for (int i = 0; s.canvas && i < r.images; i++)
    g_free (s.canvas[i]);
  g_free (s.canvas);
  return res;
}

static NsWeightFormat
remote_weight_format (const NsModel *model)
{
  (void) model;
  return NS_WEIGHTS_AUTO;   /* the server's business */
}

static void
remote_free (NsModel *model)
{
  g_free (((NsRemoteModel *) model)->api_key);
}

static const NsModelClass remote_class = {
  remote_check, remote_run, remote_weight_format, remote_free,
};

NsModel *
ns_remote_model_load (const NsLoadOptions *o, GError **error)
{
  if (o->server == NULL || o->server[0] == '\0')
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "The remote backend needs a server address (--server http://HOST:PORT)");
      return NULL;
    }
  g_autofree char *server = g_strdup (o->server);
  while (g_str_has_suffix (server, "/"))     /* paths are appended */
    server[strlen (server) - 1] = '\0';
  g_autoptr (GPtrArray) models = ns_server_list_models (server, o->api_key, o->cancellable,
                                                        error);
  const NsServerModel *sm = models ? pick_model (models, o->model_dir, o->want_edit, server,
                                                 error) : NULL;
  if (sm == NULL)
    return NULL;
  NsRemoteModel *m = g_new0 (NsRemoteModel, 1);
  ns_model_base_init (&m->base, &remote_class, server, sm->id);
  m->base.kind = sm->kind;
  /* Our server says which defaults its checkpoint has; else the name tells. */
  m->base.large_style = sm->nextstep ? sm->large_style : ns_model_guess_large_style (sm->id, "");
  m->base.backend_kind = NS_BACKEND_REMOTE;
  m->api_key = g_strdup (o->api_key);
  m->nextstep = sm->nextstep;
  if (o->progress)
    o->progress (1.0, "connected", o->progress_data);
  return &m->base;
}
