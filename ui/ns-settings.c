/* ns-settings.c — see ns-settings.h. */
#include <glib/gi18n-lib.h>
#include <math.h>
#include <string.h>

#include "ns-settings.h"

#define G NS_SETTING_GENERATE
#define E NS_SETTING_EDIT
#define AUX NS_SETTING_AUX
#define REC NS_SETTING_RECIPE

/* The plug-in's public contract (README.md; tests/gimp/check-pdb.py checks
 * it in GIMP): names, order, ranges and defaults. New arguments go after the
 * others, so that scripts written before them keep their meaning. */
static const NsSettingSpec specs[] = {
  { "prompt", NS_SETTING_STRING, G | REC, N_("Prompt"),
    N_("What the image should show"), 0, 0, 0, "" },
  { "instruction", NS_SETTING_STRING, E | REC, N_("Instruction"),
    N_("What to change in the image"), 0, 0, 0, "" },
  { "negative-prompt", NS_SETTING_STRING, G | E | REC, N_("Negative prompt"),
    N_("What the image should not show (\"\" = the model's default)"), 0, 0, 0, "" },
  { "positive-prompt", NS_SETTING_STRING, G | REC, N_("Positive prompt"),
    N_("Quality words appended to the prompt (\"\" = the model's default)"), 0, 0, 0, "" },
  { "width", NS_SETTING_INT, G | REC, N_("Width"),
    N_("Image width in pixels (rounded to a multiple of 16)"), 16, 4096, 512, NULL },
  { "height", NS_SETTING_INT, G | REC, N_("Height"),
    N_("Image height in pixels (rounded to a multiple of 16)"), 16, 4096, 512, NULL },
  { "steps", NS_SETTING_INT, G | E | REC, N_("Steps"),
    N_("Flow-matching steps per image token (0 = the model's default)"), 0, 1000, 0, NULL },
  { "cfg", NS_SETTING_DOUBLE, G | E | REC, N_("Guidance"),
    N_("Classifier-free guidance scale for the text (0 = the model's default)"), 0, 30, 0, NULL },
  { "cfg-img", NS_SETTING_DOUBLE, E | REC, N_("Image guidance"),
    N_("Guidance scale for the input image (0 = the model's default)"), 0, 30, 0, NULL },
  { "seed", NS_SETTING_INT, G | E | REC, N_("Seed"),
    N_("Random seed (-1 = a new random seed)"), -1, G_MAXINT, -1, NULL },
  { "images", NS_SETTING_INT, G | REC, N_("Images"),
    N_("Number of images to generate, each as its own layer"), 1, 16, 1, NULL },
  { "sampler", NS_SETTING_STRING, G | E | REC, N_("Sampler"),
    N_("Sampler: \"hf-sde\", \"gh-grid\", \"ode\", or \"\" for the model's default"),
    0, 0, 0, "" },
  { "model", NS_SETTING_STRING, G | E | REC, N_("Model folder"),
    N_("Folder of the NextStep checkpoint (\"\" = $NEXTSTEP_MODEL, then the Hugging Face "
       "cache)"), 0, 0, 0, "" },
  { "vae", NS_SETTING_STRING, G | E, N_("VAE folder"),
    N_("Folder of the VAE (\"\" = the one the model names, found beside it or in the "
       "Hugging Face cache)"), 0, 0, 0, "" },
  { "backend", NS_SETTING_STRING, G | E | REC, N_("Backend"),
    N_("Compute backend: \"auto\", \"cpu\", \"cuda\", or \"remote\" for a server"),
    0, 0, 0, "auto" },
  /* Dialog state, remembered with the last values but no PDB argument: a
   * script asks for steps and size itself. */
  { "draft", NS_SETTING_BOOLEAN, G | E | AUX, N_("Draft"),
    N_("The dialog's Draft switch (few steps, half size)"), 0, 1, 0, NULL },
  { "limit-to-selection", NS_SETTING_BOOLEAN, E, N_("Limit to selection"),
    N_("Mask the new layer with the selection (the selection's bounding box is edited "
       "either way)"), 0, 1, 0, NULL },
  { "server", NS_SETTING_STRING, G | E, N_("Server"),
    N_("With backend \"remote\": the server's address, http://HOST:PORT (nextstep serve or "
       "vLLM-Omni); \"model\" then names the server's model (\"\" = its own)"), 0, 0, 0, "" },
  /* Saved with the plug-in's settings, in no PDB call and no recipe. */
  { "api-key", NS_SETTING_STRING, G | E | AUX, N_("API key"),
    N_("The server's key (else $NEXTSTEP_API_KEY)"), 0, 0, 0, "" },
  { "precision", NS_SETTING_STRING, G | E | AUX | REC, N_("Precision"),
    N_("Weight format: \"auto\", \"bf16\", \"int8\", \"fp8\" or \"q4\""), 0, 0, 0, "auto" },
  { "reuse-seed", NS_SETTING_BOOLEAN, G | E | AUX, N_("Reuse last seed"),
    N_("The dialog's seed choice \"Reuse last\": each run takes the seed of the one before"),
    0, 1, 0, NULL },
};

