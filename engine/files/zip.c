/* files/zip.c — see zip.h. Record layouts follow PKWARE's APPNOTE.TXT
 * (sections 4.3.7 local header, 4.3.12 central header, 4.3.14–16 zip64 and
 * classic end records, 4.5.3 zip64 extra field). */
#include <string.h>

#include "files/zip.h"

#define LOCAL_SIG     0x04034b50u
#define CENTRAL_SIG   0x02014b50u
#define EOCD_SIG      0x06054b50u
#define EOCD64_SIG    0x06064b50u
#define LOCATOR64_SIG 0x07064b50u
#define LOCAL_SIZE    30u
#define CENTRAL_SIZE  46u
#define EOCD_SIZE     22u
#define EOCD64_SIZE   56u
#define LOCATOR_SIZE  20u
#define ZIP64_EXTRA   0x0001u
#define ALIGN         64u       /* torch aligns member data to 64 bytes */
#define PAD_EXTRA_ID  0x4246u   /* "FB", the padding field torch uses */

typedef struct {
  const guint8 *data;
  gsize size;
  const char *label;
} Image;

/* [offset, offset + len) lies inside [0, limit). */
static gboolean
span_ok (guint64 offset, guint64 len, guint64 limit)
{
  return offset <= limit && len <= limit - offset;
}

static gboolean
damaged (const Image *im, GError **error, const char *what)
{
  return ns_files_fail (error, NS_ERROR_FORMAT, "%s: %s; the file is truncated or damaged",
                        im->label, what);
}

typedef struct {
  guint64 entries, cd_offset, cd_size;
  guint64 end;            /* where the end records begin: the directory must stop here */
} Directory;

static gboolean
find_eocd (const Image *im, guint64 *eocd, GError **error)
{
  if (im->size < EOCD_SIZE)
    return damaged (im, error, "too short to be a zip archive");
  /* the record is last, followed only by its comment (≤ 65535 bytes) */
  guint64 lowest = im->size - EOCD_SIZE > 0xffff ? im->size - EOCD_SIZE - 0xffff : 0;
  for (guint64 at = im->size - EOCD_SIZE + 1; at-- > lowest;)
    if (ns_files_le32 (im->data + at) == EOCD_SIG
        && at + EOCD_SIZE + ns_files_le16 (im->data + at + 20) == im->size)
      {
        *eocd = at;
        return TRUE;
      }
  return damaged (im, error, "no zip end-of-central-directory record (not a torch.save zip archive?)");
}

/* torch writes the zip64 end record and its locator before the classic one. */
static gboolean
read_zip64_end (const Image *im, guint64 eocd, Directory *dir, GError **error)
{
  const guint8 *loc = im->data + eocd - LOCATOR_SIZE;
  guint64 at = ns_files_le64 (loc + 8);
  if (!span_ok (at, EOCD64_SIZE, eocd - LOCATOR_SIZE) || ns_files_le32 (im->data + at) != EOCD64_SIG)
    return damaged (im, error, "the zip64 end record is missing or out of place");
  const guint8 *rec = im->data + at;
  if (ns_files_le32 (rec + 16) != 0 || ns_files_le32 (rec + 20) != 0)
    return ns_files_fail (error, NS_ERROR_UNSUPPORTED, "%s: multi-part zip archives are not supported",
                          im->label);
  dir->entries = ns_files_le64 (rec + 32);
  dir->cd_size = ns_files_le64 (rec + 40);
  dir->cd_offset = ns_files_le64 (rec + 48);
  dir->end = at;
  return TRUE;
}

