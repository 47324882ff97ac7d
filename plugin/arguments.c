/* arguments.c — argument lists shared by the generate and edit procedures. */
#include <math.h>
#include <string.h>

#include "arguments.h"
#include "plugin-intl.h"

#define RW G_PARAM_READWRITE

/* "" stands for "the model's default" (docs/model.md §9), so a script
 * can ask for the default without knowing which checkpoint is loaded. */
static const char *const samplers[] = { "", "hf-sde", "gh-grid", "ode", NULL };
static const char *const backends[] = { "auto", "cpu", "cuda", "remote", NULL };

static void
add_negative_prompt (GimpProcedure *procedure, const char *blurb)
{
  gimp_procedure_add_string_argument (procedure, "negative-prompt",
                                      _("Negative prompt"), blurb, "", RW);
}

static void
add_steps_and_cfg (GimpProcedure *procedure)
{
  gimp_procedure_add_int_argument (procedure, "steps", _("Steps"),
                                   _("Flow-matching steps per image token "
                                     "(0 = the model's default)"),
                                   0, 1000, 0, RW);
  gimp_procedure_add_double_argument (procedure, "cfg", _("Guidance"),
                                      _("Classifier-free guidance scale for the "
                                        "text (0 = the model's default)"),
                                      0.0, 30.0, 0.0, RW);
}

static void
add_seed (GimpProcedure *procedure)
{
  gimp_procedure_add_int_argument (procedure, "seed", _("Seed"),
                                   _("Random seed (-1 = a new random seed)"),
                                   -1, G_MAXINT, -1, RW);
}

/* The arguments that pick what runs where, common to both procedures. */
static void
add_engine_arguments (GimpProcedure *procedure)
{
  gimp_procedure_add_string_argument (procedure, "sampler", _("Sampler"),
                                      _("Sampler: \"hf-sde\", \"gh-grid\", "
                                        "\"ode\", or \"\" for the model's default"),
                                      "", RW);
  gimp_procedure_add_string_argument (procedure, "model", _("Model folder"),
                                      _("Folder of the NextStep checkpoint "
                                        "(\"\" = $NEXTSTEP_MODEL, then the "
                                        "Hugging Face cache)"),
                                      "", RW);
  gimp_procedure_add_string_argument (procedure, "vae", _("VAE folder"),
                                      _("Folder of the VAE (\"\" = the one the "
                                        "model names, found beside it or in the "
                                        "Hugging Face cache)"),
                                      "", RW);
  gimp_procedure_add_string_argument (procedure, "backend", _("Backend"),
                                      _("Compute backend: \"auto\", \"cpu\", "
                                        "\"cuda\", or \"remote\" for a server"),
                                      "auto", RW);
  /* Dialog state, remembered with the last values but no PDB argument:
   * a script asks for steps and size itself. */
  gimp_procedure_add_boolean_aux_argument (procedure, "draft", _("Draft"),
                                           _("The dialog's Draft switch (few steps, "
                                             "half size)"),
                                           FALSE, RW);
}

/* The last arguments: added after the others so that scripts written
 * before them keep their meaning. The key is an auxiliary argument: saved
 * with the plug-in's settings, in no PDB call and no recipe. */
static void
add_server_arguments (GimpProcedure *procedure)
{
  gimp_procedure_add_string_argument (procedure, "server", _("Server"),
                                      _("With backend \"remote\": the server's "
                                        "address, http://HOST:PORT (nextstep serve "
                                        "or vLLM-Omni); \"model\" then names the "
                                        "server's model (\"\" = its own)"),
                                      "", RW);
  gimp_procedure_add_string_aux_argument (procedure, "api-key", _("API key"),
                                          _("The server's key (else "
                                            "$NEXTSTEP_API_KEY)"),
                                          "", RW);
}

