/* interactive.c — see interactive.h. */
#include <stdio.h>
#include <string.h>

#include <libgimp/gimpui.h>

#include "arguments.h"
#include "canvas.h"
#include "interactive.h"
#include "ns-dialog.h"
#include "plugin-intl.h"
#include "results.h"

#define PLUG_IN_BINARY "nextstep"

enum { RESPONSE_NEW = 1, RESPONSE_VARY, RESPONSE_REGENERATE };

/* One open dialog and where its results go. */
typedef struct {
  NsMode        mode;
  GimpImage    *image;          /* NULL until generate's first Insert */
  GimpDrawable *drawable;       /* the edit source; the layer results go above */
  gboolean      limit_to_selection;
  NsEditRegion  region;         /* where the last edit source came from */
  GPtrArray    *layers;         /* the inserted layers, for the return values */
  GMainLoop    *loop;
  GimpLayer    *preview;        /* the live canvas preview of a run, or NULL */
} Session;

/* ---- "Regenerate / vary seed" for a layer NextStep made ---------------- */

static int
ask_about_recipe (const NsRecipe *recipe)
{
  GtkWidget *ask = gtk_message_dialog_new (NULL, GTK_DIALOG_MODAL,
                                           GTK_MESSAGE_QUESTION, GTK_BUTTONS_NONE,
                                           _("This layer was made by NextStep"));
  int response;

  g_autofree char *prompt = ns_recipe_dup_prompt (recipe);

  gtk_message_dialog_format_secondary_text (GTK_MESSAGE_DIALOG (ask),
                                            _("“%s”, seed %" G_GUINT64_FORMAT
                                              ". Start from its settings?"),
                                            prompt, ns_recipe_get_seed (recipe));
  gtk_dialog_add_buttons (GTK_DIALOG (ask),
                          _("_New"), RESPONSE_NEW,
                          _("_Vary Seed"), RESPONSE_VARY,
                          _("_Regenerate"), RESPONSE_REGENERATE, NULL);
  gtk_dialog_set_default_response (GTK_DIALOG (ask), RESPONSE_REGENERATE);
  gimp_window_set_transient (GTK_WINDOW (ask));
  response = gtk_dialog_run (GTK_DIALOG (ask));
  gtk_widget_destroy (ask);
  return response;
}

/* A damaged recipe is said so, with the reason, instead of being passed
 * over in silence: the user asked for its settings. */
static void
report_unreadable_recipe (const GError *error)
{
  GtkWidget *note = gtk_message_dialog_new (NULL, GTK_DIALOG_MODAL,
                                            GTK_MESSAGE_WARNING, GTK_BUTTONS_OK,
                                            _("This layer's NextStep recipe is unreadable"));

  gtk_window_set_title (GTK_WINDOW (note), _("NextStep: recipe unreadable"));
  gtk_message_dialog_format_secondary_text (GTK_MESSAGE_DIALOG (note),
                                            _("%s\n\nThe layer cannot be regenerated "
                                              "from it; the dialog starts from the usual "
                                              "settings."), error->message);
  gimp_window_set_transient (GTK_WINDOW (note));
  gtk_dialog_run (GTK_DIALOG (note));
  gtk_widget_destroy (note);
}

/* Sets @drawable's recipe in @settings when it has one of @mode's kind and
 * the user wants to make it again (same seed) or vary it (new seed); the
 * server and its key, which no recipe holds, stay. */
static void
offer_recipe (GimpDrawable *drawable, NsMode mode, NsSettings *settings)
{
  gsize size = 0;
  g_autofree char *json = drawable != NULL
                          ? ns_canvas_get_recipe (GIMP_ITEM (drawable), &size) : NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (NsRecipe) recipe = json != NULL
                                ? ns_recipe_from_json (json, (gssize) size, &error) : NULL;
  int response;

  if (error != NULL)
    report_unreadable_recipe (error);
  if (recipe == NULL || recipe->mode != mode)
    return;
  response = ask_about_recipe (recipe);
  if (response != RESPONSE_VARY && response != RESPONSE_REGENERATE)
    return;
  ns_recipe_apply (recipe, settings);
  g_object_set (settings, "reuse-seed", FALSE, "draft", FALSE, NULL);
  if (response == RESPONSE_VARY)
    g_object_set (settings, "seed", (gint64) -1, NULL);
}

/* ---- Dialog callbacks (main thread) ------------------------------------ */

static GBytes *
read_source (NsDialog *dialog, int *width, int *height, gpointer user_data,
             GError **error)
{
  Session *s = user_data;

  /* The dialog is modeless: the layer may be gone, the selection moved. */
  if (! gimp_item_is_valid (GIMP_ITEM (s->drawable)))
    {
      g_set_error_literal (error, GIMP_PLUG_IN_ERROR, 0,
                           _("The layer to edit was deleted or its image "
                             "closed. Close this dialog and start again."));
      return NULL;
    }
  if (! ns_canvas_edit_region (s->drawable, &s->region, error))
    return NULL;
  return ns_canvas_read_source (&s->region, width, height, error);
}