static gboolean
read_end (const Image *im, Directory *dir, GError **error)
{
  guint64 eocd = 0;
  if (!find_eocd (im, &eocd, error))
    return FALSE;
  if (eocd >= LOCATOR_SIZE && ns_files_le32 (im->data + eocd - LOCATOR_SIZE) == LOCATOR64_SIG)
    {
      if (!read_zip64_end (im, eocd, dir, error))
        return FALSE;
    }
  else
    {
      const guint8 *rec = im->data + eocd;
      if (ns_files_le16 (rec + 4) != 0 || ns_files_le16 (rec + 6) != 0)
        return ns_files_fail (error, NS_ERROR_UNSUPPORTED, "%s: multi-part zip archives are not supported",
                              im->label);
      dir->entries = ns_files_le16 (rec + 10);
      dir->cd_size = ns_files_le32 (rec + 12);
      dir->cd_offset = ns_files_le32 (rec + 16);
      dir->end = eocd;
    }
  if (!span_ok (dir->cd_offset, dir->cd_size, dir->end) || dir->entries > dir->cd_size / CENTRAL_SIZE)
    return damaged (im, error, "the zip central directory lies outside the file");
  return TRUE;
}

/* Sizes and offset saturated at 0xffffffff live in the zip64 extra field,
 * in this order, only for the saturated ones. */
static gboolean
read_zip64_extra (const guint8 *extra, guint len, guint64 *usize, guint64 *csize, guint64 *offset)
{
  guint64 *fields[] = { usize, csize, offset };
  for (guint at = 0; at + 4 <= len;)
    {
      guint id = ns_files_le16 (extra + at), n = ns_files_le16 (extra + at + 2);
      if (n > len - at - 4)
        return FALSE;
      if (id == ZIP64_EXTRA)
        {
          guint used = 0;
          for (guint f = 0; f < G_N_ELEMENTS (fields); f++)
            if (*fields[f] == 0xffffffffu)
              {
                if (used + 8 > n)
                  return FALSE;
                *fields[f] = ns_files_le64 (extra + at + 4 + used);
                used += 8;
              }
        }
      at += 4 + n;
    }
  return TRUE;
}

static void
member_free (gpointer p)
{
  NsZipMember *m = p;
  g_free (m->name);
  g_free (m);
}

/* The local header repeats the name; its extra field (torch's alignment
 * padding) decides where the data starts. */
static gboolean
locate_data (const Image *im, const Directory *dir, NsZipMember *m, guint64 local, GError **error)
{
  size_t name_len = strlen (m->name);
  if (!span_ok (local, LOCAL_SIZE, dir->cd_offset) || ns_files_le32 (im->data + local) != LOCAL_SIG)
    return ns_files_fail (error, NS_ERROR_FORMAT, "%s: zip member '%s' has no local header where the directory says; the file is damaged",
                          im->label, m->name);
  guint64 start = local + LOCAL_SIZE + ns_files_le16 (im->data + local + 26)
                  + ns_files_le16 (im->data + local + 28);
  if (ns_files_le16 (im->data + local + 26) != name_len
      || !span_ok (local + LOCAL_SIZE, name_len, dir->cd_offset)
      || memcmp (im->data + local + LOCAL_SIZE, m->name, name_len) != 0
      || !span_ok (start, m->size, dir->cd_offset))
    return ns_files_fail (error, NS_ERROR_FORMAT, "%s: zip member '%s' (%" G_GUINT64_FORMAT " bytes) "
                          "runs past the end of the data or its local header does not match; "
                          "the file is truncated or damaged", im->label, m->name, m->size);
  m->offset = start;
  return TRUE;
}

