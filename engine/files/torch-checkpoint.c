/* files/torch-checkpoint.c — torch.save zip archives: <top>/data.pkl (the
 * pickled state_dict), <top>/data/<key> (raw storages), <top>/byteorder and
 * <top>/version. The zip walk is in zip.c, the unpickler in pickle.c. */
#include <string.h>

#include "files/file-util.h"
#include "files/pickle.h"
#include "files/torch-checkpoint.h"
#include "files/zip.h"

/* What torch.save writes (PyTorchStreamWriter, torch 2.x). */
#define FILE_FORMAT_VERSION "3\n"

typedef struct {
  const guint8 *data;
  const char *label;
  GHashTable *members;
  char *top;              /* the archive's top folder */
} Archive;

static const NsZipMember *
member (const Archive *a, const char *rest)
{
  g_autofree char *name = g_strconcat (a->top, "/", rest, NULL);
  return g_hash_table_lookup (a->members, name);
}

/* The one member named <top>/data.pkl decides the top folder. */
static gboolean
find_top (Archive *a, GError **error)
{
  GHashTableIter it;
  gpointer name;
  g_hash_table_iter_init (&it, a->members);
  while (g_hash_table_iter_next (&it, &name, NULL))
    {
      const char *slash = strchr (name, '/');
      if (slash == NULL || slash == name || strcmp (slash, "/data.pkl") != 0)
        continue;
      if (a->top != NULL)
        return ns_files_fail (error, NS_ERROR_FORMAT, "%s holds more than one data.pkl (%s/ and %s); "
                              "it is not a single torch.save checkpoint", a->label, a->top, (char *) name);
      a->top = g_strndup (name, (gsize) (slash - (const char *) name));
    }
  if (a->top == NULL)
    return ns_files_fail (error, NS_ERROR_FORMAT, "%s: the zip archive has no <folder>/data.pkl; it "
                          "is not a torch.save checkpoint (the legacy non-zip format is not supported)",
                          a->label);
  return TRUE;
}

static gboolean
check_byteorder (const Archive *a, GError **error)
{
  const NsZipMember *m = member (a, "byteorder");
  if (m == NULL)
    return TRUE;          /* older torch wrote none: little-endian */
  if (m->size == 6 && memcmp (a->data + m->offset, "little", 6) == 0)
    return TRUE;
  return ns_files_fail (error, NS_ERROR_UNSUPPORTED,
                        "%s: the checkpoint was saved big-endian (byteorder is not 'little'); "
                        "load and re-save it with torch on a little-endian machine", a->label);
}

static gboolean
find_storage (gpointer user_data, const char *key, const guint8 **data, gsize *size, GError **error)
{
  const Archive *a = user_data;
  g_autofree char *rest = g_strconcat ("data/", key, NULL);
  const NsZipMember *m = member (a, rest);
  if (m == NULL)
    return ns_files_fail (error, NS_ERROR_FORMAT, "%s: storage '%s' has no %s/%s member; the file "
                          "is damaged", a->label, key, a->top, rest);
  *data = a->data + m->offset;
  *size = (gsize) m->size;
  return TRUE;
}

gboolean
ns_torch_checkpoint_parse (NsTensorStore *store, const guint8 *data, gsize size, const char *label,
                           GError **error)
{
  g_return_val_if_fail (store != NULL && (data != NULL || size == 0), FALSE);
  Archive a = { data, label, ns_zip_read (data, size, label, error), NULL };
  if (a.members == NULL)
    return FALSE;
  gboolean ok = find_top (&a, error) && check_byteorder (&a, error);
  if (ok)
    {
      const NsZipMember *pkl = member (&a, "data.pkl");
      ok = ns_pickle_read_state_dict (store, data + pkl->offset, (gsize) pkl->size, label,
                                      find_storage, &a, error);
    }
  g_free (a.top);
  g_hash_table_unref (a.members);
  return ok;
}

NsTensorStore *
ns_torch_checkpoint_load (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  GMappedFile *map = ns_files_map (path, error);
  if (map == NULL)
    return NULL;
  NsTensorStore *store = ns_tensor_store_new ();
  ns_tensor_store_keep (store, map, (GDestroyNotify) g_mapped_file_unref);
  if (!ns_torch_checkpoint_parse (store, (const guint8 *) g_mapped_file_get_contents (map),
                                  g_mapped_file_get_length (map), path, error))
    g_clear_pointer (&store, ns_tensor_store_free);
  return store;
}

static gboolean
write_members (NsZipWriter *zip, const NsTensorStore *store, const char *top, GError **error)
{
  g_autoptr (GByteArray) pkl = g_byte_array_new ();
  if (!ns_pickle_write_state_dict (store, pkl, error))
    return FALSE;
  g_autofree char *pkl_name = g_strconcat (top, "/data.pkl", NULL);
  g_autofree char *order_name = g_strconcat (top, "/byteorder", NULL);
  if (!ns_zip_writer_add (zip, pkl_name, pkl->data, pkl->len, error)
      || !ns_zip_writer_add (zip, order_name, "little", 6, error))
    return FALSE;
  for (guint i = 0; i < ns_tensor_store_len (store); i++)
    {
      const NsTensorView *t = ns_tensor_store_get (store, i);
      g_autofree char *name = g_strdup_printf ("%s/data/%u", top, i);
      if (!ns_zip_writer_add (zip, name, t->data, t->n_bytes, error))
        return FALSE;
    }
  g_autofree char *version_name = g_strconcat (top, "/version", NULL);
  return ns_zip_writer_add (zip, version_name, FILE_FORMAT_VERSION, strlen (FILE_FORMAT_VERSION), error)
         && ns_zip_writer_finish (zip, error);
}

gboolean
ns_torch_checkpoint_save (const NsTensorStore *store, const char *archive_name, const char *path,
                          GError **error)
{
  g_return_val_if_fail (store != NULL && archive_name != NULL && path != NULL, FALSE);
  if (archive_name[0] == '\0' || strchr (archive_name, '/') != NULL)
    return ns_files_fail (error, NS_ERROR_INVALID_ARGUMENT,
                          "%s: archive name '%s' must be a non-empty folder name without '/'",
                          path, archive_name);
  NsFilesOut *out = ns_files_out_new (path, error);
  if (out == NULL)
    return FALSE;
  g_autoptr (NsZipWriter) zip = ns_zip_writer_new (out);
  if (!write_members (zip, store, archive_name, error))
    {
      ns_files_out_abort (out);
      return FALSE;
    }
  return ns_files_out_commit (out, error);
}
