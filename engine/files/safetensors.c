/* files/safetensors.c — safetensors reader (mmap, header fully validated
 * before any tensor is added) and writer.
 *
 * Layout: u64 little-endian header length n, n bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {…}},
 * then the data area; offsets are relative to the start of the data area. */
#include <string.h>
#include <json-glib/json-glib.h>

#include "files/file-util.h"
#include "files/json-load.h"
#include "files/safetensors.h"

/* The official reader refuses headers over 100 MB; so do we. */
#define HEADER_MAX 100000000u
#define INDEX_NAME "model.safetensors.index.json"

/* Messages about a damaged header or index end with this. */
#define JSON_HINT "the file is damaged: download it again"

/* An integer JSON value ≥ 0 (not a float, bool or string). */
static gboolean
json_uint (JsonNode *node, gint64 *out)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (node);
  return *out >= 0;
}

/* ---- header ---- */

typedef struct {
  const char *name;       /* owned by the header object */
  NsDType dtype;
  int n_dims;
  int64_t shape[NS_TENSOR_MAX_DIMS];
  guint64 begin, end;
} Entry;

static gboolean
read_shape (JsonObject *obj, const char *label, const char *name, Entry *e, GError **error)
{
  JsonNode *node = json_object_get_member (obj, "shape");
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    return ns_files_fail (error, NS_ERROR_FORMAT, "%s: tensor '%s' has no \"shape\" array",
                          label, name);
  JsonArray *shape = json_node_get_array (node);
  guint n = json_array_get_length (shape);
  if (n > NS_TENSOR_MAX_DIMS)
    return ns_files_fail (error, NS_ERROR_UNSUPPORTED, "%s: tensor '%s' has %u dimensions; at most %d are supported",
                          label, name, n, NS_TENSOR_MAX_DIMS);
  e->n_dims = (int) n;
  for (guint d = 0; d < n; d++)
    if (!json_uint (json_array_get_element (shape, d), &e->shape[d]))
      return ns_files_fail (error, NS_ERROR_FORMAT,
                            "%s: tensor '%s' shape[%u] is not a non-negative integer",
                            label, name, d);
  return TRUE;
}

static gboolean
read_offsets (JsonObject *obj, const char *label, const char *name, guint64 data_size,
              Entry *e, GError **error)
{
  JsonNode *node = json_object_get_member (obj, "data_offsets");
  JsonArray *offs = node != NULL && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  gint64 begin, end;
  if (offs == NULL || json_array_get_length (offs) != 2
      || !json_uint (json_array_get_element (offs, 0), &begin)
      || !json_uint (json_array_get_element (offs, 1), &end))
    return ns_files_fail (error, NS_ERROR_FORMAT,
                          "%s: tensor '%s' needs \"data_offsets\": [begin, end] with two non-negative integers",
                          label, name);
  if (begin > end || (guint64) end > data_size)
    return ns_files_fail (error, NS_ERROR_FORMAT,
                          "%s: tensor '%s' data_offsets [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] "
                          "run past the data area (%" G_GUINT64_FORMAT " bytes) or are reversed; "
                          "the file is truncated or damaged",
                          label, name, begin, end, data_size);
  e->begin = (guint64) begin;
  e->end = (guint64) end;
  /* shape × dtype size must be exactly the span; checked multiplication
   * because dims come from the file */
  guint64 bytes = ns_dtype_size (e->dtype);
  for (int d = 0; d < e->n_dims; d++)
    if (!g_uint64_checked_mul (&bytes, bytes, (guint64) e->shape[d]))
      return ns_files_fail (error, NS_ERROR_FORMAT, "%s: tensor '%s' shape is too large",
                            label, name);
  if (bytes != e->end - e->begin)
    return ns_files_fail (error, NS_ERROR_FORMAT,
                          "%s: tensor '%s' shape x %s needs %" G_GUINT64_FORMAT " bytes but its "
                          "data_offsets span %" G_GUINT64_FORMAT,
                          label, name, ns_dtype_name (e->dtype), bytes, e->end - e->begin);
  return TRUE;
}

