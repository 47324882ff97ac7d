/* png.c — PNG pictures to and from 8-bit RGBA with libpng. Reading uses
 * libpng's low-level API with a memory source, so every byte comes
 * from the caller's buffer and a truncated file is an ordinary error. */
#include <png.h>
#include <setjmp.h>
#include <string.h>

#include "nextstep.h"
#include "files/png.h"

typedef struct {
  const guint8 *data;
  gsize size, pos;
} Source;

/* libpng's error text lands here; the reader's setjmp turns it into a GError. */
typedef struct {
  char text[256];
} ErrorText;

static void
source_read (png_structp png, png_bytep out, png_size_t count)
{
  Source *src = png_get_io_ptr (png);
  if (count > src->size - src->pos)
    png_error (png, "the file ends early (it is truncated)");
  memcpy (out, src->data + src->pos, count);
  src->pos += count;
}

static void
on_error (png_structp png, png_const_charp message)
{
  ErrorText *err = png_get_error_ptr (png);
  g_strlcpy (err->text, message, sizeof err->text);
  png_longjmp (png, 1);
}

/* Warnings (bad CRC in an ancillary chunk, odd sRGB profiles) do not stop
 * decoding and the picture is still usable: stay quiet. */
static void
on_warning (png_structp png, png_const_charp message)
{
  (void) png;
  (void) message;
}

static gboolean
check_size (png_uint_32 width, png_uint_32 height, const char *label, GError **error)
{
  if (width <= NS_PNG_MAX_SIDE && height <= NS_PNG_MAX_SIDE
      && (guint64) width * height <= NS_PNG_MAX_PIXELS)
    return TRUE;
  g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
               "%s: picture size %u×%u is not usable: at most %d pixels a side and %d "
               "megapixels in total can be read; resize the image first",
               label, width, height, NS_PNG_MAX_SIDE, NS_PNG_MAX_PIXELS / (1024 * 1024));
  return FALSE;
}

/* Asks libpng to deliver every colour type and depth as RGBA8. */
static void
request_rgba8 (png_structp png)
{
  png_set_expand (png);               /* palette → RGB, grey < 8 bits → 8, tRNS → alpha */
  png_set_strip_16 (png);
  png_set_gray_to_rgb (png);
  png_set_add_alpha (png, 0xff, PNG_FILLER_AFTER);   /* opaque where no alpha */
  png_set_interlace_handling (png);
}

guint8 *
ns_png_read_rgba (const guint8 *data, gsize size, const char *label,
                  int *width, int *height, GError **error)
{
  if (size < 8 || png_sig_cmp (data, 0, 8) != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s is not a PNG file (no PNG signature): save the picture as PNG", label);
      return NULL;
    }
  ErrorText err = { "" };
  Source src = { data, size, 0 };
  png_structp png = png_create_read_struct (PNG_LIBPNG_VER_STRING, &err, on_error, on_warning);
  png_infop info = png ? png_create_info_struct (png) : NULL;
  if (!info)
    {
      png_destroy_read_struct (&png, NULL, NULL);
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT, "%s: libpng could not start", label);
      return NULL;
    }
  /* Assigned after setjmp, so volatile to survive the longjmp. */
  guint8 *volatile rgba = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp (png_jmpbuf (png)))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s is not a readable PNG: %s; re-save or re-export the picture",
                   label, err.text);
      goto out;
    }
  png_set_read_fn (png, &src, source_read);
  png_read_info (png, info);
  png_uint_32 w = png_get_image_width (png, info), h = png_get_image_height (png, info);
  if (!check_size (w, h, label, error))
    goto out;
  request_rgba8 (png);
  png_read_update_info (png, info);
  if (png_get_rowbytes (png, info) != (gsize) w * 4)
    png_error (png, "libpng did not convert it to 8-bit RGBA");
  rgba = g_malloc ((gsize) w * h * 4);
  rows = g_new (png_bytep, h);
  for (png_uint_32 y = 0; y < h; y++)
    rows[y] = rgba + (gsize) y * w * 4;
  png_read_image (png, rows);
  *width = (int) w;
  *height = (int) h;
  g_free (rows);
  png_destroy_read_struct (&png, &info, NULL);
  return rgba;

out:
  g_free (rows);
  g_free (rgba);
  png_destroy_read_struct (&png, &info, NULL);
  return NULL;
}

guint8 *
ns_png_load_rgba (const char *path, int *width, int *height, GError **error)
{
  GError *local = NULL;
  GMappedFile *file = g_mapped_file_new (path, FALSE, &local);
  if (!file)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot open %s: %s; check the path",
                   path, local->message);
      g_error_free (local);
      return NULL;
    }
  guint8 *rgba = ns_png_read_rgba ((const guint8 *) g_mapped_file_get_contents (file),
                                   g_mapped_file_get_length (file), path, width, height,
                                   error);
  g_mapped_file_unref (file);
  return rgba;
}

GBytes *
ns_png_encode_rgba (const guint8 *rgba, int width, int height, GError **error)
{
  png_image img;
  memset (&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = width;
  img.height = height;
  img.format = PNG_FORMAT_RGBA;
  png_alloc_size_t size = 0;
  guint8 *data = NULL;
  /* The first call measures, the second writes. */
  if (!png_image_write_to_memory (&img, NULL, &size, 0, rgba, width * 4, NULL)
      || !png_image_write_to_memory (&img, data = g_malloc (size), &size, 0, rgba, width * 4,
                                     NULL))
    {
      g_free (data);
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT, "Cannot encode a %d×%d PNG: %s",
                   width, height, img.message);
      return NULL;
    }
  return g_bytes_new_take (data, size);
}

gboolean
ns_png_save_rgba (const char *path, const guint8 *rgba, int width, int height,
                  GError **error)
{
  g_autoptr (GBytes) png = ns_png_encode_rgba (rgba, width, height, error);
  g_autoptr (GError) local = NULL;
  if (png == NULL)
    return FALSE;
  if (!g_file_set_contents (path, g_bytes_get_data (png, NULL), g_bytes_get_size (png), &local))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "Cannot write %s: %s; check that the "
                   "folder exists and is writable", path, local->message);
      return FALSE;
    }
  return TRUE;
}
