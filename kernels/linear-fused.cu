/* linear-fused.cu — the fused linears of backend.h, the ops of
 * engine/cpu/linear-fused.c, each one GEMV launch (gemv.cuh) for decode:
 *  - linear_multi: q/k/v share x; the blocks of all matrices form one grid
 *    and split-K is chosen for their total, so the 1,024-row k/v
 *    projections ride along with q instead of under-filling the SMs alone;
 *  - linear_swiglu: a warp owns the same outputs of gate and up (the paired
 *    layout of grid-index.h) and stores silu(gate) · up;
 *  - norm_modulate_linear: each block computes the LayerNorm statistics of
 *    its ≤ 8 rows, and x is normed and modulated as it is loaded;
 *  - linear_gated_add: x += gate ⊙ (W·m + b) in the store.
 * What the fused kernel does not cover (q4 weights, more than 8 rows, k or
 * pointers not fit for 16-byte loads) runs as the unfused op sequence, its
 * intermediate in the workspace behind what the linears use
 * (ns_cuda_fused_scratch), so graph capture still allocates nothing. */
#include "gemv.cuh"

/* Rows above which the fused ops use the unfused sequence (linear.cu's
 * grouped GEMV or its GEMM): as many as one GEMV pass serves. */
#define FUSED_MAX_ROWS NS_GEMV_MAX_ROWS
/* Rows the fallback's scratch is reserved for (linear.cu's grouped GEMV). */
#define FUSED_RESERVED_ROWS 32

static size_t
scratch_offset (NsBackend *b, int rows)
{
  return (ns_cuda_linear_workspace (b, rows) + 255) / 256 * 256;
}

size_t
ns_cuda_fused_workspace (NsBackend *b, int rows)
{
  NsCudaBackend *cb = ns_cuda (b);
  int r = MIN (rows, FUSED_RESERVED_ROWS);
  return scratch_offset (b, r) + (size_t) r * MAX (cb->max_out, cb->max_in) * sizeof (float);
}

float *
ns_cuda_fused_scratch (NsBackend *b, int rows, size_t floats)
{
  size_t at = scratch_offset (b, rows);
  char *ws = (char *) ns_cuda_workspace (b, at + floats * sizeof (float));
  return ws != NULL ? (float *) (ws + at) : NULL;
}

/* ---- the fused GEMV ------------------------------------------------------- */

/* TRUE when the fused kernel takes these weights and rows. */
static gboolean
fusable (const NsMat *const *w, int n, const float *x, int rows)
{
  if (rows < 1 || rows > FUSED_MAX_ROWS)
    return FALSE;
  for (int j = 0; j < n; j++)
    if (!ns_gemv_fits (w[j], x) || w[j]->dtype != w[0]->dtype || w[j]->cols != w[0]->cols)
      return FALSE;
  return TRUE;
}

/* The task's matrices from weights and biases (outputs set by the caller). */
static NsGemvTask
task_of (const NsMat *const *w, const NsMat *const *bias, int n, int rows, int paired)
{
  NsGemvTask t = {};
  t.n_mats = n;
  t.k = w[0]->cols;
  t.rows = rows;
  t.paired = paired;
  for (int j = 0; j < n; j++)
    {
      t.m[j].w = w[j]->data;
      t.m[j].scale = w[j]->scale;
      t.m[j].bias = ns_mat_or_none (bias[j]);
      t.n_out[j] = w[j]->rows;
    }
  return t;
}

/* ---- the ops --------------------------------------------------------------- */

void
ns_cuda_linear_multi (NsBackend *b, const NsLinearOut *outs, int n, const float *x, int rows)
{
  const NsMat *w[NS_LINEAR_MULTI_MAX], *bias[NS_LINEAR_MULTI_MAX];
  g_return_if_fail (n >= 1 && n <= NS_LINEAR_MULTI_MAX);
  for (int j = 0; j < n; j++)
    {
      w[j] = outs[j].w;
      bias[j] = outs[j].bias;
    }
  if (!fusable (w, n, x, rows))
    {
      for (int j = 0; j < n; j++)
        ns_cuda_linear (b, outs[j].y, x, outs[j].w, outs[j].bias, rows, FALSE);
      return;
    }
  NsGemvTask t = task_of (w, bias, n, rows, FALSE);
  for (int j = 0; j < n; j++)
    t.m[j].y = outs[j].y;
  ns_gemv_launch (b, t, NsGemvPlainX { x, t.k }, NsGemvStore {}, w[0]->dtype);
  ns_cuda_check_launch (b, "linear_multi");
}

