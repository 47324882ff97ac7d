/* cpu-backend.h — internals of the CPU backend (backend.h), shared by its
 * op files. One file per op family; every op is a plain function taking the
 * NsBackend so it can read the instance's thread count. */
#pragma once

#include <math.h>
#include <string.h>
#include "backend.h"

G_BEGIN_DECLS

typedef struct {
  NsBackend parent;
  int threads;            /* OpenMP team size for this instance (≥ 1) */
  GHashTable *owned;      /* weight memory the backend allocated (quantized data, scales) */
  float *workspace;       /* scratch of the fused ops (ns_cpu_workspace) */
  size_t workspace_floats;
} NsCpuBackend;

static inline int
ns_cpu_threads (NsBackend *b)
{
  return ((NsCpuBackend *) b)->threads;
}

/* Hot loops get AVX-512 and AVX2/FMA clones picked at load time (the
 * AVX-512 one has twice the vector registers, so more accumulators stay in
 * them); the default clone keeps the build portable (no -march=native). */
#if defined(__x86_64__) && defined(__has_attribute)
#  if __has_attribute(target_clones)
#    define NS_CPU_HOT \
       __attribute__ ((target_clones ("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#  endif
#endif
#ifndef NS_CPU_HOT
#  define NS_CPU_HOT
#endif

/* Eight floats, for the few kernels where the register layout matters
 * (matmul, GEMV, dot products); GCC/clang lower it to whatever the target
 * has. Loads and stores are macros, not functions: a 32-byte vector must not
 * cross a call in the non-AVX clone (that changes the ABI). The unaligned
 * twin type makes the loads legal at any float address. */
typedef float NsF32x8 __attribute__ ((vector_size (32)));
typedef float NsF32x8u __attribute__ ((vector_size (32), aligned (4)));

typedef uint32_t NsU32x8 __attribute__ ((vector_size (32)));
typedef uint32_t NsU32x8u __attribute__ ((vector_size (32), aligned (2)));

#define NS_F32X8_LOAD(p)      (*(const NsF32x8u *) (p))
#define NS_F32X8_STORE(p, v)  (*(NsF32x8u *) (p) = (v))
#define NS_F32X8_SUM(v) \
  ((((v)[0] + (v)[4]) + ((v)[1] + (v)[5])) + (((v)[2] + (v)[6]) + ((v)[3] + (v)[7])))

/* Loops shorter than this run on one thread: a team costs microseconds. */
#define NS_CPU_PARALLEL_MIN 32768

/* silu(v) = v · sigmoid(v), written as PyTorch does. */
static inline float
ns_cpu_silu1 (float v)
{
  return v / (1.0f + expf (-v));
}

/* Mean and biased variance of n floats, accumulated in double (norm.c says
 * why). */
static inline double
ns_cpu_mean (const float *x, size_t n)
{
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += x[i];
  return s / (double) n;
}

static inline double
ns_cpu_variance (const float *x, size_t n, double mean)
{
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += (x[i] - mean) * (x[i] - mean);
  return s / (double) n;
}

/* vec.c: Σ a[i]·c[i]; y += a · x. */
float ns_cpu_dot (const float *a, const float *c, int n);
void  ns_cpu_axpy (float *restrict y, float a, const float *restrict x, int n);
/* Σ a[i] read as fast as the decode GEMV reads its weights (the same
 * prefetch, independent vector sums): `nextstep bench`'s read floor. */
float ns_cpu_stream_sum (const float *a, size_t n);

/* convert.c: n elements of a weight starting at element `offset`, as f32. */
void   ns_cpu_convert (float *dst, const NsMat *m, size_t offset, size_t n);
/* The whole weight as a new f32 array (g_free it); NULL when m is NULL. */
float *ns_cpu_mat_to_f32 (const NsMat *m);

/* blas.c: C = alpha · op(A) · op(B) + beta · C, row-major (cblas_sgemm),
 * op(X) = Xᵀ when trans_x; on the backend's threads. */
void ns_cpu_sgemm (NsBackend *b, gboolean trans_a, gboolean trans_b, int m, int n, int k,
                   float alpha, const float *a, int lda, const float *bm, int ldb, float beta,
                   float *c, int ldc);

/* The BLAS on the calling thread only, for ops that split the work among
 * the backend's threads themselves: ns_cpu_blas_serial () once before the
 * parallel region, then C += A · Bᵀ with A [m, k], B [n, k] (both rows k
 * apart), C rows ldc apart. */
void ns_cpu_blas_serial (void);
void ns_cpu_sgemm_serial (int m, int n, int k, const float *a, const float *bt, float *c,
                          int ldc);

/* memory.c */
float   *ns_cpu_alloc (NsBackend *b, size_t n_floats, GError **error);
void     ns_cpu_free (NsBackend *b, float *p);
/* write, and read and copy too: all host memory. */
void     ns_cpu_write (NsBackend *b, float *dst, const float *src, size_t n);
gboolean ns_cpu_upload (NsBackend *b, const NsTensorView *t, NsMat *out, GError **error);
gboolean ns_cpu_upload_quantized (NsBackend *b, const NsTensorView *q, const NsTensorView *scale,
                                  NsMat *out, GError **error);
void     ns_cpu_release (NsBackend *b, NsMat *m);
gboolean ns_cpu_sync (NsBackend *b, GError **error);
gboolean ns_cpu_reserve (NsBackend *b, int max_rows, GError **error);
/* Scratch of at least n floats, valid until the next call: it grows (by
 * half again) only when a larger one is asked for, so ops that run every
 * token allocate nothing after the first. */
float   *ns_cpu_workspace (NsBackend *b, size_t n);
void     ns_cpu_read_async (NsBackend *b, float *dst, const float *src, size_t n);

/* embedding.c */
void ns_cpu_embedding (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n);

/* linear.c */
void ns_cpu_linear (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                    int rows, gboolean accumulate);

/* linear-fused.c */
void ns_cpu_linear_multi (NsBackend *b, const NsLinearOut *outs, int n, const float *x, int rows);
void ns_cpu_linear_swiglu (NsBackend *b, float *y, const float *x, const NsMat *gate_w,
                           const NsMat *gate_b, const NsMat *up_w, const NsMat *up_b, int rows);
void ns_cpu_norm_modulate_linear (NsBackend *b, float *y, const float *x,
                                  const NsNormModulate *nm, const NsMat *w, const NsMat *bias,
                                  int rows, gboolean silu);
void ns_cpu_linear_gated_add (NsBackend *b, float *x, const float *gate, const float *m,
                              const NsMat *w, const NsMat *bias, int rows, int gate_stride);

/* norm.c, groupnorm.c */
void ns_cpu_rmsnorm (NsBackend *b, float *y, const float *x, const NsMat *weight,
                     int rows, int dim, float eps);
void ns_cpu_layernorm (NsBackend *b, float *y, const float *x, const NsMat *weight,
                       const NsMat *bias, int rows, int dim, float eps);
void ns_cpu_groupnorm (NsBackend *b, float *y, const float *x, const NsMat *gamma,
                       const NsMat *beta, int c, int hw, int groups, float eps, gboolean silu);

/* elementwise.c */
void ns_cpu_modulate (NsBackend *b, float *y, const float *x, const float *shift,
                      const float *scale, int rows, int dim, int mod_stride);
void ns_cpu_gated_add (NsBackend *b, float *x, const float *gate, const float *m,
                       int rows, int dim, int gate_stride);
void ns_cpu_silu (NsBackend *b, float *y, const float *x, size_t n);
void ns_cpu_silu_mul (NsBackend *b, float *y, const float *gate, const float *up, size_t n);
void ns_cpu_add (NsBackend *b, float *y, const float *a, const float *c, size_t n);
void ns_cpu_counter_add (NsBackend *b, int32_t *counter, int n, int32_t delta);
void ns_cpu_add_indexed_row (NsBackend *b, float *y, const float *x, const float *table,
                             const int32_t *rows_of, const int32_t *token, int rows, int dim);

/* sampler.c */
void ns_cpu_time_features (NsBackend *b, float *out, const double *t, int n, int n_features);
void ns_cpu_noise (NsBackend *b, float *out, int n_images, int dim, guint64 seed,
                   const float *table, int draws, const int32_t *token, int draw);
void ns_cpu_cfg_combine (NsBackend *b, float *v, const float *v_rows, int cfg_mult, size_t block,
                         const NsCfgParams *cfg, const int32_t *token);
void ns_cpu_sampler_step (NsBackend *b, double *state, float *x_rows, const float *v,
                          const float *eps, size_t block, int copies, const NsSamplerStep *step);
void ns_cpu_sampler_finish (NsBackend *b, float *tok, const double *state, int n, int dim,
                            gboolean use_norm);

/* rope.c, attention.c, attention-spatial.c */
void ns_cpu_rope (NsBackend *b, float *x, const int32_t *start, int batch, int n, int heads,
                  int head_dim, double theta);
void ns_cpu_kv_store (NsBackend *b, float *cache, const float *src, int batch, int n,
                      const int32_t *start, int kv_heads, int head_dim, int capacity);
void ns_cpu_attention (NsBackend *b, float *out, const float *q, const float *k_cache,
                       const float *v_cache, const float *key_valid, int batch, int n,
                       const int32_t *start, int heads, int kv_heads, int head_dim,
                       int capacity);
void ns_cpu_attention_spatial (NsBackend *b, float *out, const float *q, const float *k,
                               const float *v, int c, int n);

/* conv2d.c, image.c */
void ns_cpu_conv2d (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
                    int ci, int h, int wd, int co, int k, int stride,
                    int pad_t, int pad_l, int pad_b, int pad_r);
void ns_cpu_upsample2x (NsBackend *b, float *y, const float *x, int c, int h, int w);
void ns_cpu_patchify (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw,
                      int p);
void ns_cpu_unpatchify (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw,
                        int p);

G_END_DECLS
