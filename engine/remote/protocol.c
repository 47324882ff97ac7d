/* protocol.c — see protocol.h. */
#include <string.h>

#include "remote/protocol.h"
#include "files/json-load.h"
#include "model/model-iface.h"

static const NsApiField fields[] = {
  { "prompt", NS_API_STRING, FALSE, NS_API_VLLM_OMNI },
  { "n", NS_API_INT, FALSE, NS_API_VLLM_OMNI },
  { "size", NS_API_STRING, FALSE, NS_API_VLLM_OMNI },
  { "response_format", NS_API_STRING, FALSE, NS_API_VLLM_OMNI },
  { "negative_prompt", NS_API_STRING, FALSE, NS_API_VLLM_OMNI },
  { "num_inference_steps", NS_API_INT, FALSE, NS_API_VLLM_OMNI },
  { "guidance_scale", NS_API_NUMBER, FALSE, NS_API_VLLM_OMNI },
  { "seed", NS_API_INT, FALSE, NS_API_VLLM_OMNI },
  { "extra_params", NS_API_OBJECT, FALSE, NS_API_VLLM_OMNI },
  { "cfg_img", NS_API_NUMBER, TRUE, NS_API_VLLM_OMNI },
  { "timesteps_shift", NS_API_NUMBER, TRUE, NS_API_VLLM_OMNI },
  { "use_norm", NS_API_BOOL, TRUE, NS_API_VLLM_OMNI },
  { "cfg_schedule", NS_API_STRING, TRUE, NS_API_VLLM_OMNI },
  { "positive_prompt", NS_API_STRING, TRUE, NS_API_VLLM_OMNI },
  { "sampler", NS_API_STRING, TRUE, NS_API_NEXTSTEP },
  { "stream", NS_API_BOOL, FALSE, NS_API_NEXTSTEP },
  { "model", NS_API_STRING, FALSE, NS_API_IGNORED },
  { "user", NS_API_STRING, FALSE, NS_API_IGNORED },
  { "quality", NS_API_STRING, FALSE, NS_API_IGNORED },
  { "style", NS_API_STRING, FALSE, NS_API_IGNORED },
};

static const char *const type_names[] = { "a string", "a whole number", "a number",
                                          "true or false", "an object" };

const NsApiField *
ns_api_fields (gsize *count)
{
  *count = G_N_ELEMENTS (fields);
  return fields;
}

/* ---- parsing ------------------------------------------------------------ */

/* The nesting of node: 0 for a scalar, 1 + the deepest member otherwise. */
static int
depth_of (JsonNode *node)
{
  int deepest = 0;
  if (JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObjectIter it;
      JsonNode *member;
      json_object_iter_init (&it, json_node_get_object (node));
      while (json_object_iter_next (&it, NULL, &member))
        deepest = MAX (deepest, depth_of (member));
      return deepest + 1;
    }
  if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      for (guint i = 0; i < json_array_get_length (a); i++)
        deepest = MAX (deepest, depth_of (json_array_get_element (a, i)));
      return deepest + 1;
    }
  return 0;
}

/* Network JSON goes through the engine's one strict loader
 * (engine/files/json-load.h: one document, nothing after it, bounded
 * nesting and numbers), then each endpoint's own nesting limit. */
JsonObject *
ns_api_parse_object (const char *data, gsize len, int max_depth, const char *what,
                     GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (JsonObject) o = ns_json_load_object (data, len, what, NULL, 0, &local);
  if (o == NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "%s; send one JSON object of the documented fields", local->message);
      return NULL;
    }
  g_autoptr (JsonNode) node = json_node_init_object (json_node_alloc (), o);
  if (depth_of (node) > max_depth)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "%s nests objects or arrays deeper than %d levels; send one object of the "
                   "documented fields", what, max_depth);
      return NULL;
    }
  return g_steal_pointer (&o);
}

static const NsApiField *
find_field (const char *name, gboolean in_extra)
{
  for (gsize i = 0; i < G_N_ELEMENTS (fields); i++)
    if (fields[i].in_extra == in_extra && strcmp (fields[i].name, name) == 0)
      return &fields[i];
  return NULL;
}

static gboolean
has_type (JsonNode *node, NsApiType type)
{
  if (type == NS_API_OBJECT)
    return JSON_NODE_HOLDS_OBJECT (node);
  if (!JSON_NODE_HOLDS_VALUE (node))
    return FALSE;
  GType t = json_node_get_value_type (node);
  switch (type)
    {
    case NS_API_STRING: return t == G_TYPE_STRING;
    case NS_API_INT:    return t == G_TYPE_INT64;
    case NS_API_NUMBER: return t == G_TYPE_INT64 || t == G_TYPE_DOUBLE;
    case NS_API_BOOL:   return t == G_TYPE_BOOLEAN;
    default:            return FALSE;
    }
}

