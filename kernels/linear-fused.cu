/* linear-fused.cu — the fused linears of backend.h, the ops of
 * engine/cpu/linear-fused.c, each one GEMV launch (gemv.cuh) per group of
 * 8 rows:
 *  - linear_multi: q/k/v share x; the blocks of all matrices form one grid
 *    and split-K is chosen for their total, so the 1,024-row k/v
 *    projections ride along with q instead of under-filling the SMs alone;
 *  - linear_swiglu: a warp owns the same outputs of gate and up (the paired
 *    layout of grid-index.h) and stores silu(gate) · up;
 *  - norm_modulate_linear: each block computes the LayerNorm statistics of
 *    its ≤ 8 rows, and x is normed and modulated as it is loaded;
 *  - linear_gated_add: x += gate ⊙ (W·m + b) in the store.
 * Up to 32 rows run as groups of 8 (W read once per group, as linear.cu's
 * grouped GEMV does). The fused kernels exist for the formats checkpoints
 * and the cache hold (bf16, int8, fp8): each format costs 32 kernels (8 row
 * counts × 4 fusions) of build time for every GPU architecture. What they do
 * not cover (f32/f16 or q4 weights, more rows, k or pointers not fit for
 * 16-byte loads) runs as the unfused
 * op sequence in passes of rows whose intermediate fits a scratch area
 * behind what the linears take from the workspace (ns_cuda_fused_scratch),
 * which reserve sizes, so graph capture allocates nothing. */
#include "gemv.cuh"

static_assert (NS_LINEAR_MULTI_MAX <= NS_GEMV_MAX_MATS, "one launch takes every output");

#define FUSED_MAX_ROWS 32   /* linear.cu's GEMV_GROUPED_MAX_ROWS; more go to its GEMM */
#define FUSED_SCRATCH_BUDGET ((size_t) 64 << 20)   /* bytes of the fallback's intermediate */

typedef enum { MULTI, SWIGLU, NORM, GATED } FusedKind;

/* One fused op's arguments: matrices j < n of the same format and cols,
 * outputs y[j] (GATED: the residual), x [rows, cols]. */
typedef struct {
  FusedKind kind;
  const NsMat *w[NS_GEMV_MAX_MATS], *bias[NS_GEMV_MAX_MATS];
  float *y[NS_GEMV_MAX_MATS];
  int n;
  const float *x;
  const NsNormModulate *nm;   /* NORM */
  gboolean silu;              /* NORM */
  const float *gate;          /* GATED */
  int gate_stride;
} Fused;

static size_t
scratch_offset (NsBackend *b, int rows)
{
  return (ns_cuda_linear_workspace (b, rows) + 255) / 256 * 256;
}

/* Scratch floats of a fallback over `rows` rows with `width` floats each. */
static size_t
scratch_floats (int rows, size_t width)
{
  return MIN ((size_t) rows * width, FUSED_SCRATCH_BUDGET / sizeof (float));
}

size_t
ns_cuda_fused_workspace (NsBackend *b, int rows)
{
  NsCudaBackend *cb = ns_cuda (b);
  return scratch_offset (b, rows)
         + scratch_floats (rows, MAX (cb->max_out, cb->max_in)) * sizeof (float);
}

float *
ns_cuda_fused_scratch (NsBackend *b, int rows, size_t floats)
{
  size_t at = scratch_offset (b, rows);
  char *ws = (char *) ns_cuda_workspace (b, at + floats * sizeof (float));
  return ws != NULL ? (float *) (ws + at) : NULL;
}

