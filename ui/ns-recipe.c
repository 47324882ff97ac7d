/* ns-recipe.c — see ns-recipe.h. */
#include <string.h>
#include <json-glib/json-glib.h>

#include "nextstep.h"
#include "files/json-load.h"
#include "ns-recipe.h"

NsRecipe *
ns_recipe_new (NsMode mode, NsSettings *settings)
{
  NsRecipe *recipe = g_new0 (NsRecipe, 1);
  recipe->mode = mode;
  recipe->settings = g_object_ref (settings);
  recipe->version = g_strdup (ns_version ());
  return recipe;
}

void
ns_recipe_free (NsRecipe *recipe)
{
  if (recipe == NULL)
    return;
  g_clear_object (&recipe->settings);
  g_free (recipe->version);
  g_free (recipe);
}

char *
ns_recipe_dup_prompt (const NsRecipe *recipe)
{
  char *prompt = NULL;
  g_object_get (recipe->settings, ns_settings_prompt_property (recipe->mode), &prompt, NULL);
  return prompt;
}

guint64
ns_recipe_get_seed (const NsRecipe *recipe)
{
  gint64 seed = 0;
  g_object_get (recipe->settings, "seed", &seed, NULL);
  return (guint64) MAX (seed, 0);
}

/* The settings a recipe of @mode holds. */
static gboolean
in_recipe (const NsSettingSpec *spec, NsMode mode)
{
  return (spec->flags & NS_SETTING_RECIPE)
      && (spec->flags & (mode == NS_MODE_EDIT ? NS_SETTING_EDIT : NS_SETTING_GENERATE));
}

/* Calls @fn with each setting the recipe holds, by name, as a GValue. */
static void
foreach_value (const NsRecipe *recipe, void (*fn) (const char *name, const GValue *value,
                                                   gpointer data), gpointer data)
{
  guint n;
  const NsSettingSpec *specs = ns_settings_specs (&n);
  for (guint i = 0; i < n; i++)
    if (in_recipe (&specs[i], recipe->mode))
      {
        GValue value = G_VALUE_INIT;
        g_object_get_property (G_OBJECT (recipe->settings), specs[i].name, &value);
        fn (specs[i].name, &value, data);
        g_value_unset (&value);
      }
}

static void
set_setting (const char *name, const GValue *value, gpointer settings)
{
  g_object_set_property (G_OBJECT (settings), name, value);
}

void
ns_recipe_apply (const NsRecipe *recipe, NsSettings *settings)
{
  foreach_value (recipe, set_setting, settings);
}

/* ---- Writing ------------------------------------------------------------ */

static void
add_value (const char *name, const GValue *value, gpointer data)
{
  JsonBuilder *builder = data;
  json_builder_set_member_name (builder, name);
  switch (G_VALUE_TYPE (value))
    {
    case G_TYPE_STRING:
      json_builder_add_string_value (builder, g_value_get_string (value) != NULL
                                              ? g_value_get_string (value) : "");
      break;
    case G_TYPE_INT:
      json_builder_add_int_value (builder, g_value_get_int (value));
      break;
    case G_TYPE_INT64:
      json_builder_add_int_value (builder, g_value_get_int64 (value));
      break;
    case G_TYPE_DOUBLE:
      json_builder_add_double_value (builder, g_value_get_double (value));
      break;
    default:
      json_builder_add_boolean_value (builder, g_value_get_boolean (value));
      break;
    }
}

char *
ns_recipe_to_json (const NsRecipe *recipe)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "format");
  json_builder_add_int_value (builder, NS_RECIPE_FORMAT);
  json_builder_set_member_name (builder, "version");
  json_builder_add_string_value (builder, recipe->version != NULL ? recipe->version : "");
  json_builder_set_member_name (builder, "mode");
  json_builder_add_string_value (builder, recipe->mode == NS_MODE_EDIT ? "edit" : "generate");
  json_builder_set_member_name (builder, "image_index");
  json_builder_add_int_value (builder, recipe->image_index);
  foreach_value (recipe, add_value, builder);
  json_builder_end_object (builder);

  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, TRUE);
  return json_generator_to_data (generator, NULL);
}

/* ---- Parsing: each member is checked against its property's type and range */

static gboolean
fail (GError **error, const char *field, const char *what)
{
  g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
               "Recipe field “%s” %s; the recipe is damaged or was not written by gimp-nextstep",
               field, what);
  return FALSE;
}

