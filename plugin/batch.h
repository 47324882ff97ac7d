/* batch.h — a run without the dialog (scripts, "repeat last"): the engine
 * works on the controller's worker thread while the main thread spins a
 * main loop and reports each token to GIMP's progress bar. */
#pragma once

#include <libgimp/gimp.h>

#include "ns-controller.h"

G_BEGIN_DECLS

/* Loads the model of @job (from ns_settings_make_job) and runs its request;
 * returns the result and the recipe (every default resolved, the seed really
 * used), or NULL and an error that says what is wrong and what to do. */
NsResult *ns_batch_run (const NsJob *job, NsRecipe **recipe, GError **error);

G_END_DECLS