/* TRUE when the fused kernel takes the op over `rows` rows. */
static gboolean
fusable (const Fused *f, int rows)
{
  NsDType dtype = f->w[0]->dtype;
  if (rows < 1 || rows > FUSED_MAX_ROWS
      || (dtype != NS_DTYPE_BF16 && dtype != NS_DTYPE_I8 && dtype != NS_DTYPE_F8_E4M3))
    return FALSE;
  for (int j = 0; j < f->n; j++)
    if (!ns_gemv_fits (f->w[j], f->x) || f->w[j]->dtype != f->w[0]->dtype
        || f->w[j]->cols != f->w[0]->cols)
      return FALSE;
  return f->kind != NORM
         || ((uintptr_t) f->nm->shift % 16 == 0 && (uintptr_t) f->nm->scale % 16 == 0
             && f->nm->mod_stride % 4 == 0);
}

/* ns_gemv_launch for the formats fusable() admits. */
template <class X, class E>
static void
launch_format (NsBackend *b, const NsGemvTask &t, const X &x, const E &e, NsDType dtype)
{
  if (dtype == NS_DTYPE_BF16)
    ns_gemv_format<NS_DTYPE_BF16> (b, t, x, e);
  else if (dtype == NS_DTYPE_I8)
    ns_gemv_format<NS_DTYPE_I8> (b, t, x, e);
  else
    ns_gemv_format<NS_DTYPE_F8_E4M3> (b, t, x, e);
}

/* The fused kernel over rows [r0, r0 + n), n ≤ 8. */
static void
launch_rows (NsBackend *b, const Fused *f, int r0, int n)
{
  int k = f->w[0]->cols;
  NsGemvTask t = {};
  t.n_mats = f->n;
  t.k = k;
  t.rows = n;
  t.paired = f->kind == SWIGLU;
  for (int j = 0; j < f->n; j++)
    {
      NsGemvMat m = { f->w[j]->data, f->w[j]->scale, ns_mat_or_none (f->bias[j]),
                      f->y[j] ? f->y[j] + (size_t) r0 * f->w[j]->rows : NULL };
      t.m[j] = m;
      t.n_out[j] = f->w[j]->rows;
    }
  const NsGemvPlainX x = { f->x + (size_t) r0 * k, k };
  NsDType dtype = f->w[0]->dtype;
  if (f->kind == NORM)
    {
      const NsNormModulate *nm = f->nm;
      size_t at = (size_t) r0 * nm->mod_stride;
      NsGemvNormX nx = { x.x, k, ns_mat_or_none (nm->weight), ns_mat_or_none (nm->bias),
                         nm->eps, nm->shift + at, nm->scale + at, nm->mod_stride };
      launch_format (b, t, nx, NsGemvStore { FALSE, f->silu }, dtype);
    }
  else if (f->kind == SWIGLU)
    launch_format (b, t, x, NsGemvSwiglu {}, dtype);
  else if (f->kind == GATED)
    launch_format (b, t, x,
                   NsGemvGatedAdd { f->gate + (size_t) r0 * f->gate_stride, f->gate_stride },
                   dtype);
  else
    launch_format (b, t, x, NsGemvStore { FALSE, FALSE }, dtype);
}

/* The unfused sequence over rows [r0, r0 + n), its intermediate in tmp. */
static void
sequence_rows (NsBackend *b, const Fused *f, int r0, int n, float *tmp)
{
  int k = f->w[0]->cols, outs = f->w[0]->rows;
  const float *x = f->x + (size_t) r0 * k;
  float *y = f->y[0] + (size_t) r0 * outs;
  size_t ny = (size_t) n * outs;
  switch (f->kind)
    {
    case MULTI:
      for (int j = 0; j < f->n; j++)
        ns_cuda_linear (b, f->y[j] + (size_t) r0 * f->w[j]->rows, x, f->w[j], f->bias[j], n,
                        FALSE);
      break;
    case SWIGLU:
      ns_cuda_linear (b, y, x, f->w[0], f->bias[0], n, FALSE);
      ns_cuda_linear (b, tmp, x, f->w[1], f->bias[1], n, FALSE);
      ns_cuda_silu_mul (b, y, y, tmp, ny);
      break;
    case NORM:
      {
        size_t at = (size_t) r0 * f->nm->mod_stride;
        ns_cuda_layernorm (b, tmp, x, f->nm->weight, f->nm->bias, n, k, f->nm->eps);
        ns_cuda_modulate (b, tmp, tmp, f->nm->shift + at, f->nm->scale + at, n, k,
                          f->nm->mod_stride);
        ns_cuda_linear (b, y, tmp, f->w[0], f->bias[0], n, FALSE);
        if (f->silu)
          ns_cuda_silu (b, y, y, ny);
        break;
      }
    default:
      ns_cuda_linear (b, tmp, x, f->w[0], f->bias[0], n, FALSE);
      ns_cuda_gated_add (b, y, f->gate + (size_t) r0 * f->gate_stride, tmp, n, outs,
                         f->gate_stride);
      break;
    }
}

