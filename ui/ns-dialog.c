/* ns-dialog.c — see ns-dialog.h.
 *
 * The widgets only ever change on the main thread: the worker's progress
 * arrives through NsController's signals. Every job holds a reference on the
 * dialog until its callback ran, and the callback checks `disposed`, so
 * destroying the window mid-run is safe; the worker stops within a token. */
#include <glib/gi18n-lib.h>

#include "ns-dialog.h"
#include "ns-history.h"
#include "ns-preview-area.h"

#define DOWNLOAD_COMMAND "hf download stepfun-ai/NextStep-1.1"

/* The seed choice, shown as a combo: "seed" -1, "seed" ≥ 0, "reuse-seed". */
enum { SEED_RANDOM, SEED_FIXED, SEED_REUSE_LAST };

typedef struct {
  int value;
  const char *label;            /* N_() marked, translated when shown */
} Choice;

static const Choice mode_choices[] = {
  { NS_MODE_GENERATE, N_("Generate a new image") },
  { NS_MODE_EDIT, N_("Edit the selection") },
};
static const Choice sampler_choices[] = {
  { NS_SAMPLER_DEFAULT, N_("Model default") },
  { NS_SAMPLER_HF_SDE, N_("SDE (NextStep-1.1)") },
  { NS_SAMPLER_GH_GRID, N_("Grid (NextStep-1)") },
  { NS_SAMPLER_ODE, N_("ODE (deterministic)") },
};
static const Choice seed_choices[] = {
  { SEED_RANDOM, N_("Random") },
  { SEED_FIXED, N_("Fixed") },
  { SEED_REUSE_LAST, N_("Reuse last") },
};
static const Choice weight_choices[] = {
  { NS_WEIGHTS_AUTO, N_("Automatic") },
  { NS_WEIGHTS_BF16, N_("bf16 (best quality)") },
  { NS_WEIGHTS_INT8, N_("int8 (half the memory)") },
  { NS_WEIGHTS_FP8, N_("fp8 (half the memory, recent GPUs)") },
  { NS_WEIGHTS_Q4, N_("4-bit (a quarter of the memory, lower quality)") },
};
static const Choice backend_choices[] = {
  { NS_BACKEND_AUTO, N_("Automatic") },
  { NS_BACKEND_CPU, N_("CPU") },
  { NS_BACKEND_CUDA, N_("NVIDIA GPU (CUDA)") },
  { NS_BACKEND_REMOTE, N_("Server (nextstep serve, vLLM-Omni)") },
};
/* 16-px token grids the model was trained on (docs/model.md §10); 512² is advised. */
static const struct { int width, height; } size_presets[] = {
  { 512, 512 }, { 768, 512 }, { 512, 768 }, { 640, 384 }, { 384, 640 }, { 256, 256 },
};

struct _NsDialog {
  GtkBox parent_instance;

  NsController *controller;
  GtkAccelGroup *accel_group;   /* Ctrl+Enter, on whichever window holds the dialog */
  GCancellable *cancellable;    /* of the job in flight */
  gboolean disposed, close_pending, reload_pending;
  char *model_dir;              /* NULL: none found yet */
  gboolean model_dir_auto;      /* found by ns_model_find, not chosen */
  NsSettings *settings;         /* the last values set, for those no widget shows */
  gboolean negative_default, filling_negative;
  gboolean have_last_seed;
  guint64 last_seed;
  NsDialogSourceFunc source_func;
  gpointer source_data;
  GDestroyNotify source_destroy;

  /* progress of the run in flight */
  gint64 run_start_us, first_token_us;
  int first_token_done, images;

  GtkWidget *info_bar, *info_label, *mode_warning;
  GtkWidget *model_chooser, *model_status, *model_missing;
  GtkWidget *mode_combo, *prompt_view, *negative_view, *negative_default_button;
  GtkWidget *size_combo, *width_spin, *height_spin;
  GtkWidget *steps_spin, *cfg_spin, *cfg_img_spin, *sampler_combo;
  GtkWidget *seed_combo, *seed_spin, *seed_used_label, *images_spin, *draft_check;
  GtkWidget *weights_combo, *backend_combo;
  GtkWidget *server_entry, *key_entry, *test_button, *server_status;
  GtkWidget *preview, *progress, *history;
  GtkWidget *generate_button, *stop_button, *insert_button, *close_button, *refine_button;
};

enum { SIGNAL_INSERT, SIGNAL_CLOSED, N_SIGNALS };
static guint signals[N_SIGNALS];
enum { PROP_0, PROP_BUSY, N_PROPS };
static GParamSpec *props[N_PROPS];

G_DEFINE_FINAL_TYPE (NsDialog, ns_dialog, GTK_TYPE_BOX)

static void start_load (NsDialog *self);

void
ns_ui_init (void)
{
  static gsize done = 0;
  if (g_once_init_enter (&done))
    {
      bindtextdomain (GETTEXT_PACKAGE, NS_LOCALEDIR);
      bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
      g_once_init_leave (&done, 1);
    }
}

/* ---- Small widget helpers ------------------------------------------------ */

static GtkWidget *
combo_new (const Choice *choices, guint n)
{
  GtkWidget *combo = gtk_combo_box_text_new ();
  for (guint i = 0; i < n; i++)
    gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (combo), _(choices[i].label));
  gtk_combo_box_set_active (GTK_COMBO_BOX (combo), 0);
  return combo;
}

static int
combo_get (GtkWidget *combo, const Choice *choices, guint n)
{
  int active = gtk_combo_box_get_active (GTK_COMBO_BOX (combo));
  return choices[active >= 0 && (guint) active < n ? active : 0].value;
}

static void
combo_set (GtkWidget *combo, const Choice *choices, guint n, int value)
{
  for (guint i = 0; i < n; i++)
    if (choices[i].value == value)
      gtk_combo_box_set_active (GTK_COMBO_BOX (combo), (int) i);
}

#define COMBO_GET(w, c) combo_get (w, c, G_N_ELEMENTS (c))
#define COMBO_SET(w, c, v) combo_set (w, c, G_N_ELEMENTS (c), v)

/* Spin buttons where 0 means "the model's default" show that word. */
static gboolean
on_default_spin_output (GtkSpinButton *spin, gpointer user_data)
{
  (void) user_data;
  if (gtk_spin_button_get_value (spin) != 0)
    return FALSE;
  gtk_entry_set_text (GTK_ENTRY (spin), _("default"));
  return TRUE;
}

static int
on_default_spin_input (GtkSpinButton *spin, double *value, gpointer user_data)
{
  (void) user_data;
  if (g_strcmp0 (gtk_entry_get_text (GTK_ENTRY (spin)), _("default")) != 0)
    return FALSE;
  *value = 0;
  return TRUE;
}

static GtkWidget *
spin_new (double lower, double upper, double step, guint digits, gboolean zero_is_default)
{
  GtkWidget *spin = gtk_spin_button_new_with_range (lower, upper, step);
  gtk_spin_button_set_digits (GTK_SPIN_BUTTON (spin), digits);
  if (zero_is_default)
    {
      /* _with_range makes it numeric, which would filter the word out. */
      gtk_spin_button_set_numeric (GTK_SPIN_BUTTON (spin), FALSE);
      g_signal_connect (spin, "output", G_CALLBACK (on_default_spin_output), NULL);
      g_signal_connect (spin, "input", G_CALLBACK (on_default_spin_input), NULL);
      gtk_entry_set_width_chars (GTK_ENTRY (spin), 8);
    }
  return spin;
}

