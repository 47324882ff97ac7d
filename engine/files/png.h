/* png.h — private to the engine: PNG pictures as 8-bit RGBA, read from
 * memory (so callers and fuzzers need no file) or from a file, and written. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Largest picture ns_png_read_rgba accepts: checked against the header
 * before any pixel memory is allocated, so a damaged or hostile header
 * cannot make the reader ask for gigabytes. Far above what the model uses. */
#define NS_PNG_MAX_SIDE 16384
#define NS_PNG_MAX_PIXELS (64 * 1024 * 1024)

/* Decodes the PNG in DATA (SIZE bytes) into a newly allocated buffer of
 * width × height × 4 bytes (RGBA, 8 bits each, rows top to bottom): palette,
 * grey, 16-bit, tRNS transparency and interlaced files are all converted.
 * LABEL names the data in messages (usually its file name). Returns NULL
 * with NS_ERROR_FORMAT for a damaged or oversized picture. */
guint8 *ns_png_read_rgba (const guint8 *data, gsize size, const char *label,
                          int *width, int *height, GError **error);

/* ns_png_read_rgba on the contents of the file PATH (NS_ERROR_FILE when it
 * cannot be opened). */
guint8 *ns_png_load_rgba (const char *path, int *width, int *height, GError **error);

/* WIDTH × HEIGHT RGBA pixels as a PNG file's bytes (NS_ERROR_FORMAT). */
GBytes *ns_png_encode_rgba (const guint8 *rgba, int width, int height, GError **error);

/* Writes WIDTH × HEIGHT RGBA pixels to PATH as a PNG (NS_ERROR_FILE). */
gboolean ns_png_save_rgba (const char *path, const guint8 *rgba, int width, int height,
                           GError **error);

G_END_DECLS
