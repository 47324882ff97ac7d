/* weight-cache.c — see weight-cache.h. */
#include <errno.h>
#include <string.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "model/weight-cache.h"
#include "cpu/quant.h"
#include "files/json-load.h"
#include "files/safetensors.h"

char *
ns_weight_cache_default_path (const char *model_dir, NsWeightFormat format)
{
  g_autofree char *abs = g_canonicalize_filename (model_dir, NULL);
  g_autofree char *hash = g_compute_checksum_for_string (G_CHECKSUM_SHA256, abs, -1);
  g_autofree char *base = g_path_get_basename (abs);
  g_autofree char *file = g_strdup_printf ("%s-%.12s-%s.safetensors", base, hash,
                                           ns_weight_format_name (format));
  return g_build_filename (g_get_user_cache_dir (), "nextstep", file, NULL);
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* "name size mtime;" for every *.safetensors of the model folder, sorted. */
static char *
source_signature (const char *model_dir)
{
  g_autoptr (GDir) dir = g_dir_open (model_dir, 0, NULL);
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while (dir && (name = g_dir_read_name (dir)) != NULL)
    {
      if (!g_str_has_suffix (name, ".safetensors"))
        continue;
      g_autofree char *path = g_build_filename (model_dir, name, NULL);
      GStatBuf st;
      if (g_stat (path, &st) == 0)
        g_ptr_array_add (parts, g_strdup_printf ("%s %" G_GINT64_FORMAT " %" G_GINT64_FORMAT,
                                                 name, (gint64) st.st_size,
                                                 (gint64) st.st_mtime));
    }
  g_ptr_array_sort (parts, compare_strings);
  g_ptr_array_add (parts, NULL);
  return g_strjoinv (";", (char **) parts->pdata);
}

/* Free bytes on the file system holding `path` (0 when unknown). */
static guint64
free_bytes (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr (GFile) file = g_file_new_for_path (dir);
  g_autoptr (GFileInfo) info =
    g_file_query_filesystem_info (file, G_FILE_ATTRIBUTE_FILESYSTEM_FREE, NULL, NULL);
  return info ? g_file_info_get_attribute_uint64 (info, G_FILE_ATTRIBUTE_FILESYSTEM_FREE) : 0;
}

static gboolean
disk_full (GError **error, const char *path, guint64 needed)
{
  g_set_error (error, NS_ERROR, NS_ERROR_FILE,
               "disk full while writing %s: free %.1f GB and retry", path,
               MAX (needed / 1e9, 0.1));
  return FALSE;
}

/* Progress of a cache write: bytes of the source quantized so far. */
typedef struct {
  NsLoadProgressFunc func;
  gpointer data;
  guint64 done, total;
} WriteProgress;

/* One matrix quantized while the file is written: the codes a chunk at a
 * time, then the scales, which the code chunks computed on the way (the
 * writer saves entries in order, codes before their scales), so the source
 * is read once and no more than a chunk of codes is ever in memory. */
typedef struct {
  const NsTensorView *t;
  NsDType q_dtype;
  float *scale;           /* [rows] (q4: uint16_t [rows, groups]) */
  WriteProgress *progress;
} QuantFill;

/* Bytes of one row of codes and of scales of a QuantFill. */
static guint64
fill_row_bytes (const QuantFill *f)
{
  guint64 cols = (guint64) f->t->shape[1];
  return f->q_dtype == NS_DTYPE_Q4 ? ns_q4_row_bytes (cols) : cols;
}

static void
quant_fill_free (gpointer p)
{
  QuantFill *f = p;
  g_free (f->scale);
  g_free (f);
}

static void
fill_codes (guint8 *dst, guint64 offset, gsize size, gpointer data)
{
  QuantFill *f = data;
  guint64 cols = (guint64) f->t->shape[1], row = fill_row_bytes (f);
  guint64 r0 = offset / row, r1 = (offset + size + row - 1) / row;
  g_autofree guint8 *q = g_malloc ((r1 - r0) * row);
  const guint8 *src = (const guint8 *) f->t->data + r0 * cols * ns_dtype_size (f->t->dtype);
  if (f->q_dtype == NS_DTYPE_Q4)
    ns_quantize_q4_rows (src, f->t->dtype, (int) (r1 - r0), (int) cols, q,
                         (uint16_t *) f->scale + r0 * ns_q4_row_groups (cols));
  else
    ns_quantize_rows (src, f->t->dtype, (int) (r1 - r0), (int) cols, f->q_dtype, q,
                      f->scale + r0);
  memcpy (dst, q + (offset - r0 * row), size);
  WriteProgress *p = f->progress;
  p->done += (guint64) size * cols / row * ns_dtype_size (f->t->dtype);
  if (p->func)
    p->func ((double) p->done / MAX (p->total, 1), f->t->name, p->data);
}

static void
fill_scales (guint8 *dst, guint64 offset, gsize size, gpointer data)
{
  const QuantFill *f = data;
  memcpy (dst, (const guint8 *) f->scale + offset, size);
}

static void
add_tensor (NsSafetensorsWriter *w, const NsTensorView *t, NsDType q_dtype, GPtrArray *fills,
            WriteProgress *progress)
{
  if (q_dtype == t->dtype)
    {
      ns_safetensors_writer_add (w, t->name, t->dtype, t->n_dims, t->shape, t->data);
      progress->done += t->n_bytes;
      return;
    }
  QuantFill *f = g_new0 (QuantFill, 1);
  g_autofree char *scale_name = g_strconcat (t->name, NS_WEIGHT_CACHE_SCALE_SUFFIX, NULL);
  if (q_dtype == NS_DTYPE_Q4)
    {
      /* U8 codes, F16 scales per group (q4-layout.h) */
      guint64 groups = ns_q4_row_groups (t->shape[1]);
      *f = (QuantFill) { t, q_dtype, g_malloc ((gsize) t->shape[0] * groups * 2), progress };
      g_ptr_array_add (fills, f);
      const int64_t code_shape[2] = { t->shape[0], t->shape[1] / 2 };
      const int64_t scale_shape[2] = { t->shape[0], (int64_t) groups };
      ns_safetensors_writer_add_fill (w, t->name, NS_DTYPE_U8, 2, code_shape, fill_codes, f);
      ns_safetensors_writer_add_fill (w, scale_name, NS_DTYPE_F16, 2, scale_shape, fill_scales,
                                      f);
      return;
    }
  *f = (QuantFill) { t, q_dtype, g_new (float, t->shape[0]), progress };
  g_ptr_array_add (fills, f);
  ns_safetensors_writer_add_fill (w, t->name, q_dtype, 2, t->shape, fill_codes, f);
  const int64_t scale_shape[1] = { t->shape[0] };
  ns_safetensors_writer_add_fill (w, scale_name, NS_DTYPE_F32, 1, scale_shape, fill_scales, f);
}

gboolean
ns_weight_cache_write (const NsTensorStore *weights, const char *model_dir,
                       NsWeightFormat format, int64_t min_quant, const char *path,
                       NsLoadProgressFunc progress, gpointer progress_data, GError **error)
{
  g_return_val_if_fail (format == NS_WEIGHTS_INT8 || format == NS_WEIGHTS_FP8
                        || format == NS_WEIGHTS_Q4, FALSE);
  /* Which tensors upload would quantize: the backend rule, on a template. */
  NsBackend rule = { 0 };
  ns_backend_set_weight_format (&rule, format, min_quant);
  g_autoptr (NsSafetensorsWriter) w = ns_safetensors_writer_new ();
  g_autoptr (GPtrArray) fills = g_ptr_array_new_with_free_func (quant_fill_free);
  WriteProgress done = { progress, progress_data, 0, 0 };
  for (guint i = 0; i < ns_tensor_store_len (weights); i++)
    done.total += ns_tensor_store_get (weights, i)->n_bytes;
  for (guint i = 0; i < ns_tensor_store_len (weights); i++)
    {
      const NsTensorView *t = ns_tensor_store_get (weights, i);
      add_tensor (w, t, ns_backend_upload_dtype (&rule, t), fills, &done);
    }
  g_autofree char *source = source_signature (model_dir);
  g_autofree char *min_text = g_strdup_printf ("%" G_GINT64_FORMAT, min_quant);
  ns_safetensors_writer_set_metadata (w, "format", ns_weight_format_name (format));
  ns_safetensors_writer_set_metadata (w, "min_quant", min_text);
  ns_safetensors_writer_set_metadata (w, "source", source);
  g_autofree char *dir = g_path_get_dirname (path);
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FILE, "cannot create the folder %s: %s", dir,
                   g_strerror (errno));
      return FALSE;
    }
  guint64 needed = ns_safetensors_writer_data_size (w), avail = free_bytes (path);
  if (avail > 0 && avail < needed)
    return disk_full (error, path, needed - avail);
  g_autoptr (GError) local = NULL;
  if (ns_safetensors_writer_save (w, path, &local))
    return TRUE;
  /* The writer names the errno text; out of space or over a size limit is
   * the same advice for the user. */
  if (strstr (local->message, g_strerror (ENOSPC)) || strstr (local->message, g_strerror (EFBIG)))
    return disk_full (error, path, needed);
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

