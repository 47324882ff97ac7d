/* test-protocol.c — the image API's shapes (engine/remote/protocol.c):
 * the field table against vLLM-Omni's protocol, a request's round trip
 * through JSON, and the strict parser on hostile text. */
#include <string.h>

#include "remote/protocol.h"

/* The request fields of vLLM-Omni's ImageGenerationRequest
 * (vllm_omni/entrypoints/openai/protocol/images.py) with their JSON types,
 * and the extra_params NextStep's pipeline reads
 * (vllm_omni/diffusion/models/nextstep_1_1/). */
static const struct {
  const char *name;
  NsApiType type;
  gboolean in_extra;
} vllm_omni_fields[] = {
  { "prompt", NS_API_STRING, FALSE },
  { "n", NS_API_INT, FALSE },
  { "size", NS_API_STRING, FALSE },
  { "response_format", NS_API_STRING, FALSE },
  { "negative_prompt", NS_API_STRING, FALSE },
  { "num_inference_steps", NS_API_INT, FALSE },
  { "guidance_scale", NS_API_NUMBER, FALSE },
  { "seed", NS_API_INT, FALSE },
  { "extra_params", NS_API_OBJECT, FALSE },
  { "cfg_img", NS_API_NUMBER, TRUE },
  { "timesteps_shift", NS_API_NUMBER, TRUE },
  { "use_norm", NS_API_BOOL, TRUE },
  { "cfg_schedule", NS_API_STRING, TRUE },
  { "positive_prompt", NS_API_STRING, TRUE },
};

/* What OpenAI-style clients send and we accept without using. */
static const char *const ignored[] = { "model", "user", "quality", "style" };

static const NsApiField *
lookup (const char *name, gboolean in_extra)
{
  gsize n;
  const NsApiField *f = ns_api_fields (&n);
  for (gsize i = 0; i < n; i++)
    if (f[i].in_extra == in_extra && strcmp (f[i].name, name) == 0)
      return &f[i];
  return NULL;
}

static void
test_field_table (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (vllm_omni_fields); i++)
    {
      const NsApiField *f = lookup (vllm_omni_fields[i].name, vllm_omni_fields[i].in_extra);
      g_assert_nonnull (f);
      g_assert_cmpint (f->type, ==, vllm_omni_fields[i].type);
      g_assert_cmpint (f->origin, ==, NS_API_VLLM_OMNI);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (ignored); i++)
    {
      const NsApiField *f = lookup (ignored[i], FALSE);
      g_assert_nonnull (f);
      g_assert_cmpint (f->origin, ==, NS_API_IGNORED);
    }
}

/* Parses `text` into *api; returns the object its strings point into. */
static JsonObject *
parse_request (const char *text, NsApiRequest *api, GError **error)
{
  *api = (NsApiRequest) { 0 };
  ns_request_init (&api->request);
  JsonObject *o = ns_api_parse_object (text, strlen (text), 2, "test", error);
  if (o != NULL)
    ns_api_request_from_json (o, api, error);
  return o;
}