/* Where an Insert goes: the last edit source's region, or the top left of
 * the image for generate. */
static NsPlacement
placement (Session *s, int width, int height)
{
  gboolean drawable_ok = s->drawable != NULL
                         && gimp_item_is_valid (GIMP_ITEM (s->drawable));
  NsPlacement p = { s->image, drawable_ok ? s->drawable : NULL,
                    0, 0, width, height, FALSE };

  if (s->mode == NS_MODE_EDIT)
    {
      p.x = s->region.x;
      p.y = s->region.y;
      p.width = s->region.width;
      p.height = s->region.height;
      p.mask = s->limit_to_selection && s->region.has_selection;
    }
  if (p.image != NULL && ! gimp_image_is_valid (p.image))
    p.image = NULL;
  return p;
}

static void
on_insert (NsDialog *dialog, GBytes *rgba, int width, int height,
           const char *recipe_json, Session *s)
{
  GError *error = NULL;
  NsPlacement p = placement (s, width, height);
  const guint8 *pixels = g_bytes_get_data (rgba, NULL);
  g_autofree GimpLayer **layers = NULL;

  if (s->mode == NS_MODE_EDIT && p.image == NULL)
    {
      gimp_message (_("The image to edit was closed: the result cannot be "
                      "inserted."));
      return;
    }
  layers = ns_results_insert (&p, 1, &pixels, width, height, &recipe_json,
                              &error);
  if (layers == NULL)
    {
      gimp_message (error->message);
      g_error_free (error);
      return;
    }
  if (p.image != s->image)
    {
      s->image = p.image;
      gimp_display_new (s->image);
    }
  g_ptr_array_add (s->layers, layers[0]);
  gimp_displays_flush ();
}

/* ---- Live preview on the canvas ----------------------------------------- */

/* A temporary layer over the source (edit) or the image (generate) that
 * shows the tokens as they arrive. Undo is frozen while it exists, so it
 * never lands in the history; it goes when the run ends or is stopped, and
 * only Insert adds a real layer. */
static void
on_preview (NsController *controller, int index, GBytes *rgba, int width,
            int height, int tokens_done, gboolean vae_decoded, Session *s)
{
  if (index != 0 || s->image == NULL || ! gimp_image_is_valid (s->image))
    return;
  if (s->preview == NULL)
    {
      NsPlacement p = placement (s, width, height);
      GError *error = NULL;

      gimp_image_undo_freeze (s->image);
      s->preview = ns_canvas_add_layer (s->image, p.above, _("NextStep preview"),
                                        width, height, &error);
      if (s->preview == NULL)
        {
          /* The dialog's own preview still works: say why, once, and go on. */
          g_printerr ("nextstep: no canvas preview: %s\n", error->message);
          g_error_free (error);
          gimp_image_undo_thaw (s->image);
          return;
        }
      gimp_layer_set_offsets (s->preview, p.x, p.y);
    }
  ns_canvas_write (s->preview, g_bytes_get_data (rgba, NULL), width, height);
  gimp_displays_flush ();
}

static void
remove_preview (Session *s)
{
  if (s->preview == NULL)
    return;
  if (gimp_item_is_valid (GIMP_ITEM (s->preview)))
    gimp_image_remove_layer (s->image, s->preview);
  if (gimp_image_is_valid (s->image))
    gimp_image_undo_thaw (s->image);
  s->preview = NULL;
  gimp_displays_flush ();
}

static void
on_busy_changed (NsDialog *dialog, GParamSpec *pspec, Session *s)
{
  if (! ns_dialog_is_busy (dialog))
    remove_preview (s);
}

/* Escape and the window's close button come as GTK_RESPONSE_DELETE_EVENT;
 * they mean Close, which stops a run first. Closing waits for the worker;
 * "closed" then ends the loop. */
static void
on_response (GtkDialog *window, int response, NsDialog *dialog)
{
  if (response == GTK_RESPONSE_DELETE_EVENT)
    ns_dialog_close (dialog);
}

/* ---- Size and place of the window, kept from one opening to the next ------- */

/* GIMP keeps the geometry of its own dialogs in sessionrc; a plug-in's
 * dialog has only the global parasites, which GIMP saves across sessions. */
static char *
geometry_parasite_name (NsMode mode)
{
  return g_strdup_printf ("nextstep-dialog-geometry-%s",
                          mode == NS_MODE_EDIT ? "edit" : "generate");
}