static gboolean
read_entry (const char *label, const char *name, JsonNode *node, guint64 data_size, Entry *e,
            GError **error)
{
  e->name = name;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return ns_files_fail (error, NS_ERROR_FORMAT, "%s: tensor '%s' is not a JSON object",
                          label, name);
  JsonObject *obj = json_node_get_object (node);
  JsonNode *dtype = json_object_get_member (obj, "dtype");
  const char *dtype_name = dtype != NULL && JSON_NODE_HOLDS_VALUE (dtype)
                           && json_node_get_value_type (dtype) == G_TYPE_STRING
                           ? json_node_get_string (dtype) : NULL;
  if (dtype_name == NULL)
    return ns_files_fail (error, NS_ERROR_FORMAT, "%s: tensor '%s' has no \"dtype\" string",
                          label, name);
  if (!ns_dtype_from_name (dtype_name, &e->dtype) || e->dtype == NS_DTYPE_Q4)
    return ns_files_fail (error, NS_ERROR_UNSUPPORTED,
                          "%s: tensor '%s' has dtype '%s'; supported: F32 F16 BF16 F64 F8_E4M3 I8 U8 I32 I64",
                          label, name, dtype_name);
  return read_shape (obj, label, name, e, error)
         && read_offsets (obj, label, name, data_size, e, error);
}

static gboolean
check_metadata (const char *label, JsonNode *node, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return ns_files_fail (error, NS_ERROR_FORMAT, "%s: \"__metadata__\" is not a JSON object", label);
  g_autoptr (GList) keys = json_object_get_members (json_node_get_object (node));
  for (GList *l = keys; l != NULL; l = l->next)
    {
      JsonNode *v = json_object_get_member (json_node_get_object (node), l->data);
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING)
        return ns_files_fail (error, NS_ERROR_FORMAT,
                              "%s: \"__metadata__\" value '%s' is not a string", label,
                              (const char *) l->data);
    }
  return TRUE;
}

static int
compare_entries (gconstpointer a, gconstpointer b)
{
  const Entry *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Entries sorted by offset; empty tensors occupy no bytes and overlap nothing. */
static gboolean
check_overlaps (GArray *entries, const char *label, GError **error)
{
  const Entry *prev = NULL;
  for (guint i = 0; i < entries->len; i++)
    {
      const Entry *e = &g_array_index (entries, Entry, i);
      if (e->begin == e->end)
        continue;
      if (prev != NULL && e->begin < prev->end)
        return ns_files_fail (error, NS_ERROR_FORMAT,
                              "%s: tensors '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") and '%s' "
                              "[%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") overlap",
                              label, prev->name, prev->begin, prev->end, e->name, e->begin, e->end);
      prev = e;
    }
  return TRUE;
}

/* Validates every entry of the header into `entries`, sorted by offset. */
static gboolean
read_header (JsonObject *root, const char *label, guint64 data_size, GArray *entries,
             GError **error)
{
  g_autoptr (GList) names = json_object_get_members (root);
  for (GList *l = names; l != NULL; l = l->next)
    {
      const char *name = l->data;
      JsonNode *node = json_object_get_member (root, name);
      if (strcmp (name, "__metadata__") == 0)
        {
          if (!check_metadata (label, node, error))
            return FALSE;
          continue;
        }
      Entry e = { 0 };
      if (!read_entry (label, name, node, data_size, &e, error))
        return FALSE;
      g_array_append_val (entries, e);
    }
  g_array_sort (entries, compare_entries);
  return check_overlaps (entries, label, error);
}

