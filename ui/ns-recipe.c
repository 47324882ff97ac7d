/* ns-recipe.c — see ns-recipe.h. */
#include <string.h>
#include <json-glib/json-glib.h>

#include "nextstep.h"
#include "files/json-load.h"
#include "ns-recipe.h"

NsRecipe *
ns_recipe_new (void)
{
  NsRecipe *recipe = g_new0 (NsRecipe, 1);
  recipe->images = 1;
  return recipe;
}

NsRecipe *
ns_recipe_copy (const NsRecipe *recipe)
{
  NsRecipe *copy = g_memdup2 (recipe, sizeof *recipe);
  copy->mode = g_strdup (recipe->mode);
  copy->prompt = g_strdup (recipe->prompt);
  copy->negative = g_strdup (recipe->negative);
  copy->sampler = g_strdup (recipe->sampler);
  copy->model = g_strdup (recipe->model);
  copy->version = g_strdup (recipe->version);
  copy->backend = g_strdup (recipe->backend);
  copy->precision = g_strdup (recipe->precision);
  return copy;
}

void
ns_recipe_free (NsRecipe *recipe)
{
  if (recipe == NULL)
    return;
  g_free (recipe->mode);
  g_free (recipe->prompt);
  g_free (recipe->negative);
  g_free (recipe->sampler);
  g_free (recipe->model);
  g_free (recipe->version);
  g_free (recipe->backend);
  g_free (recipe->precision);
  g_free (recipe);
}

static void
add_string (JsonBuilder *builder, const char *name, const char *value)
{
  json_builder_set_member_name (builder, name);
  if (value != NULL)
    json_builder_add_string_value (builder, value);
  else
    json_builder_add_null_value (builder);
}

static void
add_int (JsonBuilder *builder, const char *name, gint64 value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_int_value (builder, value);
}

static void
add_double (JsonBuilder *builder, const char *name, double value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_double_value (builder, value);
}

char *
ns_recipe_to_json (const NsRecipe *recipe)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  add_int (builder, "format", NS_RECIPE_FORMAT);
  add_string (builder, "version", recipe->version);
  add_string (builder, "mode", recipe->mode);
  add_string (builder, "prompt", recipe->prompt);
  add_string (builder, "negative", recipe->negative);
  add_int (builder, "seed", (gint64) MIN (recipe->seed, NS_RECIPE_MAX_SEED));
  add_int (builder, "steps", recipe->steps);
  add_double (builder, "cfg", recipe->cfg);
  if (g_strcmp0 (recipe->mode, "edit") == 0)
    add_double (builder, "cfg_img", recipe->cfg_img);
  add_int (builder, "width", recipe->width);
  add_int (builder, "height", recipe->height);
  add_string (builder, "sampler", recipe->sampler);
  add_string (builder, "model", recipe->model);
  add_int (builder, "images", recipe->images);
  add_int (builder, "image_index", recipe->image_index);
  add_string (builder, "backend", recipe->backend);
  add_string (builder, "precision", recipe->precision);
  json_builder_end_object (builder);

  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, TRUE);
  return json_generator_to_data (generator, NULL);
}

/* ---- Parsing: each reader checks the member's type and range ----------- */

static gboolean
fail (GError **error, const char *field, const char *what)
{
  g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
               "Recipe field “%s” %s; the recipe is damaged or was not written by gimp-nextstep",
               field, what);
  return FALSE;
}

static gboolean
read_string (JsonObject *object, const char *field, gboolean required,
             char **out, GError **error)
{
  JsonNode *node = json_object_get_member (object, field);
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return required ? fail (error, field, "is missing") : TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    return fail (error, field, "is not a string");
  *out = g_strdup (json_node_get_string (node));
  return TRUE;
}

static gboolean
read_int (JsonObject *object, const char *field, gint64 min, gint64 max,
          gint64 *out, GError **error)
{
  JsonNode *node = json_object_get_member (object, field);
  if (node == NULL)
    return fail (error, field, "is missing");
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return fail (error, field, "is not an integer");
  gint64 value = json_node_get_int (node);
  if (value < min || value > max)
    return fail (error, field, "is out of range");
  *out = value;
  return TRUE;
}

