/* arguments.h — the PDB signature of the NextStep procedures.
 *
 * Every generation parameter is a real PDB argument, so scripts and the
 * headless tests can drive the plug-in exactly like the dialog does. The
 * argument names, order, ranges and defaults here are the plug-in's public
 * contract (see README.md); tests/gimp/check-pdb.py checks them in GIMP.
 */
#pragma once

#include <libgimp/gimp.h>

#include "nextstep.h"
#include "ns-controller.h"

G_BEGIN_DECLS

/* Arguments of plug-in-nextstep-generate, after run-mode, image, drawables. */
void     ns_plugin_add_generate_arguments (GimpProcedure *procedure);

/* Arguments of plug-in-nextstep-edit, after run-mode, image, drawables. */
void     ns_plugin_add_edit_arguments     (GimpProcedure *procedure);

/* Return values of both procedures: the image and the new layers. */
void     ns_plugin_add_result_values      (GimpProcedure *procedure);

/* Checks the string arguments that only take a few values ("sampler",
 * "backend"), which the PDB cannot restrict itself since a string argument
 * accepts anything. */
gboolean ns_plugin_check_config           (GimpProcedureConfig *config,
                                           GError             **error);

/* Token grid of the engine: image sides are multiples of this many pixels. */
#define NS_PLUGIN_GRID 16

/* The engine size for a picture of @width × @height: each side rounded to
 * the nearest multiple of NS_PLUGIN_GRID, after scaling down (aspect kept)
 * to at most @max_pixels pixels when @max_pixels is not 0. */
void     ns_plugin_token_grid             (int width, int height, int max_pixels,
                                           int *grid_width, int *grid_height);

/* One run as the procedure's arguments ask for it: the engine request with
 * its "auto" values left for the model to fill in, and the model to load. */
typedef struct {
  NsRequest  request;
  NsModelKey key;
  int        width, height;       /* generate: the layer size asked for */
  gboolean   limit_to_selection;  /* edit */
  GPtrArray *strings;             /* owns the strings the two above point to */
} NsPluginJob;

/* Fills @job from @config for a run in @mode: finds the model folder
 * (empty "model" = auto-discovery), picks a random seed for -1 and rounds
 * the size to the token grid. The edit input is left for the caller. */
gboolean ns_plugin_job_from_config (GimpProcedureConfig *config, NsMode mode,
                                    NsPluginJob *job, GError **error);
void     ns_plugin_job_clear       (NsPluginJob *job);

G_END_DECLS