gboolean
ns_safetensors_parse (NsTensorStore *store, const guint8 *data, gsize size, const char *label,
                      GError **error)
{
  g_return_val_if_fail (store != NULL && (data != NULL || size == 0), FALSE);
  if (size < 8)
    return ns_files_fail (error, NS_ERROR_FORMAT,
                          "%s: %" G_GSIZE_FORMAT " bytes is too short for a safetensors file "
                          "(the file is truncated or not safetensors)", label, size);
  guint64 n = ns_files_le64 (data);
  if (n > size - 8 || n > HEADER_MAX)
    return ns_files_fail (error, NS_ERROR_FORMAT,
                          "%s: header length %" G_GUINT64_FORMAT " is larger than the file "
                          "(%" G_GSIZE_FORMAT " bytes) or the %u-byte limit; the file is truncated "
                          "or not safetensors", label, n, size, HEADER_MAX);
  g_autofree char *what = g_strdup_printf ("%s: the header", label);
  g_autoptr (JsonObject) header = ns_json_load_object ((const char *) data + 8, n, what,
                                                       JSON_HINT, NS_JSON_UNIQUE_KEYS, error);
  if (header == NULL)
    return FALSE;
  const guint8 *area = data + 8 + n;
  guint64 area_size = size - 8 - n;
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (Entry));
  if (!read_header (header, label, area_size, entries, error))
    return FALSE;
  /* all or nothing: check names against the store before adding any */
  for (guint i = 0; i < entries->len; i++)
    {
      const char *name = g_array_index (entries, Entry, i).name;
      const NsTensorView *old = ns_tensor_store_find (store, name);
      if (old != NULL)
        return ns_files_fail (error, NS_ERROR_FORMAT, "%s: tensor '%s' is also in %s", label, name,
                              old->file ? old->file : "another file");
    }
  for (guint i = 0; i < entries->len; i++)
    {
      const Entry *e = &g_array_index (entries, Entry, i);
      NsTensorView v = { (char *) e->name, e->dtype, e->n_dims, { 0 }, area + e->begin,
                         e->end - e->begin, label };
      memcpy (v.shape, e->shape, sizeof v.shape);
      if (!ns_tensor_store_add (store, &v, error))
        g_return_val_if_reached (FALSE);   /* names were checked above */
    }
  return TRUE;
}

gboolean
ns_safetensors_load_file (NsTensorStore *store, const char *path, GError **error)
{
  g_return_val_if_fail (store != NULL && path != NULL, FALSE);
  GMappedFile *map = ns_files_map (path, error);
  if (map == NULL)
    return FALSE;
  if (!ns_safetensors_parse (store, (const guint8 *) g_mapped_file_get_contents (map),
                             g_mapped_file_get_length (map), path, error))
    {
      g_mapped_file_unref (map);
      return FALSE;
    }
  ns_tensor_store_keep (store, map, (GDestroyNotify) g_mapped_file_unref);
  return TRUE;
}

/* ---- index ---- */

/* A shard must be a plain file name beside the index, never a path. */
static gboolean
shard_name_ok (const char *shard)
{
  return shard[0] != '\0' && strchr (shard, '/') == NULL && strchr (shard, '\\') == NULL
         && strcmp (shard, ".") != 0 && strcmp (shard, "..") != 0;
}

GPtrArray *
ns_safetensors_parse_index (const char *json, gsize size, const char *label,
                            GHashTable **weight_map_out, GError **error)
{
  g_return_val_if_fail (json != NULL || size == 0, NULL);
  g_autoptr (JsonObject) index = ns_json_load_object (json, size, label, JSON_HINT,
                                                      NS_JSON_UNIQUE_KEYS, error);
  if (index == NULL)
    return NULL;
  JsonNode *node = json_object_get_member (index, "weight_map");
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    {
      ns_files_fail (error, NS_ERROR_FORMAT, "%s has no \"weight_map\" object", label);
      return NULL;
    }
  JsonObject *map = json_node_get_object (node);
  g_autoptr (GList) names = json_object_get_members (map);
  if (names == NULL)
    {
      ns_files_fail (error, NS_ERROR_FORMAT, "%s: \"weight_map\" lists no tensors", label);
      return NULL;
    }
  g_autoptr (GHashTable) weight_map = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GPtrArray) shards = g_ptr_array_new_with_free_func (g_free);
  for (GList *l = names; l != NULL; l = l->next)
    {
      JsonNode *v = json_object_get_member (map, l->data);
      const char *shard = JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_STRING
                          ? json_node_get_string (v) : NULL;
      if (shard == NULL || !shard_name_ok (shard))
        {
          ns_files_fail (error, NS_ERROR_FORMAT,
                         "%s: tensor '%s' must map to the file name of a shard in the same folder",
                         label, (const char *) l->data);
          return NULL;
        }
      if (!g_ptr_array_find_with_equal_func (shards, shard, g_str_equal, NULL))
        g_ptr_array_add (shards, g_strdup (shard));
      g_hash_table_insert (weight_map, g_strdup (l->data), g_strdup (shard));
    }
  if (weight_map_out != NULL)
    *weight_map_out = g_steal_pointer (&weight_map);
  return g_steal_pointer (&shards);
}

