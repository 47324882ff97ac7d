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
 *    with one float scale per row: W[o, i] = q[o, i] · scale[o], or Q4:
 *    4-bit codes with an f16 scale per group of 32, q4-layout.h), uploaded
 *    once by `upload`. A conv weight [Co, Ci, k, k] is the matrix [Co × Ci·k·k].
 *  - Index arrays (token ids, counters) are int32 and time grids / sampler
 *    states float64, also in backend memory: allocate them with
 *    ns_backend_alloc_i32 / _f64 and fill them with `write` (a bit copy).
 *  - Ops are asynchronous on CUDA; `read`/`sync`/`read_wait` wait.
 *  - No op reads host memory or synchronises: positions, token indices and
 *    the CFG schedule come from device-resident counters (`start`, `token`
 *    arguments: int32 pointers into backend memory), so the op sequence of
 *    one image token is the same as the next one's (docs/architecture.md,
 *    "The per-token loop") and can be captured once as a CUDA graph.
 *  - Shapes are explicit ints; nothing is validated beyond g_return_if_fail:
 *    model code validates at load time.
 */
#pragma once

#include <glib.h>
#include <math.h>
#include "files/tensor.h"
#include "nextstep.h"

G_BEGIN_DECLS

typedef struct {
  NsDType dtype;          /* F32, BF16, F16, I8, F8_E4M3, Q4 */
  int rows, cols;
  const void *data;       /* backend memory */
  const float *scale;     /* per-row scales for I8/F8 (backend memory), else NULL */
  const uint16_t *group_scale;   /* Q4: f16 scales [rows, cols / NS_Q4_GROUP]
                                  * (q4-layout.h), else NULL */
} NsMat;

typedef struct NsBackend NsBackend;

/* Most outputs one `linear_multi` call takes (q, k and v). */
#define NS_LINEAR_MULTI_MAX 3

/* One output of `linear_multi`: y = x · Wᵀ + bias (bias may be NULL). */
typedef struct {
  float *y;
  const NsMat *w;
  const NsMat *bias;
} NsLinearOut;

/* The LayerNorm and adaLN modulation `norm_modulate_linear` puts in front of
 * its product (the FM head's, engine/model/fm-head.c): per row r,
 * u = LN(x[r]) (· weight + bias when given, eps) · (1 + scale[r]) + shift[r],
 * shift/scale rows `mod_stride` apart (the `layernorm` and `modulate` ops). */
typedef struct {
  const NsMat *weight, *bias;   /* LayerNorm affine, or NULL */
  float eps;
  const float *shift, *scale;
  int mod_stride;
} NsNormModulate;

typedef struct NsGraph NsGraph;

/* The classifier-free guidance of one request (docs/model.md §8): with the
 * linear schedule the scales fall from cfg to 1 over the image tokens,
 * cfg_t = 1 + (cfg − 1)·(ntok − token)/ntok (the official operation order). */
typedef struct {
  double cfg, cfg_img;
  gboolean linear;
  int ntok;
} NsCfgParams;

#ifdef __CUDACC__
#  define NS_HOST_DEVICE static inline __host__ __device__
#else
#  define NS_HOST_DEVICE static inline
#endif

/* The guidance scales (s, s_img) of image token `token`. */
NS_HOST_DEVICE void
ns_cfg_scales (const NsCfgParams *cfg, int token, double *s, double *s_img)
{
  *s = cfg->cfg;
  *s_img = cfg->cfg_img;
  if (cfg->linear)
    {
      *s = 1.0 + (cfg->cfg - 1.0) * (cfg->ntok - token) / cfg->ntok;
      *s_img = 1.0 + (cfg->cfg_img - 1.0) * (cfg->ntok - token) / cfg->ntok;
    }
}

/* One update of a token's sampler state (engine/model/sampler.c says which
 * sampler issues which): */
typedef enum {
  NS_STEP_INIT,   /* state = ε (draw 0) */
  NS_STEP_SDE,    /* state += drift·dt + sqrt(2(1 − t))·sqrt(dt)·ε, drift = v + (1 − t)·score,
                     score = (t·v − state) / ((1 − t)² + t(1 − t)) */
  NS_STEP_ODE,    /* state = (state − v t)(1 − t_next) + (state + v (1 − t)) t_next */
  NS_STEP_EULER,  /* state += dt·v */
} NsStepKind;

typedef struct {
  NsStepKind kind;
  double t, t_next, dt;
} NsSamplerStep;

/* Element i of the CFG combination of head rows [cfg_mult, block] with the
 * scales (s, s_img), in double (the `cfg_combine` op). */
NS_HOST_DEVICE float
ns_cfg_mix (const float *rows, size_t block, int cfg_mult, size_t i, double s, double s_img)
{
  const float *c = rows, *u1 = rows + block, *u2 = rows + 2 * block;
  if (cfg_mult == 1)
    return c[i];
  if (cfg_mult == 2)
    return (float) (u1[i] + s * ((double) c[i] - u1[i]));
  return (float) (u2[i] + s_img * ((double) u1[i] - u2[i]) + s * ((double) c[i] - u1[i]));
}