/* A spin button over the range of the settings property @name. */
static GtkWidget *
setting_spin_new (const char *name, double step, guint digits, gboolean zero_is_default)
{
  g_autoptr (GTypeClass) klass = g_type_class_ref (NS_TYPE_SETTINGS);
  GParamSpec *pspec = g_object_class_find_property (G_OBJECT_CLASS (klass), name);
  double lower, upper;
  if (G_IS_PARAM_SPEC_INT (pspec))
    lower = G_PARAM_SPEC_INT (pspec)->minimum, upper = G_PARAM_SPEC_INT (pspec)->maximum;
  else if (G_IS_PARAM_SPEC_INT64 (pspec))
    lower = 0, upper = (double) G_PARAM_SPEC_INT64 (pspec)->maximum;  /* -1 is "Random" */
  else
    lower = G_PARAM_SPEC_DOUBLE (pspec)->minimum, upper = G_PARAM_SPEC_DOUBLE (pspec)->maximum;
  return spin_new (lower, upper, step, digits, zero_is_default);
}

static GtkWidget *
text_view_new (int lines)
{
  GtkWidget *view = gtk_text_view_new ();
  gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (view), GTK_WRAP_WORD_CHAR);
  gtk_text_view_set_accepts_tab (GTK_TEXT_VIEW (view), FALSE);
  GtkWidget *scrolled = gtk_scrolled_window_new (NULL, NULL);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scrolled), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_shadow_type (GTK_SCROLLED_WINDOW (scrolled), GTK_SHADOW_IN);
  gtk_scrolled_window_set_min_content_height (GTK_SCROLLED_WINDOW (scrolled), lines * 18);
  gtk_container_add (GTK_CONTAINER (scrolled), view);
  return view;
}

static char *
text_view_get (GtkWidget *view)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (GTK_TEXT_VIEW (view));
  GtkTextIter start, end;
  gtk_text_buffer_get_bounds (buffer, &start, &end);
  return gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
}

static void
text_view_set (GtkWidget *view, const char *text)
{
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (GTK_TEXT_VIEW (view)),
                            text != NULL ? text : "", -1);
}

/* Adds a labelled row to the settings grid; the label names the widget. */
static void
grid_row (GtkWidget *grid, int *row, const char *label, GtkWidget *widget)
{
  GtkWidget *title = gtk_label_new_with_mnemonic (label);
  gtk_label_set_xalign (GTK_LABEL (title), 0);
  gtk_label_set_mnemonic_widget (GTK_LABEL (title), widget);
  gtk_widget_set_valign (title, GTK_ALIGN_START);
  GtkWidget *parent = gtk_widget_get_parent (widget);
  gboolean scrolled = GTK_IS_SCROLLED_WINDOW (parent);
  gtk_grid_attach (GTK_GRID (grid), title, 0, *row, 1, 1);
  gtk_grid_attach (GTK_GRID (grid), scrolled ? parent : widget, 1, *row, 1, 1);
  (*row)++;
}

static GtkWidget *
hbox_of (GtkWidget *first, ...)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  va_list ap;
  va_start (ap, first);
  for (GtkWidget *w = first; w != NULL; w = va_arg (ap, GtkWidget *))
    gtk_box_pack_start (GTK_BOX (box), w, FALSE, FALSE, 0);
  va_end (ap);
  return box;
}

/* ---- State --------------------------------------------------------------- */

static NsMode
current_mode (NsDialog *self)
{
  return COMBO_GET (self->mode_combo, mode_choices);
}

static gboolean
is_remote (NsDialog *self)
{
  return COMBO_GET (self->backend_combo, backend_choices) == NS_BACKEND_REMOTE;
}

/* A server needs no local folder. */
static gboolean
has_model (NsDialog *self)
{
  return is_remote (self) || self->model_dir != NULL;
}

static gboolean
is_edit (NsDialog *self)
{
  return current_mode (self) == NS_MODE_EDIT;
}

static void
update_sensitivity (NsDialog *self)
{
  gboolean busy = ns_controller_is_busy (self->controller);
  gboolean edit = is_edit (self);
  gboolean custom = gtk_combo_box_get_active (GTK_COMBO_BOX (self->size_combo))
                    == (int) G_N_ELEMENTS (size_presets);
  gtk_widget_set_sensitive (self->generate_button, !busy && has_model (self));
  gtk_widget_set_sensitive (self->model_chooser, !is_remote (self));
  gtk_widget_set_sensitive (self->stop_button, busy);
  gboolean have_result = ns_history_get_selected (NS_HISTORY (self->history)) >= 0;
  gtk_widget_set_sensitive (self->insert_button, have_result);
  gtk_widget_set_sensitive (self->refine_button,
                            have_result && !busy && self->model_dir != NULL);
  gtk_widget_set_sensitive (self->size_combo, !edit);
  gtk_widget_set_sensitive (self->width_spin, !edit && custom);
  gtk_widget_set_sensitive (self->height_spin, !edit && custom);
  gtk_widget_set_sensitive (self->cfg_img_spin, edit);
  gtk_widget_set_sensitive (self->seed_spin,
                            COMBO_GET (self->seed_combo, seed_choices) == SEED_FIXED);
  gtk_widget_set_sensitive (self->negative_default_button, !self->negative_default);
}

static void
show_error (NsDialog *self, const char *message)
{
  gtk_label_set_text (GTK_LABEL (self->info_label), message);
  gtk_widget_show (self->info_bar);
}

static void
hide_error (NsDialog *self)
{
  gtk_widget_hide (self->info_bar);
}

static gboolean
is_cancelled (const GError *error)
{
  return g_error_matches (error, NS_ERROR, NS_ERROR_CANCELLED)
      || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

/* Sets the negative prompt text without it counting as a user edit. */
static void
fill_negative (NsDialog *self, const char *text)
{
  self->filling_negative = TRUE;
  text_view_set (self->negative_view, text);
  self->filling_negative = FALSE;
}

/* After a load or a mode change: say what runs where, warn when the
 * checkpoint does not look made for the mode (it runs anyway), and show the
 * mode's default negative. */
static void
show_model_state (NsDialog *self)
{
  const NsModelDefaults *defaults = ns_controller_get_defaults (self->controller,
                                                                current_mode (self));
  if (defaults == NULL)
    return;
  gtk_label_set_text (GTK_LABEL (self->mode_warning), defaults->mode_warning);
  gtk_widget_set_visible (self->mode_warning, defaults->mode_warning != NULL);
  g_autofree char *status = NULL;
  if (defaults->backend == NS_BACKEND_REMOTE)
    status = g_strdup_printf (_("Connected; %s runs on the server."), defaults->name);
  else if (defaults->backend == NS_BACKEND_CUDA)
    status = g_strdup (_("Model loaded; it runs on the GPU."));
  else if (defaults->backend_note != NULL)
    status = g_strdup_printf (_("Model loaded; it runs on the CPU (%s)."), defaults->backend_note);
  else
    status = g_strdup (_("Model loaded; it runs on the CPU."));
  gtk_label_set_text (GTK_LABEL (self->model_status), status);
  if (self->negative_default && defaults->negative != NULL)
    fill_negative (self, defaults->negative);
}

static void
job_ended (NsDialog *self)
{
  g_clear_object (&self->cancellable);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_BUSY]);
  if (self->close_pending)
    {
      self->close_pending = FALSE;
      g_signal_emit (self, signals[SIGNAL_CLOSED], 0);
      return;
    }
  show_model_state (self);
  update_sensitivity (self);
  if (self->reload_pending)
    start_load (self);
}

