/* file-util.h — private helpers shared by the model file readers and writers
 * in engine/files (not part of any contract). */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "nextstep.h"

G_BEGIN_DECLS

/* g_set_error in the NS_ERROR domain; always returns FALSE so a check can
 * `return ns_files_fail (...)`. */
gboolean     ns_files_fail (GError **error, NsErrorCode code, const char *format, ...)
                            G_GNUC_PRINTF (3, 4);

/* Maps `path` read-only (NS_ERROR_FILE naming the path when it cannot). */
GMappedFile *ns_files_map (const char *path, GError **error);

/* Little-endian loads from unaligned bytes. */
uint16_t     ns_files_le16 (const guint8 *p);
uint32_t     ns_files_le32 (const guint8 *p);
uint64_t     ns_files_le64 (const guint8 *p);
/* Little-endian stores appended to a byte array. */
void         ns_files_put_le16 (GByteArray *out, uint16_t v);
void         ns_files_put_le32 (GByteArray *out, uint32_t v);
void         ns_files_put_le64 (GByteArray *out, uint64_t v);

/* A file written under a temporary name beside `path` and renamed over
 * `path` only once complete, so a failed write never leaves a partial file.
 * Every failure is NS_ERROR_FILE naming `path`. */
typedef struct NsFilesOut NsFilesOut;
NsFilesOut  *ns_files_out_new (const char *path, GError **error);
gboolean     ns_files_out_write (NsFilesOut *out, const void *data, gsize size, GError **error);
/* Bytes written so far. */
guint64      ns_files_out_offset (const NsFilesOut *out);
/* Closes and renames (commit) or deletes (abort); both free `out`. */
gboolean     ns_files_out_commit (NsFilesOut *out, GError **error);
void         ns_files_out_abort (NsFilesOut *out);

G_END_DECLS
