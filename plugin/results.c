/* results.c — see results.h. */
#include "results.h"
#include "plugin-intl.h"

/* A short form of the recipe for the Layers dock; the parasite has it all. */
static char *
layer_name (const char *recipe_json)
{
  g_autoptr (NsRecipe) recipe = ns_recipe_from_json (recipe_json, -1, NULL);
  g_autofree char *full = recipe != NULL ? ns_recipe_dup_prompt (recipe) : NULL;
  g_autofree char *prompt = NULL;

  if (full == NULL)
    return g_strdup ("NextStep");
  prompt = g_utf8_substring (full, 0, MIN (g_utf8_strlen (full, -1), 40));
  return g_strdup_printf ("NextStep: %s (seed %" G_GUINT64_FORMAT ")",
                          prompt, ns_recipe_get_seed (recipe));
}

static GimpLayer **
insert_all (NsPlacement *p, int n, const guint8 *const *rgba, int width,
            int height, const char *const *recipes, GError **error)
{
  GimpLayer **layers = g_new0 (GimpLayer *, n + 1);

  for (int i = 0; i < n; i++)
    {
      g_autofree char *name = layer_name (recipes[i]);
      NsCanvasResult result = { rgba[i], width, height, recipes[i], name };

      layers[i] = ns_canvas_insert (p->image, p->above, &result, p->x, p->y,
                                    p->width, p->height, p->mask, error);
      if (layers[i] == NULL)
        {
          g_free (layers);
          return NULL;
        }
      /* The next candidate goes above this one. */
      p->above = GIMP_DRAWABLE (layers[i]);
    }
  return layers;
}

GimpLayer **
ns_results_insert (NsPlacement *placement, int n, const guint8 *const *rgba,
                   int width, int height, const char *const *recipes,
                   GError **error)
{
  GimpLayer **layers;

  if (placement->image == NULL)
    placement->image = gimp_image_new (placement->width, placement->height,
                                       GIMP_RGB);
  gimp_image_undo_group_start (placement->image);
  layers = insert_all (placement, n, rgba, width, height, recipes, error);
  gimp_image_undo_group_end (placement->image);
  return layers;
}

char *
ns_results_recipe_json (NsRecipe *recipe, int index)
{
  recipe->image_index = index;
  return ns_recipe_to_json (recipe);
}
