/* tensor.h — typed views of tensors stored in model files, and a name → view
 * store shared by the safetensors and checkpoint.pt readers. Views point into
 * memory the store keeps alive (an mmap or an owned copy). */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <stddef.h>

G_BEGIN_DECLS

typedef enum {
  NS_DTYPE_F32,
  NS_DTYPE_F16,
  NS_DTYPE_BF16,
  NS_DTYPE_F64,
  NS_DTYPE_F8_E4M3,
  NS_DTYPE_I8,
  NS_DTYPE_U8,
  NS_DTYPE_I32,
  NS_DTYPE_I64,
  /* Not a file dtype: 4-bit group codes in backend memory (backend.h NsMat,
   * q4-layout.h); a `nextstep convert` cache stores them as U8. Its "size"
   * is that of the storage unit, a byte of two codes. */
  NS_DTYPE_Q4,
  NS_DTYPE_COUNT
} NsDType;

#define NS_TENSOR_MAX_DIMS 8

typedef struct {
  char *name;
  NsDType dtype;
  int n_dims;
  int64_t shape[NS_TENSOR_MAX_DIMS];
  const void *data;     /* little-endian, contiguous, row-major */
  size_t n_bytes;
  const char *file;     /* file the tensor came from, for messages */
} NsTensorView;

/* "BF16" ↔ NS_DTYPE_BF16 (safetensors spelling); FALSE/NULL when unknown. */
gboolean     ns_dtype_from_name (const char *name, NsDType *out);
const char  *ns_dtype_name (NsDType dtype);
size_t       ns_dtype_size (NsDType dtype);

/* Number of elements (product of the shape; 1 for a scalar). */
int64_t      ns_tensor_n_elements (const NsTensorView *t);
/* "[40, 16]" for messages (g_free it). */
char        *ns_shape_to_string (int n_dims, const int64_t *shape);
/* TRUE for the dtypes model weights are published in: F32, F16, BF16. */
gboolean     ns_dtype_is_weight (NsDType dtype);
/* Element i converted to float/double (any dtype). No bounds check beyond a
 * g_return_val_if_fail. */
float        ns_tensor_get_f32 (const NsTensorView *t, int64_t i);
double       ns_tensor_get_f64 (const NsTensorView *t, int64_t i);
/* Whole tensor converted to a new float array (g_free it). */
float       *ns_tensor_to_f32 (const NsTensorView *t);
/* Elementwise scalar conversions used everywhere. */
float        ns_bf16_to_f32 (uint16_t v);
uint16_t     ns_f32_to_bf16 (float v);       /* round to nearest even */
float        ns_f16_to_f32 (uint16_t v);
uint16_t     ns_f32_to_f16 (float v);
float        ns_f8e4m3_to_f32 (uint8_t v);

typedef struct NsTensorStore NsTensorStore;

NsTensorStore *ns_tensor_store_new (void);
void           ns_tensor_store_free (NsTensorStore *store);
/* Keeps `memory` alive with the store and frees it with `destroy`. */
void           ns_tensor_store_keep (NsTensorStore *store, gpointer memory, GDestroyNotify destroy);
/* Adds a view (copied; name copied). Fails on a duplicate name. */
gboolean       ns_tensor_store_add (NsTensorStore *store, const NsTensorView *view, GError **error);
const NsTensorView *ns_tensor_store_find (const NsTensorStore *store, const char *name);
guint          ns_tensor_store_len (const NsTensorStore *store);
/* Views in insertion order. */
const NsTensorView *ns_tensor_store_get (const NsTensorStore *store, guint i);
/* Total elements of every tensor. */
int64_t        ns_tensor_store_n_elements (const NsTensorStore *store);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NsTensorStore, ns_tensor_store_free)

G_END_DECLS
