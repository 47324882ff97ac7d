/* cmd-serve.c — `nextstep serve`: keeps a model loaded and answers the
 * image API (see engine/remote/protocol.h) over HTTP with libsoup 3.
 *
 *   POST /v1/images/generations   JSON; "stream": true for server-sent events
 *   POST /v1/images/edits         multipart form: image (PNG) + the same fields
 *   GET  /v1/models               what it serves ("nextstep": kind, defaults)
 *   GET  /health                  {"status": "ok"} (no key needed)
 *
 * It binds 127.0.0.1 unless told otherwise, and then requires a key. Every
 * request is checked before the body is read (key, size), then parsed with
 * bounds; errors are {"error": {"message", "type"}} with a 4xx/5xx status. */
#include <stdio.h>
#include <string.h>
#include <glib-unix.h>

#include "commands.h"
#include "serve.h"
#include "files/png.h"
#include "model/model-iface.h"

/* vLLM's, so that a client's address works with either server. */
#define DEFAULT_PORT 8000

typedef struct {
  char *model, *edit_model, *vae, *host, *api_key, *backend, *weights;
  int port, queue, threads;
  gboolean plain;
} Args;

static void
args_clear (Args *a)
{
  char *strs[] = { a->model, a->edit_model, a->vae, a->host, a->api_key, a->backend,
                   a->weights };
  for (size_t i = 0; i < G_N_ELEMENTS (strs); i++)
    g_free (strs[i]);
}

/* ---- models -------------------------------------------------------------- */

static NsModel *
load_model (const Args *a, const char *explicit_dir, gboolean edit, GError **error)
{
  NsLoadOptions lo = { .vae_dir = a->vae, .threads = a->threads };
  if (a->backend && (!ns_backend_from_name (a->backend, &lo.backend)
                     || lo.backend == NS_BACKEND_REMOTE))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--backend %s: use auto, cpu or cuda", a->backend), NULL;
  if (a->weights && !ns_weight_format_from_name (a->weights, &lo.weights))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--weights %s: use auto, bf16, fp8, int8 or q4", a->weights), NULL;
  g_autofree char *dir = ns_model_find (explicit_dir, edit, error);
  if (dir == NULL)
    return NULL;
  lo.model_dir = dir;
  fprintf (stderr, "Loading %s…\n", dir);
  return ns_model_load (&lo, error);
}

/* --model serves generation, and edits unless --edit-model is given. Any
 * checkpoint edits; one not trained for it gets a warning here, once. */
static gboolean
load_models (Server *s, const Args *a, GError **error)
{
  if ((s->t2i = load_model (a, a->model, FALSE, error)) == NULL)
    return FALSE;
  s->edit = s->t2i;
  if (a->edit_model != NULL && (s->edit = load_model (a, a->edit_model, TRUE, error)) == NULL)
    return FALSE;
  g_autofree char *warning = ns_model_mode_warning (s->edit, NS_MODE_EDIT);
  if (warning != NULL)
    fprintf (stderr, "nextstep serve: /v1/images/edits: %s\n", warning);
  return TRUE;
}

static void
add_model_entry (JsonBuilder *b, NsModel *m, gboolean plain)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, ns_model_get_name (m));
  json_builder_set_member_name (b, "object");
  json_builder_add_string_value (b, "model");
  json_builder_set_member_name (b, "owned_by");
  json_builder_add_string_value (b, "nextstep");
  if (plain)
    {
      json_builder_end_object (b);
      return;
    }
  json_builder_set_member_name (b, "nextstep");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "kind");
  json_builder_add_string_value (b, ns_model_get_kind (m) == NS_MODEL_KIND_EDIT ? "edit" : "t2i");
  json_builder_set_member_name (b, "large_style");
  json_builder_add_boolean_value (b, m->large_style);
  json_builder_end_object (b);
  json_builder_end_object (b);
}

/* ---- routes --------------------------------------------------------------- */

static void
reply_json_node (SoupServerMessage *msg, JsonNode *root)
{
  char *text = json_to_string (root, FALSE);
  soup_server_message_set_status (msg, 200, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE, text,
                                    strlen (text));
}

static void
handle_models (Server *s, SoupServerMessage *msg)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "object");
  json_builder_add_string_value (b, "list");
  json_builder_set_member_name (b, "data");
  json_builder_begin_array (b);
  add_model_entry (b, s->t2i, s->plain);
  if (s->edit != s->t2i)
    add_model_entry (b, s->edit, s->plain);
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  reply_json_node (msg, root);
}

