/* nextstep-plugin.c — the GIMP 3 plug-in: registers the NextStep
 * procedures under Filters > Generative > NextStep and runs them, through
 * the dialog of ui/ (interactive) or straight from the arguments (scripts,
 * "repeat last").
 *
 * The plug-in only talks to GIMP; all model work belongs to libnextstep
 * (engine/nextstep.h), driven on a worker thread by NsController.
 */
#include <libgimp/gimp.h>

#include "arguments.h"
#include "batch.h"
#include "interactive.h"
#include "ns-dialog.h"
#include "plugin-intl.h"
#include "results.h"

#define PLUG_IN_BINARY "nextstep"
#define GENERATE_PROC  "plug-in-nextstep-generate"
#define EDIT_PROC      "plug-in-nextstep-edit"
#define MENU_PATH      "<Image>/Filters/Generative/NextStep"
#define AUTHORS        "The gimp-nextstep authors"
#define COPYRIGHT_DATE "2026"

typedef struct _NextStep      NextStep;
typedef struct _NextStepClass NextStepClass;

struct _NextStep
{
  GimpPlugIn parent_instance;
};

struct _NextStepClass
{
  GimpPlugInClass parent_class;
};

#define NEXTSTEP_TYPE (nextstep_get_type ())

GType                   nextstep_get_type         (void) G_GNUC_CONST;

static GList          * nextstep_query_procedures (GimpPlugIn           *plug_in);
static GimpProcedure  * nextstep_create_procedure (GimpPlugIn           *plug_in,
                                                   const gchar          *name);

static gboolean         nextstep_set_i18n         (GimpPlugIn           *plug_in,
                                                   const gchar          *procedure_name,
                                                   gchar               **gettext_domain,
                                                   gchar               **catalog_dir);

static GimpValueArray * nextstep_run_generate     (GimpProcedure        *procedure,
                                                   GimpRunMode           run_mode,
                                                   GimpImage            *image,
                                                   GimpDrawable        **drawables,
                                                   GimpProcedureConfig  *config,
                                                   gpointer              run_data);
static GimpValueArray * nextstep_run_edit         (GimpProcedure        *procedure,
                                                   GimpRunMode           run_mode,
                                                   GimpImage            *image,
                                                   GimpDrawable        **drawables,
                                                   GimpProcedureConfig  *config,
                                                   gpointer              run_data);

G_DEFINE_TYPE (NextStep, nextstep, GIMP_TYPE_PLUG_IN)

GIMP_MAIN (NEXTSTEP_TYPE)

static void
nextstep_class_init (NextStepClass *klass)
{
  GimpPlugInClass *plug_in_class = GIMP_PLUG_IN_CLASS (klass);

  plug_in_class->query_procedures = nextstep_query_procedures;
  plug_in_class->create_procedure = nextstep_create_procedure;
  plug_in_class->set_i18n         = nextstep_set_i18n;
}

static void
nextstep_init (NextStep *nextstep)
{
}

static GList *
nextstep_query_procedures (GimpPlugIn *plug_in)
{
  GList *list = NULL;

  list = g_list_append (list, g_strdup (GENERATE_PROC));
  list = g_list_append (list, g_strdup (EDIT_PROC));

  return list;
}

/* The plug-in's strings and the dialog's share the "gimp-nextstep" domain.
 * GIMP 3 takes only a catalog folder inside the plug-in's own folder, so
 * meson installs the translations there too (plugin/meson.build). */
static gboolean
nextstep_set_i18n (GimpPlugIn   *plug_in,
                   const gchar  *procedure_name,
                   gchar       **gettext_domain,
                   gchar       **catalog_dir)
{
  /* The dialog binds the domain to the prefix's locale folder the first
   * time it is used; doing that now lets GIMP's binding, made after this
   * returns, win. */
  ns_ui_init ();
  *gettext_domain = g_strdup (GETTEXT_PACKAGE);
  *catalog_dir    = g_strdup ("locale");
  return TRUE;
}

