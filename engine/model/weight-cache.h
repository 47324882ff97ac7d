/* weight-cache.h — int8/fp8/q4 weights quantized once (`nextstep convert`)
 * and kept in a safetensors file: the quantized matrices under their own
 * names (I8 or F8_E4M3 [rows, cols] with one F32 "<name>.scale" [rows] per
 * matrix; q4 as U8 [rows, cols / 2] packed codes with F16 "<name>.scale"
 * [rows, cols / 32], q4-layout.h; q4's int8 matrices as int8's), every
 * other tensor as published, and __metadata__ {format, min_quant, source} where source lists
 * the model's *.safetensors files with size and mtime, so a cache made from
 * other weights is ignored. Default place: $XDG_CACHE_HOME/nextstep/
 * <name of the model folder>-<hash of its path>-<format>.safetensors (model
 * folders in the Hugging Face cache may be read-only). */
#pragma once

#include "files/tensor.h"
#include "nextstep.h"

G_BEGIN_DECLS

#define NS_WEIGHT_CACHE_SCALE_SUFFIX ".scale"

char *ns_weight_cache_default_path (const char *model_dir, NsWeightFormat format);

/* Quantizes the 2-D matrices of `weights` with at least `min_quant`
 * elements and writes the cache to `path`, a chunk at a time (little memory
 * beyond the mapped source), telling `progress` (may be NULL) the fraction
 * of the source quantized so far. Running out of disk
 * gives NS_ERROR_FILE "disk full while writing …: free N GB and retry" and
 * leaves no file. */
gboolean ns_weight_cache_write (const NsTensorStore *weights, const char *model_dir,
                                NsWeightFormat format, int64_t min_quant, const char *path,
                                NsLoadProgressFunc progress, gpointer progress_data,
                                GError **error);

/* The cache at `path` when it exists and was made from the current weights
 * of `model_dir` for `format` and `min_quant`; NULL (and no error) when
 * absent or stale, NULL with an error when it exists but cannot be read. */
NsTensorStore *ns_weight_cache_open (const char *path, const char *model_dir,
                                     NsWeightFormat format, int64_t min_quant, GError **error);

G_END_DECLS