/* Before a job: its cancellable, and a clean error area. */
static void
job_prepare (NsDialog *self)
{
  self->cancellable = g_cancellable_new ();
  hide_error (self);
}

/* After the controller took the job. */
static void
job_running (NsDialog *self)
{
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_BUSY]);
  update_sensitivity (self);
}

/* ---- Model --------------------------------------------------------------- */

/* The entry's text, NULL when empty; valid until the entry changes. */
static const char *
entry_text (GtkWidget *entry)
{
  const char *text = gtk_entry_get_text (GTK_ENTRY (entry));
  return text[0] != '\0' ? text : NULL;
}


static void
on_load_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  NsDialog *self = user_data;
  g_autoptr (GError) error = NULL;
  gboolean ok = ns_controller_load_finish (NS_CONTROLLER (source), result, &error);
  if (!self->disposed)
    {
      gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress), ok ? 1 : 0);
      gtk_progress_bar_set_text (GTK_PROGRESS_BAR (self->progress), ok ? _("Ready") : "");
      if (!ok && is_cancelled (error))
        gtk_label_set_text (GTK_LABEL (self->model_status), _("No model loaded."));
      else if (!ok)
        {
          show_error (self, error->message);
          gtk_label_set_text (GTK_LABEL (self->model_status), _("The model could not be loaded."));
        }
      job_ended (self);
    }
  g_object_unref (self);
}

/* Loads (or reloads) the chosen model now, so Generate starts at once. */
static void
start_load (NsDialog *self)
{
  self->reload_pending = ns_controller_is_busy (self->controller);
  if (self->reload_pending || !has_model (self))
    return;
  if (is_remote (self) && entry_text (self->server_entry) == NULL)
    {
      gtk_label_set_text (GTK_LABEL (self->model_status),
                          _("Enter the server's address under Advanced."));
      return;
    }
  /* The key a run of these settings will use, so that it finds the model loaded. */
  g_autoptr (NsSettings) settings = ns_dialog_get_settings (self);
  g_autoptr (GError) error = NULL;
  NsJob job = { 0 };
  if (!ns_settings_make_key (settings, current_mode (self), &job, &error))
    {
      gtk_label_set_text (GTK_LABEL (self->model_status), error->message);
      ns_job_clear (&job);
      return;
    }
  gtk_label_set_text (GTK_LABEL (self->model_status), _("Loading the model…"));
  job_prepare (self);
  ns_controller_load_async (self->controller, &job.key, self->cancellable, on_load_done,
                            g_object_ref (self));
  job_running (self);
  ns_job_clear (&job);
}

static void
set_model_dir (NsDialog *self, const char *dir, gboolean automatic)
{
  gtk_widget_set_visible (self->model_missing, dir == NULL);
  self->model_dir_auto = automatic;
  if (g_strcmp0 (self->model_dir, dir) == 0)
    return;
  g_free (self->model_dir);
  self->model_dir = g_strdup (dir);
  if (dir != NULL)
    gtk_file_chooser_set_filename (GTK_FILE_CHOOSER (self->model_chooser), dir);
  start_load (self);
}

/* Looks for a model of the current mode unless the user chose one. */
static void
discover_model (NsDialog *self)
{
  if (self->model_dir != NULL && !self->model_dir_auto)
    return;
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = ns_model_find (NULL, is_edit (self), &error);
  /* The engine's message names every folder it looked in. */
  gtk_widget_set_tooltip_text (self->model_missing, error != NULL ? error->message : NULL);
  set_model_dir (self, dir, TRUE);
  update_sensitivity (self);
}

static void
on_model_chosen (GtkFileChooserButton *button, NsDialog *self)
{
  g_autofree char *dir = gtk_file_chooser_get_filename (GTK_FILE_CHOOSER (button));
  if (dir != NULL)
    set_model_dir (self, dir, FALSE);
  update_sensitivity (self);
}

static void
on_load_options_changed (NsDialog *self)
{
  start_load (self);
}

/* ---- Progress from the worker --------------------------------------------- */

static void
on_load_progress (NsController *controller, double fraction, const char *what, NsDialog *self)
{
  (void) controller;
  g_autofree char *text = g_strdup_printf (_("Loading the model: %s"), what != NULL ? what : "");
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress), CLAMP (fraction, 0, 1));
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (self->progress), text);
}

/* "Image 1 of 2 · token 120 of 1024 · 35.2 tokens/s · 0:25 left" */
static void
on_token (NsController *controller, int image, int token, int n_tokens, NsDialog *self)
{
  (void) controller;
  if (n_tokens <= 0 || self->cancellable == NULL)
    return;
  int token_1 = MIN (token + 1, n_tokens);
  int done = image * n_tokens + token_1;
  int total = self->images * n_tokens;
  gint64 now = g_get_monotonic_time ();
  if (self->first_token_us == 0)
    {
      self->first_token_us = now;
      self->first_token_done = done;
    }
  double seconds = (now - self->first_token_us) / 1e6;
  double rate = seconds > 0 ? (done - self->first_token_done) / seconds : 0;
  g_autofree char *where = self->images > 1
    ? g_strdup_printf (_("image %d of %d, token %d of %d"), image + 1, self->images, token_1, n_tokens)
    : g_strdup_printf (_("token %d of %d"), token_1, n_tokens);
  g_autofree char *text = NULL;
  if (rate > 0)
    {
      int left = (int) ((total - done) / rate + 0.5);
      /* TRANSLATORS: "token 5 of 1024 · 35.2 tokens/s · 0:25 left" */
      text = g_strdup_printf (_("%s · %.1f tokens/s · %d:%02d left"), where, rate,
                              left / 60, left % 60);
    }
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress), (double) done / total);
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (self->progress), text != NULL ? text : where);
}

static void
on_preview (NsController *controller, int image, GBytes *rgba, int width, int height,
            int tokens_done, gboolean vae_decoded, NsDialog *self)
{
  (void) controller, (void) image, (void) tokens_done, (void) vae_decoded;
  if (self->cancellable == NULL)
    return;
  ns_preview_area_set_rgba (NS_PREVIEW_AREA (self->preview), g_bytes_get_data (rgba, NULL),
                            width, height, width * 4, TRUE);
}

/* ---- Generate -------------------------------------------------------------- */

static void
add_results (NsDialog *self, const NsResult *result, NsRecipe *recipe)
{
  /* Seeds are formatted apart: a G_GUINT64_FORMAT would break the msgid. */
  g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, result->seed);
  g_autofree char *prompt = ns_recipe_dup_prompt (recipe);
  for (int i = 0; i < result->n_images; i++)
    {
      g_autoptr (GBytes) rgba = g_bytes_new (result->rgba[i],
                                             (gsize) result->width * result->height * 4);
      recipe->image_index = i;
      g_autofree char *json = ns_recipe_to_json (recipe);
      /* TRANSLATORS: a history thumbnail's tooltip: the prompt, then the seed. */
      g_autofree char *tooltip = g_strdup_printf (_("%s\nSeed %s, image %d"), prompt,
                                                  seed, i + 1);
      ns_history_add (NS_HISTORY (self->history), rgba, result->width, result->height,
                      json, tooltip);
    }
  self->last_seed = result->seed;
  self->have_last_seed = TRUE;
  g_autofree char *used = g_strdup_printf (_("Seed used: %s"), seed);
  gtk_label_set_text (GTK_LABEL (self->seed_used_label), used);
  /* So that switching to "Fixed" keeps this seed. */
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->seed_spin), (double) result->seed);
}