/* Every member of `object` is a known field of the right type. */
static gboolean
check_members (JsonObject *object, gboolean in_extra, GError **error)
{
  JsonObjectIter iter;
  const char *name;
  JsonNode *node;
  json_object_iter_init (&iter, object);
  while (json_object_iter_next (&iter, &name, &node))
    {
      const NsApiField *f = find_field (name, in_extra);
      if (f == NULL)
        return ns_request_invalid (error, "Unknown field '%s%s'; see the README's \"Run it on a "
                               "server\" for the fields", in_extra ? "extra_params." : "", name);
      if (!has_type (node, f->type))
        return ns_request_invalid (error, "Field '%s%s' must be %s", in_extra ? "extra_params." : "",
                               name, type_names[f->type]);
    }
  return TRUE;
}

gboolean
ns_api_parse_size (const char *text, int *width, int *height)
{
  guint64 w, h;
  const char *x = strchr (text, 'x');
  if (x == NULL || x - text > 8)
    return FALSE;
  char wtext[9] = { 0 };
  memcpy (wtext, text, x - text);
  if (!g_ascii_string_to_unsigned (wtext, 10, 1, 1u << 20, &w, NULL)
      || !g_ascii_string_to_unsigned (x + 1, 10, 1, 1u << 20, &h, NULL))
    return FALSE;
  *width = (int) w;
  *height = (int) h;
  return TRUE;
}

static const char *
get_string (JsonObject *o, const char *name, gsize max_len, GError **error, gboolean *ok)
{
  if (!*ok || !json_object_has_member (o, name))
    return NULL;
  const char *s = json_object_get_string_member (o, name);
  if (strlen (s) > max_len)
    *ok = ns_request_invalid (error, "Field '%s' is longer than %zu bytes", name, max_len);
  return s;
}

static gboolean
get_int (JsonObject *o, const char *name, gint64 lo, gint64 hi, int *out, GError **error)
{
  if (!json_object_has_member (o, name))
    return TRUE;
  gint64 v = json_object_get_int_member (o, name);
  if (v < lo || v > hi)
    return ns_request_invalid (error, "Field '%s' is %" G_GINT64_FORMAT "; use %" G_GINT64_FORMAT
                           " to %" G_GINT64_FORMAT, name, v, lo, hi);
  *out = (int) v;
  return TRUE;
}

static gboolean
get_scale (JsonObject *o, const char *name, double *out, GError **error)
{
  if (!json_object_has_member (o, name))
    return TRUE;
  double v = json_object_get_double_member (o, name);
  if (!(v >= 1.0 && v <= 100.0))
    return ns_request_invalid (error, "Field '%s' is %g; use a number from 1 to 100", name, v);
  *out = v;
  return TRUE;
}

static gboolean
get_size (JsonObject *o, NsRequest *r, GError **error)
{
  if (!json_object_has_member (o, "size"))
    return TRUE;
  const char *size = json_object_get_string_member (o, "size");
  int w = 0, h = 0;
  if (!ns_api_parse_size (size, &w, &h) || w % 16 || h % 16 || w > NS_API_MAX_SIDE
      || h > NS_API_MAX_SIDE)
    return ns_request_invalid (error, "Field 'size' is \"%.32s\"; use \"WxH\" with multiples of 16 "
                           "from 16 to %d", size, NS_API_MAX_SIDE);
  r->width = w;
  r->height = h;
  return TRUE;
}

static gboolean
get_extra (JsonObject *e, NsRequest *r, GError **error)
{
  if (!check_members (e, TRUE, error) || !get_scale (e, "cfg_img", &r->cfg_img, error))
    return FALSE;
  if (json_object_has_member (e, "timesteps_shift"))
    {
      r->shift = json_object_get_double_member (e, "timesteps_shift");
      if (!(r->shift > 0.0 && r->shift <= 100.0))
        return ns_request_invalid (error, "Field 'extra_params.timesteps_shift' is %g; use a "
                               "number above 0, at most 100", r->shift);
    }
  if (json_object_has_member (e, "use_norm"))
    r->use_norm = json_object_get_boolean_member (e, "use_norm");
  const char *schedule = json_object_get_string_member_with_default (e, "cfg_schedule", NULL);
  if (schedule && strcmp (schedule, "constant") != 0 && strcmp (schedule, "linear") != 0)
    return ns_request_invalid (error, "Field 'extra_params.cfg_schedule' is \"%.32s\"; use "
                           "\"constant\" or \"linear\"", schedule);
  r->cfg_schedule = schedule && strcmp (schedule, "linear") == 0 ? NS_CFG_LINEAR
                                                                 : NS_CFG_CONSTANT;
  const char *sampler = json_object_get_string_member_with_default (e, "sampler", NULL);
  if (sampler && !ns_sampler_from_name (sampler, &r->sampler))
    return ns_request_invalid (error, "Field 'extra_params.sampler' is \"%.32s\"; use hf-sde, "
                           "gh-grid or ode", sampler);
  gboolean ok = TRUE;
  const char *positive = get_string (e, "positive_prompt", NS_API_MAX_PROMPT, error, &ok);
  if (positive)
    r->positive = positive;
  return ok;
}