/* The __metadata__ object of a safetensors file as a new JsonObject, or NULL. */
static JsonObject *
read_metadata (const char *path, GError **error)
{
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, error);
  if (map == NULL)
    return NULL;
  const guint8 *p = (const guint8 *) g_mapped_file_get_contents (map);
  gsize size = g_mapped_file_get_length (map);
  guint64 len = 0;
  for (int i = 0; i < 8 && size >= 8; i++)
    len |= (guint64) p[i] << (8 * i);
  if (size < 8 || len > size - 8)
    return NULL;
  g_autoptr (JsonObject) root = ns_json_load_object ((const char *) p + 8, len, path, NULL,
                                                     NS_JSON_UNIQUE_KEYS, NULL);
  JsonNode *meta = root ? json_object_get_member (root, "__metadata__") : NULL;
  return meta && JSON_NODE_HOLDS_OBJECT (meta) ? json_object_ref (json_node_get_object (meta))
                                               : NULL;
}

NsTensorStore *
ns_weight_cache_open (const char *path, const char *model_dir, NsWeightFormat format,
                      int64_t min_quant, GError **error)
{
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return NULL;
  g_autoptr (GError) local = NULL;
  g_autoptr (JsonObject) meta = read_metadata (path, &local);
  if (meta == NULL)
    return NULL;    /* not ours or unreadable: quantize at load instead */
  g_autofree char *source = source_signature (model_dir);
  g_autofree char *min_text = g_strdup_printf ("%" G_GINT64_FORMAT, min_quant);
  if (g_strcmp0 (json_object_get_string_member_with_default (meta, "format", ""),
                 ns_weight_format_name (format)) != 0
      || g_strcmp0 (json_object_get_string_member_with_default (meta, "min_quant", ""),
                    min_text) != 0
      || g_strcmp0 (json_object_get_string_member_with_default (meta, "source", ""),
                    source) != 0)
    return NULL;
  NsTensorStore *store = ns_tensor_store_new ();
  if (!ns_safetensors_load_file (store, path, error))
    {
      ns_tensor_store_free (store);
      return NULL;
    }
  return store;
}