static void
on_run_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  NsDialog *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (NsRecipe) recipe = NULL;
  g_autoptr (NsResult) result = ns_controller_run_finish (NS_CONTROLLER (source), res,
                                                         &recipe, &error);
  if (!self->disposed)
    {
      GtkProgressBar *bar = GTK_PROGRESS_BAR (self->progress);
      if (result != NULL)
        {
          add_results (self, result, recipe);
          g_autofree char *text = g_strdup_printf (_("Done in %.1f s"),
                                                   (g_get_monotonic_time () - self->run_start_us) / 1e6);
          gtk_progress_bar_set_fraction (bar, 1);
          gtk_progress_bar_set_text (bar, text);
        }
      else if (is_cancelled (error))
        gtk_progress_bar_set_text (bar, _("Stopped"));
      else
        show_error (self, error->message);
      job_ended (self);
    }
  g_object_unref (self);
}

/* The edit source from the plug-in (NsRunContext.source). */
static GBytes *
get_source (gpointer data, int *width, int *height, GError **error)
{
  NsDialog *self = data;
  if (self->source_func == NULL)
    {
      g_set_error_literal (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                           _("There is no image to edit."));
      return NULL;
    }
  GBytes *rgba = self->source_func (self, width, height, self->source_data, error);
  if (rgba == NULL && error != NULL && *error == NULL)
    g_set_error_literal (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                         _("There is no image to edit."));
  return rgba;
}

/* Runs @settings through ns_settings_make_job, as the batch run does, and
 * starts the job; a problem is shown in the error area. */
static void
start_run (NsDialog *self, NsSettings *settings)
{
  NsRunContext context = { current_mode (self), get_source, self, self->have_last_seed,
                           self->last_seed };
  g_autoptr (GError) error = NULL;
  NsJob job;
  if (!ns_settings_make_job (settings, &context, &job, &error))
    {
      show_error (self, error->message);
      ns_job_clear (&job);
      return;
    }
  self->images = job.request.images;
  self->run_start_us = g_get_monotonic_time ();
  self->first_token_us = 0;
  ns_preview_area_clear (NS_PREVIEW_AREA (self->preview));
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress), 0);
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (self->progress), _("Starting…"));
  job_prepare (self);
  ns_controller_run_async (self->controller, &job.key, &job.request, self->cancellable,
                           on_run_done, g_object_ref (self));
  job_running (self);
  ns_job_clear (&job);
}

void
ns_dialog_generate (NsDialog *self)
{
  g_return_if_fail (NS_IS_DIALOG (self));
  if (ns_controller_is_busy (self->controller) || !has_model (self))
    return;
  g_autoptr (NsSettings) settings = ns_dialog_get_settings (self);
  start_run (self, settings);
}

void
ns_dialog_refine (NsDialog *self)
{
  g_return_if_fail (NS_IS_DIALOG (self));
  int index = ns_history_get_selected (NS_HISTORY (self->history));
  GBytes *rgba;
  int width, height;
  const char *json;
  if (ns_controller_is_busy (self->controller) || self->model_dir == NULL || index < 0
      || !ns_history_get_item (NS_HISTORY (self->history), index, &rgba, &width, &height, &json))
    return;
  g_autoptr (NsRecipe) recipe = ns_recipe_from_json (json, -1, NULL);
  if (recipe == NULL)
    return;
  /* The chosen result's own prompt, negative prompt and seed, at the
   * settings shown, without Draft. */
  g_autoptr (NsSettings) settings = ns_dialog_get_settings (self);
  g_autofree char *prompt = ns_recipe_dup_prompt (recipe), *negative = NULL;
  g_object_get (recipe->settings, "negative-prompt", &negative, NULL);
  g_object_set (settings, ns_settings_prompt_property (current_mode (self)), prompt,
                "negative-prompt", negative, "seed", (gint64) ns_recipe_get_seed (recipe),
                "reuse-seed", FALSE, "draft", FALSE, NULL);
  start_run (self, settings);
}

void
ns_dialog_stop (NsDialog *self)
{
  g_return_if_fail (NS_IS_DIALOG (self));
  self->reload_pending = FALSE;
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
}

void
ns_dialog_close (NsDialog *self)
{
  g_return_if_fail (NS_IS_DIALOG (self));
  if (!ns_controller_is_busy (self->controller))
    {
      g_signal_emit (self, signals[SIGNAL_CLOSED], 0);
      return;
    }
  self->close_pending = TRUE;
  ns_dialog_stop (self);
}

static void
on_insert_clicked (NsDialog *self)
{
  int index = ns_history_get_selected (NS_HISTORY (self->history));
  GBytes *rgba;
  int width, height;
  const char *recipe;
  if (index >= 0 && ns_history_get_item (NS_HISTORY (self->history), index, &rgba, &width,
                                         &height, &recipe))
    g_signal_emit (self, signals[SIGNAL_INSERT], 0, rgba, width, height, recipe);
}

static void
on_history_selected (NsHistory *history, int index, NsDialog *self)
{
  GBytes *rgba;
  int width, height;
  const char *recipe;
  if (!ns_history_get_item (history, index, &rgba, &width, &height, &recipe))
    return;
  ns_preview_area_set_rgba (NS_PREVIEW_AREA (self->preview), g_bytes_get_data (rgba, NULL),
                            width, height, width * 4, FALSE);
  update_sensitivity (self);
}

/* ---- Widget callbacks ------------------------------------------------------ */

static void
on_mode_changed (NsDialog *self)
{
  discover_model (self);
  show_model_state (self);
  update_sensitivity (self);
}

static void
on_size_changed (NsDialog *self)
{
  int active = gtk_combo_box_get_active (GTK_COMBO_BOX (self->size_combo));
  if (active >= 0 && active < (int) G_N_ELEMENTS (size_presets))
    {
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->width_spin), size_presets[active].width);
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->height_spin), size_presets[active].height);
    }
  update_sensitivity (self);
}

static void
on_negative_edited (NsDialog *self)
{
  if (self->filling_negative)
    return;
  self->negative_default = FALSE;
  update_sensitivity (self);
}

static void
on_negative_default_clicked (NsDialog *self)
{
  const NsModelDefaults *defaults = ns_controller_get_defaults (self->controller,
                                                                current_mode (self));
  fill_negative (self, defaults != NULL ? defaults->negative : "");
  self->negative_default = TRUE;
  update_sensitivity (self);
}

static void
select_size (NsDialog *self, int width, int height)
{
  guint preset = 0;
  while (preset < G_N_ELEMENTS (size_presets)
         && (size_presets[preset].width != width || size_presets[preset].height != height))
    preset++;
  gtk_combo_box_set_active (GTK_COMBO_BOX (self->size_combo), (int) preset);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->width_spin), width);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->height_spin), height);
}

/* ---- Building --------------------------------------------------------------- */