/* Reads the central header at *at and advances past it. */
static NsZipMember *
read_member (const Image *im, const Directory *dir, guint64 *at, GError **error)
{
  guint64 cd_end = dir->cd_offset + dir->cd_size;
  const guint8 *h = im->data + *at;
  if (!span_ok (*at, CENTRAL_SIZE, cd_end) || ns_files_le32 (h) != CENTRAL_SIG)
    {
      damaged (im, error, "a zip central directory entry is missing");
      return NULL;
    }
  guint name_len = ns_files_le16 (h + 28), extra_len = ns_files_le16 (h + 30);
  guint64 entry_len = CENTRAL_SIZE + name_len + extra_len + ns_files_le16 (h + 32);
  if (!span_ok (*at, entry_len, cd_end)
      || !g_utf8_validate_len ((const char *) h + CENTRAL_SIZE, name_len, NULL))
    {
      damaged (im, error, "a zip central directory entry is cut short or its name is not UTF-8");
      return NULL;
    }
  *at += entry_len;
  g_autoptr (GString) name = g_string_new_len ((const char *) h + CENTRAL_SIZE, name_len);
  guint flags = ns_files_le16 (h + 8), method = ns_files_le16 (h + 10);
  guint64 csize = ns_files_le32 (h + 20), usize = ns_files_le32 (h + 24), local = ns_files_le32 (h + 42);
  if (!read_zip64_extra (h + CENTRAL_SIZE + name_len, extra_len, &usize, &csize, &local))
    damaged (im, error, "a zip64 extra field is cut short");
  else if (flags & 1u)
    ns_files_fail (error, NS_ERROR_UNSUPPORTED, "%s: zip member '%s' is encrypted", im->label, name->str);
  else if (method != 0 || csize != usize)
    ns_files_fail (error, NS_ERROR_UNSUPPORTED,
                   "%s: zip member '%s' is compressed (method %u); only stored members can be "
                   "mapped. torch.save never compresses: re-save the checkpoint with torch.save "
                   "instead of re-zipping it", im->label, name->str, method);
  else
    {
      NsZipMember *m = g_new0 (NsZipMember, 1);
      m->name = g_string_free (g_steal_pointer (&name), FALSE);
      m->size = usize;
      if (locate_data (im, dir, m, local, error))
        return m;
      member_free (m);
    }
  return NULL;
}

GHashTable *
ns_zip_read (const guint8 *data, gsize size, const char *label, GError **error)
{
  Image im = { data, size, label };
  Directory dir = { 0 };
  if (!read_end (&im, &dir, error))
    return NULL;
  g_autoptr (GHashTable) members = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, member_free);
  guint64 at = dir.cd_offset;
  for (guint64 i = 0; i < dir.entries; i++)
    {
      NsZipMember *m = read_member (&im, &dir, &at, error);
      if (m == NULL)
        return NULL;
      if (g_hash_table_contains (members, m->name))
        {
          ns_files_fail (error, NS_ERROR_FORMAT, "%s: zip member '%s' appears twice", label, m->name);
          member_free (m);
          return NULL;
        }
      g_hash_table_insert (members, m->name, m);
    }
  return g_steal_pointer (&members);
}

/* ---- writer ---- */

struct NsZipWriter {
  NsFilesOut *out;
  GByteArray *directory;  /* central headers so far */
  guint n_members;
};

