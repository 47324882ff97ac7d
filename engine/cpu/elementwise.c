/* elementwise.c — adaLN modulation, gated residuals, SiLU, sums, and the
 * per-token counters. */
#include "cpu-backend.h"

void
ns_cpu_modulate (NsBackend *b, float *y, const float *x, const float *shift,
                 const float *scale, int rows, int dim, int mod_stride)
{
  (void) b;
  for (int r = 0; r < rows; r++)
    {
      const float *xr = x + (size_t) r * dim, *sh = shift + (size_t) r * mod_stride,
                  *sc = scale + (size_t) r * mod_stride;
      float *yr = y + (size_t) r * dim;
      for (int i = 0; i < dim; i++)
        yr[i] = xr[i] * (1.0f + sc[i]) + sh[i];
    }
}

void
ns_cpu_gated_add (NsBackend *b, float *x, const float *gate, const float *m,
                  int rows, int dim, int gate_stride)
{
  (void) b;
  for (int r = 0; r < rows; r++)
    {
      float *xr = x + (size_t) r * dim;
      const float *g = gate + (size_t) r * gate_stride, *mr = m + (size_t) r * dim;
      for (int i = 0; i < dim; i++)
        xr[i] += g[i] * mr[i];
    }
}

void
ns_cpu_silu (NsBackend *b, float *y, const float *x, size_t n)
{
#pragma omp parallel for num_threads (ns_cpu_threads (b)) if (n > NS_CPU_PARALLEL_MIN)
  for (size_t i = 0; i < n; i++)
    y[i] = ns_cpu_silu1 (x[i]);
}

void
ns_cpu_silu_mul (NsBackend *b, float *y, const float *gate, const float *up, size_t n)
{
#pragma omp parallel for num_threads (ns_cpu_threads (b)) if (n > NS_CPU_PARALLEL_MIN)
  for (size_t i = 0; i < n; i++)
    y[i] = ns_cpu_silu1 (gate[i]) * up[i];
}

void
ns_cpu_add (NsBackend *b, float *y, const float *a, const float *c, size_t n)
{
#pragma omp parallel for num_threads (ns_cpu_threads (b)) if (n > NS_CPU_PARALLEL_MIN)
  for (size_t i = 0; i < n; i++)
    y[i] = a[i] + c[i];
}

void
ns_cpu_counter_add (NsBackend *b, int32_t *counter, int n, int32_t delta)
{
  (void) b;
  for (int i = 0; i < n; i++)
    counter[i] += delta;
}

void
ns_cpu_add_indexed_row (NsBackend *b, float *y, const float *x, const float *table,
                        const int32_t *rows_of, const int32_t *token, int rows, int dim)
{
  const float *row = table + (size_t) rows_of[*token] * dim;
  for (int r = 0; r < rows; r++)
    ns_cpu_add (b, y + (size_t) r * dim, x + (size_t) r * dim, row, dim);
}