static GtkWidget *
build_model_section (NsDialog *self)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  self->model_chooser = gtk_file_chooser_button_new (_("Choose the NextStep model folder"),
                                                     GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER);
  g_signal_connect (self->model_chooser, "file-set", G_CALLBACK (on_model_chosen), self);
  self->model_status = gtk_label_new (_("No model loaded."));
  gtk_label_set_xalign (GTK_LABEL (self->model_status), 0);
  gtk_label_set_line_wrap (GTK_LABEL (self->model_status), TRUE);
  g_autofree char *missing = g_strdup_printf (
    _("No NextStep model was found. Download one (about 30 GB) with\n\n    %s\n\n"
      "then reopen this dialog, or choose the model folder above."), DOWNLOAD_COMMAND);
  self->model_missing = gtk_label_new (missing);
  gtk_label_set_xalign (GTK_LABEL (self->model_missing), 0);
  gtk_label_set_selectable (GTK_LABEL (self->model_missing), TRUE);
  gtk_label_set_line_wrap (GTK_LABEL (self->model_missing), TRUE);
  gtk_box_pack_start (GTK_BOX (box), self->model_chooser, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (box), self->model_status, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (box), self->model_missing, FALSE, FALSE, 0);
  gtk_widget_set_no_show_all (self->model_missing, TRUE);
  self->mode_warning = gtk_label_new (NULL);
  gtk_label_set_xalign (GTK_LABEL (self->mode_warning), 0);
  gtk_label_set_line_wrap (GTK_LABEL (self->mode_warning), TRUE);
  gtk_label_set_max_width_chars (GTK_LABEL (self->mode_warning), 50);
  gtk_style_context_add_class (gtk_widget_get_style_context (self->mode_warning),
                               GTK_STYLE_CLASS_WARNING);
  gtk_box_pack_start (GTK_BOX (box), self->mode_warning, FALSE, FALSE, 0);
  gtk_widget_set_no_show_all (self->mode_warning, TRUE);
  return box;
}

/* ---- Server ---------------------------------------------------------------- */

static void
list_models_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  char **args = data;   /* server, key */
  GError *error = NULL;
  (void) source;
  GPtrArray *models = ns_server_list_models (args[0], args[1], cancellable, &error);
  if (models == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, models, (GDestroyNotify) g_ptr_array_unref);
}

/* "Connected: stepfun-ai/NextStep-1.1 (generate, previews)" */
static char *
describe_models (GPtrArray *models)
{
  g_autoptr (GString) text = g_string_new (_("Connected:"));
  for (guint i = 0; i < models->len; i++)
    {
      const NsServerModel *m = models->pdata[i];
      g_string_append_printf (text, "%s %s (%s%s)", i ? "," : "", m->id,
                              m->nextstep ? _("generate, edit") : _("generate"),
                              m->nextstep ? _(", previews") : "");
    }
  if (models->len == 0)
    g_string_append (text, _(" the server offers no model."));
  return g_string_free (g_steal_pointer (&text), FALSE);
}

static void
on_test_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  NsDialog *self = NS_DIALOG (source);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) models = g_task_propagate_pointer (G_TASK (result), &error);
  (void) user_data;
  if (self->disposed)
    return;
  g_autofree char *text = models != NULL ? describe_models (models) : g_strdup (error->message);
  gtk_label_set_text (GTK_LABEL (self->server_status), text);
  gtk_widget_set_sensitive (self->test_button, TRUE);
}

/* Asks the server what it offers, off the main thread. */
static void
on_test_clicked (NsDialog *self)
{
  const char *server = entry_text (self->server_entry);
  if (server == NULL)
    {
      gtk_label_set_text (GTK_LABEL (self->server_status),
                          _("Enter the server's address, for example http://gpu-box:8000."));
      return;
    }
  char **args = g_new0 (char *, 3);
  args[0] = g_strdup (server);
  args[1] = g_strdup (entry_text (self->key_entry));
  GTask *task = g_task_new (self, NULL, on_test_done, NULL);
  g_task_set_task_data (task, args, (GDestroyNotify) g_strfreev);
  gtk_label_set_text (GTK_LABEL (self->server_status), _("Connecting…"));
  gtk_widget_set_sensitive (self->test_button, FALSE);
  g_task_run_in_thread (task, list_models_thread);
  g_object_unref (task);
}

static void
build_server_rows (NsDialog *self, GtkWidget *grid, int *row)
{
  self->server_entry = gtk_entry_new ();
  gtk_entry_set_placeholder_text (GTK_ENTRY (self->server_entry), "http://gpu-box:8000");
  gtk_widget_set_tooltip_text (self->server_entry,
                               _("With Hardware set to Server: the address of a machine "
                                 "running `nextstep serve` or vLLM-Omni"));
  self->key_entry = gtk_entry_new ();
  gtk_entry_set_visibility (GTK_ENTRY (self->key_entry), FALSE);
  gtk_widget_set_tooltip_text (self->key_entry, _("The server's API key, if it needs one. "
                                                  "Kept with this plug-in's settings, never "
                                                  "in the image."));
  self->test_button = gtk_button_new_with_mnemonic (_("_Test Connection"));
  self->server_status = gtk_label_new (NULL);
  gtk_label_set_xalign (GTK_LABEL (self->server_status), 0);
  gtk_label_set_line_wrap (GTK_LABEL (self->server_status), TRUE);
  gtk_label_set_selectable (GTK_LABEL (self->server_status), TRUE);
  grid_row (grid, row, _("Ser_ver:"), hbox_of (self->server_entry, self->test_button, NULL));
  grid_row (grid, row, _("API _key:"), self->key_entry);
  grid_row (grid, row, "", self->server_status);
  g_signal_connect_swapped (self->test_button, "clicked", G_CALLBACK (on_test_clicked), self);
  g_signal_connect_swapped (self->server_entry, "activate", G_CALLBACK (on_load_options_changed),
                            self);
}

static GtkWidget *
build_advanced (NsDialog *self)
{
  GtkWidget *grid = gtk_grid_new ();
  gtk_grid_set_row_spacing (GTK_GRID (grid), 6);
  gtk_grid_set_column_spacing (GTK_GRID (grid), 12);
  int row = 0;
  self->weights_combo = combo_new (weight_choices, G_N_ELEMENTS (weight_choices));
  self->backend_combo = combo_new (backend_choices, G_N_ELEMENTS (backend_choices));
  grid_row (grid, &row, _("Precision (_weights):"), self->weights_combo);
  grid_row (grid, &row, _("_Hardware:"), self->backend_combo);
  g_signal_connect_swapped (self->weights_combo, "changed", G_CALLBACK (on_load_options_changed), self);
  g_signal_connect_swapped (self->backend_combo, "changed", G_CALLBACK (on_load_options_changed), self);
  build_server_rows (self, grid, &row);
  GtkWidget *expander = gtk_expander_new_with_mnemonic (_("Ad_vanced"));
  gtk_container_add (GTK_CONTAINER (expander), grid);
  return expander;
}