/* Integers are accepted for numbers too (json-glib reads "7" as an int). */
static gboolean
read_double (JsonObject *object, const char *field, gboolean required,
             double *out, GError **error)
{
  JsonNode *node = json_object_get_member (object, field);
  if (node == NULL)
    return required ? fail (error, field, "is missing") : TRUE;
  GType type = JSON_NODE_HOLDS_VALUE (node) ? json_node_get_value_type (node) : G_TYPE_INVALID;
  if (type != G_TYPE_DOUBLE && type != G_TYPE_INT64)
    return fail (error, field, "is not a number");
  double value = json_node_get_double (node);
  if (!(value >= 0 && value <= 1000))
    return fail (error, field, "is out of range");
  *out = value;
  return TRUE;
}

static gboolean
read_mode (JsonObject *object, NsRecipe *recipe, GError **error)
{
  if (!read_string (object, "mode", TRUE, &recipe->mode, error))
    return FALSE;
  if (g_strcmp0 (recipe->mode, "generate") != 0 && g_strcmp0 (recipe->mode, "edit") != 0)
    return fail (error, "mode", "is neither “generate” nor “edit”");
  return TRUE;
}

static gboolean
read_numbers (JsonObject *object, NsRecipe *recipe, GError **error)
{
  gint64 seed, steps, width, height, images = 1, index = 0;
  if (!read_int (object, "seed", 0, (gint64) NS_RECIPE_MAX_SEED, &seed, error)
      || !read_int (object, "steps", 1, 10000, &steps, error)
      || !read_int (object, "width", 16, 16384, &width, error)
      || !read_int (object, "height", 16, 16384, &height, error)
      || (json_object_has_member (object, "images")
          && !read_int (object, "images", 1, 64, &images, error))
      || (json_object_has_member (object, "image_index")
          && !read_int (object, "image_index", 0, images - 1, &index, error))
      || !read_double (object, "cfg", TRUE, &recipe->cfg, error)
      || !read_double (object, "cfg_img", FALSE, &recipe->cfg_img, error))
    return FALSE;
  if (width % 16 != 0 || height % 16 != 0)
    return fail (error, width % 16 != 0 ? "width" : "height", "is not a multiple of 16");
  recipe->seed = (guint64) seed;
  recipe->steps = (int) steps;
  recipe->width = (int) width;
  recipe->height = (int) height;
  recipe->images = (int) images;
  recipe->image_index = (int) index;
  return TRUE;
}

static gboolean
read_recipe (JsonObject *object, NsRecipe *recipe, GError **error)
{
  gint64 format;
  if (!read_int (object, "format", 1, G_MAXINT, &format, error))
    return FALSE;
  if (format > NS_RECIPE_FORMAT)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "The recipe has format %" G_GINT64_FORMAT " but this gimp-nextstep reads "
                   "format %d at most; update gimp-nextstep", format, NS_RECIPE_FORMAT);
      return FALSE;
    }
  return read_mode (object, recipe, error)
      && read_string (object, "prompt", TRUE, &recipe->prompt, error)
      && read_string (object, "negative", FALSE, &recipe->negative, error)
      && read_string (object, "sampler", TRUE, &recipe->sampler, error)
      && read_string (object, "model", FALSE, &recipe->model, error)
      && read_string (object, "version", FALSE, &recipe->version, error)
      && read_string (object, "backend", FALSE, &recipe->backend, error)
      && read_string (object, "precision", FALSE, &recipe->precision, error)
      && read_numbers (object, recipe, error);
}

NsRecipe *
ns_recipe_from_json (const char *json, gssize length, GError **error)
{
  g_return_val_if_fail (json != NULL, NULL);
  gsize size = length < 0 ? strlen (json) : (gsize) length;
  g_autoptr (JsonObject) object = ns_json_load_object (json, size, "The recipe",
                                                      "it is damaged or was not written by "
                                                      "gimp-nextstep", 0, error);
  if (object == NULL)
    return NULL;
  g_autoptr (NsRecipe) recipe = ns_recipe_new ();
  if (!read_recipe (object, recipe, error))
    return NULL;
  return g_steal_pointer (&recipe);
}