/* A resolved request survives to_json → text → from_json unchanged. */
static void
test_round_trip (void)
{
  NsRequest r;
  ns_request_init (&r);
  r.prompt = "a lighthouse";
  r.positive = "sharp";
  r.negative = "blurry";
  r.width = 320;
  r.height = 192;
  r.images = 3;
  r.steps = 17;
  r.cfg = 4.5;
  r.cfg_img = 2.25;
  r.shift = 1.5;
  r.use_norm = 1;
  r.cfg_schedule = NS_CFG_LINEAR;
  r.sampler = NS_SAMPLER_ODE;
  r.seed = 1234567890123;
  g_autoptr (JsonObject) o = ns_api_request_to_json (&r, "m", TRUE, TRUE);
  g_autoptr (JsonNode) node = json_node_init_object (json_node_alloc (), o);
  g_autofree char *text = json_to_string (node, FALSE);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) back = ns_api_parse_object (text, strlen (text), 2, "test", &error);
  g_assert_no_error (error);
  NsApiRequest api = { 0 };
  ns_request_init (&api.request);
  g_assert_true (ns_api_request_from_json (back, &api, &error));
  const NsRequest *q = &api.request;
  g_assert_cmpstr (q->prompt, ==, r.prompt);
  g_assert_cmpstr (q->positive, ==, r.positive);
  g_assert_cmpstr (q->negative, ==, r.negative);
  g_assert_cmpint (q->width, ==, r.width);
  g_assert_cmpint (q->height, ==, r.height);
  g_assert_cmpint (q->images, ==, r.images);
  g_assert_cmpint (q->steps, ==, r.steps);
  g_assert_cmpfloat (q->cfg, ==, r.cfg);
  g_assert_cmpfloat (q->cfg_img, ==, r.cfg_img);
  g_assert_cmpfloat (q->shift, ==, r.shift);
  g_assert_cmpint (q->use_norm, ==, 1);
  g_assert_cmpint (q->cfg_schedule, ==, NS_CFG_LINEAR);
  g_assert_cmpint (q->sampler, ==, NS_SAMPLER_ODE);
  g_assert_cmpuint (q->seed, ==, r.seed);
  g_assert_cmpstr (api.model, ==, "m");
  g_assert_true (api.stream);
  /* What vLLM-Omni gets: no field of ours. */
  g_autoptr (JsonObject) plain = ns_api_request_to_json (&r, NULL, FALSE, FALSE);
  g_assert_false (json_object_has_member (plain, "stream"));
  g_assert_false (json_object_has_member (json_object_get_object_member (plain, "extra_params"),
                                          "sampler"));
}

/* Hostile text: every line is refused with NS_ERROR_INVALID_ARGUMENT. */
static void
test_hostile (void)
{
  static const char *const bad[] = {
    "", "{", "[]", "\"text\"", "{} {}", "{\"prompt\": \"a\"} x", "{\"prompt\": \"a\"}}",
    "{\"extra_params\": {\"a\": [1]}}", "{\"prompt\": \"a\", \"prompt\": 1}",
    "{\"prompt\": \"a\", \"n\": 1e3}", "{\"prompt\": \"a\", \"seed\": -5}",
    "{\"prompt\": \"a\", \"size\": \"16x\"}", "{\"prompt\": \"a\", \"size\": \"x16\"}",
    "{\"prompt\": \"a\", \"size\": \"-16x16\"}", "{\"prompt\": \"a\", \"size\": \"16x16x16\"}",
    "{\"prompt\": \"a\", \"size\": \"4112x16\"}", "{\"prompt\": \"a\", \"n\": 11}",
    "{\"prompt\": \"a\", \"guidance_scale\": \"7\"}", "{\"prompt\": \"a\", \"stream\": 1}",
    "{\"prompt\": \"a\", \"extra_params\": {\"use_norm\": \"yes\"}}",
    "{\"prompt\": \"a\", \"extra_params\": {\"sampler\": \"euler\"}}",
    "{\"prompt\": \"a\", \"extra_params\": {\"timesteps_shift\": 0}}",
    "{\"prompt\": \"a\", \"extra_params\": null}", "{\"prompt\": null}",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      NsApiRequest api;
      g_autoptr (JsonObject) o = parse_request (bad[i], &api, &error);
      if (error == NULL)
        g_error ("accepted: %s", bad[i]);
      g_assert_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT);
      g_assert_cmpuint (strlen (error->message), >, 10);
    }
  /* Deep nesting is refused before json-glib recurses into it. */
  g_autoptr (GString) deep = g_string_new ("{\"a\": ");
  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  g_autoptr (GError) error = NULL;
  g_assert_null (ns_api_parse_object (deep->str, deep->len, 2, "test", &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT);
  /* A NUL inside the length is refused, not read as the end. */
  g_clear_error (&error);
  g_assert_null (ns_api_parse_object ("{\"prompt\": \"a\0\"}", 16, 2, "test", &error));
  /* Braces inside strings do not count. */
  g_clear_error (&error);
  NsApiRequest ok;
  g_autoptr (JsonObject) o = parse_request ("{\"prompt\": \"{[{[ \\\" }\"} ", &ok, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (ok.request.prompt, ==, "{[{[ \" }");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/remote/field-table", test_field_table);
  g_test_add_func ("/remote/round-trip", test_round_trip);
  g_test_add_func ("/remote/hostile", test_hostile);
  return g_test_run ();
}
