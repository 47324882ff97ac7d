/* zip.h — private to engine/files: the directory of a zip image whose
 * members are stored uncompressed (as torch.save writes them), so member
 * data can be used in place, and a writer for such archives. */
#pragma once

#include <glib.h>

#include "files/file-util.h"

G_BEGIN_DECLS

typedef struct {
  char *name;
  guint64 offset;         /* of the member's data in the image */
  guint64 size;
} NsZipMember;

/* Walks the end-of-central-directory record (zip64 too), the central
 * directory and each local header, checking every offset and size against
 * the image. Refuses compressed or encrypted members. Returns name →
 * NsZipMember* (owned by the table). */
GHashTable *ns_zip_read (const guint8 *data, gsize size, const char *label, GError **error);

typedef struct NsZipWriter NsZipWriter;

/* Members go to `out`, which the caller still commits or aborts. */
NsZipWriter *ns_zip_writer_new (NsFilesOut *out);
void         ns_zip_writer_free (NsZipWriter *z);
/* Adds a stored member whose data starts 64-byte aligned in the file. */
gboolean     ns_zip_writer_add (NsZipWriter *z, const char *name, const void *data, gsize size,
                                GError **error);
/* Writes the central directory and end record. */
gboolean     ns_zip_writer_finish (NsZipWriter *z, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsZipWriter, ns_zip_writer_free)

G_END_DECLS
