/* test-recipe.c — NsRecipe JSON round trip, format 1 recipes, and rejection
 * of bad recipes. */
#include <string.h>

#include "nextstep.h"
#include "ns-recipe.h"

static NsRecipe *
sample_recipe (const char *mode_name)
{
  NsMode mode = g_strcmp0 (mode_name, "edit") == 0 ? NS_MODE_EDIT : NS_MODE_GENERATE;
  g_autoptr (NsSettings) s = ns_settings_new ();
  g_object_set (s, ns_settings_prompt_property (mode),
                "A “quoted” cat,\nsecond line — ünïcödé 猫 🐈",
                "negative-prompt", "blurry",
                "seed", (gint64) (NS_RECIPE_MAX_SEED - (guint64) g_test_rand_int_range (0, 1000)),
                "steps", g_test_rand_int_range (1, 100),
                "cfg", g_test_rand_double_range (1, 10),
                "sampler", "gh-grid", "model", "/models/NextStep 1.1/snapshots/abc",
                "backend", "cpu", "precision", "int8", NULL);
  if (mode == NS_MODE_EDIT)
    g_object_set (s, "cfg-img", g_test_rand_double_range (1, 3), NULL);
  else
    g_object_set (s, "width", 16 * g_test_rand_int_range (1, 64),
                  "height", 16 * g_test_rand_int_range (1, 64), "images", 3,
                  "positive-prompt", "sharp", NULL);
  NsRecipe *r = ns_recipe_new (mode, s);
  g_free (r->version);
  r->version = g_strdup ("0.1.0");
  r->image_index = mode == NS_MODE_EDIT ? 0 : 2;
  return r;
}

static void
assert_same (const NsRecipe *a, const NsRecipe *b)
{
  g_assert_cmpint (a->mode, ==, b->mode);
  g_assert_cmpstr (a->version, ==, b->version);
  g_assert_cmpint (a->image_index, ==, b->image_index);
  g_assert_true (ns_settings_equal (a->settings, b->settings));
}

static void
test_round_trip (gconstpointer mode)
{
  g_autoptr (NsRecipe) recipe = sample_recipe (mode);
  g_autofree char *json = ns_recipe_to_json (recipe);
  g_autoptr (GError) error = NULL;
  g_autoptr (NsRecipe) back = ns_recipe_from_json (json, -1, &error);
  g_assert_no_error (error);
  assert_same (recipe, back);
  /* Its members are the properties by their argument names. */
  g_assert_nonnull (strstr (json, g_strcmp0 (mode, "edit") == 0 ? "\"instruction\"" : "\"prompt\""));
  g_assert_nonnull (strstr (json, "\"negative-prompt\""));
  /* Never the server, its key or dialog state. */
  g_assert_null (strstr (json, "server"));
  g_assert_null (strstr (json, "api-key"));
  g_assert_null (strstr (json, "draft"));
}

/* A recipe gimp-nextstep 0.1 stored on a layer still reads. */
static void
test_format_1 (void)
{
  static const char *json =
    "{\"format\": 1, \"version\": \"0.1.0\", \"mode\": \"edit\", \"prompt\": \"make it blue\","
    " \"negative\": \"Copy original image.\", \"seed\": 4000000000, \"steps\": 28,"
    " \"cfg\": 7.5, \"cfg_img\": 2, \"width\": 512, \"height\": 512, \"sampler\": \"hf-sde\","
    " \"model\": null, \"images\": 1, \"image_index\": 0, \"backend\": \"cuda\","
    " \"precision\": \"bf16\"}";
  g_autoptr (GError) error = NULL;
  g_autoptr (NsRecipe) recipe = ns_recipe_from_json (json, -1, &error);
  g_assert_no_error (error);
  g_assert_cmpint (recipe->mode, ==, NS_MODE_EDIT);
  g_autofree char *instruction = NULL, *negative = NULL, *backend = NULL, *model = NULL;
  double cfg_img;
  g_object_get (recipe->settings, "instruction", &instruction, "negative-prompt", &negative,
                "cfg-img", &cfg_img, "backend", &backend, "model", &model, NULL);
  g_assert_cmpstr (instruction, ==, "make it blue");
  g_assert_cmpstr (negative, ==, "Copy original image.");
  g_assert_cmpfloat (cfg_img, ==, 2);
  g_assert_cmpstr (backend, ==, "cuda");
  g_assert_cmpstr (model, ==, "");
  /* Seeds the dialog drew before (up to 2^32 − 1) are kept exactly. */
  g_assert_cmpuint (ns_recipe_get_seed (recipe), ==, 4000000000u);
}

/* Each case replaces one member of a valid recipe and must be refused with
 * an error that names the field. */
