/* test-settings.c — one set of parameters, one path to a request (issue 12):
 * (a) NsSettings's properties are the procedures' arguments, by name (the
 *     plug-in declares them from the same table; tests/gimp/check-pdb.py
 *     checks the real procedures in GIMP against `--list` of this program);
 * (b) the batch path (settings → a procedure config by name → settings) and
 *     a recipe round trip (run → recipe JSON → "regenerate") give the same
 *     NsRequest and model key as the settings themselves (the dialog path,
 *     which runs its widgets' settings through the same function, is checked
 *     in test-dialog.c);
 * (c) bad settings fail with the same message whichever path they took.
 * GLib only: no GTK, no GIMP. */
#include <stdio.h>
#include <string.h>

#include "ns-recipe.h"
#include "ns-settings.h"

/* The PDB contract after run-mode, image, drawables (README.md), as
 * tests/gimp/check-pdb.py has it; then the auxiliary arguments. */
static const char *const generate_args[] = {
  "prompt", "negative-prompt", "positive-prompt", "width", "height", "steps", "cfg", "seed",
  "images", "sampler", "model", "vae", "backend", "server", NULL };
static const char *const edit_args[] = {
  "instruction", "negative-prompt", "steps", "cfg", "cfg-img", "seed", "sampler", "model",
  "vae", "backend", "limit-to-selection", "server", NULL };
static const char *const aux_args[] = { "draft", "api-key", "precision", "reuse-seed", NULL };

/* The names the plug-in declares for @flag, in order. */
static GStrv
declared (guint flag, gboolean aux)
{
  guint n;
  const NsSettingSpec *specs = ns_settings_specs (&n);
  g_autoptr (GStrvBuilder) names = g_strv_builder_new ();
  for (guint i = 0; i < n; i++)
    if ((specs[i].flags & flag) && ((specs[i].flags & NS_SETTING_AUX) != 0) == aux)
      g_strv_builder_add (names, specs[i].name);
  return g_strv_builder_end (names);
}

static void
assert_strv_equal (const char *const *got, const char *const *want)
{
  g_autofree char *a = g_strjoinv (" ", (GStrv) got), *b = g_strjoinv (" ", (GStrv) want);
  g_assert_cmpstr (a, ==, b);
}

static void
test_argument_names (void)
{
  g_auto (GStrv) generate = declared (NS_SETTING_GENERATE, FALSE);
  g_auto (GStrv) edit = declared (NS_SETTING_EDIT, FALSE);
  g_auto (GStrv) aux = declared (NS_SETTING_GENERATE | NS_SETTING_EDIT, TRUE);
  assert_strv_equal ((const char *const *) generate, generate_args);
  assert_strv_equal ((const char *const *) edit, edit_args);
  assert_strv_equal ((const char *const *) aux, aux_args);

  /* Every argument of either procedure is a property, and nothing else is. */
  g_autoptr (NsSettings) settings = ns_settings_new ();
  guint n_props;
  g_autofree GParamSpec **props = g_object_class_list_properties (G_OBJECT_GET_CLASS (settings),
                                                                  &n_props);
  guint n_specs;
  const NsSettingSpec *specs = ns_settings_specs (&n_specs);
  g_assert_cmpuint (n_props, ==, n_specs);
  for (guint i = 0; i < n_props; i++)
    g_assert_true (g_strv_contains (generate_args, props[i]->name)
                   || g_strv_contains (edit_args, props[i]->name)
                   || g_strv_contains (aux_args, props[i]->name));
  /* With the procedures' defaults. */
  for (guint i = 0; i < n_specs; i++)
    {
      GParamSpec *pspec = g_object_class_find_property (G_OBJECT_GET_CLASS (settings),
                                                        specs[i].name);
      g_assert_nonnull (pspec);
      GValue value = G_VALUE_INIT;
      g_value_init (&value, G_TYPE_STRING);
      g_object_get_property (G_OBJECT (settings), specs[i].name, &value);
      if (specs[i].type == NS_SETTING_STRING)
        g_assert_cmpstr (g_value_get_string (&value), ==, specs[i].string);
      g_value_unset (&value);
    }
}

/* ---- A stand-in for GimpProcedureConfig: the procedure's arguments as
 * GObject properties, with the PDB's types (the seed is an int there). */

static GType config_types[2];

static void
config_set (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  (void) pspec;
  GArray *values = g_object_get_data (object, "values");
  g_value_copy (value, &g_array_index (values, GValue, id - 1));
}

static void
config_get (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  (void) pspec;
  GArray *values = g_object_get_data (object, "values");
  g_value_copy (&g_array_index (values, GValue, id - 1), value);
}

