/* safetensors.h — reader (mmap, no copy) and writer for the safetensors
 * format, single file or sharded with model.safetensors.index.json.
 * Every header is validated: length bounded by the file, valid JSON, known
 * dtype, offsets inside the data area, no overlap, shape × dtype = span,
 * no duplicate names; `__metadata__` allowed. Errors name file and tensor. */
#pragma once

#include "tensor.h"

G_BEGIN_DECLS

/* Parses a safetensors image already in memory (the fuzz entry point). The
 * views point into `data`, which must outlive the store. `label` names the
 * file in messages. */
gboolean ns_safetensors_parse (NsTensorStore *store, const guint8 *data, gsize size,
                               const char *label, GError **error);

/* mmaps one .safetensors file and adds its tensors. */
gboolean ns_safetensors_load_file (NsTensorStore *store, const char *path, GError **error);

/* Reads an index JSON ({"weight_map": {name: shard}}), loads every shard it
 * names (each once) and checks that each tensor is in the shard the index
 * says and that every indexed tensor exists. */
gboolean ns_safetensors_load_index (NsTensorStore *store, const char *index_path, GError **error);

/* Validates the text of an index JSON and returns the distinct shard file
 * names in order of first appearance (the fuzz entry point for the index). */
GPtrArray *ns_safetensors_parse_index (const char *json, gsize size, const char *label,
                                       GHashTable **weight_map_out, GError **error);

/* A model folder: model.safetensors.index.json if present, else every
 * *.safetensors in it (usually one model.safetensors). */
NsTensorStore *ns_safetensors_load_dir (const char *dir, GError **error);

typedef struct NsSafetensorsWriter NsSafetensorsWriter;

NsSafetensorsWriter *ns_safetensors_writer_new (void);
void ns_safetensors_writer_free (NsSafetensorsWriter *w);
/* Copies the data. Tensors are written in the order added. */
void ns_safetensors_writer_add (NsSafetensorsWriter *w, const char *name, NsDType dtype,
                                int n_dims, const int64_t *shape, const void *data);
/* A tensor whose data `fill` makes at save time, `size` bytes from byte
 * `offset` of it into dst per call (offsets in order, a few MiB at a time),
 * so that tensors larger than memory can be written. fill_data must live
 * until the save. */
typedef void (*NsSafetensorsFillFunc) (guint8 *dst, guint64 offset, gsize size, gpointer fill_data);
void ns_safetensors_writer_add_fill (NsSafetensorsWriter *w, const char *name, NsDType dtype,
                                     int n_dims, const int64_t *shape, NsSafetensorsFillFunc fill,
                                     gpointer fill_data);
void ns_safetensors_writer_set_metadata (NsSafetensorsWriter *w, const char *key, const char *value);
/* Total bytes of tensor data added so far. */
gsize ns_safetensors_writer_data_size (const NsSafetensorsWriter *w);
gboolean ns_safetensors_writer_save (NsSafetensorsWriter *w, const char *path, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsSafetensorsWriter, ns_safetensors_writer_free)

G_END_DECLS