static GtkWidget *
build_settings (NsDialog *self)
{
  GtkWidget *grid = gtk_grid_new ();
  gtk_grid_set_row_spacing (GTK_GRID (grid), 6);
  gtk_grid_set_column_spacing (GTK_GRID (grid), 12);
  int row = 0;

  grid_row (grid, &row, _("_Model:"), build_model_section (self));
  self->mode_combo = combo_new (mode_choices, G_N_ELEMENTS (mode_choices));
  grid_row (grid, &row, _("M_ode:"), self->mode_combo);
  self->prompt_view = text_view_new (4);
  grid_row (grid, &row, _("_Prompt:"), self->prompt_view);
  self->negative_view = text_view_new (2);
  self->negative_default_button = gtk_button_new_with_mnemonic (_("Use model _default"));
  grid_row (grid, &row, _("_Negative prompt:"), self->negative_view);
  gtk_widget_set_halign (self->negative_default_button, GTK_ALIGN_END);
  gtk_grid_attach (GTK_GRID (grid), self->negative_default_button, 1, row++, 1, 1);

  self->size_combo = gtk_combo_box_text_new ();
  for (guint i = 0; i < G_N_ELEMENTS (size_presets); i++)
    {
      g_autofree char *label = g_strdup_printf (i == 0 ? _("%d × %d (recommended)") : _("%d × %d"),
                                                size_presets[i].width, size_presets[i].height);
      gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (self->size_combo), label);
    }
  gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (self->size_combo), _("Custom"));
  self->width_spin = setting_spin_new ("width", 16, 0, FALSE);
  self->height_spin = setting_spin_new ("height", 16, 0, FALSE);
  grid_row (grid, &row, _("Si_ze:"), hbox_of (self->size_combo, self->width_spin,
                                               gtk_label_new ("×"), self->height_spin, NULL));
  self->steps_spin = setting_spin_new ("steps", 1, 0, TRUE);
  grid_row (grid, &row, _("S_teps:"), self->steps_spin);
  self->cfg_spin = setting_spin_new ("cfg", 0.5, 1, TRUE);
  grid_row (grid, &row, _("Guid_ance (CFG):"), self->cfg_spin);
  self->cfg_img_spin = setting_spin_new ("cfg-img", 0.25, 2, TRUE);
  grid_row (grid, &row, _("Image g_uidance:"), self->cfg_img_spin);
  self->sampler_combo = combo_new (sampler_choices, G_N_ELEMENTS (sampler_choices));
  grid_row (grid, &row, _("Samp_ler:"), self->sampler_combo);
  self->seed_combo = combo_new (seed_choices, G_N_ELEMENTS (seed_choices));
  self->seed_spin = setting_spin_new ("seed", 1, 0, FALSE);
  self->seed_used_label = gtk_label_new (NULL);
  grid_row (grid, &row, _("S_eed:"), hbox_of (self->seed_combo, self->seed_spin,
                                               self->seed_used_label, NULL));
  self->images_spin = setting_spin_new ("images", 1, 0, FALSE);
  grid_row (grid, &row, _("Images per _run:"), self->images_spin);
  g_autofree char *draft = g_strdup_printf (_("_Draft: %d steps, new images at half the "
                                              "width and height"), NS_DRAFT_STEPS);
  self->draft_check = gtk_check_button_new_with_mnemonic (draft);
  gtk_widget_set_tooltip_text (self->draft_check,
                               _("Quick runs to try prompts; Refine makes the chosen one "
                                 "again at the settings above"));
  gtk_grid_attach (GTK_GRID (grid), self->draft_check, 1, row++, 1, 1);
  gtk_grid_attach (GTK_GRID (grid), build_advanced (self), 0, row++, 2, 1);

  g_signal_connect_swapped (self->mode_combo, "changed", G_CALLBACK (on_mode_changed), self);
  g_signal_connect_swapped (self->size_combo, "changed", G_CALLBACK (on_size_changed), self);
  g_signal_connect_swapped (self->seed_combo, "changed", G_CALLBACK (update_sensitivity), self);
  g_signal_connect_swapped (gtk_text_view_get_buffer (GTK_TEXT_VIEW (self->negative_view)),
                            "changed", G_CALLBACK (on_negative_edited), self);
  g_signal_connect_swapped (self->negative_default_button, "clicked",
                            G_CALLBACK (on_negative_default_clicked), self);
  return grid;
}

static GtkWidget *
build_output (NsDialog *self)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  self->preview = ns_preview_area_new ();
  self->progress = gtk_progress_bar_new ();
  gtk_progress_bar_set_show_text (GTK_PROGRESS_BAR (self->progress), TRUE);
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (self->progress), "");
  self->history = ns_history_new ();
  g_signal_connect (self->history, "item-selected", G_CALLBACK (on_history_selected), self);
  gtk_box_pack_start (GTK_BOX (box), self->preview, TRUE, TRUE, 0);
  gtk_box_pack_start (GTK_BOX (box), self->progress, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (box), self->history, FALSE, FALSE, 0);
  return box;
}

static GtkWidget *
build_buttons (NsDialog *self)
{
  GtkWidget *box = gtk_button_box_new (GTK_ORIENTATION_HORIZONTAL);
  gtk_button_box_set_layout (GTK_BUTTON_BOX (box), GTK_BUTTONBOX_END);
  gtk_box_set_spacing (GTK_BOX (box), 6);
  self->close_button = gtk_button_new_with_mnemonic (_("_Close"));
  self->stop_button = gtk_button_new_with_mnemonic (_("_Stop"));
  self->insert_button = gtk_button_new_with_mnemonic (_("_Insert"));
  self->generate_button = gtk_button_new_with_mnemonic (_("_Generate"));
  self->refine_button = gtk_button_new_with_mnemonic (_("Re_fine"));
  gtk_widget_set_tooltip_text (self->refine_button,
                               _("Make the selected result again with its prompt and seed, "
                                 "at the settings shown and without Draft"));
  gtk_widget_set_tooltip_text (self->insert_button, _("Add the selected result to the image"));
  gtk_style_context_add_class (gtk_widget_get_style_context (self->generate_button),
                               GTK_STYLE_CLASS_SUGGESTED_ACTION);
  GtkWidget *buttons[] = { self->close_button, self->stop_button, self->insert_button,
                           self->refine_button, self->generate_button };
  for (guint i = 0; i < G_N_ELEMENTS (buttons); i++)
    gtk_box_pack_start (GTK_BOX (box), buttons[i], FALSE, FALSE, 0);
  g_signal_connect_swapped (self->generate_button, "clicked", G_CALLBACK (ns_dialog_generate), self);
  g_signal_connect_swapped (self->stop_button, "clicked", G_CALLBACK (ns_dialog_stop), self);
  g_signal_connect_swapped (self->refine_button, "clicked", G_CALLBACK (ns_dialog_refine), self);
  g_signal_connect_swapped (self->insert_button, "clicked", G_CALLBACK (on_insert_clicked), self);
  g_signal_connect_swapped (self->close_button, "clicked", G_CALLBACK (ns_dialog_close), self);
  return box;
}

/* Ctrl+Enter generates from anywhere in the window, the prompt included
 * (where a plain Enter starts a new line), and typing starts in the prompt.
 * Both need the toplevel, which exists only once the dialog is packed. */
static void
on_hierarchy_changed (NsDialog *self, GtkWidget *previous_toplevel)
{
  GtkWidget *toplevel = gtk_widget_get_toplevel (GTK_WIDGET (self));
  if (GTK_IS_WINDOW (previous_toplevel))
    gtk_window_remove_accel_group (GTK_WINDOW (previous_toplevel), self->accel_group);
  if (!GTK_IS_WINDOW (toplevel))
    return;
  gtk_window_add_accel_group (GTK_WINDOW (toplevel), self->accel_group);
  gtk_widget_grab_focus (self->prompt_view);
}