static void
config_class_init (gpointer klass, gpointer flag_data)
{
  guint flag = GPOINTER_TO_UINT (flag_data);
  GObjectClass *object_class = klass;
  object_class->set_property = config_set;
  object_class->get_property = config_get;
  guint n, id = 1;
  const NsSettingSpec *specs = ns_settings_specs (&n);
  for (guint i = 0; i < n; i++)
    {
      const NsSettingSpec *s = &specs[i];
      GParamSpec *pspec;
      if (!(s->flags & flag))
        continue;
      if (s->type == NS_SETTING_STRING)
        pspec = g_param_spec_string (s->name, NULL, NULL, s->string, G_PARAM_READWRITE);
      else if (s->type == NS_SETTING_INT)
        pspec = g_param_spec_int (s->name, NULL, NULL, (int) s->min, (int) s->max,
                                  (int) s->number, G_PARAM_READWRITE);
      else if (s->type == NS_SETTING_DOUBLE)
        pspec = g_param_spec_double (s->name, NULL, NULL, s->min, s->max, s->number,
                                     G_PARAM_READWRITE);
      else
        pspec = g_param_spec_boolean (s->name, NULL, NULL, s->number != 0, G_PARAM_READWRITE);
      g_object_class_install_property (object_class, id++, pspec);
    }
}

static GObject *
config_new (NsMode mode)
{
  if (config_types[mode] == 0)
    {
      GTypeInfo info = { sizeof (GObjectClass), NULL, NULL, config_class_init, NULL,
                         GUINT_TO_POINTER (mode == NS_MODE_EDIT ? NS_SETTING_EDIT
                                                                : NS_SETTING_GENERATE),
                         sizeof (GObject), 0, NULL, NULL };
      config_types[mode] = g_type_register_static (G_TYPE_OBJECT, mode == NS_MODE_EDIT
                                                   ? "TestEditConfig" : "TestGenerateConfig",
                                                   &info, 0);
    }
  GObject *config = g_object_new (config_types[mode], NULL);
  guint n;
  g_autofree GParamSpec **props = g_object_class_list_properties (G_OBJECT_GET_CLASS (config), &n);
  /* Unset with the config, strings and all. */
  GArray *values = g_array_sized_new (FALSE, TRUE, sizeof (GValue), n);
  g_array_set_size (values, n);
  g_array_set_clear_func (values, (GDestroyNotify) g_value_unset);
  for (guint i = 0; i < n; i++)
    {
      GValue *value = &g_array_index (values, GValue, props[i]->param_id - 1);
      g_value_init (value, props[i]->value_type);
      g_param_value_set_default (props[i], value);
    }
  g_object_set_data_full (config, "values", values, (GDestroyNotify) g_array_unref);
  return config;
}

/* ---- Paths ------------------------------------------------------------ */

static GBytes *
gradient (gpointer data, int *width, int *height, GError **error)
{
  (void) data, (void) error;
  *width = 48;
  *height = 32;
  guint8 *pixels = g_malloc (48 * 32 * 4);
  for (int i = 0; i < 48 * 32 * 4; i++)
    pixels[i] = (guint8) i;
  return g_bytes_new_take (pixels, 48 * 32 * 4);
}

/* The batch run's way: the settings into the procedure's config by name (the
 * dialog's Close, or a script's arguments), back out at the next run. */
static NsSettings *
through_config (NsSettings *settings, NsMode mode)
{
  g_autoptr (GObject) config = config_new (mode);
  ns_settings_assign (config, G_OBJECT (settings));
  NsSettings *back = ns_settings_new ();
  ns_settings_assign (G_OBJECT (back), config);
  return back;
}

/* "Regenerate": the recipe of a run of @job (every value explicit, so the
 * engine's resolving changes nothing), as JSON on a layer, read back and set
 * in a copy of @settings. */
static NsSettings *
through_recipe (NsSettings *settings, const NsJob *job)
{
  g_autoptr (NsSettings) used = ns_settings_new_for_run (&job->request, job->key.model_dir,
                                                         job->key.backend, job->key.weights);
  g_autoptr (NsRecipe) recipe = ns_recipe_new (job->request.mode, used);
  g_autofree char *json = ns_recipe_to_json (recipe);
  g_autoptr (GError) error = NULL;
  g_autoptr (NsRecipe) back = ns_recipe_from_json (json, -1, &error);
  g_assert_no_error (error);
  NsSettings *again = ns_settings_copy (settings);
  ns_recipe_apply (back, again);
  return again;
}

