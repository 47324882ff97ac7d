/* fuzz-recipe.c — the recipe the plug-in reads back from a layer's
 * `nextstep-recipe` parasite (any bytes: another program, or a damaged
 * .xcf, may have written it); a recipe that reads must also write and read
 * back, as the plug-in stores it again on the layers it makes. */
#include "fuzz.h"
#include "ns-recipe.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  NsRecipe *recipe = ns_recipe_from_json ((const char *) data, (gssize) size, &error);
  g_clear_error (&error);
  if (recipe != NULL)
    {
      char *again = ns_recipe_to_json (recipe);
      NsRecipe *copy = ns_recipe_from_json (again, -1, &error);
      /* What was read must survive a write and a read unchanged. */
      if (copy == NULL)
        g_error ("a recipe that was read could not be read back: %s", error->message);
      ns_recipe_free (copy);
      g_free (again);
      ns_recipe_free (recipe);
    }
  return 0;
}