static guint32
crc32 (const guint8 *data, gsize size)
{
  static guint32 table[256];
  static gsize table_ready = 0;
  if (g_once_init_enter (&table_ready))
    {
      for (guint32 i = 0; i < 256; i++)
        {
          guint32 c = i;
          for (int k = 0; k < 8; k++)
            c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
          table[i] = c;
        }
      g_once_init_leave (&table_ready, 1);
    }
  guint32 c = 0xffffffffu;
  for (gsize i = 0; i < size; i++)
    c = table[(c ^ data[i]) & 0xffu] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

NsZipWriter *
ns_zip_writer_new (NsFilesOut *out)
{
  NsZipWriter *z = g_new0 (NsZipWriter, 1);
  z->out = out;
  z->directory = g_byte_array_new ();
  return z;
}

void
ns_zip_writer_free (NsZipWriter *z)
{
  if (z == NULL)
    return;
  g_byte_array_unref (z->directory);
  g_free (z);
}

/* The fields local and central headers share, from "version needed" to the
 * name and extra lengths. Flag bit 11: names are UTF-8. */
static void
put_common (GByteArray *b, guint32 crc, guint32 size, guint name_len, guint extra_len)
{
  ns_files_put_le16 (b, 20);           /* version needed: 2.0 */
  ns_files_put_le16 (b, 0x0800);
  ns_files_put_le16 (b, 0);            /* stored */
  ns_files_put_le16 (b, 0);            /* time 00:00 */
  ns_files_put_le16 (b, 0x21);         /* date 1980-01-01 */
  ns_files_put_le32 (b, crc);
  ns_files_put_le32 (b, size);
  ns_files_put_le32 (b, size);
  ns_files_put_le16 (b, (guint16) name_len);
  ns_files_put_le16 (b, (guint16) extra_len);
}

gboolean
ns_zip_writer_add (NsZipWriter *z, const char *name, const void *data, gsize size, GError **error)
{
  g_return_val_if_fail (z != NULL && name != NULL && (data != NULL || size == 0), FALSE);
  guint64 local = ns_files_out_offset (z->out);
  size_t name_len = strlen (name);
  guint pad = (guint) ((ALIGN - (local + LOCAL_SIZE + name_len + 4) % ALIGN) % ALIGN);
  if (local + size >= 0xffffffffu || z->n_members >= 0xffffu || name_len > 0xffffu)
    return ns_files_fail (error, NS_ERROR_UNSUPPORTED,
                          "zip member '%s': archives over 4 GiB or 65535 members need zip64, which this writer does not write",
                          name);
  guint32 crc = crc32 (data, size);
  g_autoptr (GByteArray) h = g_byte_array_new ();
  ns_files_put_le32 (h, LOCAL_SIG);
  put_common (h, crc, (guint32) size, (guint) name_len, 4 + pad);
  g_byte_array_append (h, (const guint8 *) name, (guint) name_len);
  ns_files_put_le16 (h, PAD_EXTRA_ID);
  ns_files_put_le16 (h, (guint16) pad);
  for (guint i = 0; i < pad; i++)
    g_byte_array_append (h, (const guint8 *) "Z", 1);
  if (!ns_files_out_write (z->out, h->data, h->len, error)
      || !ns_files_out_write (z->out, data, size, error))
    return FALSE;
  GByteArray *d = z->directory;
  ns_files_put_le32 (d, CENTRAL_SIG);
  ns_files_put_le16 (d, 20);           /* made by: MS-DOS, 2.0 */
  put_common (d, crc, (guint32) size, (guint) name_len, 0);
  ns_files_put_le16 (d, 0);            /* comment length */
  ns_files_put_le16 (d, 0);            /* disk */
  ns_files_put_le16 (d, 0);            /* internal attributes */
  ns_files_put_le32 (d, 0);            /* external attributes */
  ns_files_put_le32 (d, (guint32) local);
  g_byte_array_append (d, (const guint8 *) name, (guint) name_len);
  z->n_members++;
  return TRUE;
}

gboolean
ns_zip_writer_finish (NsZipWriter *z, GError **error)
{
  g_return_val_if_fail (z != NULL, FALSE);
  guint64 cd_offset = ns_files_out_offset (z->out);
  if (cd_offset + z->directory->len >= 0xffffffffu)
    return ns_files_fail (error, NS_ERROR_UNSUPPORTED,
                          "the zip archive would exceed 4 GiB, which needs zip64; this writer does not write it");
  g_autoptr (GByteArray) end = g_byte_array_new ();
  ns_files_put_le32 (end, EOCD_SIG);
  ns_files_put_le16 (end, 0);
  ns_files_put_le16 (end, 0);
  ns_files_put_le16 (end, (guint16) z->n_members);
  ns_files_put_le16 (end, (guint16) z->n_members);
  ns_files_put_le32 (end, z->directory->len);
  ns_files_put_le32 (end, (guint32) cd_offset);
  ns_files_put_le16 (end, 0);
  return ns_files_out_write (z->out, z->directory->data, z->directory->len, error)
         && ns_files_out_write (z->out, end->data, end->len, error);
}
