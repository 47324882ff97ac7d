/* ns-recipe.h — the recipe of a generated image: the settings a run really
 * used (ns-settings.h), as a small JSON object.
 *
 * The plug-in stores it in the `nextstep-recipe` parasite and reads it back
 * to pre-fill "regenerate / vary seed"; the dialog keeps one per result for
 * Refine. Its members are the NS_SETTING_RECIPE properties of the run's mode
 * by their argument names ("prompt" or "instruction", "negative-prompt",
 * "seed", "steps", …) beside "format", "version", "mode" and "image_index".
 * Format 1 recipes (gimp-nextstep 0.1: "negative", "cfg_img", "prompt" in
 * both modes) are still read. Needs only GLib, json-glib and the engine's JSON
 * loader (no GTK), so the plug-in and tests may link it on its own through
 * `ns_recipe_dep`.
 */
#pragma once

#include <glib.h>
#include "ns-settings.h"

G_BEGIN_DECLS

/* Version of the JSON layout; ns_recipe_from_json refuses newer ones. */
#define NS_RECIPE_FORMAT 2

typedef struct {
  NsMode      mode;
  NsSettings *settings;     /* the values the run really used */
  char       *version;      /* gimp-nextstep version that made it */
  int         image_index;  /* which of the run's images this is (0-based) */
} NsRecipe;

/* Largest seed a recipe holds exactly (JSON numbers are doubles for many readers). */
#define NS_RECIPE_MAX_SEED G_GUINT64_CONSTANT (9007199254740991)

/* A recipe of @mode holding a reference on @settings; version = this one. */
NsRecipe *ns_recipe_new (NsMode mode, NsSettings *settings);
void      ns_recipe_free (NsRecipe *recipe);
/* The prompt (generate) or instruction (edit); owned by the recipe's settings. */
char     *ns_recipe_dup_prompt (const NsRecipe *recipe);
guint64   ns_recipe_get_seed (const NsRecipe *recipe);

/* Sets the recipe's properties in @settings (the others, such as the
 * server and its key, stay): the settings that make the recipe's image again. */
void      ns_recipe_apply (const NsRecipe *recipe, NsSettings *settings);

/* Pretty-printed JSON text; never fails. */
char     *ns_recipe_to_json (const NsRecipe *recipe);
/* Parses and checks a recipe of @length bytes (-1: up to the NUL; a NUL
 * inside @length bytes is damage, refused); NULL and an NS_ERROR_FORMAT
 * error naming the field when it is malformed. Unknown fields are ignored
 * (newer minor versions may add some). */
NsRecipe *ns_recipe_from_json (const char *json, gssize length, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsRecipe, ns_recipe_free)

G_END_DECLS