const char *const ns_settings_samplers[] = { "", "hf-sde", "gh-grid", "ode", NULL };
const char *const ns_settings_backends[] = { "auto", "cpu", "cuda", "remote", NULL };
const char *const ns_settings_precisions[] = { "auto", "bf16", "int8", "fp8", "q4", NULL };

const NsSettingSpec *
ns_settings_specs (guint *n_specs)
{
  *n_specs = G_N_ELEMENTS (specs);
  return specs;
}

void
ns_token_grid (int width, int height, int max_pixels, int *grid_width, int *grid_height)
{
  double scale = 1.0;
  if (max_pixels > 0 && (double) width * height > max_pixels)
    scale = sqrt ((double) max_pixels / ((double) width * height));
  *grid_width = MAX (1, (int) lround (width * scale / NS_TOKEN_GRID)) * NS_TOKEN_GRID;
  *grid_height = MAX (1, (int) lround (height * scale / NS_TOKEN_GRID)) * NS_TOKEN_GRID;
}

/* ---- The object --------------------------------------------------------------- */

struct _NsSettings {
  GObject parent_instance;
  GValue values[G_N_ELEMENTS (specs)];
};

G_DEFINE_FINAL_TYPE (NsSettings, ns_settings, G_TYPE_OBJECT)

static GParamSpec *props[G_N_ELEMENTS (specs) + 1];

/* Recipes hold seeds up to 2^53 − 1 (the dialog drew them up to 2^32 − 1
 * before), which the PDB's int cannot: the property is wider than the
 * argument, and ns_settings_assign clamps on the way to the procedure. */
static GParamSpec *
spec_pspec (const NsSettingSpec *s)
{
  const GParamFlags flags = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  switch (s->type)
    {
    case NS_SETTING_STRING:
      return g_param_spec_string (s->name, s->nick, s->blurb, s->string, flags);
    case NS_SETTING_INT:
      if (strcmp (s->name, "seed") == 0)
        return g_param_spec_int64 (s->name, s->nick, s->blurb, -1,
                                   G_GINT64_CONSTANT (9007199254740991), -1, flags);
      return g_param_spec_int (s->name, s->nick, s->blurb, (int) s->min, (int) s->max,
                               (int) s->number, flags);
    case NS_SETTING_DOUBLE:
      return g_param_spec_double (s->name, s->nick, s->blurb, s->min, s->max, s->number, flags);
    case NS_SETTING_BOOLEAN:
    default:
      return g_param_spec_boolean (s->name, s->nick, s->blurb, s->number != 0, flags);
    }
}

static void
ns_settings_set_property (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  NsSettings *self = NS_SETTINGS (object);
  (void) pspec;
  g_value_copy (value, &self->values[id - 1]);
}

static void
ns_settings_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  NsSettings *self = NS_SETTINGS (object);
  (void) pspec;
  g_value_copy (&self->values[id - 1], value);
}

