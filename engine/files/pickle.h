/* pickle.h — private to engine/files: the allow-list unpickler that reads a
 * torch state_dict from data.pkl, and the matching pickle writer. */
#pragma once

#include "files/tensor.h"

G_BEGIN_DECLS

/* Finds the bytes of storage `key` (torch's data/<key> member); FALSE with
 * an error when there is none. */
typedef gboolean (*NsPickleStorageFunc) (gpointer user_data, const char *key, const guint8 **data,
                                         gsize *size, GError **error);

/* Interprets `pkl` (protocol 2–5) without executing anything: only the
 * opcodes a state_dict needs and the globals collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2 / _rebuild_parameter and torch.*Storage.
 * The result must be a dict of tensors (or a dict holding one under
 * "state_dict"); each is added to `store` under its key, as a view into its
 * storage when contiguous, else as a contiguous copy the store keeps. */
gboolean ns_pickle_read_state_dict (NsTensorStore *store, const guint8 *pkl, gsize size,
                                    const char *label, NsPickleStorageFunc storage,
                                    gpointer user_data, GError **error);

/* data.pkl (protocol 2) for every tensor of `store`, as torch.save writes a
 * state_dict: an OrderedDict of _rebuild_tensor_v2 calls whose persistent
 * ids name storages "0", "1", … in store order. FALSE for a dtype torch has
 * no storage type for here (F8_E4M3). */
gboolean ns_pickle_write_state_dict (const NsTensorStore *store, GByteArray *out, GError **error);

G_END_DECLS
