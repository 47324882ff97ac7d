/* ns-settings.h — the one set of generation parameters, and the one way from
 * them to an engine request.
 *
 * NsSettings is a GObject whose properties are the arguments of the plug-in's
 * procedures, by the same names, types and defaults (plug-in-nextstep-generate
 * and plug-in-nextstep-edit, auxiliary arguments included): the plug-in
 * declares its arguments from ns_settings_specs() and copies a
 * GimpProcedureConfig to and from an NsSettings by name with
 * ns_settings_assign(), as GimpProcedureDialog does; the dialog shows and edits
 * one; a recipe (ns-recipe.h) stores the properties a run really used.
 * ns_settings_make_job() turns one into the engine request and the model to
 * load, with the same checks and messages for the dialog, the batch run,
 * "Refine" and "regenerate". GLib only: no GTK, no GIMP.
 */
#pragma once

#include <glib-object.h>
#include "nextstep.h"

G_BEGIN_DECLS

/* ---- The arguments ------------------------------------------------------ */

typedef enum {
  NS_SETTING_STRING,
  NS_SETTING_INT,
  NS_SETTING_DOUBLE,
  NS_SETTING_BOOLEAN,
} NsSettingType;

typedef enum {
  NS_SETTING_GENERATE = 1 << 0,  /* an argument of plug-in-nextstep-generate */
  NS_SETTING_EDIT     = 1 << 1,  /* an argument of plug-in-nextstep-edit */
  NS_SETTING_AUX      = 1 << 2,  /* an auxiliary argument: remembered, in no PDB call */
  NS_SETTING_RECIPE   = 1 << 3,  /* recorded in a recipe (the value a run really used) */
} NsSettingFlags;

/* One argument. Numbers: [min, max] and the default `number`; strings: the
 * default `string`. nick and blurb are marked N_() (domain "gimp-nextstep"). */
typedef struct {
  const char   *name;
  NsSettingType type;
  guint         flags;
  const char   *nick, *blurb;
  double        min, max, number;
  const char   *string;
} NsSettingSpec;

/* Every argument, in the procedures' order (each procedure takes those with
 * its flag, in this order). */
const NsSettingSpec *ns_settings_specs (guint *n_specs);

/* The string arguments that take only some values. */
extern const char *const ns_settings_samplers[];     /* "", "hf-sde", "gh-grid", "ode" */
extern const char *const ns_settings_backends[];     /* "auto", "cpu", "cuda", "remote" */
extern const char *const ns_settings_precisions[];   /* "auto", "bf16", "int8", "fp8", "q4" */

/* Draft runs (the "draft" argument): this many steps, and new images at half
 * the width and height. */
#define NS_DRAFT_STEPS 8
/* Token grid of the engine: image sides are multiples of this many pixels. */
#define NS_TOKEN_GRID 16

/* The engine size for a picture of @width × @height: each side rounded to
 * the nearest multiple of NS_TOKEN_GRID, after scaling down (aspect kept)
 * to at most @max_pixels pixels when @max_pixels is not 0. */
void ns_token_grid (int width, int height, int max_pixels, int *grid_width, int *grid_height);

/* ---- The object ----------------------------------------------------------- */

#define NS_TYPE_SETTINGS (ns_settings_get_type ())
G_DECLARE_FINAL_TYPE (NsSettings, ns_settings, NS, SETTINGS, GObject)

/* Every property at its default (the procedures' defaults). */
NsSettings *ns_settings_new (void);
NsSettings *ns_settings_copy (NsSettings *settings);
/* Sets each property of @dest that @src has too (same name) to @src's value,
 * converted to @dest's type and clamped to its range: NsSettings ↔
 * GimpProcedureConfig, either way. Properties only one of them has are left
 * alone. */
void        ns_settings_assign (GObject *dest, GObject *src);
/* TRUE when every property is the same. */
gboolean    ns_settings_equal (NsSettings *a, NsSettings *b);
/* The prompt of @mode: "prompt" (generate) or "instruction" (edit). */
const char *ns_settings_prompt_property (NsMode mode);

/* The string choices (sampler, backend, precision) are known values; else an
 * NS_ERROR_INVALID_ARGUMENT error that lists the accepted ones. */
gboolean    ns_settings_check (NsSettings *settings, GError **error);

/* ---- The request ------------------------------------------------------------ */

/* Which model to use: a different key means a reload. */
typedef struct {
  const char    *model_dir;     /* required, except with NS_BACKEND_REMOTE: then the
                                 * server's model name, NULL for the server's own choice */
  const char    *vae_dir;       /* NULL: ns_vae_find */
  NsBackendKind  backend;
  NsWeightFormat weights;
  const char    *server;        /* NS_BACKEND_REMOTE: the server's URL */
  const char    *api_key;       /* NS_BACKEND_REMOTE: its key, or NULL */
  gboolean       want_edit;     /* NS_BACKEND_REMOTE: prefer the server's edit model */
} NsModelKey;

/* The edit source: RGBA8, stride width*4, sides multiples of 16; NULL and an
 * error when there is nothing to edit. */
typedef GBytes *(*NsSourceFunc) (gpointer user_data, int *width, int *height, GError **error);

/* What a run needs beside the settings. */
typedef struct {
  NsMode       mode;
  NsSourceFunc source;          /* edit: asked for once the settings passed */
  gpointer     source_data;
  gboolean     have_last_seed;  /* "reuse-seed": the seed of the previous run */
  guint64      last_seed;
} NsRunContext;

/* One run: the request (its "0 = default" values left for the model), the
 * model to load, and what they point to. */
typedef struct {
  NsRequest  request;
  NsModelKey key;
  int        width, height;     /* generate: the size asked for (the request's is on the grid) */
  GPtrArray *strings;           /* owns the strings of request and key */
  GBytes    *input;             /* edit: owns request.input */
} NsJob;

/* Only the model key of @settings for @mode (the dialog loads the model
 * before the first run); @job->strings owns its strings. Fails when the
 * backend is "remote" without a server or no model folder is found. */
gboolean ns_settings_make_key (NsSettings *settings, NsMode mode, NsJob *job, GError **error);
/* The one way from settings to a run, for the dialog, the batch run, Refine
 * and regenerate alike. Checks, in this order: the choices
 * (ns_settings_check), the prompt, the server or model folder, then asks
 * @context for the edit source. Picks the seed (a fixed one, the last one
 * with "reuse-seed", else a new random one in 0…G_MAXINT so that a script
 * can ask for it again), rounds the size to the token grid and applies
 * "draft". Settings problems are NS_ERROR_INVALID_ARGUMENT errors.
 * @job is always set; ns_job_clear it. */
gboolean ns_settings_make_job (NsSettings *settings, const NsRunContext *context,
                               NsJob *job, GError **error);
void     ns_job_clear (NsJob *job);

/* The settings a run really used, for its recipe: the resolved @request
 * (every default filled in, the seed used), the model's folder or a server's
 * model name, the backend that ran it and the precision asked for. Only the
 * NS_SETTING_RECIPE properties are set. */
NsSettings *ns_settings_new_for_run (const NsRequest *request, const char *model,
                                     NsBackendKind backend, NsWeightFormat weights);

G_END_DECLS