/* After loading `shard`, every tensor it added (from index `first` on) must
 * be one the index places in that shard. */
static gboolean
check_shard_tensors (NsTensorStore *store, guint first, GHashTable *weight_map,
                     const char *index_path, const char *shard, GError **error)
{
  for (guint i = first; i < ns_tensor_store_len (store); i++)
    {
      const char *name = ns_tensor_store_get (store, i)->name;
      const char *listed = g_hash_table_lookup (weight_map, name);
      if (listed == NULL)
        return ns_files_fail (error, NS_ERROR_MODEL, "%s: shard '%s' holds tensor '%s', which the index does not "
                              "list; re-download the model, or remove the stray tensor",
                              index_path, shard, name);
      if (strcmp (listed, shard) != 0)
        return ns_files_fail (error, NS_ERROR_MODEL,
                              "%s lists tensor '%s' in shard '%s', but it is in shard '%s'; "
                              "the index does not match the shards",
                              index_path, name, listed, shard);
    }
  return TRUE;
}

static gboolean
load_shards (NsTensorStore *store, const char *index_path, GPtrArray *shards,
             GHashTable *weight_map, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (index_path);
  /* look for every shard first, so a missing one fails before any mmap */
  for (guint i = 0; i < shards->len; i++)
    {
      g_autofree char *path = g_build_filename (dir, g_ptr_array_index (shards, i), NULL);
      if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
        return ns_files_fail (error, NS_ERROR_MODEL,
                              "%s names shard '%s', but %s does not exist; the model download is incomplete",
                              index_path, (const char *) g_ptr_array_index (shards, i), path);
    }
  for (guint i = 0; i < shards->len; i++)
    {
      const char *shard = g_ptr_array_index (shards, i);
      g_autofree char *path = g_build_filename (dir, shard, NULL);
      guint first = ns_tensor_store_len (store);
      if (!ns_safetensors_load_file (store, path, error)
          || !check_shard_tensors (store, first, weight_map, index_path, shard, error))
        return FALSE;
    }
  return TRUE;
}

gboolean
ns_safetensors_load_index (NsTensorStore *store, const char *index_path, GError **error)
{
  g_return_val_if_fail (store != NULL && index_path != NULL, FALSE);
  g_autofree char *text = NULL;
  gsize len = 0;
  g_autoptr (GError) local = NULL;
  if (!g_file_get_contents (index_path, &text, &len, &local))
    return ns_files_fail (error, NS_ERROR_FILE, "cannot read %s: %s", index_path, local->message);
  g_autoptr (GHashTable) weight_map = NULL;
  g_autoptr (GPtrArray) shards = ns_safetensors_parse_index (text, len, index_path, &weight_map, error);
  if (shards == NULL || !load_shards (store, index_path, shards, weight_map, error))
    return FALSE;
  GHashTableIter it;
  gpointer name, shard;
  g_hash_table_iter_init (&it, weight_map);
  while (g_hash_table_iter_next (&it, &name, &shard))
    if (ns_tensor_store_find (store, name) == NULL)
      return ns_files_fail (error, NS_ERROR_MODEL,
                            "%s lists tensor '%s' in shard '%s', but that shard does not contain it",
                            index_path, (const char *) name, (const char *) shard);
  return TRUE;
}

static int
compare_paths (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Every *.safetensors file of `dir`, sorted by name. */
static GPtrArray *
list_safetensors (const char *dir, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GDir) d = g_dir_open (dir, 0, &local);
  if (d == NULL)
    {
      ns_files_fail (error, NS_ERROR_FILE, "cannot open model folder %s: %s", dir, local->message);
      return NULL;
    }
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  for (const char *name; (name = g_dir_read_name (d)) != NULL;)
    if (g_str_has_suffix (name, ".safetensors"))
      g_ptr_array_add (files, g_build_filename (dir, name, NULL));
  g_ptr_array_sort (files, compare_paths);
  return files;
}

