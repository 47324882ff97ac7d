/* test-recipe.c — NsRecipe JSON round trip and rejection of bad recipes. */
#include "nextstep.h"
#include "ns-recipe.h"

static NsRecipe *
sample_recipe (const char *mode)
{
  NsRecipe *r = ns_recipe_new ();
  r->mode = g_strdup (mode);
  r->prompt = g_strdup ("A “quoted” cat,\nsecond line — ünïcödé 猫 🐈");
  r->negative = g_strdup ("");
  r->seed = NS_RECIPE_MAX_SEED - (guint64) g_test_rand_int_range (0, 1000);
  r->steps = g_test_rand_int_range (1, 100);
  r->cfg = g_test_rand_double_range (1, 10);
  r->cfg_img = g_strcmp0 (mode, "edit") == 0 ? g_test_rand_double_range (1, 3) : 0;
  r->width = 16 * g_test_rand_int_range (1, 64);
  r->height = 16 * g_test_rand_int_range (1, 64);
  r->sampler = g_strdup ("gh-grid");
  r->model = g_strdup ("/models/NextStep 1.1/snapshots/abc");
  r->version = g_strdup ("0.1.0");
  r->images = 3;
  r->image_index = 2;
  r->backend = g_strdup ("cpu");
  r->precision = g_strdup ("int8");
  return r;
}

static void
assert_same (const NsRecipe *a, const NsRecipe *b)
{
  g_assert_cmpstr (a->mode, ==, b->mode);
  g_assert_cmpstr (a->prompt, ==, b->prompt);
  g_assert_cmpstr (a->negative, ==, b->negative);
  g_assert_cmpuint (a->seed, ==, b->seed);
  g_assert_cmpint (a->steps, ==, b->steps);
  g_assert_cmpfloat (a->cfg, ==, b->cfg);
  g_assert_cmpfloat (a->cfg_img, ==, b->cfg_img);
  g_assert_cmpint (a->width, ==, b->width);
  g_assert_cmpint (a->height, ==, b->height);
  g_assert_cmpstr (a->sampler, ==, b->sampler);
  g_assert_cmpstr (a->model, ==, b->model);
  g_assert_cmpstr (a->version, ==, b->version);
  g_assert_cmpint (a->images, ==, b->images);
  g_assert_cmpint (a->image_index, ==, b->image_index);
  g_assert_cmpstr (a->backend, ==, b->backend);
  g_assert_cmpstr (a->precision, ==, b->precision);
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
  /* A copy is deep and equal. */
  g_autoptr (NsRecipe) copy = ns_recipe_copy (back);
  g_assert_true (copy->prompt != back->prompt);
  assert_same (recipe, copy);
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
    { "image_index", "3" }, { "sampler", "[]" }, { "format", "0" },
  };
  g_autoptr (NsRecipe) recipe = sample_recipe ("edit");
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
    { "images", "[]" }, { "format", "\"1\"" }, { "negative", "false" }, { "model", "[\"/m\"]" },
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
  g_test_add_func ("/recipe/rejects-bad-fields", test_rejects);
  g_test_add_func ("/recipe/rejects-bad-documents", test_rejects_documents);
  g_test_add_func ("/recipe/damaged", test_damaged);
  return g_test_run ();
}
