/* ns-recipe.h — the recipe of a generated image: every value needed to make
 * it again, as a small JSON object.
 *
 * The plug-in stores it in the `nextstep-recipe` parasite and reads it back
 * to pre-fill "regenerate / vary seed". Needs only GLib, json-glib and the
 * engine's JSON loader (no GTK), so the plug-in and tests may link it on its
 * own through `ns_recipe_dep`. Enumerated values are kept as the engine's names
 * ("generate", "hf-sde", "cpu", "bf16" …) so the JSON stays readable.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Version of the JSON layout; ns_recipe_from_json refuses newer ones. */
#define NS_RECIPE_FORMAT 1

typedef struct {
  char   *mode;          /* "generate" | "edit" */
  char   *prompt;
  char   *negative;      /* the negative prompt really used (may be "") */
  guint64 seed;          /* the seed really used (≤ 2^53 − 1, exact in JSON) */
  int     steps;
  double  cfg;
  double  cfg_img;       /* edit only; 0 for generate */
  int     width, height;
  char   *sampler;       /* "hf-sde" | "gh-grid" | "ode" */
  char   *model;         /* model folder */
  char   *version;       /* gimp-nextstep version that made it */
  int     images;        /* images made by the run (≥ 1) */
  int     image_index;   /* which of them this is (0-based) */
  char   *backend;       /* "cpu" | "cuda" */
  char   *precision;     /* "bf16" | "int8" | "fp8" | "auto" */
} NsRecipe;

/* Largest seed a recipe holds exactly (JSON numbers are doubles for many readers). */
#define NS_RECIPE_MAX_SEED G_GUINT64_CONSTANT (9007199254740991)

NsRecipe *ns_recipe_new (void);
NsRecipe *ns_recipe_copy (const NsRecipe *recipe);
void      ns_recipe_free (NsRecipe *recipe);

/* Pretty-printed JSON text; never fails (NULL strings become null). */
char     *ns_recipe_to_json (const NsRecipe *recipe);
/* Parses and checks a recipe of @length bytes (-1: up to the NUL; a NUL
 * inside @length bytes is damage, refused); NULL and an NS_ERROR_FORMAT
 * error naming the field when it is malformed. Unknown fields are ignored
 * (newer minor versions may add some). */
NsRecipe *ns_recipe_from_json (const char *json, gssize length, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsRecipe, ns_recipe_free)

G_END_DECLS