gboolean
ns_api_request_from_json (JsonObject *o, NsApiRequest *out, GError **error)
{
  NsRequest *r = &out->request;
  gboolean ok = TRUE;
  if (!check_members (o, FALSE, error))
    return FALSE;
  r->prompt = get_string (o, "prompt", NS_API_MAX_PROMPT, error, &ok);
  r->negative = get_string (o, "negative_prompt", NS_API_MAX_PROMPT, error, &ok);
  out->model = get_string (o, "model", 256, error, &ok);
  if (!ok)
    return FALSE;
  if (r->prompt == NULL)
    return ns_request_invalid (error, "Field 'prompt' is required");
  const char *format = json_object_get_string_member_with_default (o, "response_format",
                                                                   "b64_json");
  if (strcmp (format, "b64_json") != 0)
    return ns_request_invalid (error, "Field 'response_format' is \"%.32s\"; this server sends "
                           "only \"b64_json\"", format);
  gint64 seed64 = json_object_get_int_member_with_default (o, "seed", r->seed);
  if (seed64 < 0)
    return ns_request_invalid (error, "Field 'seed' is %" G_GINT64_FORMAT "; use a whole number "
                           "≥ 0", seed64);
  r->seed = (guint64) seed64;
  out->stream = json_object_get_boolean_member_with_default (o, "stream", FALSE);
  return get_int (o, "n", 1, NS_API_MAX_IMAGES, &r->images, error)
      && get_int (o, "num_inference_steps", 1, 1000, &r->steps, error)
      && get_scale (o, "guidance_scale", &r->cfg, error)
      && get_size (o, r, error)
      && (!json_object_has_member (o, "extra_params")
          || get_extra (json_object_get_object_member (o, "extra_params"), r, error));
}

/* ---- building ----------------------------------------------------------- */

JsonObject *
ns_api_request_to_json (const NsRequest *r, const char *model, gboolean nextstep,
                        gboolean stream)
{
  JsonObject *o = json_object_new ();
  JsonObject *e = json_object_new ();
  if (model != NULL)
    json_object_set_string_member (o, "model", model);
  json_object_set_string_member (o, "prompt", r->prompt);
  json_object_set_int_member (o, "n", r->images);
  g_autofree char *size = g_strdup_printf ("%dx%d", r->width, r->height);
  json_object_set_string_member (o, "size", size);
  json_object_set_string_member (o, "response_format", "b64_json");
  json_object_set_string_member (o, "negative_prompt", r->negative ? r->negative : "");
  json_object_set_int_member (o, "num_inference_steps", r->steps);
  json_object_set_double_member (o, "guidance_scale", r->cfg);
  json_object_set_int_member (o, "seed", (gint64) r->seed);
  json_object_set_double_member (e, "cfg_img", r->cfg_img);
  json_object_set_double_member (e, "timesteps_shift", r->shift);
  json_object_set_boolean_member (e, "use_norm", r->use_norm > 0);
  json_object_set_string_member (e, "cfg_schedule",
                                 r->cfg_schedule == NS_CFG_LINEAR ? "linear" : "constant");
  json_object_set_string_member (e, "positive_prompt", r->positive ? r->positive : "");
  if (nextstep)
    {
      json_object_set_string_member (e, "sampler", ns_sampler_name (r->sampler));
      json_object_set_boolean_member (o, "stream", stream);
    }
  json_object_set_object_member (o, "extra_params", e);
  return o;
}

char *
ns_api_error_json (const char *message, const char *type)
{
  g_autoptr (JsonObject) inner = json_object_new ();
  json_object_set_string_member (inner, "message", message);
  json_object_set_string_member (inner, "type", type);
  g_autoptr (JsonObject) outer = json_object_new ();
  json_object_set_object_member (outer, "error", json_object_ref (inner));
  g_autoptr (JsonNode) node = json_node_init_object (json_node_alloc (), outer);
  return json_to_string (node, FALSE);
}
