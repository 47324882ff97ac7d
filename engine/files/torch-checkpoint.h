/* torch-checkpoint.h — reads the VAE's checkpoint.pt (a torch.save zip
 * archive) without Python and without ever executing anything: the zip
 * container is walked by its central directory and data.pkl is interpreted
 * by an allow-list unpickler that knows only what a tensor state_dict needs
 * (dict/list/tuple/int/float/str/bool/None opcodes, collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2, torch.*Storage, persistent ids). Any other
 * opcode or global is refused with an error naming it. Also writes such
 * files (for make-tiny and tests). */
#pragma once

#include "tensor.h"

G_BEGIN_DECLS

/* Parses an archive already in memory (fuzz entry point). Tensor views point
 * into `data` when contiguous, else into copies the store owns. */
gboolean ns_torch_checkpoint_parse (NsTensorStore *store, const guint8 *data, gsize size,
                                    const char *label, GError **error);

/* mmaps the file and parses it. */
NsTensorStore *ns_torch_checkpoint_load (const char *path, GError **error);

/* Writes every tensor of `store` (F32, F16 or BF16) as a torch.save zip
 * archive loadable by torch.load(weights_only=True): stored members, 64-byte
 * aligned data, an OrderedDict state_dict. `archive_name` is the top folder. */
gboolean ns_torch_checkpoint_save (const NsTensorStore *store, const char *archive_name,
                                   const char *path, GError **error);

G_END_DECLS