static void
assert_same_job (const NsJob *a, const NsJob *b)
{
  const NsRequest *x = &a->request, *y = &b->request;
  g_assert_cmpint (x->mode, ==, y->mode);
  g_assert_cmpstr (x->prompt, ==, y->prompt);
  g_assert_cmpstr (x->positive, ==, y->positive);
  g_assert_cmpstr (x->negative, ==, y->negative);
  g_assert_cmpint (x->width, ==, y->width);
  g_assert_cmpint (x->height, ==, y->height);
  g_assert_cmpint (x->images, ==, y->images);
  g_assert_cmpint (x->steps, ==, y->steps);
  g_assert_cmpfloat (x->cfg, ==, y->cfg);
  g_assert_cmpfloat (x->cfg_img, ==, y->cfg_img);
  g_assert_cmpint (x->cfg_schedule, ==, y->cfg_schedule);
  g_assert_cmpfloat (x->shift, ==, y->shift);
  g_assert_cmpint (x->sampler, ==, y->sampler);
  g_assert_cmpint (x->use_norm, ==, y->use_norm);
  g_assert_cmpuint (x->seed, ==, y->seed);
  g_assert_cmpint (x->input.width, ==, y->input.width);
  g_assert_cmpint (x->input.height, ==, y->input.height);
  g_assert_true ((x->input.rgba == NULL) == (y->input.rgba == NULL));
  if (x->input.rgba != NULL)
    g_assert_cmpmem (x->input.rgba, x->input.height * x->input.stride,
                     y->input.rgba, y->input.height * y->input.stride);
  g_assert_cmpstr (a->key.model_dir, ==, b->key.model_dir);
  g_assert_cmpstr (a->key.vae_dir, ==, b->key.vae_dir);
  g_assert_cmpint (a->key.backend, ==, b->key.backend);
  g_assert_cmpint (a->key.weights, ==, b->key.weights);
  g_assert_cmpstr (a->key.server, ==, b->key.server);
  g_assert_cmpint (a->key.want_edit, ==, b->key.want_edit);
}

static NsSettings *
sample (NsMode mode, const char *backend)
{
  NsSettings *s = ns_settings_new ();
  g_object_set (s, ns_settings_prompt_property (mode), "  a lighthouse at dusk  ",
                "negative-prompt", "blurry", "positive-prompt", "oil painting",
                "width", 520, "height", 300, "steps", 12, "cfg", 4.5, "cfg-img", 1.5,
                "seed", (gint64) 987654321, "images", 3, "sampler", "ode",
                "backend", backend, "server", "http://gpu-box:8000", "precision", "int8",
                "model", g_strcmp0 (backend, "remote") == 0 ? "stepfun-ai/NextStep-1.1"
                                                           : g_getenv ("NS_TEST_MODEL"),
                NULL);
  return s;
}

