/* json-load.h — the one way the engine, the CLI and the plug-in's recipe
 * code turn JSON text into a json-glib tree.
 *
 * The text is checked first by the strict scanner (json-scan.h): exactly
 * one RFC 8259 value, then only whitespace (two documents back to back, as
 * a re-download appended to an old file leaves, and any trailing garbage
 * are refused), nesting at most
 * NS_JSON_MAX_DEPTH deep, integers within 64 bits and finite numbers.
 * Only text that passed reaches json-glib, so no version of json-glib sees
 * input it could treat differently, abort on or recurse too deep on.
 * Engine-private; not part of any contract. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef enum {
  /* Refuse an object with the same key twice. Without it the last one
   * counts, as in Python's json module (which reads config.json for the
   * official code). */
  NS_JSON_UNIQUE_KEYS = 1 << 0,
} NsJsonFlags;

/* Parses json[0, size) (a leading UTF-8 byte order mark is skipped).
 * `label` names the text in messages (a path, "the header of X");
 * `hint`, when not NULL, ends every message with what to do ("download
 * the model again"). NULL and an NS_ERROR_FORMAT error saying where and
 * what is wrong otherwise. */
JsonNode   *ns_json_load (const char *json, gsize size, const char *label, const char *hint,
                          NsJsonFlags flags, GError **error);
/* The same for text whose top level must be an object (a new reference). */
JsonObject *ns_json_load_object (const char *json, gsize size, const char *label,
                                 const char *hint, NsJsonFlags flags, GError **error);

G_END_DECLS