static GimpProcedure *
create_generate_procedure (GimpPlugIn *plug_in)
{
  GimpProcedure *procedure;

  procedure = gimp_image_procedure_new (plug_in, GENERATE_PROC,
                                        GIMP_PDB_PROC_TYPE_PLUGIN,
                                        nextstep_run_generate, NULL, NULL);

  gimp_procedure_set_image_types (procedure, "RGB*, GRAY*");
  /* Text-to-image needs no input: the entry works with no image open (the
   * result then opens as a new image) as well as on any image. */
  gimp_procedure_set_sensitivity_mask (procedure,
                                       GIMP_PROCEDURE_SENSITIVE_NO_IMAGE     |
                                       GIMP_PROCEDURE_SENSITIVE_NO_DRAWABLES |
                                       GIMP_PROCEDURE_SENSITIVE_DRAWABLE     |
                                       GIMP_PROCEDURE_SENSITIVE_DRAWABLES);
  gimp_procedure_set_menu_label (procedure, _("_Generate Image…"));
  gimp_procedure_add_menu_path (procedure, MENU_PATH);
  gimp_procedure_set_documentation (procedure,
                                    _("Generate images from a text prompt "
                                      "with NextStep-1"),
                                    _("Runs StepFun's NextStep-1 model locally "
                                      "and adds each generated image as a new "
                                      "layer, or opens a new image when none "
                                      "is given. Run on a layer made by "
                                      "NextStep, it offers to make that image "
                                      "again or to vary its seed."),
                                    GENERATE_PROC);
  gimp_procedure_set_attribution (procedure, AUTHORS, AUTHORS,
                                  COPYRIGHT_DATE);

  ns_plugin_add_arguments (procedure, NS_MODE_GENERATE);
  ns_plugin_add_result_values (procedure);

  return procedure;
}

