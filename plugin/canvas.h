/* canvas.h — what the plug-in reads from and writes to the image: the edit
 * source and the result layers. Main thread only (libgimp calls). Every
 * resampling is done by GIMP (gimp_layer_scale), never here. */
#pragma once

#include <libgimp/gimp.h>

G_BEGIN_DECLS

/* Where an edit reads from and puts its result. */
typedef struct {
  GimpDrawable *drawable;          /* the source (not owned) */
  int x, y, width, height;         /* the region, in image coordinates */
  gboolean has_selection;          /* the region is a selection's bounds */
} NsEditRegion;

/* The region of @drawable an edit works on: the part of it inside the
 * selection's bounding box, or all of it without a selection. FALSE with
 * an error when the selection does not touch the drawable. */
gboolean  ns_canvas_edit_region (GimpDrawable *drawable, NsEditRegion *region,
                                 GError **error);

/* The pixels of @region as RGBA8 (stride width*4), resized by GIMP to the
 * engine's token grid (aspect kept); the grid size goes to @grid_width and
 * @grid_height. The image itself is left untouched. */
GBytes   *ns_canvas_read_source (const NsEditRegion *region, int *grid_width,
                                 int *grid_height, GError **error);

/* A result to put into the image. */
typedef struct {
  const guint8 *rgba;              /* width × height RGBA8, stride width*4 */
  int width, height;
  const char *recipe_json;         /* the nextstep-recipe parasite */
  const char *name;                /* layer name */
} NsCanvasResult;

/* Adds @result as a new layer of @image, resized by GIMP to
 * @target_width × @target_height and placed at @x, @y; above @above when
 * given, else above the active layer. With @mask_from_selection and a
 * selection, the layer gets a mask made from it. The caller owns the undo
 * group. NULL with an error when GIMP refuses a step. */
GimpLayer *ns_canvas_insert (GimpImage *image, GimpDrawable *above,
                             const NsCanvasResult *result, int x, int y,
                             int target_width, int target_height,
                             gboolean mask_from_selection, GError **error);

/* A new empty layer of @width × @height at 0,0, above @above when it is a
 * layer, else above the active one; NULL with an error when GIMP refuses. */
GimpLayer *ns_canvas_add_layer (GimpImage *image, GimpDrawable *above,
                                const char *name, int width, int height,
                                GError **error);

/* Puts @rgba (@width × @height RGBA8, stride width*4) into @layer. */
void      ns_canvas_write (GimpLayer *layer, const guint8 *rgba, int width,
                           int height);

/* The recipe stored on @item (all its bytes, NUL-terminated after
 * *@size), or NULL when it has none. */
char     *ns_canvas_get_recipe (GimpItem *item, gsize *size);

G_END_DECLS
