/* results.h — putting engine results into an image, one undo group per
 * call, the same way for scripts and for the dialog's Insert. */
#pragma once

#include "canvas.h"
#include "nextstep.h"
#include "ns-recipe.h"

G_BEGIN_DECLS

/* Where results go. */
typedef struct {
  GimpImage    *image;      /* NULL: a new image of width × height is made */
  GimpDrawable *above;      /* the new layers go above it; NULL: the active layer */
  int x, y, width, height;  /* the layers' place and size, in image coordinates */
  gboolean mask;            /* mask the layers with the selection */
} NsPlacement;

/* Inserts @n results, recipe JSON @recipes[i] for @rgba[i] (each
 * @width × @height RGBA8), in one undo group. Returns the new layers (a
 * NULL-terminated array, for the "layers" return value), or NULL and an
 * error; @placement->image is set to the image used. */
GimpLayer **ns_results_insert (NsPlacement *placement, int n,
                               const guint8 *const *rgba, int width, int height,
                               const char *const *recipes, GError **error);

/* Recipe JSON for image @index of a run described by @recipe. */
char       *ns_results_recipe_json (NsRecipe *recipe, int index);

G_END_DECLS
