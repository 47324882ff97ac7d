/* ns-history.c — see ns-history.h. */
#include "ns-history.h"

#define THUMB_SIZE 64

typedef struct {
  GBytes *rgba;
  int width, height;
  char *recipe_json;
  GtkWidget *button;
} Item;

struct _NsHistory {
  GtkScrolledWindow parent_instance;
  GtkWidget *box;
  GPtrArray *items;             /* of Item */
  int selected;
  gboolean selecting;           /* set while we toggle buttons ourselves */
};

enum { SIGNAL_ITEM_SELECTED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (NsHistory, ns_history, GTK_TYPE_SCROLLED_WINDOW)

static void
item_free (Item *item)
{
  g_bytes_unref (item->rgba);
  g_free (item->recipe_json);
  g_free (item);
}

static GtkWidget *
thumbnail_new (GBytes *rgba, int width, int height)
{
  g_autoptr (GdkPixbuf) full = gdk_pixbuf_new_from_bytes (rgba, GDK_COLORSPACE_RGB, TRUE, 8,
                                                          width, height, width * 4);
  double scale = (double) THUMB_SIZE / MAX (width, height);
  int w = MAX (1, (int) (width * scale)), h = MAX (1, (int) (height * scale));
  g_autoptr (GdkPixbuf) thumb = gdk_pixbuf_scale_simple (full, w, h, GDK_INTERP_BILINEAR);
  return gtk_image_new_from_pixbuf (thumb);
}

static void
on_button_toggled (GtkToggleButton *button, NsHistory *self)
{
  if (self->selecting || !gtk_toggle_button_get_active (button))
    return;
  for (guint i = 0; i < self->items->len; i++)
    if (((Item *) g_ptr_array_index (self->items, i))->button == GTK_WIDGET (button))
      {
        self->selected = (int) i;
        g_signal_emit (self, signals[SIGNAL_ITEM_SELECTED], 0, (int) i);
        return;
      }
}

GtkWidget *
ns_history_new (void)
{
  return g_object_new (NS_TYPE_HISTORY, NULL);
}

guint
ns_history_add (NsHistory *self, GBytes *rgba, int width, int height,
                const char *recipe_json, const char *tooltip)
{
  g_return_val_if_fail (NS_IS_HISTORY (self), 0);
  g_return_val_if_fail (g_bytes_get_size (rgba) == (gsize) width * height * 4, 0);
  Item *item = g_new0 (Item, 1);
  item->rgba = g_bytes_ref (rgba);
  item->width = width;
  item->height = height;
  item->recipe_json = g_strdup (recipe_json);

  /* Radio buttons drawn as toggles: exactly one is selected, as it looks. */
  GSList *group = NULL;
  if (self->items->len > 0)
    group = gtk_radio_button_get_group (
      GTK_RADIO_BUTTON (((Item *) g_ptr_array_index (self->items, 0))->button));
  item->button = gtk_radio_button_new (group);
  gtk_toggle_button_set_mode (GTK_TOGGLE_BUTTON (item->button), FALSE);
  gtk_container_add (GTK_CONTAINER (item->button), thumbnail_new (rgba, width, height));
  gtk_widget_set_tooltip_text (item->button, tooltip);
  g_signal_connect (item->button, "toggled", G_CALLBACK (on_button_toggled), self);
  gtk_box_pack_start (GTK_BOX (self->box), item->button, FALSE, FALSE, 0);
  gtk_widget_show_all (item->button);

  g_ptr_array_add (self->items, item);
  ns_history_select (self, self->items->len - 1);
  return self->items->len - 1;
}

guint
ns_history_get_n_items (NsHistory *self)
{
  g_return_val_if_fail (NS_IS_HISTORY (self), 0);
  return self->items->len;
}

int
ns_history_get_selected (NsHistory *self)
{
  g_return_val_if_fail (NS_IS_HISTORY (self), -1);
  return self->selected;
}

void
ns_history_select (NsHistory *self, guint index)
{
  g_return_if_fail (NS_IS_HISTORY (self) && index < self->items->len);
  Item *item = g_ptr_array_index (self->items, index);
  self->selecting = TRUE;
  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (item->button), TRUE);
  self->selecting = FALSE;
  self->selected = (int) index;
  g_signal_emit (self, signals[SIGNAL_ITEM_SELECTED], 0, (int) index);
}

gboolean
ns_history_get_item (NsHistory *self, guint index, GBytes **rgba, int *width, int *height,
                     const char **recipe_json)
{
  g_return_val_if_fail (NS_IS_HISTORY (self), FALSE);
  if (index >= self->items->len)
    return FALSE;
  Item *item = g_ptr_array_index (self->items, index);
  *rgba = item->rgba;
  *width = item->width;
  *height = item->height;
  *recipe_json = item->recipe_json;
  return TRUE;
}

static void
ns_history_finalize (GObject *object)
{
  NsHistory *self = NS_HISTORY (object);
  g_ptr_array_unref (self->items);
  G_OBJECT_CLASS (ns_history_parent_class)->finalize (object);
}

static void
ns_history_init (NsHistory *self)
{
  self->items = g_ptr_array_new_with_free_func ((GDestroyNotify) item_free);
  self->selected = -1;
  self->box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 4);
  gtk_container_add (GTK_CONTAINER (self), self->box);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (self), GTK_POLICY_AUTOMATIC,
                                  GTK_POLICY_NEVER);
  gtk_scrolled_window_set_min_content_height (GTK_SCROLLED_WINDOW (self), THUMB_SIZE + 16);
  gtk_widget_show (self->box);
}

static void
ns_history_class_init (NsHistoryClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = ns_history_finalize;
  signals[SIGNAL_ITEM_SELECTED] =
    g_signal_new ("item-selected", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT);
}