static void
test_rejects (void)
{
  static const struct { const char *field, *value; } cases[] = {
    { "mode", "\"paint\"" }, { "prompt", "42" }, { "prompt", "null" },
    { "seed", "-1" }, { "seed", "1.5" }, { "steps", "0" }, { "width", "100" },
    { "height", "\"64\"" }, { "cfg", "-2" }, { "cfg", "\"x\"" }, { "images", "0" },
    { "image_index", "3" }, { "sampler", "[]" }, { "sampler", "\"euler\"" }, { "format", "0" },
  };
  g_autoptr (NsRecipe) recipe = sample_recipe ("generate");
  g_autofree char *json = ns_recipe_to_json (recipe);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *pattern = g_strdup_printf ("(\"%s\" : )(\"(?:[^\"\\\\]|\\\\.)*\"|[^,\\n]*)",
                                                cases[i].field);
      g_autoptr (GRegex) regex = g_regex_new (pattern, 0, 0, NULL);
      g_autofree char *replacement = g_strdup_printf ("\\g<1>%s", cases[i].value);
      g_autofree char *bad = g_regex_replace (regex, json, -1, 0, replacement, 0, NULL);
      g_assert_cmpstr (bad, !=, json);
      g_autoptr (GError) error = NULL;
      g_autoptr (NsRecipe) parsed = ns_recipe_from_json (bad, -1, &error);
      g_assert_null (parsed);
      g_assert_error (error, NS_ERROR, NS_ERROR_FORMAT);
      g_assert_nonnull (strstr (error->message, cases[i].field));
    }
}

static void
test_rejects_documents (void)
{
  const char *documents[] = { "", "{", "[1, 2]", "\"recipe\"", "{}",
                              "{\"format\": 1, \"mode\": \"generate\"}" };
  for (guint i = 0; i < G_N_ELEMENTS (documents); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (NsRecipe) parsed = ns_recipe_from_json (documents[i], -1, &error);
      g_assert_null (parsed);
      g_assert_error (error, NS_ERROR, NS_ERROR_FORMAT);
    }
  g_autoptr (GError) error = NULL;
  g_autoptr (NsRecipe) newer = ns_recipe_from_json ("{\"format\": 99}", -1, &error);
  g_assert_null (newer);
  g_assert_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED);
}

static void
assert_unreadable (const char *json, const char *what)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (NsRecipe) parsed = ns_recipe_from_json (json, -1, &error);
  if (parsed != NULL)
    g_error ("a damaged recipe (%s) was read", what);
  g_assert_true (error->domain == NS_ERROR);
  g_assert_true (strstr (error->message, "ecipe") != NULL);
}

/* What a damaged `nextstep-recipe` parasite may hold (another program
 * wrote it, an .xcf was damaged): bad JSON, wrong types, huge values. Each
 * is an error the plug-in can show, never a crash and never a recipe. */
static void
test_damaged (void)
{
  g_autoptr (NsRecipe) recipe = sample_recipe ("generate");
  g_autofree char *json = ns_recipe_to_json (recipe);
  g_autofree char *doubled = g_strconcat (json, json, NULL);
  g_autofree char *trailing = g_strconcat (json, "\x01garbage", NULL);
  assert_unreadable (doubled, "two recipes back to back");
  assert_unreadable (trailing, "trailing bytes");
  for (gsize cut = 0; cut + 1 < strlen (json); cut++)
    {
      g_autofree char *part = g_strndup (json, cut);
      assert_unreadable (part, "cut short");
    }
  static const struct { const char *field, *value; } cases[] = {
    { "mode", "1" }, { "prompt", "{}" }, { "seed", "\"42\"" }, { "steps", "28.5" },
    { "images", "[]" }, { "format", "\"1\"" }, { "negative-prompt", "false" }, { "model", "[\"/m\"]" },
    { "seed", "1e308" }, { "seed", "9223372036854775807" }, { "seed", "99999999999999999999" },
    { "steps", "-9223372036854775808" }, { "width", "1e999" }, { "height", "16384000" },
    { "cfg", "1e300" }, { "cfg", "-1e999" }, { "images", "2147483648" },
    { "prompt", "\"a\\u0000b\"" }, { "prompt", "\"\\ud800\"" }, { "prompt", "\"caf\xc3\"" },
    { "sampler", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *pattern = g_strdup_printf ("(\"%s\" : )(\"(?:[^\"\\\\]|\\\\.)*\"|[^,\\n]*)",
                                                cases[i].field);
      g_autoptr (GRegex) regex = g_regex_new (pattern, 0, 0, NULL);
      /* (backslashes doubled: GRegex reads escapes in replacements) */
      g_auto (GStrv) parts = g_strsplit (cases[i].value, "\\", -1);
      g_autofree char *value = g_strjoinv ("\\\\", parts);
      g_autofree char *replacement = g_strdup_printf ("\\g<1>%s", value);
      g_autofree char *bad = g_regex_replace (regex, json, -1, 0, replacement, 0, NULL);
      g_assert_cmpstr (bad, !=, json);
      assert_unreadable (bad, bad);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/recipe/round-trip/generate", "generate", test_round_trip);
  g_test_add_data_func ("/recipe/round-trip/edit", "edit", test_round_trip);
  g_test_add_func ("/recipe/format-1", test_format_1);
  g_test_add_func ("/recipe/rejects-bad-fields", test_rejects);
  g_test_add_func ("/recipe/rejects-bad-documents", test_rejects_documents);
  g_test_add_func ("/recipe/damaged", test_damaged);
  return g_test_run ();
}
