/* ns-preview-area.h — shows the picture being generated, scaled to fit.
 *
 * Takes the engine's RGBA8 previews (full size, the tokens decoded so far
 * filled in) and the final image; it counts partial updates so that callers
 * and tests can tell a progressive fill from a single final paint. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define NS_TYPE_PREVIEW_AREA (ns_preview_area_get_type ())
G_DECLARE_FINAL_TYPE (NsPreviewArea, ns_preview_area, NS, PREVIEW_AREA, GtkDrawingArea)

GtkWidget *ns_preview_area_new (void);
/* Shows `rgba` (width×height, rows of `stride` bytes, straight alpha).
 * `partial`: TRUE for an in-progress preview, FALSE for a finished image. */
void ns_preview_area_set_rgba (NsPreviewArea *self, const guint8 *rgba, int width, int height,
                               int stride, gboolean partial);
void ns_preview_area_clear (NsPreviewArea *self);
/* Partial updates shown since the last clear, and whether the picture shown
 * now is a finished one. */
guint    ns_preview_area_get_n_partial (NsPreviewArea *self);
gboolean ns_preview_area_is_final (NsPreviewArea *self);

/* Straight-alpha RGBA8 → a new cairo ARGB32 (premultiplied) surface. */
cairo_surface_t *ns_surface_from_rgba (const guint8 *rgba, int width, int height, int stride);

G_END_DECLS