/* One state element x after `step` with velocity v and draw eps (the
 * `sampler_step` op; NsStepKind gives the rules). */
NS_HOST_DEVICE double
ns_sampler_update (const NsSamplerStep *step, double x, float v, float eps)
{
  double t = step->t, t_next = step->t_next;
  switch (step->kind)
    {
    case NS_STEP_INIT:
      return eps;
    case NS_STEP_SDE:
      {
        double dt = t_next - t;
        double score = (t * v - x) / ((1.0 - t) * (1.0 - t) + t * (1.0 - t));
        double drift = v + (1.0 - t) * score;
        return x + drift * dt + sqrt (2.0 * (1.0 - t)) * sqrt (dt) * eps;
      }
    case NS_STEP_ODE:
      return (x - v * t) * (1.0 - t_next) + (x + v * (1.0 - t)) * t_next;
    case NS_STEP_EULER:
    default:
      return x + step->dt * v;
    }
}

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

  /* out[i, :] = table[ids[i], :]; ids are int32 backend memory. */
  void (*embedding) (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n);

  /* y[r, o] = sum_i x[r, i] · W[o, i] + bias[o] (+ y[r, o] when accumulate).
   * x: [rows, W.cols], y: [rows, W.rows]; bias may be NULL. */
  void (*linear) (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                  int rows, gboolean accumulate);

  /* ---- fused linears: each gives exactly what the op sequence it names
   * gives on the CPU, in one GEMV launch on CUDA (docs/architecture.md, "The
   * per-token loop"). All weights of one call have the same cols. -------- */

  /* outs[j].y = x · outs[j].wᵀ + outs[j].bias for j < n (q/k/v of a layer:
   * `linear` n times). n ≤ NS_LINEAR_MULTI_MAX. */
  void (*linear_multi) (NsBackend *b, const NsLinearOut *outs, int n, const float *x, int rows);
  /* y [rows, gate_w.rows] = silu(x·gate_wᵀ + gate_b) ⊙ (x·up_wᵀ + up_b)
   * (`linear` twice, then `silu_mul`); biases may be NULL. */
  void (*linear_swiglu) (NsBackend *b, float *y, const float *x, const NsMat *gate_w,
                         const NsMat *gate_b, const NsMat *up_w, const NsMat *up_b, int rows);
  /* y = nm(x) · Wᵀ + bias, then silu(y) when `silu` (`layernorm`,
   * `modulate`, `linear`[, `silu`]); x: [rows, W.cols]. */
  void (*norm_modulate_linear) (NsBackend *b, float *y, const float *x, const NsNormModulate *nm,
                                const NsMat *w, const NsMat *bias, int rows, gboolean silu);
  /* x[r] += gate[r] ⊙ (m[r] · Wᵀ + bias) (`linear`, then `gated_add`);
   * x: [rows, W.rows], gate rows `gate_stride` apart. */
  void (*linear_gated_add) (NsBackend *b, float *x, const float *gate, const float *m,
                            const NsMat *w, const NsMat *bias, int rows, int gate_stride);

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

  /* Rotary embedding in place on x [batch, n, heads, head_dim] (HF
   * rotate_half: pairs (i, i + head_dim/2)); row (s, i) sits at position
   * *start + i, angle = position · theta^(-2i/head_dim), cos/sin in double.
   * `start` is int32 backend memory. */
  void (*rope) (NsBackend *b, float *x, const int32_t *start, int batch, int n, int heads,
                int head_dim, double theta);

  /* Writes k/v of `n` new positions for each of `batch` sequences into the
   * caches at positions [*start, *start + n). src: [batch, n, kv_heads,
   * head_dim]. cache: [batch, kv_heads, capacity, head_dim]. */
  void (*kv_store) (NsBackend *b, float *cache, const float *src, int batch, int n,
                    const int32_t *start, int kv_heads, int head_dim, int capacity);

  /* Causal GQA attention of `n` new queries per sequence over the cache.
   * q: [batch, n, heads, head_dim]; out likewise. Query i of sequence s sits
   * at cache position *start + i and sees keys 0..*start+i whose
   * key_valid[s · capacity + pos] is non-zero (backend memory, 1/0 floats).
   * A query that sees no valid key gets a uniform average over its causal
   * keys (what the reference does with a finite mask value). Scale
   * 1/sqrt(head_dim). *start + n ≤ capacity. */
  void (*attention) (NsBackend *b, float *out, const float *q, const float *k_cache,
                     const float *v_cache, const float *key_valid, int batch, int n,
                     const int32_t *start, int heads, int kv_heads, int head_dim, int capacity);

  /* ---- the per-token counters and the sampler (engine/model/sampler.c) -- */

  /* counter[i] += delta for i < n (int32 backend memory). */
  void (*counter_add) (NsBackend *b, int32_t *counter, int n, int32_t delta);
  /* y[r, :] = x[r, :] + table[rows_of[*token], :] for r < rows (gen_pos_embed
   * of the current image token); y may alias x. */
  void (*add_indexed_row) (NsBackend *b, float *y, const float *x, const float *table,
                           const int32_t *rows_of, const int32_t *token, int rows, int dim);
  /* out[i, :] = [cos(t_i f_k) ‖ sin(t_i f_k)], f_k = exp(−ln(10000)·k/half),
   * half = n_features/2, in double (the FM head's time embedding input). */
  void (*time_features) (NsBackend *b, float *out, const double *t, int n, int n_features);
  /* out [n_images, dim] = Gaussian draw `draw` of image token *token: from
   * Philox (seed; engine/philox.h gives the exact mapping) when `table` is
   * NULL, else table[*token, draw, :, :] of injected draws
   * [ntok, draws, n_images, dim] (backend memory). dim is even. */
  void (*noise) (NsBackend *b, float *out, int n_images, int dim, guint64 seed,
                 const float *table, int draws, const int32_t *token, int draw);
  /* v [block] = the CFG combination of the head rows v_rows [cfg_mult, block]
   * at image token *token: 1 row: c; 2: u + s(c − u); 3: u2 + s_img(u1 − u2)
   * + s(c − u1), in double (s, s_img from NsCfgParams). */
  void (*cfg_combine) (NsBackend *b, float *v, const float *v_rows, int cfg_mult, size_t block,
                       const NsCfgParams *cfg, const int32_t *token);
  /* Updates the float64 sampler state [block] by `step` with the combined
   * velocity v and the draw eps (either unused where the kind needs none),
   * then writes (float) state into each of the `copies` head-input blocks
   * x_rows [copies, block]. */
  void (*sampler_step) (NsBackend *b, double *state, float *x_rows, const float *v,
                        const float *eps, size_t block, int copies, const NsSamplerStep *step);
  /* tok [n, dim] = (float) state, then (use_norm) a LayerNorm without affine
   * (eps 1e-6, in double) of each row. */
  void (*sampler_finish) (NsBackend *b, float *tok, const double *state, int n, int dim,
                          gboolean use_norm);

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
   * q is I8 or F8_E4M3 [rows, cols], scale its F32 [rows] per-row scales;
   * or q4: q is U8 [rows, cols / 2] packed codes, scale F16
   * [rows, cols / NS_Q4_GROUP] (q4-layout.h). */
  gboolean (*upload_quantized) (NsBackend *b, const NsTensorView *q, const NsTensorView *scale,
                                NsMat *out, GError **error);

  /* ---- a request's fixed costs and the one read per token ---------------- */

  /* Called once per request before its first op, with the most rows any
   * linear will get: the backend sizes its workspaces so that no later op
   * allocates (which would also break graph capture). */
  gboolean (*reserve) (NsBackend *b, int max_rows, GError **error);
  /* backend → host without waiting: dst holds the data after `read_wait`
   * (which waits for the reads issued so far, not for later ops). */
  void     (*read_async) (NsBackend *b, float *dst, const float *src, size_t n);
  gboolean (*read_wait) (NsBackend *b, GError **error);

  /* Graphs: NULL where ops run at once (CPU). Between graph_begin and
   * graph_end ops are recorded, not run; graph_launch replays them with the
   * same arguments (counters in backend memory are what changes). */
  gboolean (*graph_begin) (NsBackend *b, GError **error);
  NsGraph *(*graph_end) (NsBackend *b, GError **error);
  void     (*graph_launch) (NsBackend *b, NsGraph *graph);
  void     (*graph_free) (NsBackend *b, NsGraph *graph);
} NsBackendOps;