NsTensorStore *
ns_safetensors_load_dir (const char *dir, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  g_autoptr (NsTensorStore) store = ns_tensor_store_new ();
  g_autofree char *index = g_build_filename (dir, INDEX_NAME, NULL);
  if (g_file_test (index, G_FILE_TEST_EXISTS))
    return ns_safetensors_load_index (store, index, error) ? g_steal_pointer (&store) : NULL;
  g_autoptr (GPtrArray) files = list_safetensors (dir, error);
  if (files == NULL)
    return NULL;
  if (files->len == 0)
    {
      ns_files_fail (error, NS_ERROR_MODEL, "%s has neither %s nor any .safetensors file",
                     dir, INDEX_NAME);
      return NULL;
    }
  for (guint i = 0; i < files->len; i++)
    if (!ns_safetensors_load_file (store, g_ptr_array_index (files, i), error))
      return NULL;
  return g_steal_pointer (&store);
}

/* ---- writer ---- */

typedef struct {
  char *name;
  NsDType dtype;
  int n_dims;
  int64_t shape[NS_TENSOR_MAX_DIMS];
  guint64 size;                 /* bytes of data */
  GBytes *data;                 /* the data, or NULL when `fill` makes it at save time */
  NsSafetensorsFillFunc fill;
  gpointer fill_data;
} WriterEntry;

#define FILL_CHUNK (16u << 20)  /* bytes a fill call makes at once */

struct NsSafetensorsWriter {
  GPtrArray *entries;     /* WriterEntry*, in order added */
  JsonObject *metadata;   /* keeps insertion order, replaces repeated keys */
  gsize data_size;
};

static void
writer_entry_free (gpointer p)
{
  WriterEntry *e = p;
  g_free (e->name);
  if (e->data)
    g_bytes_unref (e->data);
  g_free (e);
}

NsSafetensorsWriter *
ns_safetensors_writer_new (void)
{
  NsSafetensorsWriter *w = g_new0 (NsSafetensorsWriter, 1);
  w->entries = g_ptr_array_new_with_free_func (writer_entry_free);
  w->metadata = json_object_new ();
  return w;
}

void
ns_safetensors_writer_free (NsSafetensorsWriter *w)
{
  if (w == NULL)
    return;
  g_ptr_array_unref (w->entries);
  json_object_unref (w->metadata);
  g_free (w);
}

/* A new entry of `name` with its byte count, or NULL (after a critical)
 * when the arguments are wrong. */
static WriterEntry *
writer_entry_add (NsSafetensorsWriter *w, const char *name, NsDType dtype, int n_dims,
                  const int64_t *shape)
{
  g_return_val_if_fail (w != NULL && name != NULL && dtype < NS_DTYPE_COUNT, NULL);
  g_return_val_if_fail (n_dims >= 0 && n_dims <= NS_TENSOR_MAX_DIMS
                        && (shape != NULL || n_dims == 0), NULL);
  guint64 bytes = ns_dtype_size (dtype);
  for (int d = 0; d < n_dims; d++)
    g_return_val_if_fail (shape[d] >= 0 && g_uint64_checked_mul (&bytes, bytes, (guint64) shape[d]),
                          NULL);
  g_return_val_if_fail (bytes <= G_MAXSIZE, NULL);
  WriterEntry *e = g_new0 (WriterEntry, 1);
  e->name = g_strdup (name);
  e->dtype = dtype;
  e->n_dims = n_dims;
  if (n_dims > 0)
    memcpy (e->shape, shape, (size_t) n_dims * sizeof *shape);
  e->size = bytes;
  g_ptr_array_add (w->entries, e);
  w->data_size += (gsize) bytes;
  return e;
}

void
ns_safetensors_writer_add (NsSafetensorsWriter *w, const char *name, NsDType dtype, int n_dims,
                           const int64_t *shape, const void *data)
{
  WriterEntry *e = writer_entry_add (w, name, dtype, n_dims, shape);
  if (e != NULL)
    e->data = g_bytes_new (data, (gsize) e->size);
}