static void
handle_generation (Server *s, SoupServerMessage *msg)
{
  g_autoptr (GBytes) body = soup_message_body_flatten (soup_server_message_get_request_body (msg));
  g_autoptr (GError) error = NULL;
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  JsonObject *fields = ns_api_parse_object (data ? data : "", len, 2, "The request body",
                                            &error);
  if (fields == NULL)
    serve_reply_error (msg, 400, error->message);
  else
    serve_job_start (s, msg, fields, FALSE, NULL, 0, 0);
}

/* A form field as the JSON value its type in the field table asks for;
 * NULL when the text is not of that type. */
static JsonNode *
form_value (const char *name, const char *text, GError **error)
{
  gsize n;
  const NsApiField *fields = ns_api_fields (&n);
  NsApiType type = NS_API_STRING;
  for (gsize i = 0; i < n; i++)
    if (!fields[i].in_extra && strcmp (fields[i].name, name) == 0)
      type = fields[i].type;
  gint64 i64;
  char *end = NULL;
  double d = type == NS_API_NUMBER ? g_ascii_strtod (text, &end) : 0;
  if (type == NS_API_INT && g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, &i64,
                                                      NULL))
    return json_node_init_int (json_node_alloc (), i64);
  if (type == NS_API_NUMBER && end != text && *end == '\0')
    return json_node_init_double (json_node_alloc (), d);
  if (type == NS_API_BOOL && (!strcmp (text, "true") || !strcmp (text, "false")))
    return json_node_init_boolean (json_node_alloc (), !strcmp (text, "true"));
  if (type == NS_API_OBJECT)
    {
      JsonObject *o = ns_api_parse_object (text, strlen (text), 1, "Field 'extra_params'", error);
      return o ? json_node_init_object (json_node_alloc (), o) : NULL;
    }
  if (type == NS_API_STRING)
    return json_node_init_string (json_node_alloc (), text);
  g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
               "Field '%s' is \"%.32s\", not of its type", name, text);
  return NULL;
}

/* IHDR's fields: big-endian, at any alignment. */
static guint32
big_endian32 (const guint8 *p)
{
  return (guint32) p[0] << 24 | (guint32) p[1] << 16 | (guint32) p[2] << 8 | p[3];
}

/* The input picture of an edit: a PNG whose header says it is small enough,
 * checked before any pixel memory is allocated. */
static guint8 *
form_image (GBytes *part, int *w, int *h, GError **error)
{
  gsize len;
  const guint8 *d = g_bytes_get_data (part, &len);
  guint32 pw = len >= 24 ? big_endian32 (d + 16) : 0;
  guint32 ph = len >= 24 ? big_endian32 (d + 20) : 0;
  if (pw > NS_API_MAX_SIDE || ph > NS_API_MAX_SIDE)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, "The image is %u×%u; "
                        "send at most %d pixels a side", pw, ph, NS_API_MAX_SIDE), NULL;
  return ns_png_read_rgba (d, len, "The image", w, h, error);
}

/* Fills `fields` and the picture from the multipart form. */
static gboolean
read_form (SoupMultipart *form, JsonObject *fields, guint8 **input, int *w, int *h,
           GError **error)
{
  for (int i = 0; i < soup_multipart_get_length (form); i++)
    {
      SoupMessageHeaders *headers;
      GBytes *part;
      g_autoptr (GHashTable) params = NULL;
      soup_multipart_get_part (form, i, &headers, &part);
      const char *name = NULL;
      if (soup_message_headers_get_content_disposition (headers, NULL, &params))
        name = g_hash_table_lookup (params, "name");
      gsize len;
      const char *text = g_bytes_get_data (part, &len);
      if (name == NULL || json_object_has_member (fields, name)
          || (strcmp (name, "image") == 0 && *input != NULL))
        return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, "Form part %d has no "
                            "name or repeats one", i + 1), FALSE;
      if (strcmp (name, "image") == 0)
        {
          if ((*input = form_image (part, w, h, error)) == NULL)
            return FALSE;
          continue;
        }
      g_autofree char *value = g_strndup (text ? text : "", len);
      if (strlen (value) != len || !g_utf8_validate (value, -1, NULL))
        return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, "Field '%s' is not "
                            "UTF-8 text", name), FALSE;
      JsonNode *node = form_value (name, value, error);
      if (node == NULL)
        return FALSE;
      json_object_set_member (fields, name, node);
    }
  if (*input == NULL)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, "The form has no 'image' "
                        "part (a PNG file)"), FALSE;
  return TRUE;
}

