/* canvas.c — see canvas.h. */
#include <string.h>

#include "arguments.h"
#include "canvas.h"
#include "plugin-intl.h"

#define RECIPE_PARASITE "nextstep-recipe"
#define PIXEL_FORMAT    "R'G'B'A u8"

/* Sets @error from the PDB's last error after the call doing @what failed. */
static gboolean
pdb_failed (const char *what, GError **error)
{
  const char *why = gimp_pdb_get_last_error (gimp_get_pdb ());
  g_set_error (error, GIMP_PLUG_IN_ERROR, 0, _("GIMP could not %s: %s"), what,
               why != NULL && *why != '\0' ? why : _("no reason given"));
  return FALSE;
}

gboolean
ns_canvas_edit_region (GimpDrawable *drawable, NsEditRegion *region,
                       GError **error)
{
  int x, y, width, height, ox, oy;
  GimpImage *image = gimp_item_get_image (GIMP_ITEM (drawable));

  /* In the drawable's own coordinates; the whole drawable without a
   * selection. */
  if (! gimp_drawable_mask_intersect (drawable, &x, &y, &width, &height))
    {
      g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                   _("The selection does not overlap the layer \"%s\": select "
                     "an area inside it, or remove the selection to edit the "
                     "whole layer."),
                   gimp_item_get_name (GIMP_ITEM (drawable)));
      return FALSE;
    }
  gimp_drawable_get_offsets (drawable, &ox, &oy);
  *region = (NsEditRegion) {
    .drawable = drawable,
    .x = ox + x, .y = oy + y, .width = width, .height = height,
    .has_selection = ! gimp_selection_is_empty (image),
  };
  return TRUE;
}

/* Copies the region into @tmp as its only layer, cropped to the region and
 * scaled by GIMP to the grid size. */
static GimpLayer *
source_copy (const NsEditRegion *region, GimpImage *tmp, int grid_width,
             int grid_height, GError **error)
{
  int ox, oy;
  GimpLayer *copy = gimp_layer_new_from_drawable (region->drawable, tmp);

  if (copy == NULL || ! gimp_image_insert_layer (tmp, copy, NULL, 0))
    return pdb_failed (_("copy the layer to edit"), error), NULL;
  gimp_drawable_get_offsets (region->drawable, &ox, &oy);
  if (! gimp_layer_set_offsets (copy, ox - region->x, oy - region->y)
      || ! gimp_layer_resize_to_image_size (copy)
      || ! gimp_layer_scale (copy, grid_width, grid_height, FALSE))
    return pdb_failed (_("resize the area to edit"), error), NULL;
  return copy;
}

GBytes *
ns_canvas_read_source (const NsEditRegion *region, int *grid_width,
                       int *grid_height, GError **error)
{
  /* The engine's model was trained near 512×512; larger areas are scaled
   * down to about that many pixels, smaller ones only rounded. */
  const int max_pixels = 512 * 512;
  GBytes *pixels = NULL;

  ns_token_grid (region->width, region->height, max_pixels,
                 grid_width, grid_height);
  /* A scratch image keeps the user's image and its undo history untouched. */
  GimpImage *tmp = gimp_image_new (region->width, region->height, GIMP_RGB);
  GimpLayer *copy = source_copy (region, tmp, *grid_width, *grid_height, error);
  if (copy != NULL)
    {
      gsize size = (gsize) *grid_width * *grid_height * 4;
      guint8 *rgba = g_malloc (size);
      GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (copy));

      gegl_buffer_get (buffer, GEGL_RECTANGLE (0, 0, *grid_width, *grid_height),
                       1.0, babl_format (PIXEL_FORMAT), rgba,
                       GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
      g_object_unref (buffer);
      pixels = g_bytes_new_take (rgba, size);
    }
  gimp_image_delete (tmp);
  return pixels;
}

/* Writes into the layer's own buffer (not the shadow: the layer is new, so
 * there is nothing to merge). */