struct NsBackend {
  const NsBackendOps *ops;
  /* How `upload` stores float 2-D weights: AUTO/BF16 as published, INT8/FP8
   * quantized per output row, Q4 per group of 32 where the rule of
   * cpu/quant.h allows (else int8), for matrices of at least
   * quant_min_elements elements (NS_QUANT_MIN_ELEMENTS by default; tests set
   * 0 to quantize the tiny golden models). Set before uploading. */
  NsWeightFormat weight_format;
  int64_t quant_min_elements;
};

#define NS_QUANT_MIN_ELEMENTS (1 << 20)

/* int32 and float64 arrays in backend memory (alloc counts 4-byte floats). */
static inline int32_t *
ns_backend_alloc_i32 (NsBackend *b, size_t n, GError **error)
{
  return (int32_t *) b->ops->alloc (b, n, error);
}

static inline double *
ns_backend_alloc_f64 (NsBackend *b, size_t n, GError **error)
{
  return (double *) b->ops->alloc (b, 2 * n, error);
}

static inline void
ns_backend_write_i32 (NsBackend *b, int32_t *dst, const int32_t *src, size_t n)
{
  b->ops->write (b, (float *) dst, (const float *) src, n);
}

static inline void
ns_backend_write_f64 (NsBackend *b, double *dst, const double *src, size_t n)
{
  b->ops->write (b, (float *) dst, (const float *) src, 2 * n);
}

static inline void
ns_backend_free_any (NsBackend *b, void *p)
{
  if (p != NULL)
    b->ops->free (b, (float *) p);
}

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