/* Floats of the intermediate per row of the unfused sequence. */
static size_t
intermediate_width (const Fused *f)
{
  return f->kind == MULTI ? 0 : f->kind == NORM ? f->w[0]->cols : f->w[0]->rows;
}

static void
run_fused (NsBackend *b, const Fused *f, int rows, const char *op)
{
  if (rows <= 0)
    return;
  if (fusable (f, rows))
    for (int r0 = 0; r0 < rows; r0 += NS_GEMV_MAX_ROWS)
      launch_rows (b, f, r0, MIN (NS_GEMV_MAX_ROWS, rows - r0));
  else
    {
      size_t width = intermediate_width (f);
      int per = width ? (int) MAX ((size_t) 1, scratch_floats (rows, width) / width) : rows;
      float *tmp = width ? ns_cuda_fused_scratch (b, rows, (size_t) per * width) : NULL;
      if (width && tmp == NULL)
        return;
      for (int r0 = 0; r0 < rows; r0 += per)
        sequence_rows (b, f, r0, MIN (per, rows - r0), tmp);
    }
  ns_cuda_check_launch (b, op);
}

/* ---- the ops --------------------------------------------------------------- */

void
ns_cuda_linear_multi (NsBackend *b, const NsLinearOut *outs, int n, const float *x, int rows)
{
  g_return_if_fail (n >= 1 && n <= NS_LINEAR_MULTI_MAX);
  Fused f = { MULTI, {}, {}, {}, n, x, NULL, FALSE, NULL, 0 };
  for (int j = 0; j < n; j++)
    {
      f.w[j] = outs[j].w;
      f.bias[j] = outs[j].bias;
      f.y[j] = outs[j].y;
    }
  run_fused (b, &f, rows, "linear_multi");
}

void
ns_cuda_linear_swiglu (NsBackend *b, float *y, const float *x, const NsMat *gate_w,
                       const NsMat *gate_b, const NsMat *up_w, const NsMat *up_b, int rows)
{
  g_return_if_fail (gate_w->rows == up_w->rows && gate_w->cols == up_w->cols);
  Fused f = { SWIGLU, { gate_w, up_w }, { gate_b, up_b }, { y }, 2, x, NULL, FALSE, NULL, 0 };
  run_fused (b, &f, rows, "linear_swiglu");
}

void
ns_cuda_norm_modulate_linear (NsBackend *b, float *y, const float *x, const NsNormModulate *nm,
                              const NsMat *w, const NsMat *bias, int rows, gboolean silu)
{
  Fused f = { NORM, { w }, { bias }, { y }, 1, x, nm, silu, NULL, 0 };
  run_fused (b, &f, rows, "norm_modulate_linear");
}

void
ns_cuda_linear_gated_add (NsBackend *b, float *x, const float *gate, const float *m,
                          const NsMat *w, const NsMat *bias, int rows, int gate_stride)
{
  Fused f = { GATED, { w }, { bias }, { x }, 1, m, NULL, FALSE, gate, gate_stride };
  run_fused (b, &f, rows, "linear_gated_add");
}
