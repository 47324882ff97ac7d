/* linear-fused.c — the fused linears of backend.h (linear_multi,
 * linear_swiglu, norm_modulate_linear, linear_gated_add) on the CPU.
 *
 * Each is the op sequence it replaces, composed of the same functions
 * (linear.c's GEMV and prefill, norm.c, elementwise.c), so its results are
 * bit-identical to that sequence: the reference the CUDA kernels
 * (kernels/linear-fused.cu) are checked against. What the CPU gains is no
 * arithmetic but the intermediate buffers: they live in the backend's
 * workspace (memory.c), so a token allocates nothing for them. */
#include "cpu-backend.h"

void
ns_cpu_linear_multi (NsBackend *b, const NsLinearOut *outs, int n, const float *x, int rows)
{
  g_return_if_fail (n >= 0 && n <= NS_LINEAR_MULTI_MAX);
  for (int j = 0; j < n; j++)
    ns_cpu_linear (b, outs[j].y, x, outs[j].w, outs[j].bias, rows, FALSE);
}

/* The up projection goes to the workspace, the gate one to y. */
void
ns_cpu_linear_swiglu (NsBackend *b, float *y, const float *x, const NsMat *gate_w,
                      const NsMat *gate_b, const NsMat *up_w, const NsMat *up_b, int rows)
{
  g_return_if_fail (gate_w->rows == up_w->rows && gate_w->cols == up_w->cols);
  size_t n = (size_t) rows * gate_w->rows;
  float *up = ns_cpu_workspace (b, n);
  ns_cpu_linear (b, y, x, gate_w, gate_b, rows, FALSE);
  ns_cpu_linear (b, up, x, up_w, up_b, rows, FALSE);
  ns_cpu_silu_mul (b, y, y, up, n);
}

/* The normed, modulated rows go to the workspace (modulate in place: it
 * reads each element before it writes it). */
void
ns_cpu_norm_modulate_linear (NsBackend *b, float *y, const float *x, const NsNormModulate *nm,
                             const NsMat *w, const NsMat *bias, int rows, gboolean silu)
{
  int dim = w->cols;
  float *u = ns_cpu_workspace (b, (size_t) rows * dim);
  ns_cpu_layernorm (b, u, x, nm->weight, nm->bias, rows, dim, nm->eps);
  ns_cpu_modulate (b, u, u, nm->shift, nm->scale, rows, dim, nm->mod_stride);
  ns_cpu_linear (b, y, u, w, bias, rows, FALSE);
  if (silu)
    ns_cpu_silu (b, y, y, (size_t) rows * w->rows);
}

void
ns_cpu_linear_gated_add (NsBackend *b, float *x, const float *gate, const float *m,
                         const NsMat *w, const NsMat *bias, int rows, int gate_stride)
{
  float *t = ns_cpu_workspace (b, (size_t) rows * w->rows);
  ns_cpu_linear (b, t, m, w, bias, rows, FALSE);
  ns_cpu_gated_add (b, x, gate, t, rows, w->rows, gate_stride);
}
