/* backend.h — the table of ops the model code runs on. One implementation in
 * plain C (engine/cpu/, the reference) and one in CUDA (kernels/). Model code
 * (engine/model/) calls only these.
 *
 * Conventions
 *  - Activations are float32 arrays in backend memory (host memory for the
 *    CPU backend, device memory for CUDA), allocated with `alloc`. Pointer
 *    arithmetic on them is allowed (sub-arrays).
 *  - Weights are NsMat: a [rows × cols] row-major matrix (a vector has
 *    rows = 1) in a storage dtype (F32, BF16, F16, or weight-only I8/F8_E4M3
 *    with one float scale per row: W[o, i] = q[o, i] · scale[o]), uploaded
 *    once by `upload`. A conv weight [Co, Ci, k, k] is the matrix [Co × Ci·k·k].
 *  - Ops are asynchronous on CUDA; `read`/`sync` wait.
 *  - Shapes are explicit ints; nothing is validated beyond g_return_if_fail:
 *    model code validates at load time.
 */
#pragma once

#include <glib.h>
#include "files/tensor.h"
#include "nextstep.h"

G_BEGIN_DECLS

typedef struct {
  NsDType dtype;          /* F32, BF16, F16, I8, F8_E4M3 */
  int rows, cols;
  const void *data;       /* backend memory */
  const float *scale;     /* per-row scales for I8/F8 (backend memory), else NULL */
} NsMat;

typedef struct NsBackend NsBackend;

typedef struct {
  const char *name;                                  /* "cpu", "cuda" */
  void   (*destroy) (NsBackend *b);

  /* memory */
  float *(*alloc) (NsBackend *b, size_t n_floats, GError **error);   /* zeroed */
  void   (*free) (NsBackend *b, float *p);
  void   (*write) (NsBackend *b, float *dst, const float *src, size_t n);   /* host → backend */
  void   (*read) (NsBackend *b, float *dst, const float *src, size_t n);    /* backend → host, waits */
  void   (*copy) (NsBackend *b, float *dst, const float *src, size_t n);    /* backend → backend */
  /* Makes a weight from a file tensor (any float dtype; 1-D tensors become
   * one row; N-D tensors [d0, rest…] become d0 × prod(rest)). The CPU backend
   * points into the mapping; CUDA copies. Both quantize 2-D float matrices as
   * the NsBackend's weight_format asks (ns_backend_upload_dtype). */
  gboolean (*upload) (NsBackend *b, const NsTensorView *t, NsMat *out, GError **error);
  void   (*release) (NsBackend *b, NsMat *m);
  gboolean (*sync) (NsBackend *b, GError **error);

  /* out[i, :] = table[ids[i], :]; ids are host memory. */
  void (*embedding) (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n);

  /* y[r, o] = sum_i x[r, i] · W[o, i] + bias[o] (+ y[r, o] when accumulate).
   * x: [rows, W.cols], y: [rows, W.rows]; bias may be NULL. */
  void (*linear) (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                  int rows, gboolean accumulate);

  /* y = x · rsqrt(mean(x²) + eps) · weight over rows of `dim` (HF order). */
  void (*rmsnorm) (NsBackend *b, float *y, const float *x, const NsMat *weight,
                   int rows, int dim, float eps);
  /* y = (x - mean) · rsqrt(var + eps) (· weight + bias when given). */
  void (*layernorm) (NsBackend *b, float *y, const float *x, const NsMat *weight,
                     const NsMat *bias, int rows, int dim, float eps);
  /* y[r] = x[r] · (1 + scale[r]) + shift[r]; shift/scale rows are `mod_stride` apart. */
  void (*modulate) (NsBackend *b, float *y, const float *x, const float *shift,
                    const float *scale, int rows, int dim, int mod_stride);
  /* x[r] += gate[r] ⊙ m[r]; gate rows are `gate_stride` apart. */
  void (*gated_add) (NsBackend *b, float *x, const float *gate, const float *m,
                     int rows, int dim, int gate_stride);
  /* y = silu(x) elementwise (y may be x). */
  void (*silu) (NsBackend *b, float *y, const float *x, size_t n);
  /* y = silu(gate) ⊙ up elementwise. */
  void (*silu_mul) (NsBackend *b, float *y, const float *gate, const float *up, size_t n);
  /* y = a + b elementwise (y may alias a or b). */
  void (*add) (NsBackend *b, float *y, const float *a, const float *c, size_t n);

  /* Rotary embedding in place on x [rows, heads, head_dim] (HF rotate_half:
   * pairs (i, i + head_dim/2)), angle = positions[r] · theta^(-2i/head_dim),
   * cos/sin computed in double. positions are host memory. */
  void (*rope) (NsBackend *b, float *x, const int32_t *positions, int rows, int heads,
                int head_dim, double theta);

  /* Writes k/v of `n` new positions for each of `batch` sequences into the
   * caches at positions [start, start + n). src: [batch, n, kv_heads, head_dim].
   * cache: [batch, kv_heads, capacity, head_dim]. */
  void (*kv_store) (NsBackend *b, float *cache, const float *src, int batch, int n, int start,
                    int kv_heads, int head_dim, int capacity);

  /* Causal GQA attention of `n` new queries per sequence over the cache.
   * q: [batch, n, heads, head_dim]; out likewise. Query i of sequence s sits
   * at cache position start + i and sees keys 0..start+i whose
   * key_valid[s · capacity + pos] is non-zero (backend memory, 1/0 floats).
   * A query that sees no valid key gets a uniform average over its causal
   * keys (what the reference does with a finite mask value). Scale
   * 1/sqrt(head_dim). */
  void (*attention) (NsBackend *b, float *out, const float *q, const float *k_cache,
                     const float *v_cache, const float *key_valid, int batch, int n, int start,
                     int heads, int kv_heads, int head_dim, int capacity);

  /* 2-D convolution of one image, NCHW without N. x: [ci, h, w];
   * y: [co, oh, ow] with oh = (h + pad_t + pad_b - k) / stride + 1 (likewise ow).
   * w: [co × ci·k·k]; bias [co] may be NULL. */
  void (*conv2d) (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                  int ci, int h, int wd, int co, int k, int stride,
                  int pad_t, int pad_l, int pad_b, int pad_r);
  /* GroupNorm over x [c, hw] with `groups` groups, affine; then swish when
   * `silu` is TRUE. */
  void (*groupnorm) (NsBackend *b, float *y, const float *x, const NsMat *gamma,
                     const NsMat *beta, int c, int hw, int groups, float eps, gboolean silu);
  /* Nearest ×2 upsampling: x [c, h, w] → y [c, 2h, 2w]. */
  void (*upsample2x) (NsBackend *b, float *y, const float *x, int c, int h, int w);
  /* Single-head attention over n positions of dim c, channel-major as in the
   * VAE: q, k, v, out are [c, n]; scale 1/sqrt(c). */
  void (*attention_spatial) (NsBackend *b, float *out, const float *q, const float *k,
                             const float *v, int c, int n);

  /* tokens [gh·gw, c·p·p] ↔ latent [c, gh·p, gw·p]:
   * token[i·gw + j][ch·p·p + a·p + bb] = latent[ch, p·i + a, p·j + bb]. */
  void (*patchify) (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw, int p);
  void (*unpatchify) (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw, int p);

  /* Makes a weight from data quantized earlier (a `nextstep convert` cache):
   * q is I8 or F8_E4M3 [rows, cols], scale its F32 [rows] per-row scales. */
  gboolean (*upload_quantized) (NsBackend *b, const NsTensorView *q, const NsTensorView *scale,
                                NsMat *out, GError **error);
} NsBackendOps;

