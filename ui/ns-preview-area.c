/* ns-preview-area.c — see ns-preview-area.h. */
#include <math.h>

#include "ns-preview-area.h"

struct _NsPreviewArea {
  GtkDrawingArea parent_instance;
  cairo_surface_t *surface;     /* NULL: nothing to show */
  guint n_partial;
  gboolean final;
};

G_DEFINE_FINAL_TYPE (NsPreviewArea, ns_preview_area, GTK_TYPE_DRAWING_AREA)

/* Smallest size; the area grows with the dialog. */
#define MIN_SIZE 256

cairo_surface_t *
ns_surface_from_rgba (const guint8 *rgba, int width, int height, int stride)
{
  cairo_surface_t *surface = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width, height);
  guint8 *data = cairo_image_surface_get_data (surface);
  int out_stride = cairo_image_surface_get_stride (surface);
  cairo_surface_flush (surface);
  for (int y = 0; y < height; y++)
    {
      const guint8 *in = rgba + (gsize) y * stride;
      guint32 *out = (guint32 *) (data + (gsize) y * out_stride);
      for (int x = 0; x < width; x++, in += 4)
        {
          guint a = in[3], r = in[0], g = in[1], b = in[2];
          if (a != 255)   /* model output is opaque: skip the divisions then */
            r = (r * a + 127) / 255, g = (g * a + 127) / 255, b = (b * a + 127) / 255;
          out[x] = (a << 24) | (r << 16) | (g << 8) | b;
        }
    }
  cairo_surface_mark_dirty (surface);
  return surface;
}

static void
draw_checkerboard (cairo_t *cr, double width, double height)
{
  const double square = 8;
  cairo_set_source_rgb (cr, 0.6, 0.6, 0.6);
  cairo_paint (cr);
  cairo_set_source_rgb (cr, 0.4, 0.4, 0.4);
  for (double y = 0; y < height; y += square)
    for (double x = ((int) (y / square) % 2) * square; x < width; x += 2 * square)
      cairo_rectangle (cr, x, y, square, square);
  cairo_fill (cr);
}

static gboolean
ns_preview_area_draw (GtkWidget *widget, cairo_t *cr)
{
  NsPreviewArea *self = NS_PREVIEW_AREA (widget);
  double area_w = gtk_widget_get_allocated_width (widget);
  double area_h = gtk_widget_get_allocated_height (widget);
  GtkStyleContext *style = gtk_widget_get_style_context (widget);
  gtk_render_background (style, cr, 0, 0, area_w, area_h);
  if (self->surface == NULL)
    return FALSE;

  double w = cairo_image_surface_get_width (self->surface);
  double h = cairo_image_surface_get_height (self->surface);
  double scale = MIN (area_w / w, area_h / h);
  cairo_translate (cr, floor ((area_w - w * scale) / 2), floor ((area_h - h * scale) / 2));
  cairo_scale (cr, scale, scale);
  cairo_rectangle (cr, 0, 0, w, h);
  cairo_clip (cr);
  draw_checkerboard (cr, w, h);
  cairo_set_source_surface (cr, self->surface, 0, 0);
  /* Crisp pixels when enlarging a small image, smooth when shrinking. */
  cairo_pattern_set_filter (cairo_get_source (cr), scale > 1 ? CAIRO_FILTER_NEAREST
                                                             : CAIRO_FILTER_GOOD);
  cairo_paint (cr);
  return FALSE;
}

GtkWidget *
ns_preview_area_new (void)
{
  return g_object_new (NS_TYPE_PREVIEW_AREA, NULL);
}

void
ns_preview_area_set_rgba (NsPreviewArea *self, const guint8 *rgba, int width, int height,
                          int stride, gboolean partial)
{
  g_return_if_fail (NS_IS_PREVIEW_AREA (self) && rgba != NULL && width > 0 && height > 0);
  g_clear_pointer (&self->surface, cairo_surface_destroy);
  self->surface = ns_surface_from_rgba (rgba, width, height, stride);
  self->final = !partial;
  if (partial)
    self->n_partial++;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
ns_preview_area_clear (NsPreviewArea *self)
{
  g_return_if_fail (NS_IS_PREVIEW_AREA (self));
  g_clear_pointer (&self->surface, cairo_surface_destroy);
  self->n_partial = 0;
  self->final = FALSE;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

guint
ns_preview_area_get_n_partial (NsPreviewArea *self)
{
  g_return_val_if_fail (NS_IS_PREVIEW_AREA (self), 0);
  return self->n_partial;
}

gboolean
ns_preview_area_is_final (NsPreviewArea *self)
{
  g_return_val_if_fail (NS_IS_PREVIEW_AREA (self), FALSE);
  return self->final;
}

static void
ns_preview_area_finalize (GObject *object)
{
  NsPreviewArea *self = NS_PREVIEW_AREA (object);
  g_clear_pointer (&self->surface, cairo_surface_destroy);
  G_OBJECT_CLASS (ns_preview_area_parent_class)->finalize (object);
}

static void
ns_preview_area_init (NsPreviewArea *self)
{
  gtk_widget_set_size_request (GTK_WIDGET (self), MIN_SIZE, MIN_SIZE);
  gtk_widget_set_hexpand (GTK_WIDGET (self), TRUE);
  gtk_widget_set_vexpand (GTK_WIDGET (self), TRUE);
}

static void
ns_preview_area_class_init (NsPreviewAreaClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = ns_preview_area_finalize;
  GTK_WIDGET_CLASS (klass)->draw = ns_preview_area_draw;
}