void
ns_cuda_linear_swiglu (NsBackend *b, float *y, const float *x, const NsMat *gate_w,
                       const NsMat *gate_b, const NsMat *up_w, const NsMat *up_b, int rows)
{
  const NsMat *w[2] = { gate_w, up_w }, *bias[2] = { gate_b, up_b };
  if (rows <= 0)
    return;
  if (!fusable (w, 2, x, rows))
    {
      size_t n = (size_t) rows * gate_w->rows;
      float *up = ns_cuda_fused_scratch (b, rows, n);
      if (up == NULL)
        return;
      ns_cuda_linear (b, y, x, gate_w, gate_b, rows, FALSE);
      ns_cuda_linear (b, up, x, up_w, up_b, rows, FALSE);
      ns_cuda_silu_mul (b, y, y, up, n);
      return;
    }
  NsGemvTask t = task_of (w, bias, 2, rows, TRUE);
  t.m[0].y = y;
  ns_gemv_launch (b, t, NsGemvPlainX { x, t.k }, NsGemvSwiglu {}, gate_w->dtype);
  ns_cuda_check_launch (b, "linear_swiglu");
}

void
ns_cuda_norm_modulate_linear (NsBackend *b, float *y, const float *x, const NsNormModulate *nm,
                              const NsMat *w, const NsMat *bias, int rows, gboolean silu)
{
  if (rows <= 0)
    return;
  int dim = w->cols;
  if (!fusable (&w, 1, x, rows) || (uintptr_t) nm->shift % 16 != 0
      || (uintptr_t) nm->scale % 16 != 0 || nm->mod_stride % 4 != 0)
    {
      float *u = ns_cuda_fused_scratch (b, rows, (size_t) rows * dim);
      if (u == NULL)
        return;
      ns_cuda_layernorm (b, u, x, nm->weight, nm->bias, rows, dim, nm->eps);
      ns_cuda_modulate (b, u, u, nm->shift, nm->scale, rows, dim, nm->mod_stride);
      ns_cuda_linear (b, y, u, w, bias, rows, FALSE);
      if (silu)
        ns_cuda_silu (b, y, y, (size_t) rows * w->rows);
      return;
    }
  NsGemvTask t = task_of (&w, &bias, 1, rows, FALSE);
  t.m[0].y = y;
  NsGemvNormX nx = { x, dim, ns_mat_or_none (nm->weight), ns_mat_or_none (nm->bias), nm->eps,
                     nm->shift, nm->scale, nm->mod_stride };
  ns_gemv_launch (b, t, nx, NsGemvStore { FALSE, silu }, w->dtype);
  ns_cuda_check_launch (b, "norm_modulate_linear");
}

void
ns_cuda_linear_gated_add (NsBackend *b, float *x, const float *gate, const float *m,
                          const NsMat *w, const NsMat *bias, int rows, int gate_stride)
{
  if (rows <= 0)
    return;
  if (!fusable (&w, 1, m, rows))
    {
      float *t = ns_cuda_fused_scratch (b, rows, (size_t) rows * w->rows);
      if (t == NULL)
        return;
      ns_cuda_linear (b, t, m, w, bias, rows, FALSE);
      ns_cuda_gated_add (b, x, gate, t, rows, w->rows, gate_stride);
      return;
    }
  NsGemvTask t = task_of (&w, &bias, 1, rows, FALSE);
  t.m[0].y = x;
  ns_gemv_launch (b, t, NsGemvPlainX { m, t.k }, NsGemvGatedAdd { gate, gate_stride }, w->dtype);
  ns_cuda_check_launch (b, "linear_gated_add");
}