static void
handle_edit (Server *s, SoupServerMessage *msg)
{
  g_autoptr (GBytes) body = soup_message_body_flatten (soup_server_message_get_request_body (msg));
  g_autoptr (SoupMultipart) form = soup_multipart_new_from_message (
    soup_server_message_get_request_headers (msg), body);
  g_autoptr (JsonObject) fields = json_object_new ();
  g_autoptr (GError) error = NULL;
  guint8 *input = NULL;
  int w = 0, h = 0;
  if (form == NULL)
    serve_reply_error (msg, 400, "The body is not a multipart/form-data form; send the image "
                       "and the fields as form parts");
  else if (!read_form (form, fields, &input, &w, &h, &error))
    {
      g_free (input);
      serve_reply_error (msg, 400, error->message);
    }
  else
    serve_job_start (s, msg, json_object_ref (fields), TRUE, input, w, h);
}

static void
handle (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
        gpointer data)
{
  Server *s = data;
  const char *method = soup_server_message_get_method (msg);
  (void) soup, (void) query;
  gboolean post = strcmp (method, "POST") == 0, get = strcmp (method, "GET") == 0;
  if (get && strcmp (path, "/health") == 0)
    {
      soup_server_message_set_status (msg, 200, NULL);
      soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_STATIC,
                                        "{\"status\":\"ok\"}", 15);
    }
  else if (get && strcmp (path, "/v1/models") == 0)
    handle_models (s, msg);
  else if (post && strcmp (path, "/v1/images/generations") == 0)
    handle_generation (s, msg);
  else if (post && strcmp (path, "/v1/images/edits") == 0)
    handle_edit (s, msg);
  else
    serve_reply_error (msg, 404, "No such endpoint; this server answers POST "
                       "/v1/images/generations, POST /v1/images/edits, GET /v1/models and "
                       "GET /health");
}

/* ---- checks before the body is read --------------------------------------- */

/* Compares the whole key whatever the input, so timing tells nothing. */
static gboolean
key_matches (const char *header, const char *key)
{
  if (header == NULL || !g_str_has_prefix (header, "Bearer "))
    return FALSE;
  const char *given = header + 7;
  gsize n = strlen (key), m = strlen (given);
  guint diff = n != m;
  for (gsize i = 0; i < n; i++)
    diff |= (guint) (key[i] ^ given[i < m ? i : 0]);
  return diff == 0;
}

/* Refuses, before the body is read, what needs no body to refuse. */
static void
early_checks (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
              gpointer data)
{
  const char *key = data;
  SoupMessageHeaders *h = soup_server_message_get_request_headers (msg);
  (void) soup, (void) query;
  if (key != NULL && strcmp (path, "/health") != 0
      && !key_matches (soup_message_headers_get_one (h, "Authorization"), key))
    serve_reply_error (msg, 401, "Missing or wrong API key: send 'Authorization: Bearer KEY' "
                       "with the key the server was started with (--api-key)");
  else if (soup_message_headers_get_encoding (h) == SOUP_ENCODING_CHUNKED)
    serve_reply_error (msg, 411, "Send the request with a Content-Length");
  else if (soup_message_headers_get_content_length (h) > SERVE_MAX_BODY)
    serve_reply_error (msg, 413, "The request is larger than 32 MiB; send a smaller image");
  else
    return;
  /* The body (if any) is not read: the connection cannot be reused. */
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Connection",
                                "close");
}

/* ---- the command ---------------------------------------------------------- */

/* Before the models load: an open address needs a key. */
static gboolean
check_host (const Args *a, GError **error)
{
  const char *host = a->host ? a->host : "127.0.0.1";
  g_autoptr (GInetAddress) addr = g_inet_address_new_from_string (host);
  if (addr == NULL)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, "--host %s: give an IP "
                        "address (127.0.0.1, 0.0.0.0, ::)", host), FALSE;
  if (!g_inet_address_get_is_loopback (addr) && (a->api_key == NULL || a->api_key[0] == '\0'))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, "--host %s lets other "
                        "machines in: give --api-key KEY too (clients send it as a Bearer "
                        "token)", host), FALSE;
  return TRUE;
}

