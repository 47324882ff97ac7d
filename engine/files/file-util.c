/* files/file-util.c — see file-util.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "files/file-util.h"

gboolean
ns_files_fail (GError **error, NsErrorCode code, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  char *message = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error_literal (error, NS_ERROR, code, message);
  g_free (message);
  return FALSE;
}

GMappedFile *
ns_files_map (const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  GMappedFile *map = g_mapped_file_new (path, FALSE, &local);
  if (map == NULL)
    ns_files_fail (error, NS_ERROR_FILE, "cannot open %s: %s", path, local->message);
  return map;
}

uint16_t
ns_files_le16 (const guint8 *p)
{
  return (uint16_t) (p[0] | (p[1] << 8));
}

uint32_t
ns_files_le32 (const guint8 *p)
{
  return (uint32_t) ns_files_le16 (p) | ((uint32_t) ns_files_le16 (p + 2) << 16);
}

uint64_t
ns_files_le64 (const guint8 *p)
{
  return (uint64_t) ns_files_le32 (p) | ((uint64_t) ns_files_le32 (p + 4) << 32);
}

static void
put_le (GByteArray *out, uint64_t v, int n_bytes)
{
  guint8 b[8];
  for (int i = 0; i < n_bytes; i++)
    b[i] = (guint8) (v >> (8 * i));
  g_byte_array_append (out, b, (guint) n_bytes);
}

void
ns_files_put_le16 (GByteArray *out, uint16_t v)
{
  put_le (out, v, 2);
}

void
ns_files_put_le32 (GByteArray *out, uint32_t v)
{
  put_le (out, v, 4);
}

void
ns_files_put_le64 (GByteArray *out, uint64_t v)
{
  put_le (out, v, 8);
}

struct NsFilesOut {
  FILE *f;
  char *tmp;
  char *path;
  guint64 offset;
};

NsFilesOut *
ns_files_out_new (const char *path, GError **error)
{
  char *tmp = g_strdup_printf ("%s.XXXXXX", path);
  int fd = g_mkstemp_full (tmp, O_WRONLY, 0644);
  FILE *f = fd >= 0 ? fdopen (fd, "wb") : NULL;
  if (f == NULL)
    {
      int err = errno;
      if (fd >= 0)
        {
          close (fd);
          g_unlink (tmp);
        }
      g_free (tmp);
      ns_files_fail (error, NS_ERROR_FILE, "cannot create %s: %s", path, g_strerror (err));
      return NULL;
    }
  NsFilesOut *out = g_new0 (NsFilesOut, 1);
  out->f = f;
  out->tmp = tmp;
  out->path = g_strdup (path);
  return out;
}

gboolean
ns_files_out_write (NsFilesOut *out, const void *data, gsize size, GError **error)
{
  if (size > 0 && fwrite (data, 1, size, out->f) != size)
    return ns_files_fail (error, NS_ERROR_FILE, "cannot write %s: %s", out->path, g_strerror (errno));
  out->offset += size;
  return TRUE;
}

guint64
ns_files_out_offset (const NsFilesOut *out)
{
  return out->offset;
}

static void
files_out_free (NsFilesOut *out)
{
  g_free (out->tmp);
  g_free (out->path);
  g_free (out);
}

gboolean
ns_files_out_commit (NsFilesOut *out, GError **error)
{
  gboolean ok = fclose (out->f) == 0;
  if (ok && g_rename (out->tmp, out->path) != 0)
    ok = FALSE;
  if (!ok)
    {
      ns_files_fail (error, NS_ERROR_FILE, "cannot write %s: %s", out->path, g_strerror (errno));
      g_unlink (out->tmp);
    }
  files_out_free (out);
  return ok;
}

void
ns_files_out_abort (NsFilesOut *out)
{
  fclose (out->f);
  g_unlink (out->tmp);
  files_out_free (out);
}