static void
restore_geometry (GtkWindow *window, NsMode mode)
{
  g_autofree char *name = geometry_parasite_name (mode);
  GimpParasite *parasite = gimp_get_parasite (name);
  guint32 size = 0;
  const char *data = parasite != NULL ? gimp_parasite_get_data (parasite, &size) : NULL;
  g_autofree char *text = data != NULL ? g_strndup (data, size) : NULL;
  int x, y, width, height;

  if (text != NULL && sscanf (text, "%d %d %d %d", &x, &y, &width, &height) == 4
      && width > 0 && height > 0)
    {
      gtk_window_move (window, x, y);
      gtk_window_set_default_size (window, width, height);
    }
  g_clear_pointer (&parasite, gimp_parasite_free);
}

static void
save_geometry (GtkWindow *window, NsMode mode)
{
  g_autofree char *name = geometry_parasite_name (mode);
  int x, y, width, height;

  gtk_window_get_position (window, &x, &y);
  gtk_window_get_size (window, &width, &height);
  g_autofree char *text = g_strdup_printf ("%d %d %d %d", x, y, width, height);
  GimpParasite *parasite = gimp_parasite_new (name, GIMP_PARASITE_PERSISTENT,
                                              strlen (text), text);
  gimp_attach_parasite (parasite);
  gimp_parasite_free (parasite);
}

/* ---- The run -------------------------------------------------------------- */

/* A GimpDialog, so the window behaves like GIMP's own: Escape closes, Help
 * opens the procedure's help page, it stays over the image window. The
 * NsDialog brings its own buttons; the action area holds only Help. */
static GtkWidget *
open_window (Session *s, GimpProcedure *procedure, NsSettings *settings,
             GtkWidget **dialog)
{
  GtkWidget *window = gimp_dialog_new (s->mode == NS_MODE_EDIT ? _("NextStep – Edit")
                                                               : _("NextStep – Generate"),
                                       PLUG_IN_BINARY, NULL, 0,
                                       gimp_standard_help_func,
                                       gimp_procedure_get_name (procedure),
                                       NULL);

  *dialog = ns_dialog_new (s->mode, settings);
  gtk_box_pack_start (GTK_BOX (gtk_dialog_get_content_area (GTK_DIALOG (window))),
                      *dialog, TRUE, TRUE, 0);
  if (s->mode == NS_MODE_EDIT)
    ns_dialog_set_source_func (NS_DIALOG (*dialog), read_source, s, NULL);
  g_signal_connect (*dialog, "insert", G_CALLBACK (on_insert), s);
  g_signal_connect (*dialog, "notify::busy", G_CALLBACK (on_busy_changed), s);
  g_signal_connect (ns_dialog_get_controller (NS_DIALOG (*dialog)), "preview",
                    G_CALLBACK (on_preview), s);
  g_signal_connect_swapped (*dialog, "closed", G_CALLBACK (g_main_loop_quit),
                            s->loop);
  g_signal_connect (window, "response", G_CALLBACK (on_response), *dialog);
  gimp_window_set_transient (GTK_WINDOW (window));
  restore_geometry (GTK_WINDOW (window), s->mode);
  gtk_widget_show_all (window);
  return window;
}

GimpValueArray *
ns_interactive_run (GimpProcedure *procedure, NsMode mode, GimpImage *image,
                    GimpDrawable *drawable, GimpProcedureConfig *config)
{
  Session s = { mode, image, drawable, FALSE, { 0 },
                g_ptr_array_new (), g_main_loop_new (NULL, FALSE), NULL };
  g_autoptr (NsSettings) settings = ns_settings_new ();
  g_autoptr (NsSettings) chosen = NULL;
  GtkWidget *dialog, *window;
  GimpValueArray *values;

  gimp_ui_init (PLUG_IN_BINARY);
  /* The last values, by the arguments' names (as GimpProcedureDialog does). */
  ns_settings_assign (G_OBJECT (settings), G_OBJECT (config));
  g_object_get (settings, "limit-to-selection", &s.limit_to_selection, NULL);
  offer_recipe (drawable, mode, settings);

  window = open_window (&s, procedure, settings, &dialog);
  g_main_loop_run (s.loop);
  remove_preview (&s);

  chosen = ns_dialog_get_settings (NS_DIALOG (dialog));
  ns_settings_assign (G_OBJECT (config), G_OBJECT (chosen));
  save_geometry (GTK_WINDOW (window), mode);
  gtk_widget_destroy (window);

  values = gimp_procedure_new_return_values (procedure,
                                             s.layers->len > 0
                                             ? GIMP_PDB_SUCCESS : GIMP_PDB_CANCEL,
                                             NULL);
  if (s.layers->len > 0)
    {
      g_ptr_array_add (s.layers, NULL);
      GIMP_VALUES_SET_IMAGE (values, 1, s.image);
      GIMP_VALUES_SET_CORE_OBJECT_ARRAY (values, 2, s.layers->pdata);
    }
  g_ptr_array_unref (s.layers);
  g_main_loop_unref (s.loop);
  return values;
}