static gboolean
start_listening (Server *s, const Args *a, GError **error)
{
  const char *host = a->host ? a->host : "127.0.0.1";
  g_autoptr (GInetAddress) addr = g_inet_address_new_from_string (host);
  g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (addr, (guint16) a->port);
  if (!soup_server_listen (s->soup, sa, 0, error))
    return FALSE;
  GSList *uris = soup_server_get_uris (s->soup);
  GUri *uri = uris->data;
  /* Tests and scripts read this line to learn the port. */
  printf ("Listening on http://%s:%d\n", host, g_uri_get_port (uri));
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  fflush (stdout);
  return TRUE;
}

static gboolean
quit (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

/* Cancels every job, lets each answer its client (within a token), then
 * frees the models. */
static void
server_stop (Server *s)
{
  g_cancellable_cancel (s->stopping);
  while (s->pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_thread_pool_free (s->worker, FALSE, TRUE);
  soup_server_disconnect (s->soup);
  g_object_unref (s->soup);
  if (s->edit != s->t2i)
    ns_model_free (s->edit);
  ns_model_free (s->t2i);
  g_object_unref (s->stopping);
}

static int
serve (const Args *a)
{
  g_autoptr (GError) error = NULL;
  Server s = { .max_pending = 1 + (a->queue > 0 ? a->queue : 2), .plain = a->plain };
  if (a->port < 0 || a->port > 65535)
    {
      fprintf (stderr, "nextstep serve: --port %d: use 0 to 65535\n", a->port);
      return 2;
    }
  s.soup = soup_server_new ("server-header", "nextstep/" NS_VERSION, NULL);
  s.worker = g_thread_pool_new (serve_job_run, &s, 1, TRUE, NULL);
  s.stopping = g_cancellable_new ();
  soup_server_add_early_handler (s.soup, NULL, early_checks, a->api_key, NULL);
  soup_server_add_handler (s.soup, NULL, handle, &s, NULL);
  int rc = 0;
  if (!check_host (a, &error) || !load_models (&s, a, &error)
      || !start_listening (&s, a, &error))
    {
      fprintf (stderr, "nextstep serve: %s\n", error->message);
      rc = 1;
    }
  else
    {
      g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
      g_unix_signal_add (SIGINT, quit, loop);
      g_unix_signal_add (SIGTERM, quit, loop);
      g_main_loop_run (loop);
    }
  server_stop (&s);
  return rc;
}

int
ns_cmd_serve (int argc, char **argv)
{
  Args a = { .port = DEFAULT_PORT };
  GOptionEntry entries[] = {
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &a.model, "Model folder (default: search)", "DIR" },
    { "edit-model", 0, 0, G_OPTION_ARG_FILENAME, &a.edit_model,
      "Model folder for /v1/images/edits (default: --model)", "DIR" },
    { "vae", 0, 0, G_OPTION_ARG_FILENAME, &a.vae, "VAE folder (default: beside the model)", "DIR" },
    { "host", 0, 0, G_OPTION_ARG_STRING, &a.host,
      "Address to listen on (127.0.0.1; any other needs --api-key)", "ADDR" },
    { "port", 0, 0, G_OPTION_ARG_INT, &a.port, "Port (8000, as vLLM; 0 = any free one)", "N" },
    { "api-key", 0, 0, G_OPTION_ARG_STRING, &a.api_key,
      "Require 'Authorization: Bearer KEY' on every request but /health", "KEY" },
    { "queue", 0, 0, G_OPTION_ARG_INT, &a.queue,
      "Requests that may wait while one runs (2); more get HTTP 429", "N" },
    { "backend", 0, 0, G_OPTION_ARG_STRING, &a.backend, "auto, cpu or cuda", "NAME" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &a.weights, "auto, bf16, fp8, int8 or q4", "FORMAT" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &a.threads, "CPU threads (0 = all)", "N" },
    /* Test hook: list the models as vLLM-Omni does, for the client's fallback. */
    { "plain", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &a.plain, NULL, NULL },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new (NULL);
  g_option_context_set_summary (ctx, "Serve the image API (OpenAI / vLLM-Omni style) with a "
                                "model kept loaded.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  int rc;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "%s: %s\n", argv[0], error->message);
      rc = 2;
    }
  else if (argc > 1)
    {
      fprintf (stderr, "%s: unexpected argument '%s'\n", argv[0], argv[1]);
      rc = 2;
    }
  else
    rc = serve (&a);
  args_clear (&a);
  return rc;
}
