/* ns-history.h — this session's results as a strip of thumbnails.
 *
 * Each item keeps the full RGBA8 image and its recipe JSON. Clicking a
 * thumbnail selects it and emits "item-selected" (int index); the dialog
 * then previews it and Insert inserts it. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define NS_TYPE_HISTORY (ns_history_get_type ())
G_DECLARE_FINAL_TYPE (NsHistory, ns_history, NS, HISTORY, GtkScrolledWindow)

GtkWidget *ns_history_new (void);
/* Adds an item (rgba: width×height, stride width*4), selects it and returns its index. */
guint      ns_history_add (NsHistory *self, GBytes *rgba, int width, int height,
                           const char *recipe_json, const char *tooltip);
guint      ns_history_get_n_items (NsHistory *self);
/* The selected index, or -1 when the history is empty. */
int        ns_history_get_selected (NsHistory *self);
void       ns_history_select (NsHistory *self, guint index);
/* Borrowed values of item `index`; FALSE when there is no such item. */
gboolean   ns_history_get_item (NsHistory *self, guint index, GBytes **rgba,
                                int *width, int *height, const char **recipe_json);

G_END_DECLS