struct NsBackend {
  const NsBackendOps *ops;
  /* How `upload` stores float 2-D weights: AUTO/BF16 as published, INT8/FP8
   * quantized per output row (cpu/quant.h), for matrices of at least
   * quant_min_elements elements (NS_QUANT_MIN_ELEMENTS by default; tests set
   * 0 to quantize the tiny golden models). Set before uploading. */
  NsWeightFormat weight_format;
  int64_t quant_min_elements;
};

#define NS_QUANT_MIN_ELEMENTS (1 << 20)

/* Sets how later uploads store weights (see NsBackend). */
static inline void
ns_backend_set_weight_format (NsBackend *b, NsWeightFormat format, int64_t min_elements)
{
  b->weight_format = format;
  b->quant_min_elements = min_elements;
}

/* The quantized dtype `upload` gives tensor t (2-D, float, large enough), or
 * the tensor's own dtype when it stays as stored. */
NsDType ns_backend_upload_dtype (const NsBackend *b, const NsTensorView *t);

/* The CPU reference backend; threads = 0 uses every core. */
NsBackend *ns_backend_cpu_new (int threads);

/* The CUDA backend; NULL with an error saying why when no usable device (or
 * when built without CUDA). memory_cap 0 = the device's real free memory. */
NsBackend *ns_backend_cuda_new (int device, guint64 memory_cap, GError **error);
/* Bytes the CUDA backend may still allocate (for planning). */
guint64 ns_backend_cuda_free_memory (NsBackend *b);
/* TRUE when the device computes fp8 natively (sm_89 and newer). */
gboolean ns_backend_cuda_has_fp8 (NsBackend *b);
/* Most bytes the backend held at once since it was made. */
guint64 ns_backend_cuda_peak_memory (NsBackend *b);

static inline void ns_backend_destroy (NsBackend *b) { if (b) b->ops->destroy (b); }

G_END_DECLS