void
ns_canvas_write (GimpLayer *layer, const guint8 *rgba, int width, int height)
{
  GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (layer));

  gegl_buffer_set (buffer, GEGL_RECTANGLE (0, 0, width, height), 0,
                   babl_format (PIXEL_FORMAT), rgba, width * 4);
  g_object_unref (buffer);
  gimp_drawable_update (GIMP_DRAWABLE (layer), 0, 0, width, height);
}

static gboolean
attach_recipe (GimpLayer *layer, const char *recipe_json, GError **error)
{
  GimpParasite *parasite = gimp_parasite_new (RECIPE_PARASITE,
                                              GIMP_PARASITE_PERSISTENT
                                              | GIMP_PARASITE_UNDOABLE,
                                              strlen (recipe_json),
                                              recipe_json);
  gboolean ok = gimp_item_attach_parasite (GIMP_ITEM (layer), parasite);

  gimp_parasite_free (parasite);
  return ok || pdb_failed (_("store the recipe on the new layer"), error);
}

static gboolean
add_selection_mask (GimpLayer *layer, GError **error)
{
  GimpLayerMask *mask = gimp_layer_create_mask (layer, GIMP_ADD_MASK_SELECTION);

  if (mask == NULL || ! gimp_layer_add_mask (layer, mask))
    return pdb_failed (_("add the selection as a layer mask"), error);
  return TRUE;
}

GimpLayer *
ns_canvas_add_layer (GimpImage *image, GimpDrawable *above, const char *name,
                     int width, int height, GError **error)
{
  GimpImageType type = gimp_image_get_base_type (image) == GIMP_GRAY
                       ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  GimpLayer *layer = gimp_layer_new (image, name, width, height, type, 100.0,
                                     gimp_image_get_default_new_layer_mode (image));
  GimpLayer *parent = NULL;
  int position = -1;

  if (above != NULL && GIMP_IS_LAYER (above))
    {
      parent = GIMP_LAYER (gimp_item_get_parent (GIMP_ITEM (above)));
      position = gimp_image_get_item_position (image, GIMP_ITEM (above));
    }
  if (layer == NULL || ! gimp_image_insert_layer (image, layer, parent, position))
    return pdb_failed (_("add a layer"), error), NULL;
  return layer;
}

GimpLayer *
ns_canvas_insert (GimpImage *image, GimpDrawable *above,
                  const NsCanvasResult *result, int x, int y,
                  int target_width, int target_height,
                  gboolean mask_from_selection, GError **error)
{
  GimpLayer *layer = ns_canvas_add_layer (image, above, result->name,
                                          result->width, result->height, error);

  if (layer == NULL)
    return NULL;
  ns_canvas_write (layer, result->rgba, result->width, result->height);
  if ((target_width != result->width || target_height != result->height)
      && ! gimp_layer_scale (layer, target_width, target_height, FALSE))
    return pdb_failed (_("resize the result"), error), NULL;
  if (! gimp_layer_set_offsets (layer, x, y))
    return pdb_failed (_("place the result"), error), NULL;
  if (! attach_recipe (layer, result->recipe_json, error))
    return NULL;
  if (mask_from_selection && ! gimp_selection_is_empty (image)
      && ! add_selection_mask (layer, error))
    return NULL;
  return layer;
}

char *
ns_canvas_get_recipe (GimpItem *item, gsize *size)
{
  GimpParasite *parasite = gimp_item_get_parasite (item, RECIPE_PARASITE);
  guint32 n = 0;
  const char *data;
  char *json;

  if (parasite == NULL)
    return NULL;
  /* Every byte, not up to a NUL: a NUL inside is damage the parser must
   * see and refuse. */
  data = gimp_parasite_get_data (parasite, &n);
  json = g_malloc (n + 1);
  if (n > 0)
    memcpy (json, data, n);
  json[n] = '\0';
  *size = n;
  gimp_parasite_free (parasite);
  return json;
}