void
ns_plugin_add_generate_arguments (GimpProcedure *procedure)
{
  gimp_procedure_add_string_argument (procedure, "prompt", _("Prompt"),
                                      _("What the image should show"), "", RW);
  add_negative_prompt (procedure, _("What the image should not show "
                                    "(\"\" = the model's default)"));
  gimp_procedure_add_string_argument (procedure, "positive-prompt",
                                      _("Positive prompt"),
                                      _("Quality words appended to the prompt "
                                        "(\"\" = the model's default)"),
                                      "", RW);
  gimp_procedure_add_int_argument (procedure, "width", _("Width"),
                                   _("Image width in pixels (rounded to a "
                                     "multiple of 16)"),
                                   16, 4096, 512, RW);
  gimp_procedure_add_int_argument (procedure, "height", _("Height"),
                                   _("Image height in pixels (rounded to a "
                                     "multiple of 16)"),
                                   16, 4096, 512, RW);
  add_steps_and_cfg (procedure);
  add_seed (procedure);
  gimp_procedure_add_int_argument (procedure, "images", _("Images"),
                                   _("Number of images to generate, each as "
                                     "its own layer"),
                                   1, 16, 1, RW);
  add_engine_arguments (procedure);
  add_server_arguments (procedure);
}

void
ns_plugin_add_edit_arguments (GimpProcedure *procedure)
{
  gimp_procedure_add_string_argument (procedure, "instruction", _("Instruction"),
                                      _("What to change in the image"), "", RW);
  add_negative_prompt (procedure, _("What the result should not show "
                                    "(\"\" = the model's default)"));
  add_steps_and_cfg (procedure);
  gimp_procedure_add_double_argument (procedure, "cfg-img", _("Image guidance"),
                                      _("Guidance scale for the input image "
                                        "(0 = the model's default)"),
                                      0.0, 30.0, 0.0, RW);
  add_seed (procedure);
  add_engine_arguments (procedure);
  gimp_procedure_add_boolean_argument (procedure, "limit-to-selection",
                                       _("Limit to selection"),
                                       _("Mask the new layer with the "
                                         "selection (the selection's bounding "
                                         "box is edited either way)"),
                                       FALSE, RW);
  add_server_arguments (procedure);
}

void
ns_plugin_add_result_values (GimpProcedure *procedure)
{
  gimp_procedure_add_image_return_value (procedure, "image", _("Image"),
                                         _("The image the layers were added to"),
                                         TRUE, RW);
  gimp_procedure_add_core_object_array_return_value (procedure, "layers",
                                                     _("Layers"),
                                                     _("The new layers, one per "
                                                       "generated image"),
                                                     GIMP_TYPE_LAYER, RW);
}

/* Fails with a message listing the accepted values when the string
 * argument @name of @config is not one of @allowed. */
static gboolean
check_choice (GimpProcedureConfig *config, const char *name,
              const char *const *allowed, GError **error)
{
  g_autofree char *value = NULL;
  g_object_get (config, name, &value, NULL);
  const char *given = value ? value : "";
  if (g_strv_contains (allowed, given))
    return TRUE;

  g_autoptr (GString) list = g_string_new (NULL);
  for (const char *const *a = allowed; *a; a++)
    g_string_append_printf (list, "%s\"%s\"", list->len ? ", " : "", *a);
  g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
               _("Unknown %s \"%s\": use one of %s."), name, given, list->str);
  return FALSE;
}

gboolean
ns_plugin_check_config (GimpProcedureConfig *config, GError **error)
{
  return check_choice (config, "sampler", samplers, error)
      && check_choice (config, "backend", backends, error);
}

void
ns_plugin_token_grid (int width, int height, int max_pixels,
                      int *grid_width, int *grid_height)
{
  double scale = 1.0;
  if (max_pixels > 0 && (double) width * height > max_pixels)
    scale = sqrt ((double) max_pixels / ((double) width * height));
  *grid_width = MAX (1, (int) lround (width * scale / NS_PLUGIN_GRID)) * NS_PLUGIN_GRID;
  *grid_height = MAX (1, (int) lround (height * scale / NS_PLUGIN_GRID)) * NS_PLUGIN_GRID;
}

/* The string argument @name, kept alive by @job; NULL when it is empty,
 * which the engine reads as "the model's default". */