void
ns_safetensors_writer_add_fill (NsSafetensorsWriter *w, const char *name, NsDType dtype,
                                int n_dims, const int64_t *shape, NsSafetensorsFillFunc fill,
                                gpointer fill_data)
{
  g_return_if_fail (fill != NULL);
  WriterEntry *e = writer_entry_add (w, name, dtype, n_dims, shape);
  if (e != NULL)
    {
      e->fill = fill;
      e->fill_data = fill_data;
    }
}

void
ns_safetensors_writer_set_metadata (NsSafetensorsWriter *w, const char *key, const char *value)
{
  g_return_if_fail (w != NULL && key != NULL && value != NULL);
  json_object_set_string_member (w->metadata, key, value);
}

gsize
ns_safetensors_writer_data_size (const NsSafetensorsWriter *w)
{
  g_return_val_if_fail (w != NULL, 0);
  return w->data_size;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes as the
 * official writer does, so the data area starts 8-byte aligned. */
static char *
writer_header (NsSafetensorsWriter *w, const char *path, gsize *len, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  json_builder_begin_object (b);
  if (json_object_get_size (w->metadata) > 0)
    {
      json_builder_set_member_name (b, "__metadata__");
      json_builder_add_value (b, json_node_init_object (json_node_alloc (), w->metadata));
    }
  guint64 offset = 0;
  for (guint i = 0; i < w->entries->len; i++)
    {
      const WriterEntry *e = g_ptr_array_index (w->entries, i);
      if (!g_hash_table_add (seen, e->name) || strcmp (e->name, "__metadata__") == 0)
        {
          ns_files_fail (error, NS_ERROR_INVALID_ARGUMENT, "%s: tensor name '%s' is used twice or reserved",
                         path, e->name);
          return NULL;
        }
      json_builder_set_member_name (b, e->name);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "dtype");
      json_builder_add_string_value (b, ns_dtype_name (e->dtype));
      json_builder_set_member_name (b, "shape");
      json_builder_begin_array (b);
      for (int d = 0; d < e->n_dims; d++)
        json_builder_add_int_value (b, e->shape[d]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "data_offsets");
      json_builder_begin_array (b);
      json_builder_add_int_value (b, (gint64) offset);
      offset += e->size;
      json_builder_add_int_value (b, (gint64) offset);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  GString *text = g_string_new (NULL);
  json_generator_to_gstring (gen, text);
  while (text->len % 8 != 0)
    g_string_append_c (text, ' ');
  *len = text->len;
  return g_string_free (text, FALSE);
}

/* The data of one entry: as added, or made by its fill function a chunk at
 * a time so that no more than FILL_CHUNK bytes of it are ever in memory. */
static gboolean
write_entry (NsFilesOut *out, const WriterEntry *e, GError **error)
{
  if (e->fill == NULL)
    return ns_files_out_write (out, g_bytes_get_data (e->data, NULL), e->size, error);
  g_autofree guint8 *chunk = g_malloc (MIN (e->size, FILL_CHUNK) + 1);
  for (guint64 at = 0; at < e->size; at += FILL_CHUNK)
    {
      gsize n = (gsize) MIN (FILL_CHUNK, e->size - at);
      e->fill (chunk, at, n, e->fill_data);
      if (!ns_files_out_write (out, chunk, n, error))
        return FALSE;
    }
  return TRUE;
}

gboolean
ns_safetensors_writer_save (NsSafetensorsWriter *w, const char *path, GError **error)
{
  g_return_val_if_fail (w != NULL && path != NULL, FALSE);
  gsize len = 0;
  g_autofree char *header = writer_header (w, path, &len, error);
  if (header == NULL)
    return FALSE;
  NsFilesOut *out = ns_files_out_new (path, error);
  if (out == NULL)
    return FALSE;
  g_autoptr (GByteArray) len_le = g_byte_array_new ();
  ns_files_put_le64 (len_le, len);
  gboolean ok = ns_files_out_write (out, len_le->data, len_le->len, error)
                && ns_files_out_write (out, header, len, error);
  for (guint i = 0; ok && i < w->entries->len; i++)
    ok = write_entry (out, g_ptr_array_index (w->entries, i), error);
  if (!ok)
    {
      ns_files_out_abort (out);
      return FALSE;
    }
  return ns_files_out_commit (out, error);
}
