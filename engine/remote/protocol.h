/* protocol.h — the image API's request and reply shapes, shared by the
 * client (remote-model.c) and `nextstep serve` (engine/cli/serve-*.c).
 *
 * The request is vLLM-Omni's (vllm_omni/entrypoints/openai/protocol/images.py,
 * docs/serving/image_generation_api.md): POST /v1/images/generations with
 * prompt, n, size "WxH", response_format "b64_json", negative_prompt,
 * num_inference_steps, guidance_scale, seed and extra_params (handed to the
 * pipeline: cfg_img, timesteps_shift, use_norm, cfg_schedule,
 * positive_prompt); the reply is {"created", "data": [{"b64_json"}]}. Ours
 * adds extra_params.sampler, "stream" (server-sent events with progress and
 * preview tiles) and /v1/images/edits (the same fields as a multipart form,
 * with the input picture as "image"). Private to the engine and the CLI. */
#pragma once

#include <json-glib/json-glib.h>

#include "nextstep.h"

G_BEGIN_DECLS

#define NS_API_MAX_IMAGES 10             /* n: vLLM-Omni's limit */
#define NS_API_MAX_SIDE 4096             /* size: each side */
#define NS_API_MAX_PROMPT (64 * 1024)    /* bytes of each prompt text */

typedef enum { NS_API_STRING, NS_API_INT, NS_API_NUMBER, NS_API_BOOL, NS_API_OBJECT } NsApiType;

/* Where a field comes from: vLLM-Omni's protocol, our extension, or what
 * OpenAI-style clients send and both servers accept and ignore. */
typedef enum { NS_API_VLLM_OMNI, NS_API_NEXTSTEP, NS_API_IGNORED } NsApiOrigin;

typedef struct {
  const char *name;
  NsApiType type;
  gboolean in_extra;          /* a member of extra_params */
  NsApiOrigin origin;
} NsApiField;

/* Every request field the server knows (others are refused). */
const NsApiField *ns_api_fields (gsize *count);

/* The one place JSON from the network is parsed: `data` must hold exactly
 * one JSON object, nested at most `max_depth` deep (1: no nested object or
 * array), nothing after it. */
JsonObject *ns_api_parse_object (const char *data, gsize len, int max_depth, const char *what,
                                 GError **error);

/* A request as the server receives it; strings point into the JsonObject
 * it came from, which must outlive it. */
typedef struct {
  NsRequest request;          /* mode and input image are the caller's */
  const char *model;          /* NULL when not given */
  gboolean stream;
} NsApiRequest;

/* Checks every field (type, range, unknown names) and fills `out`, whose
 * request the caller has set with ns_request_init; what is not given stays
 * at its default. NS_ERROR_INVALID_ARGUMENT. */
gboolean ns_api_request_from_json (JsonObject *object, NsApiRequest *out, GError **error);

/* The request body for a resolved request. `nextstep` adds what only our
 * server knows (sampler, stream). */
JsonObject *ns_api_request_to_json (const NsRequest *request, const char *model,
                                    gboolean nextstep, gboolean stream);

/* {"error": {"message", "type"}} */
char *ns_api_error_json (const char *message, const char *type);

/* "WxH" with positive whole numbers; FALSE for anything else. */
gboolean ns_api_parse_size (const char *text, int *width, int *height);

G_END_DECLS