/* A text view would take Ctrl+Enter as a new line before the window's
 * accelerator sees it whenever Generate is off (a load or a run going on):
 * it never means a new line in a prompt. */
static gboolean
on_text_key_press (GtkWidget *view, GdkEventKey *event, NsDialog *self)
{
  (void) view;
  gboolean enter = event->keyval == GDK_KEY_Return || event->keyval == GDK_KEY_KP_Enter;
  if (!enter || !(event->state & GDK_CONTROL_MASK))
    return FALSE;
  gtk_widget_activate (self->generate_button);
  return TRUE;
}

static void
add_generate_accelerators (NsDialog *self)
{
  self->accel_group = gtk_accel_group_new ();
  gtk_widget_add_accelerator (self->generate_button, "clicked", self->accel_group,
                              GDK_KEY_Return, GDK_CONTROL_MASK, GTK_ACCEL_VISIBLE);
  gtk_widget_add_accelerator (self->generate_button, "clicked", self->accel_group,
                              GDK_KEY_KP_Enter, GDK_CONTROL_MASK, 0);
  gtk_widget_set_tooltip_text (self->generate_button, _("Generate (Ctrl+Enter)"));
  g_signal_connect (self, "hierarchy-changed", G_CALLBACK (on_hierarchy_changed), NULL);
  g_signal_connect (self->prompt_view, "key-press-event", G_CALLBACK (on_text_key_press), self);
  g_signal_connect (self->negative_view, "key-press-event", G_CALLBACK (on_text_key_press), self);
}

static void
ns_dialog_init (NsDialog *self)
{
  self->controller = ns_controller_new ();
  self->settings = ns_settings_new ();
  self->negative_default = TRUE;
  g_signal_connect (self->controller, "load-progress", G_CALLBACK (on_load_progress), self);
  g_signal_connect (self->controller, "token", G_CALLBACK (on_token), self);
  g_signal_connect (self->controller, "preview", G_CALLBACK (on_preview), self);

  gtk_orientable_set_orientation (GTK_ORIENTABLE (self), GTK_ORIENTATION_VERTICAL);
  gtk_box_set_spacing (GTK_BOX (self), 8);
  gtk_container_set_border_width (GTK_CONTAINER (self), 8);

  self->info_bar = gtk_info_bar_new ();
  gtk_info_bar_set_message_type (GTK_INFO_BAR (self->info_bar), GTK_MESSAGE_ERROR);
  gtk_info_bar_set_show_close_button (GTK_INFO_BAR (self->info_bar), TRUE);
  g_signal_connect (self->info_bar, "response", G_CALLBACK (gtk_widget_hide), NULL);
  self->info_label = gtk_label_new (NULL);
  gtk_label_set_line_wrap (GTK_LABEL (self->info_label), TRUE);
  gtk_label_set_selectable (GTK_LABEL (self->info_label), TRUE);
  gtk_label_set_xalign (GTK_LABEL (self->info_label), 0);
  gtk_container_add (GTK_CONTAINER (gtk_info_bar_get_content_area (GTK_INFO_BAR (self->info_bar))),
                     self->info_label);
  gtk_widget_set_no_show_all (self->info_bar, TRUE);
  gtk_widget_show (self->info_label);

  GtkWidget *columns = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
  gtk_box_pack_start (GTK_BOX (columns), build_settings (self), FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (columns), build_output (self), TRUE, TRUE, 0);
  gtk_box_pack_start (GTK_BOX (self), self->info_bar, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (self), columns, TRUE, TRUE, 0);
  gtk_box_pack_start (GTK_BOX (self), build_buttons (self), FALSE, FALSE, 0);
  add_generate_accelerators (self);
  gtk_widget_show_all (GTK_WIDGET (self));
}

/* ---- Public ------------------------------------------------------------------ */

GtkWidget *
ns_dialog_new (NsMode mode, NsSettings *initial)
{
  ns_ui_init ();
  NsDialog *self = g_object_new (NS_TYPE_DIALOG, NULL);
  g_autoptr (NsSettings) settings = initial != NULL ? g_object_ref (initial) : ns_settings_new ();
  g_signal_handlers_block_by_func (self->mode_combo, on_mode_changed, self);
  COMBO_SET (self->mode_combo, mode_choices, mode);
  g_signal_handlers_unblock_by_func (self->mode_combo, on_mode_changed, self);
  ns_dialog_set_settings (self, settings);
  return GTK_WIDGET (self);
}

/* The string property @name of @s; "" for NULL. */
static char *
get_string (NsSettings *s, const char *name)
{
  char *value = NULL;
  g_object_get (s, name, &value, NULL);
  return value != NULL ? value : g_strdup ("");
}

static int
choice_index (const char *const *names, const char *name)
{
  for (int i = 0; names[i] != NULL; i++)
    if (g_strcmp0 (names[i], name) == 0)
      return i;
  return 0;
}

void
ns_dialog_set_settings (NsDialog *self, NsSettings *s)
{
  g_return_if_fail (NS_IS_DIALOG (self) && NS_IS_SETTINGS (s));
  g_clear_object (&self->settings);
  self->settings = ns_settings_copy (s);
  g_autofree char *prompt = get_string (s, ns_settings_prompt_property (current_mode (self)));
  g_autofree char *negative = get_string (s, "negative-prompt");
  g_autofree char *sampler = get_string (s, "sampler"), *backend = get_string (s, "backend");
  g_autofree char *precision = get_string (s, "precision"), *model = get_string (s, "model");
  g_autofree char *server = get_string (s, "server"), *api_key = get_string (s, "api-key");
  int width, height, steps, images;
  double cfg, cfg_img;
  gint64 seed;
  gboolean reuse_seed, draft;
  g_object_get (s, "width", &width, "height", &height, "steps", &steps, "cfg", &cfg,
                "cfg-img", &cfg_img, "seed", &seed, "reuse-seed", &reuse_seed,
                "images", &images, "draft", &draft, NULL);

  text_view_set (self->prompt_view, prompt);
  fill_negative (self, negative);
  self->negative_default = negative[0] == '\0';
  select_size (self, width, height);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->steps_spin), steps);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->cfg_spin), cfg);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->cfg_img_spin), cfg_img);
  /* The choices are listed in the order of ns_settings_samplers. */
  gtk_combo_box_set_active (GTK_COMBO_BOX (self->sampler_combo),
                            choice_index (ns_settings_samplers, sampler));
  COMBO_SET (self->seed_combo, seed_choices,
             reuse_seed ? SEED_REUSE_LAST : seed < 0 ? SEED_RANDOM : SEED_FIXED);
  if (seed >= 0)
    gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->seed_spin), (double) seed);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->images_spin), images);
  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (self->draft_check), draft);
  gtk_entry_set_text (GTK_ENTRY (self->server_entry), server);
  gtk_entry_set_text (GTK_ENTRY (self->key_entry), api_key);
  /* Changing these may start a load: set them, then pick the folder once. */
  g_signal_handlers_block_by_func (self->weights_combo, on_load_options_changed, self);
  g_signal_handlers_block_by_func (self->backend_combo, on_load_options_changed, self);
  gtk_combo_box_set_active (GTK_COMBO_BOX (self->weights_combo),
                            choice_index (ns_settings_precisions, precision));
  gtk_combo_box_set_active (GTK_COMBO_BOX (self->backend_combo),
                            choice_index (ns_settings_backends, backend));
  g_signal_handlers_unblock_by_func (self->weights_combo, on_load_options_changed, self);
  g_signal_handlers_unblock_by_func (self->backend_combo, on_load_options_changed, self);
  /* With a server, "model" names the server's model, not a folder. */
  if (model[0] != '\0' && !is_remote (self))
    set_model_dir (self, model, FALSE);
  else
    discover_model (self);
  show_model_state (self);
  update_sensitivity (self);
}