static GimpProcedure *
create_edit_procedure (GimpPlugIn *plug_in)
{
  GimpProcedure *procedure;

  procedure = gimp_image_procedure_new (plug_in, EDIT_PROC,
                                        GIMP_PDB_PROC_TYPE_PLUGIN,
                                        nextstep_run_edit, NULL, NULL);

  gimp_procedure_set_image_types (procedure, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask (procedure,
                                       GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  gimp_procedure_set_menu_label (procedure, _("_Edit with Instruction…"));
  gimp_procedure_add_menu_path (procedure, MENU_PATH);
  gimp_procedure_set_documentation (procedure,
                                    _("Edit a layer following a written "
                                      "instruction with NextStep-1-Large-Edit"),
                                    _("Runs StepFun's NextStep-1-Large-Edit "
                                      "model locally on the selected layer (or "
                                      "only the selection's bounding box in "
                                      "it) and adds the result as a new layer "
                                      "above it, at the same place and size. "
                                      "The layer itself is not changed."),
                                    EDIT_PROC);
  gimp_procedure_set_attribution (procedure, AUTHORS, AUTHORS,
                                  COPYRIGHT_DATE);

  ns_plugin_add_arguments (procedure, NS_MODE_EDIT);
  ns_plugin_add_result_values (procedure);

  return procedure;
}

static GimpProcedure *
nextstep_create_procedure (GimpPlugIn  *plug_in,
                           const gchar *name)
{
  if (g_strcmp0 (name, GENERATE_PROC) == 0)
    return create_generate_procedure (plug_in);
  if (g_strcmp0 (name, EDIT_PROC) == 0)
    return create_edit_procedure (plug_in);

  return NULL;
}


/* Fails with @error: argument problems (GIMP_PLUG_IN_ERROR, and the
 * settings' own NS_ERROR_INVALID_ARGUMENT) are the caller's, everything else
 * (model, engine) an execution error. */
static GimpValueArray *
fail (GimpProcedure *procedure, GError *error)
{
  gboolean calling = error->domain == GIMP_PLUG_IN_ERROR
                     || g_error_matches (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT);

  return gimp_procedure_new_return_values (procedure,
                                           calling ? GIMP_PDB_CALLING_ERROR
                                                   : GIMP_PDB_EXECUTION_ERROR,
                                           error);
}

static GimpValueArray *
success (GimpProcedure *procedure, GimpImage *image, GimpLayer **layers)
{
  GimpValueArray *values = gimp_procedure_new_return_values (procedure,
                                                             GIMP_PDB_SUCCESS,
                                                             NULL);
  GIMP_VALUES_SET_IMAGE (values, 1, image);
  GIMP_VALUES_SET_CORE_OBJECT_ARRAY (values, 2, layers);
  return values;
}

/* Runs @job without the dialog and inserts its results at @placement. */
static GimpValueArray *
run_batch (GimpProcedure *procedure, const NsJob *job, NsPlacement *placement)
{
  GError *error = NULL;
  g_autoptr (NsRecipe) recipe = NULL;
  g_autoptr (NsResult) result = ns_batch_run (job, &recipe, &error);
  g_autoptr (GPtrArray) recipes = g_ptr_array_new_with_free_func (g_free);
  g_autofree GimpLayer **layers = NULL;

  if (result == NULL)
    {
      if (job->key.backend == NS_BACKEND_REMOTE)
        g_prefix_error (&error, _("NextStep could not run on the server %s; the image is "
                                  "unchanged: "), job->key.server);
      else
        g_prefix_error (&error, _("NextStep could not run the model in \"%s\": "),
                        job->key.model_dir);
      return fail (procedure, error);
    }
  for (int i = 0; i < result->n_images; i++)
    g_ptr_array_add (recipes, ns_results_recipe_json (recipe, i));
  layers = ns_results_insert (placement, result->n_images,
                              (const guint8 *const *) result->rgba,
                              result->width, result->height,
                              (const char *const *) recipes->pdata, &error);
  if (layers == NULL)
    return fail (procedure, error);
  return success (procedure, placement->image, layers);
}

/* The one drawable of @drawables, or NULL with an error. */
static GimpDrawable *
single_drawable (GimpProcedure *procedure, GimpDrawable **drawables,
                 GError **error)
{
  gsize n = gimp_core_object_array_get_length ((GObject **) drawables);

  if (n == 1)
    return drawables[0];
  g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
               _("%s works on exactly one layer, but %" G_GSIZE_FORMAT
                 " drawables were given. Select one layer and try again."),
               gimp_procedure_get_name (procedure), n);
  return NULL;
}

/* The edit source of a batch run (NsRunContext.source): the selection's
 * bounding box in the layer, or the whole layer. */
typedef struct {
  GimpDrawable *drawable;
  NsEditRegion  region;
} BatchSource;

static GBytes *
read_batch_source (gpointer data, int *width, int *height, GError **error)
{
  BatchSource *source = data;

  if (! ns_canvas_edit_region (source->drawable, &source->region, error))
    return NULL;
  return ns_canvas_read_source (&source->region, width, height, error);
}

/* Both procedures: the config as NsSettings, then the dialog, or the one
 * path from settings to a run (ns_settings_make_job) and the results into
 * the image. */
static GimpValueArray *
run (GimpProcedure *procedure, NsMode mode, GimpRunMode run_mode,
     GimpImage *image, GimpDrawable *drawable, GimpProcedureConfig *config)
{
  GError *error = NULL;
  g_autoptr (NsSettings) settings = ns_settings_new ();
  BatchSource source = { .drawable = drawable };
  NsRunContext context = { .mode = mode, .source = read_batch_source,
                           .source_data = &source };
  NsJob job;
  GimpValueArray *values;
  gboolean limit;

  gegl_init (NULL, NULL);
  ns_settings_assign (G_OBJECT (settings), G_OBJECT (config));
  if (! ns_settings_check (settings, &error))
    return fail (procedure, error);
  if (run_mode == GIMP_RUN_INTERACTIVE)
    return ns_interactive_run (procedure, mode, image, drawable, config);

  if (! ns_settings_make_job (settings, &context, &job, &error))
    {
      ns_job_clear (&job);
      return fail (procedure, error);
    }
  g_object_get (settings, "limit-to-selection", &limit, NULL);
  NsPlacement placement = { image, drawable, 0, 0, job.width, job.height, FALSE };
  if (mode == NS_MODE_EDIT)
    placement = (NsPlacement) { image, drawable, source.region.x, source.region.y,
                                source.region.width, source.region.height,
                                limit && source.region.has_selection };
  values = run_batch (procedure, &job, &placement);
  ns_job_clear (&job);
  return values;
}

static GimpValueArray *
nextstep_run_generate (GimpProcedure        *procedure,
                       GimpRunMode           run_mode,
                       GimpImage            *image,
                       GimpDrawable        **drawables,
                       GimpProcedureConfig  *config,
                       gpointer              run_data)
{
  gsize n_drawables = gimp_core_object_array_get_length ((GObject **) drawables);

  /* Results go above the one drawable given, else above the active layer. */
  return run (procedure, NS_MODE_GENERATE, run_mode, image,
              n_drawables == 1 ? drawables[0] : NULL, config);
}

static GimpValueArray *
nextstep_run_edit (GimpProcedure        *procedure,
                   GimpRunMode           run_mode,
                   GimpImage            *image,
                   GimpDrawable        **drawables,
                   GimpProcedureConfig  *config,
                   gpointer              run_data)
{
  GError *error = NULL;
  GimpDrawable *drawable = single_drawable (procedure, drawables, &error);

  if (drawable == NULL)
    return fail (procedure, error);
  return run (procedure, NS_MODE_EDIT, run_mode, image, drawable, config);
}
