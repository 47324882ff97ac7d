/* fuzz-png.c — PNG decoding to RGBA from memory (the --image of `nextstep
 * edit` and the plug-in's input): every colour type, damaged chunks,
 * truncation and oversized headers must end in a GError, never a crash. */
#include "fuzz.h"
#include "nextstep.h"
#include "files/png.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  int width = 0, height = 0;
  guint8 *rgba = ns_png_read_rgba (data, size, "fuzz.png", &width, &height, &error);
  /* Touch the last pixel so ASan sees a buffer shorter than width × height. */
  if (rgba && rgba[(gsize) width * height * 4 - 1] == 0x5a)
    width++;
  g_assert ((rgba != NULL) == (error == NULL));
  g_free (rgba);
  g_clear_error (&error);
  return 0;
}