static void
ns_settings_finalize (GObject *object)
{
  NsSettings *self = NS_SETTINGS (object);
  for (guint i = 0; i < G_N_ELEMENTS (specs); i++)
    g_value_unset (&self->values[i]);
  G_OBJECT_CLASS (ns_settings_parent_class)->finalize (object);
}

static void
ns_settings_init (NsSettings *self)
{
  for (guint i = 0; i < G_N_ELEMENTS (specs); i++)
    {
      GParamSpec *pspec = props[i + 1];
      g_value_init (&self->values[i], G_PARAM_SPEC_VALUE_TYPE (pspec));
      g_param_value_set_default (pspec, &self->values[i]);
    }
}

static void
ns_settings_class_init (NsSettingsClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->set_property = ns_settings_set_property;
  object_class->get_property = ns_settings_get_property;
  object_class->finalize = ns_settings_finalize;
  for (guint i = 0; i < G_N_ELEMENTS (specs); i++)
    props[i + 1] = spec_pspec (&specs[i]);
  g_object_class_install_properties (object_class, G_N_ELEMENTS (props), props);
}

NsSettings *
ns_settings_new (void)
{
  return g_object_new (NS_TYPE_SETTINGS, NULL);
}

NsSettings *
ns_settings_copy (NsSettings *settings)
{
  NsSettings *copy = ns_settings_new ();
  ns_settings_assign (G_OBJECT (copy), G_OBJECT (settings));
  return copy;
}

void
ns_settings_assign (GObject *dest, GObject *src)
{
  g_return_if_fail (G_IS_OBJECT (dest) && G_IS_OBJECT (src));
  GObjectClass *dest_class = G_OBJECT_GET_CLASS (dest);
  GObjectClass *src_class = G_OBJECT_GET_CLASS (src);
  g_object_freeze_notify (dest);
  for (guint i = 0; i < G_N_ELEMENTS (specs); i++)
    {
      GParamSpec *to = g_object_class_find_property (dest_class, specs[i].name);
      GParamSpec *from = g_object_class_find_property (src_class, specs[i].name);
      if (to == NULL || from == NULL || !(to->flags & G_PARAM_WRITABLE)
          || !(from->flags & G_PARAM_READABLE))
        continue;
      GValue given = G_VALUE_INIT, value = G_VALUE_INIT;
      g_value_init (&given, G_PARAM_SPEC_VALUE_TYPE (from));
      g_value_init (&value, G_PARAM_SPEC_VALUE_TYPE (to));
      g_object_get_property (src, specs[i].name, &given);
      /* The seed: int64 here, int in the PDB; narrowed without wrapping. */
      if (G_VALUE_HOLDS_INT64 (&given) && G_VALUE_HOLDS_INT (&value))
        g_value_set_int (&value, (int) CLAMP (g_value_get_int64 (&given), G_MININT, G_MAXINT));
      else
        g_value_transform (&given, &value);
      g_param_value_validate (to, &value);                  /* clamps to the range */
      g_object_set_property (dest, specs[i].name, &value);
      g_value_unset (&given);
      g_value_unset (&value);
    }
  g_object_thaw_notify (dest);
}

gboolean
ns_settings_equal (NsSettings *a, NsSettings *b)
{
  for (guint i = 0; i < G_N_ELEMENTS (specs); i++)
    if (g_param_values_cmp (props[i + 1], &a->values[i], &b->values[i]) != 0)
      return FALSE;
  return TRUE;
}

const char *
ns_settings_prompt_property (NsMode mode)
{
  return mode == NS_MODE_EDIT ? "instruction" : "prompt";
}

/* ---- Checks ---------------------------------------------------------------------- */

static gboolean
invalid (GError **error, const char *message)
{
  g_set_error_literal (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, message);
  return FALSE;
}

static gboolean
check_choice (NsSettings *settings, const char *name, const char *const *allowed,
              GError **error)
{
  g_autofree char *value = NULL;
  g_object_get (settings, name, &value, NULL);
  const char *given = value != NULL ? value : "";
  if (g_strv_contains (allowed, given))
    return TRUE;
  g_autoptr (GString) list = g_string_new (NULL);
  for (const char *const *a = allowed; *a != NULL; a++)
    g_string_append_printf (list, "%s\"%s\"", list->len ? ", " : "", *a);
  g_autofree char *message = g_strdup_printf (_("Unknown %s \"%s\": use one of %s."), name,
                                              given, list->str);
  return invalid (error, message);
}

