/* arch.h — the tensors a NextStep checkpoint must hold, derived from its
 * config.json (backbone, projectors, flow-matching head, optional
 * gen_pos_embed buffer), and the checkpoint kind. Used by `nextstep inspect`
 * and by ns_model_load. */
#pragma once

#include <glib.h>
#include "files/tensor.h"
#include "files/config.h"
#include "nextstep.h"

G_BEGIN_DECLS

/* One tensor of the expected set. */
typedef struct {
  char *name;
  int n_dims;
  int64_t shape[3];
  gboolean optional;    /* may be absent (lm_head of a tied model) */
} NsArchTensor;

/* The tensors a checkpoint for `cfg` holds, in the official module order,
 * without the gen_pos_embed buffer (checked apart: its grid size is not in
 * every config): a GArray of NsArchTensor that frees the names itself.
 * make-tiny writes exactly these. */
GArray *ns_arch_expected_tensors (const NsModelConfig *cfg);

/* Appends one line per problem to `problems` (g_free'd strings): missing
 * tensor, unexpected tensor, wrong shape ("layers.3.mlp.up_proj.weight has
 * shape [40, 16], expected [40, 16]…"), non-float dtype. TRUE when none. */
gboolean ns_arch_check_model (const NsTensorStore *store, const NsModelConfig *cfg,
                              GPtrArray *problems);

/* t2i or edit: EDIT when the config's _name_or_path or any component of the
 * model folder path contains "edit" (case-insensitive), e.g. the HF cache
 * folder models--stepfun-ai--NextStep-1-Large-Edit. */
NsModelKind ns_arch_guess_kind (const char *model_dir, const NsModelConfig *cfg);

/* The published NextStep-1.1 shapes as a config (synthetic full-size
 * models only; the values are in arch.c). */
gboolean ns_arch_full_size_config (NsModelConfig *cfg, GError **error);

G_END_DECLS