static const char *
job_string (NsPluginJob *job, GimpProcedureConfig *config, const char *name)
{
  char *value = NULL;
  g_object_get (config, name, &value, NULL);
  if (value == NULL || *value == '\0')
    {
      g_free (value);
      return NULL;
    }
  g_ptr_array_add (job->strings, value);
  return value;
}

/* Backend "remote": the server, its key and its model's name (or NULL). */
static gboolean
job_server (NsPluginJob *job, GimpProcedureConfig *config, const char *model,
            GError **error)
{
  job->key.server = job_string (job, config, "server");
  job->key.api_key = job_string (job, config, "api-key");
  if (job->key.api_key == NULL && g_getenv ("NEXTSTEP_API_KEY") != NULL)
    g_ptr_array_add (job->strings,
                     (char *) (job->key.api_key = g_strdup (g_getenv ("NEXTSTEP_API_KEY"))));
  job->key.model_dir = model;
  job->key.want_edit = job->request.mode == NS_MODE_EDIT;
  if (job->key.server != NULL)
    return TRUE;
  g_set_error_literal (error, GIMP_PLUG_IN_ERROR, 0,
                       _("The backend \"remote\" needs the \"server\" argument: the "
                         "address of a machine running nextstep serve or vLLM-Omni, "
                         "for example \"http://gpu-box:8000\"."));
  return FALSE;
}

/* The arguments both procedures share. */
static gboolean
job_common (NsPluginJob *job, GimpProcedureConfig *config, GError **error)
{
  NsRequest *r = &job->request;
  int seed;
  const char *sampler = job_string (job, config, "sampler");
  const char *backend = job_string (job, config, "backend");

  g_object_get (config, "steps", &r->steps, "cfg", &r->cfg, "seed", &seed, NULL);
  /* Negative seeds mean "random"; a fresh one is drawn here so the recipe
   * can record it. */
  r->seed = seed >= 0 ? (guint64) seed : g_random_int ();
  r->negative = job_string (job, config, "negative-prompt");
  if (sampler != NULL)
    ns_sampler_from_name (sampler, &r->sampler);
  if (backend != NULL)
    ns_backend_from_name (backend, &job->key.backend);

  const char *model = job_string (job, config, "model");
  if (job->key.backend == NS_BACKEND_REMOTE)
    return job_server (job, config, model, error);
  char *model_dir = ns_model_find (model, r->mode == NS_MODE_EDIT, error);
  if (model_dir == NULL)
    return FALSE;
  g_ptr_array_add (job->strings, model_dir);
  job->key.model_dir = model_dir;
  job->key.vae_dir = job_string (job, config, "vae");
  return TRUE;
}

gboolean
ns_plugin_job_from_config (GimpProcedureConfig *config, NsMode mode,
                           NsPluginJob *job, GError **error)
{
  NsRequest *r = &job->request;

  memset (job, 0, sizeof *job);
  ns_request_init (r);
  job->strings = g_ptr_array_new_with_free_func (g_free);
  job->key.backend = NS_BACKEND_AUTO;
  job->key.weights = NS_WEIGHTS_AUTO;
  r->mode = mode;

  if (mode == NS_MODE_GENERATE)
    {
      r->prompt = job_string (job, config, "prompt");
      r->positive = job_string (job, config, "positive-prompt");
      g_object_get (config, "width", &job->width, "height", &job->height,
                      "images", &r->images, NULL);
      ns_plugin_token_grid (job->width, job->height, 0, &r->width, &r->height);
    }
  else
    {
      r->prompt = job_string (job, config, "instruction");
      g_object_get (config, "cfg-img", &r->cfg_img,
                      "limit-to-selection", &job->limit_to_selection, NULL);
    }
  if (r->prompt == NULL)
    {
      g_set_error_literal (error, GIMP_PLUG_IN_ERROR, 0,
                           mode == NS_MODE_EDIT
                           ? _("The instruction is empty: say what to change, "
                                 "for example \"make the sky stormy\".")
                           : _("The prompt is empty: describe the image you want."));
      return FALSE;
    }
  return job_common (job, config, error);
}

void
ns_plugin_job_clear (NsPluginJob *job)
{
  g_clear_pointer (&job->strings, g_ptr_array_unref);
}
