/* ns-controller.h — runs the engine for the dialog, off the main thread.
 *
 * An NsController owns one NsModel, loaded on a worker thread the first time
 * it is needed and reused by every run; it is reloaded only when the model
 * folder, VAE folder, backend or weight format changes. One job (load or
 * run) at a time. Progress reaches the main context as signals, coalesced so
 * that a fast engine can never flood the main loop: a burst of previews
 * becomes one "preview" emission carrying the newest picture.
 *
 * Signals (emitted in the main context the controller was created in,
 * except "worker-token"):
 *   load-progress (double fraction, const char *what)
 *   token         (int image, int token, int n_tokens)
 *   preview       (int image, GBytes *rgba, int width, int height,
 *                  int tokens_done, gboolean vae_decoded)   rgba: stride width*4
 *   worker-token  (int image, int token, int n_tokens) — on the WORKER thread,
 *                  synchronously, for tests and logging; never touch widgets.
 */
#pragma once

#include <glib-object.h>
#include "nextstep.h"
#include "ns-recipe.h"

G_BEGIN_DECLS

#define NS_TYPE_CONTROLLER (ns_controller_get_type ())
G_DECLARE_FINAL_TYPE (NsController, ns_controller, NS, CONTROLLER, GObject)

/* NsModelKey (which model to use: a different key means a reload) is in
 * ns-settings.h, where ns_settings_make_job fills it in. */

/* The loaded model's defaults for one mode (docs/model.md §9), from
 * ns_request_resolve: they follow the mode, not the checkpoint's kind. */
typedef struct {
  char         *name;           /* the model's name (a server's model id) */
  NsModelKind   kind;
  char         *mode_warning;   /* ns_model_mode_warning for the mode, or NULL */
  NsBackendKind backend;        /* the backend really used */
  char         *backend_note;   /* why AUTO chose the CPU, or NULL */
  char         *negative;       /* NULL when the model's kind could not be resolved */
  int           steps;
  double        cfg, cfg_img;
  NsSampler     sampler;
  int           width, height;
} NsModelDefaults;

NsController *ns_controller_new (void);
gboolean      ns_controller_is_busy (NsController *self);
/* Defaults of the loaded model for `mode`, or NULL when none is loaded.
 * Main thread, valid until the next load. */
const NsModelDefaults *ns_controller_get_defaults (NsController *self, NsMode mode);

/* Loads the model for `key` unless it is already loaded. */
void     ns_controller_load_async (NsController *self, const NsModelKey *key,
                                   GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data);
gboolean ns_controller_load_finish (NsController *self, GAsyncResult *result, GError **error);

/* Loads if needed, then runs `request`. The request's strings and input
 * image are copied; its callbacks, user_data and cancellable are replaced by
 * the controller's own. Cancelling stops the engine within one token (an
 * NS_ERROR_CANCELLED error). A `preview_every` of 0 becomes a VAE-decoded
 * preview every 8 token rows on the GPU (none on the CPU, where a decode
 * takes seconds). _finish also gives the run's recipe (the
 * request with every default resolved, the seed really used; image_index 0;
 * on a server, the server's model name and never its address or key). */
void      ns_controller_run_async (NsController *self, const NsModelKey *key,
                                   const NsRequest *request, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data);
NsResult *ns_controller_run_finish (NsController *self, GAsyncResult *result,
                                    NsRecipe **recipe, GError **error);

G_END_DECLS