gboolean
ns_settings_check (NsSettings *settings, GError **error)
{
  g_return_val_if_fail (NS_IS_SETTINGS (settings), FALSE);
  return check_choice (settings, "sampler", ns_settings_samplers, error)
      && check_choice (settings, "backend", ns_settings_backends, error)
      && check_choice (settings, "precision", ns_settings_precisions, error);
}

/* ---- The request --------------------------------------------------------------------- */

/* The string property @name, kept alive by @job; NULL when it is empty,
 * which the engine reads as "the model's default". */
static const char *
job_string (NsJob *job, NsSettings *settings, const char *name)
{
  char *value = NULL;
  g_object_get (settings, name, &value, NULL);
  if (value == NULL || *value == '\0')
    {
      g_free (value);
      return NULL;
    }
  g_ptr_array_add (job->strings, value);
  return value;
}

static void
job_init (NsJob *job)
{
  memset (job, 0, sizeof *job);
  ns_request_init (&job->request);
  job->strings = g_ptr_array_new_with_free_func (g_free);
}

void
ns_job_clear (NsJob *job)
{
  g_clear_pointer (&job->strings, g_ptr_array_unref);
  g_clear_pointer (&job->input, g_bytes_unref);
}

gboolean
ns_settings_make_key (NsSettings *settings, NsMode mode, NsJob *job, GError **error)
{
  g_autofree char *backend = NULL, *precision = NULL;
  NsModelKey *key = &job->key;
  if (job->strings == NULL)
    job_init (job);
  g_object_get (settings, "backend", &backend, "precision", &precision, NULL);
  key->backend = NS_BACKEND_AUTO;
  key->weights = NS_WEIGHTS_AUTO;
  ns_backend_from_name (backend, &key->backend);
  ns_weight_format_from_name (precision, &key->weights);
  key->want_edit = mode == NS_MODE_EDIT;
  key->vae_dir = job_string (job, settings, "vae");
  const char *model = job_string (job, settings, "model");
  if (key->backend == NS_BACKEND_REMOTE)
    {
      key->server = job_string (job, settings, "server");
      key->api_key = job_string (job, settings, "api-key");
      if (key->api_key == NULL && g_getenv ("NEXTSTEP_API_KEY") != NULL)
        g_ptr_array_add (job->strings,
                         (char *) (key->api_key = g_strdup (g_getenv ("NEXTSTEP_API_KEY"))));
      key->model_dir = model;
      return key->server != NULL
          || invalid (error, _("The backend \"remote\" needs the \"server\" argument: the "
                               "address of a machine running nextstep serve or vLLM-Omni, "
                               "for example \"http://gpu-box:8000\"."));
    }
  char *model_dir = ns_model_find (model, mode == NS_MODE_EDIT, error);
  if (model_dir == NULL)
    return FALSE;
  g_ptr_array_add (job->strings, model_dir);
  key->model_dir = model_dir;
  return TRUE;
}

/* Half a side, on the token grid. */
static int
draft_side (int side)
{
  return MAX (NS_TOKEN_GRID, side / (2 * NS_TOKEN_GRID) * NS_TOKEN_GRID);
}

static guint64
pick_seed (NsSettings *settings, const NsRunContext *context)
{
  gint64 seed;
  gboolean reuse;
  g_object_get (settings, "seed", &seed, "reuse-seed", &reuse, NULL);
  if (reuse && context->have_last_seed)
    return context->last_seed;
  if (seed >= 0)
    return (guint64) seed;
  return (guint64) g_random_int_range (0, G_MAXINT);
}