static void
test_same_request (gconstpointer data)
{
  const char *const *c = data;   /* mode, backend */
  NsMode mode = strcmp (c[0], "edit") == 0 ? NS_MODE_EDIT : NS_MODE_GENERATE;
  g_autoptr (NsSettings) settings = sample (mode, c[1]);
  NsRunContext context = { mode, gradient, NULL, FALSE, 0 };
  g_autoptr (GError) error = NULL;
  NsJob direct, batch, regenerate;

  g_assert_true (ns_settings_make_job (settings, &context, &direct, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (direct.request.prompt, ==, "a lighthouse at dusk");
  g_assert_cmpint (direct.request.width, ==, mode == NS_MODE_EDIT ? 0 : 528);
  g_assert_cmpint (direct.request.height, ==, mode == NS_MODE_EDIT ? 0 : 304);

  g_autoptr (NsSettings) from_config = through_config (settings, mode);
  g_assert_true (ns_settings_make_job (from_config, &context, &batch, &error));
  assert_same_job (&direct, &batch);

  /* The recipe records the grid size the engine made; the layer asked for
   * 520×300 was scaled to it. */
  g_autoptr (NsSettings) from_recipe = through_recipe (settings, &direct);
  g_assert_true (ns_settings_make_job (from_recipe, &context, &regenerate, &error));
  assert_same_job (&direct, &regenerate);

  /* Draft applies on every path alike. */
  g_object_set (settings, "draft", TRUE, NULL);
  g_autoptr (NsSettings) draft_config = through_config (settings, mode);
  NsJob draft, draft_batch;
  g_assert_true (ns_settings_make_job (settings, &context, &draft, &error));
  g_assert_true (ns_settings_make_job (draft_config, &context, &draft_batch, &error));
  assert_same_job (&draft, &draft_batch);
  g_assert_cmpint (draft.request.steps, ==, NS_DRAFT_STEPS);
  ns_job_clear (&direct);
  ns_job_clear (&batch);
  ns_job_clear (&regenerate);
  ns_job_clear (&draft);
  ns_job_clear (&draft_batch);
}

/* A random seed fits the procedure's int, so a script can ask for it again;
 * "reuse-seed" takes the previous run's. */
static void
test_seeds (void)
{
  g_autoptr (NsSettings) s = sample (NS_MODE_GENERATE, "remote");
  g_object_set (s, "seed", (gint64) -1, NULL);
  NsRunContext context = { NS_MODE_GENERATE, NULL, NULL, FALSE, 0 };
  for (int i = 0; i < 100; i++)
    {
      NsJob job;
      g_assert_true (ns_settings_make_job (s, &context, &job, NULL));
      g_assert_cmpuint (job.request.seed, <=, G_MAXINT);
      ns_job_clear (&job);
    }
  g_object_set (s, "reuse-seed", TRUE, NULL);
  context.have_last_seed = TRUE;
  context.last_seed = 4000000000u;
  NsJob job;
  g_assert_true (ns_settings_make_job (s, &context, &job, NULL));
  g_assert_cmpuint (job.request.seed, ==, 4000000000u);
  ns_job_clear (&job);
  /* A recipe's seed beyond the PDB's int stays exact in the settings, and is
   * clamped only in the procedure's config. */
  g_object_set (s, "seed", (gint64) 4000000000, "reuse-seed", FALSE, NULL);
  g_autoptr (GObject) config = config_new (NS_MODE_GENERATE);
  ns_settings_assign (config, G_OBJECT (s));
  int in_config;
  g_object_get (config, "seed", &in_config, NULL);
  g_assert_cmpint (in_config, ==, G_MAXINT);
}

/* Each case: a change to good settings, and words its message must hold. */
static void
test_same_messages (gconstpointer data)
{
  NsMode mode = strcmp (data, "edit") == 0 ? NS_MODE_EDIT : NS_MODE_GENERATE;
  static const struct { const char *property, *value, *words; } cases[] = {
    { "sampler", "euler", "sampler" }, { "backend", "tpu", "backend" },
    { "precision", "fp4", "precision" }, { "prompt", "   ", "empty" },
    { "server", "", "server" }, { "model", "/nonexistent/nextstep-model", "/nonexistent" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (NsSettings) s = sample (mode, strcmp (cases[i].property, "model") == 0
                                               ? "cpu" : "remote");
      const char *property = strcmp (cases[i].property, "prompt") == 0
                             ? ns_settings_prompt_property (mode) : cases[i].property;
      g_object_set (s, property, cases[i].value, NULL);
      NsRunContext context = { mode, gradient, NULL, FALSE, 0 };
      g_autoptr (GError) direct = NULL, batch = NULL;
      NsJob a, b;
      g_autoptr (NsSettings) from_config = through_config (s, mode);
      g_assert_false (ns_settings_make_job (s, &context, &a, &direct));
      g_assert_false (ns_settings_make_job (from_config, &context, &b, &batch));
      g_assert_nonnull (strstr (direct->message, cases[i].words));
      g_assert_cmpstr (direct->message, ==, batch->message);
      g_assert_true (direct->domain == batch->domain && direct->code == batch->code);
      ns_job_clear (&a);
      ns_job_clear (&b);
    }
}

int
main (int argc, char **argv)
{
  /* --list: the arguments, one a line, for tests/gimp/check-pdb.py: the
   * name, then "aux" for an auxiliary argument (remembered with the last
   * values but in no PDB call, so a script in another process cannot see it)
   * or "pdb". */
  if (argc == 2 && strcmp (argv[1], "--list") == 0)
    {
      guint n;
      const NsSettingSpec *specs = ns_settings_specs (&n);
      for (guint i = 0; i < n; i++)
        printf ("%s %s\n", specs[i].name, specs[i].flags & NS_SETTING_AUX ? "aux" : "pdb");
      return 0;
    }
  g_test_init (&argc, &argv, NULL);
  static const char *const generate_local[] = { "generate", "cpu" };
  static const char *const generate_remote[] = { "generate", "remote" };
  static const char *const edit_local[] = { "edit", "cpu" };
  static const char *const edit_remote[] = { "edit", "remote" };
  g_test_add_func ("/settings/argument-names", test_argument_names);
  if (g_getenv ("NS_TEST_MODEL") != NULL)
    {
      g_test_add_data_func ("/settings/same-request/generate", generate_local, test_same_request);
      g_test_add_data_func ("/settings/same-request/edit", edit_local, test_same_request);
    }
  g_test_add_data_func ("/settings/same-request/generate-remote", generate_remote,
                        test_same_request);
  g_test_add_data_func ("/settings/same-request/edit-remote", edit_remote, test_same_request);
  g_test_add_func ("/settings/seeds", test_seeds);
  g_test_add_data_func ("/settings/same-messages/generate", "generate", test_same_messages);
  g_test_add_data_func ("/settings/same-messages/edit", "edit", test_same_messages);
  return g_test_run ();
}