NsSettings *
ns_dialog_get_settings (NsDialog *self)
{
  g_return_val_if_fail (NS_IS_DIALOG (self), NULL);
  NsSettings *s = ns_settings_copy (self->settings);
  NsMode mode = current_mode (self);
  g_autofree char *prompt = text_view_get (self->prompt_view);
  g_autofree char *negative = self->negative_default ? g_strdup ("")
                                                     : text_view_get (self->negative_view);
  int seed_mode = COMBO_GET (self->seed_combo, seed_choices);
  gint64 seed = seed_mode == SEED_FIXED
                ? (gint64) gtk_spin_button_get_value (GTK_SPIN_BUTTON (self->seed_spin)) : -1;
  g_object_set (s, ns_settings_prompt_property (mode), prompt, "negative-prompt", negative,
                "steps", gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (self->steps_spin)),
                "cfg", gtk_spin_button_get_value (GTK_SPIN_BUTTON (self->cfg_spin)),
                "sampler", ns_settings_samplers[MAX (0, gtk_combo_box_get_active (
                                                          GTK_COMBO_BOX (self->sampler_combo)))],
                "seed", seed, "reuse-seed", seed_mode == SEED_REUSE_LAST,
                "draft", gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (self->draft_check)),
                "precision", ns_settings_precisions[MAX (0, gtk_combo_box_get_active (
                                                              GTK_COMBO_BOX (self->weights_combo)))],
                "backend", ns_settings_backends[MAX (0, gtk_combo_box_get_active (
                                                          GTK_COMBO_BOX (self->backend_combo)))],
                "server", gtk_entry_get_text (GTK_ENTRY (self->server_entry)),
                "api-key", gtk_entry_get_text (GTK_ENTRY (self->key_entry)), NULL);
  /* An edit keeps its source's size: the size widgets belong to generate. */
  if (mode == NS_MODE_GENERATE)
    g_object_set (s, "width", gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (self->width_spin)),
                  "height", gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (self->height_spin)),
                  "images", gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (self->images_spin)),
                  NULL);
  else
    g_object_set (s, "cfg-img", gtk_spin_button_get_value (GTK_SPIN_BUTTON (self->cfg_img_spin)),
                  NULL);
  /* With a server the chooser is off: "model" keeps a server model's name
   * (from a recipe), never the local folder. */
  if (!is_remote (self))
    g_object_set (s, "model", self->model_dir_auto || self->model_dir == NULL ? ""
                                                                           : self->model_dir, NULL);
  else
    {
      g_autofree char *model = get_string (s, "model");
      if (g_strcmp0 (model, self->model_dir) == 0)
        g_object_set (s, "model", "", NULL);
    }
  return s;
}

NsMode
ns_dialog_get_mode (NsDialog *self)
{
  g_return_val_if_fail (NS_IS_DIALOG (self), NS_MODE_GENERATE);
  return current_mode (self);
}

void
ns_dialog_set_mode (NsDialog *self, NsMode mode)
{
  g_return_if_fail (NS_IS_DIALOG (self));
  COMBO_SET (self->mode_combo, mode_choices, mode);
}

void
ns_dialog_set_source_func (NsDialog *self, NsDialogSourceFunc func, gpointer user_data,
                           GDestroyNotify destroy)
{
  g_return_if_fail (NS_IS_DIALOG (self));
  if (self->source_destroy != NULL)
    self->source_destroy (self->source_data);
  self->source_func = func;
  self->source_data = user_data;
  self->source_destroy = destroy;
}

gboolean
ns_dialog_is_busy (NsDialog *self)
{
  g_return_val_if_fail (NS_IS_DIALOG (self), FALSE);
  return ns_controller_is_busy (self->controller);
}

GtkWidget *
ns_dialog_get_part (NsDialog *self, const char *name)
{
  g_return_val_if_fail (NS_IS_DIALOG (self), NULL);
  const struct { const char *name; GtkWidget *widget; } parts[] = {
    { "prompt", self->prompt_view }, { "negative", self->negative_view },
    { "generate", self->generate_button }, { "stop", self->stop_button },
    { "insert", self->insert_button }, { "close", self->close_button },
    { "refine", self->refine_button }, { "draft", self->draft_check },
    { "preview", self->preview }, { "history", self->history },
    { "progress", self->progress }, { "error", self->info_bar },
    { "seed-used", self->seed_used_label }, { "model-missing", self->model_missing },
    { "server", self->server_entry }, { "api-key", self->key_entry },
    { "test-connection", self->test_button }, { "server-status", self->server_status },
    { "mode-warning", self->mode_warning },
  };
  for (guint i = 0; i < G_N_ELEMENTS (parts); i++)
    if (g_strcmp0 (parts[i].name, name) == 0)
      return parts[i].widget;
  return NULL;
}

NsController *
ns_dialog_get_controller (NsDialog *self)
{
  g_return_val_if_fail (NS_IS_DIALOG (self), NULL);
  return self->controller;
}

/* ---- GObject ----------------------------------------------------------------- */

static void
ns_dialog_dispose (GObject *object)
{
  NsDialog *self = NS_DIALOG (object);
  self->disposed = TRUE;
  /* The job in flight keeps its own references; it ends within a token. */
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  if (self->controller != NULL)
    g_signal_handlers_disconnect_by_data (self->controller, self);
  g_clear_object (&self->controller);
  ns_dialog_set_source_func (self, NULL, NULL, NULL);
  G_OBJECT_CLASS (ns_dialog_parent_class)->dispose (object);
}

static void
ns_dialog_finalize (GObject *object)
{
  NsDialog *self = NS_DIALOG (object);
  g_free (self->model_dir);
  g_clear_object (&self->settings);
  /* Not in dispose: unparenting there still removes it from the window. */
  g_object_unref (self->accel_group);
  G_OBJECT_CLASS (ns_dialog_parent_class)->finalize (object);
}

static void
ns_dialog_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  NsDialog *self = NS_DIALOG (object);
  if (id == PROP_BUSY)
    g_value_set_boolean (value, self->controller != NULL && ns_controller_is_busy (self->controller));
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
}

static void
ns_dialog_class_init (NsDialogClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->dispose = ns_dialog_dispose;
  object_class->finalize = ns_dialog_finalize;
  object_class->get_property = ns_dialog_get_property;
  props[PROP_BUSY] = g_param_spec_boolean ("busy", NULL, NULL, FALSE,
                                           G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  signals[SIGNAL_INSERT] =
    g_signal_new ("insert", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 4, G_TYPE_BYTES, G_TYPE_INT, G_TYPE_INT, G_TYPE_STRING);
  signals[SIGNAL_CLOSED] =
    g_signal_new ("closed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 0);
}