/* The member that holds @property in a recipe of @format (NULL: none). */
static const char *
member_name (gint64 format, const char *property)
{
  if (format >= 2)
    return property;
  static const char *const renamed[][2] = {
    { "instruction", "prompt" }, { "negative-prompt", "negative" }, { "cfg-img", "cfg_img" },
    { "positive-prompt", NULL }, { "images", "images" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (renamed); i++)
    if (strcmp (property, renamed[i][0]) == 0)
      return renamed[i][1];
  return property;
}

static gboolean
required (const char *property)
{
  static const char *const names[] = { "prompt", "instruction", "seed", "steps", "cfg",
                                       "width", "height", "sampler", NULL };
  return g_strv_contains (names, property);
}

static const char *const *
choices (const char *property)
{
  return strcmp (property, "sampler") == 0 ? ns_settings_samplers
       : strcmp (property, "backend") == 0 ? ns_settings_backends
       : strcmp (property, "precision") == 0 ? ns_settings_precisions : NULL;
}

/* Reads @node into @value (initialised to the property's type). */
static gboolean
read_value (JsonNode *node, const char *field, GParamSpec *pspec, GValue *value, GError **error)
{
  GType type = JSON_NODE_HOLDS_VALUE (node) ? json_node_get_value_type (node) : G_TYPE_INVALID;
  switch (G_PARAM_SPEC_VALUE_TYPE (pspec))
    {
    case G_TYPE_STRING:
      if (type != G_TYPE_STRING)
        return fail (error, field, "is not a string");
      g_value_set_string (value, json_node_get_string (node));
      if (choices (pspec->name) != NULL
          && !g_strv_contains (choices (pspec->name), g_value_get_string (value)))
        return fail (error, field, "has an unknown value");
      return TRUE;
    case G_TYPE_INT:
    case G_TYPE_INT64:
      {
        if (type != G_TYPE_INT64)
          return fail (error, field, "is not an integer");
        gint64 number = json_node_get_int (node);
        /* A recipe holds the values used: a seed, never "random"; steps,
         * never "the model's default". */
        if ((number < 0 && strcmp (pspec->name, "seed") == 0)
            || (number < 1 && strcmp (pspec->name, "steps") == 0))
          return fail (error, field, "is out of range");
        if (G_VALUE_HOLDS_INT (value))
          {
            if (number < G_MININT || number > G_MAXINT)
              return fail (error, field, "is out of range");
            g_value_set_int (value, (int) number);
          }
        else
          g_value_set_int64 (value, number);
        break;
      }
    case G_TYPE_DOUBLE:
      if (type != G_TYPE_DOUBLE && type != G_TYPE_INT64)
        return fail (error, field, "is not a number");
      g_value_set_double (value, json_node_get_double (node));
      break;
    default:
      if (type != G_TYPE_BOOLEAN)
        return fail (error, field, "is not a boolean");
      g_value_set_boolean (value, json_node_get_boolean (node));
      break;
    }
  /* Validation changes a value outside the property's range. */
  if (g_param_value_validate (pspec, value))
    return fail (error, field, "is out of range");
  return TRUE;
}

static gboolean
read_settings (JsonObject *object, gint64 format, NsRecipe *recipe, GError **error)
{
  guint n;
  const NsSettingSpec *specs = ns_settings_specs (&n);
  GObjectClass *klass = G_OBJECT_GET_CLASS (recipe->settings);
  for (guint i = 0; i < n; i++)
    {
      const char *field = member_name (format, specs[i].name);
      if (!in_recipe (&specs[i], recipe->mode) || field == NULL)
        continue;
      JsonNode *node = json_object_get_member (object, field);
      if (node == NULL || JSON_NODE_HOLDS_NULL (node))
        {
          if (required (specs[i].name))
            return fail (error, field, "is missing");
          continue;
        }
      GParamSpec *pspec = g_object_class_find_property (klass, specs[i].name);
      GValue value = G_VALUE_INIT;
      g_value_init (&value, G_PARAM_SPEC_VALUE_TYPE (pspec));
      gboolean ok = read_value (node, field, pspec, &value, error);
      if (ok)
        g_object_set_property (G_OBJECT (recipe->settings), specs[i].name, &value);
      g_value_unset (&value);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

static gboolean
read_recipe (JsonObject *object, NsRecipe *recipe, GError **error)
{
  JsonNode *node = json_object_get_member (object, "format");
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64
      || json_node_get_int (node) < 1)
    return fail (error, "format", "is missing or not a positive integer");
  gint64 format = json_node_get_int (node);
  if (format > NS_RECIPE_FORMAT)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "The recipe has format %" G_GINT64_FORMAT " but this gimp-nextstep reads "
                   "format %d at most; update gimp-nextstep", format, NS_RECIPE_FORMAT);
      return FALSE;
    }
  node = json_object_get_member (object, "mode");
  const char *mode = node != NULL && JSON_NODE_HOLDS_VALUE (node)
                     && json_node_get_value_type (node) == G_TYPE_STRING
                     ? json_node_get_string (node) : NULL;
  if (g_strcmp0 (mode, "generate") != 0 && g_strcmp0 (mode, "edit") != 0)
    return fail (error, "mode", "is neither “generate” nor “edit”");
  recipe->mode = strcmp (mode, "edit") == 0 ? NS_MODE_EDIT : NS_MODE_GENERATE;

  node = json_object_get_member (object, "version");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
        return fail (error, "version", "is not a string");
      g_free (recipe->version);
      recipe->version = g_strdup (json_node_get_string (node));
    }
  if (!read_settings (object, format, recipe, error))
    return FALSE;

  int width, height, images = 1;
  if (recipe->mode == NS_MODE_GENERATE)
    {
      g_object_get (recipe->settings, "width", &width, "height", &height, "images", &images, NULL);
      if (width % NS_TOKEN_GRID != 0 || height % NS_TOKEN_GRID != 0)
        return fail (error, width % NS_TOKEN_GRID != 0 ? "width" : "height",
                     "is not a multiple of 16");
    }
  node = json_object_get_member (object, "image_index");
  if (node != NULL)
    {
      if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
        return fail (error, "image_index", "is not an integer");
      if (json_node_get_int (node) < 0 || json_node_get_int (node) >= images)
        return fail (error, "image_index", "is out of range");
      recipe->image_index = (int) json_node_get_int (node);
    }
  return TRUE;
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
  g_autoptr (NsSettings) settings = ns_settings_new ();
  g_autoptr (NsRecipe) recipe = ns_recipe_new (NS_MODE_GENERATE, settings);
  g_clear_pointer (&recipe->version, g_free);
  if (!read_recipe (object, recipe, error))
    return NULL;
  return g_steal_pointer (&recipe);
}