static gboolean
read_source (NsJob *job, const NsRunContext *context, GError **error)
{
  int width = 0, height = 0;
  if (context->source == NULL)
    return invalid (error, _("There is no image to edit."));
  job->input = context->source (context->source_data, &width, &height, error);
  if (job->input == NULL)
    return FALSE;
  if (width <= 0 || height <= 0 || width % NS_TOKEN_GRID || height % NS_TOKEN_GRID
      || g_bytes_get_size (job->input) != (gsize) width * height * 4)
    {
      g_critical ("The edit source is %d×%d with %zu bytes; it must be RGBA8 with sides "
                  "that are multiples of 16", width, height, g_bytes_get_size (job->input));
      return invalid (error, _("The image to edit has an unusable size."));
    }
  job->request.input = (NsImage) { width, height, g_bytes_get_data (job->input, NULL),
                                   width * 4 };
  return TRUE;
}

gboolean
ns_settings_make_job (NsSettings *settings, const NsRunContext *context, NsJob *job,
                      GError **error)
{
  g_return_val_if_fail (NS_IS_SETTINGS (settings) && context != NULL && job != NULL, FALSE);
  NsRequest *r = &job->request;
  NsMode mode = context->mode;
  job_init (job);
  r->mode = mode;
  if (!ns_settings_check (settings, error))
    return FALSE;

  /* Surrounding blanks are no part of a prompt: "  " is empty. */
  char *prompt = NULL;
  g_object_get (settings, ns_settings_prompt_property (mode), &prompt, NULL);
  g_ptr_array_add (job->strings, prompt != NULL ? g_strstrip (prompt) : g_strdup (""));
  r->prompt = g_ptr_array_index (job->strings, job->strings->len - 1);
  if (r->prompt[0] == '\0')
    return invalid (error, mode == NS_MODE_EDIT
                           ? _("The instruction is empty: say what to change, for example "
                               "\"make the sky stormy\".")
                           : _("The prompt is empty: describe the image you want."));
  if (!ns_settings_make_key (settings, mode, job, error))
    return FALSE;
  if (mode == NS_MODE_EDIT && !read_source (job, context, error))
    return FALSE;

  g_autofree char *sampler = NULL;
  gboolean draft;
  g_object_get (settings, "steps", &r->steps, "cfg", &r->cfg, "sampler", &sampler,
                "draft", &draft, NULL);
  r->negative = job_string (job, settings, "negative-prompt");
  if (sampler != NULL && *sampler != '\0')
    ns_sampler_from_name (sampler, &r->sampler);
  r->seed = pick_seed (settings, context);
  if (mode == NS_MODE_GENERATE)
    {
      r->positive = job_string (job, settings, "positive-prompt");
      g_object_get (settings, "width", &job->width, "height", &job->height,
                    "images", &r->images, NULL);
      ns_token_grid (job->width, job->height, 0, &r->width, &r->height);
    }
  else
    g_object_get (settings, "cfg-img", &r->cfg_img, NULL);
  if (draft)
    {
      r->steps = NS_DRAFT_STEPS;
      /* An edit keeps its source's size: only its steps go down. */
      if (mode == NS_MODE_GENERATE)
        {
          r->width = draft_side (r->width);
          r->height = draft_side (r->height);
        }
    }
  return TRUE;
}

NsSettings *
ns_settings_new_for_run (const NsRequest *r, const char *model, NsBackendKind backend,
                         NsWeightFormat weights)
{
  NsSettings *s = ns_settings_new ();
  gboolean edit = r->mode == NS_MODE_EDIT;
  g_object_set (s, ns_settings_prompt_property (r->mode), r->prompt,
                "negative-prompt", r->negative != NULL ? r->negative : "",
                "steps", r->steps, "cfg", r->cfg, "seed", (gint64) MIN (r->seed, G_GUINT64_CONSTANT (9007199254740991)),
                "sampler", ns_sampler_name (r->sampler),
                "model", model != NULL ? model : "",
                "backend", ns_backend_name (backend),
                "precision", ns_weight_format_name (weights), NULL);
  if (edit)
    g_object_set (s, "cfg-img", r->cfg_img, NULL);
  else
    g_object_set (s, "positive-prompt", r->positive != NULL ? r->positive : "",
                  "width", r->width, "height", r->height, "images", r->images, NULL);
  return s;
}
