/* ns-dialog.h — the NextStep dialog: prompt, settings, live preview,
 * progress, history and Generate / Stop / Insert / Close.
 *
 * A GtkBox, so the plug-in can pack it into a GimpDialog's content area or
 * a plain GtkWindow. It does everything but GIMP calls: the model is loaded
 * once on a worker thread and reused; runs go to a worker; previews fill in
 * token by token; the main loop never waits on the engine.
 *
 * Signals (main thread):
 *   insert (GBytes *rgba, int width, int height, const char *recipe_json)
 *          Insert was clicked on a result (the newest or one picked in the
 *          history); rgba is RGBA8, stride width*4.
 *   closed ()  Close was clicked (or ns_dialog_close called) and no worker
 *          runs any more: the plug-in may destroy the window and return.
 * Property "busy" (boolean, read-only): a model load or a run is going on.
 */
#pragma once

#include <gtk/gtk.h>
#include "ns-controller.h"
#include "ns-settings.h"

G_BEGIN_DECLS

#define NS_TYPE_DIALOG (ns_dialog_get_type ())
G_DECLARE_FINAL_TYPE (NsDialog, ns_dialog, NS, DIALOG, GtkBox)

/* The edit source, asked for at each Generate in edit mode (the selection
 * may change while the dialog is open): RGBA8, stride width*4, width and
 * height multiples of 16. NULL and an error (shown to the user) when there
 * is nothing to edit. Called on the main thread. */
typedef GBytes *(*NsDialogSourceFunc) (NsDialog *dialog, int *width, int *height,
                                       gpointer user_data, GError **error);

/* Binds the "gimp-nextstep" text domain to the install locale folder
 * (idempotent; ns_dialog_new calls it). */
void       ns_ui_init (void);

/* `initial` may be NULL (the defaults); it is copied. */
GtkWidget *ns_dialog_new (NsMode mode, NsSettings *initial);
void       ns_dialog_set_source_func (NsDialog *self, NsDialogSourceFunc func,
                                      gpointer user_data, GDestroyNotify destroy);
/* The values shown, as a new NsSettings: the prompt goes to "prompt" or
 * "instruction" after the mode shown; properties no widget shows ("vae",
 * "positive-prompt", "limit-to-selection") keep the values last set. Generate
 * and Refine run exactly these through ns_settings_make_job. */
NsSettings *ns_dialog_get_settings (NsDialog *self);
/* Shows @settings (copied); the mode stays. */
void       ns_dialog_set_settings (NsDialog *self, NsSettings *settings);
NsMode     ns_dialog_get_mode (NsDialog *self);
void       ns_dialog_set_mode (NsDialog *self, NsMode mode);
gboolean   ns_dialog_is_busy (NsDialog *self);

/* What the buttons do. */
void       ns_dialog_generate (NsDialog *self);
void       ns_dialog_stop (NsDialog *self);
/* Runs the selected result's prompt and seed again at the settings shown,
 * Draft off: the full version of a draft. */
void       ns_dialog_refine (NsDialog *self);
/* Stops a run or load, then emits "closed" once the worker is done. */
void       ns_dialog_close (NsDialog *self);

/* A part of the dialog, for tests and for screenshots: "prompt" (GtkTextView),
 * "negative" (GtkTextView), "generate", "stop", "insert", "close", "refine"
 * (GtkButton), "draft" (GtkCheckButton), "preview" (NsPreviewArea), "history"
 * (NsHistory), "progress" (GtkProgressBar), "error" (GtkInfoBar), "seed-used",
 * "model-missing" and "mode-warning" (GtkLabel). NULL for an unknown name. */
GtkWidget *ns_dialog_get_part (NsDialog *self, const char *name);
/* The dialog's engine driver (for tests: its "worker-token" hook). */
NsController *ns_dialog_get_controller (NsDialog *self);

G_END_DECLS
