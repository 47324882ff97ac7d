/* elementwise.cu — the memory-bound ops of engine/cpu/elementwise.c: adaLN
 * modulate, gated residual, SiLU, SiLU-gate, add, and the per-token
 * counters (counter_add, add_indexed_row) that keep positions and token
 * indices on the device so a token's ops can replay as a graph. */
#include "cuda-common.cuh"

__device__ __forceinline__ float
silu (float v)
{
  return v / (1.0f + expf (-v));
}

__global__ void
modulate_kernel (float *y, const float *x, const float *shift, const float *scale, int dim,
                 int mod_stride, size_t n)
{
  NS_GRID_STRIDE (i, n)
    {
      size_t at = i / dim * mod_stride + i % dim;
      y[i] = x[i] * (1.0f + scale[at]) + shift[at];
    }
}

__global__ void
gated_add_kernel (float *x, const float *gate, const float *m, int dim, int gate_stride,
                  size_t n)
{
  NS_GRID_STRIDE (i, n) x[i] += gate[i / dim * gate_stride + i % dim] * m[i];
}

__global__ void
silu_kernel (float *y, const float *x, size_t n)
{
  NS_GRID_STRIDE (i, n) y[i] = silu (x[i]);
}

__global__ void
silu_mul_kernel (float *y, const float *gate, const float *up, size_t n)
{
  NS_GRID_STRIDE (i, n) y[i] = silu (gate[i]) * up[i];
}

__global__ void
add_kernel (float *y, const float *a, const float *c, size_t n)
{
  NS_GRID_STRIDE (i, n) y[i] = a[i] + c[i];
}

__global__ void
counter_add_kernel (int32_t *counter, int n, int32_t delta)
{
  NS_GRID_STRIDE (i, (size_t) n) counter[i] += delta;
}

/* The table row is picked on the device: rows_of[*token]. */
__global__ void
add_indexed_row_kernel (float *y, const float *x, const float *table, const int32_t *rows_of,
                        const int32_t *token, int dim, size_t n)
{
  const float *row = table + (size_t) rows_of[*token] * dim;
  NS_GRID_STRIDE (i, n) y[i] = x[i] + row[i % dim];
}

void
ns_cuda_modulate (NsBackend *b, float *y, const float *x, const float *shift, const float *scale,
                  int rows, int dim, int mod_stride)
{
  size_t n = (size_t) rows * dim;
  NS_LAUNCH (b, n, modulate_kernel, y, x, shift, scale, dim, mod_stride, n);
}

void
ns_cuda_gated_add (NsBackend *b, float *x, const float *gate, const float *m, int rows, int dim,
                   int gate_stride)
{
  size_t n = (size_t) rows * dim;
  NS_LAUNCH (b, n, gated_add_kernel, x, gate, m, dim, gate_stride, n);
}

void
ns_cuda_silu (NsBackend *b, float *y, const float *x, size_t n)
{
  NS_LAUNCH (b, n, silu_kernel, y, x, n);
}

void
ns_cuda_silu_mul (NsBackend *b, float *y, const float *gate, const float *up, size_t n)
{
  NS_LAUNCH (b, n, silu_mul_kernel, y, gate, up, n);
}

void
ns_cuda_add (NsBackend *b, float *y, const float *a, const float *c, size_t n)
{
  NS_LAUNCH (b, n, add_kernel, y, a, c, n);
}

void
ns_cuda_counter_add (NsBackend *b, int32_t *counter, int n, int32_t delta)
{
  NS_LAUNCH (b, (size_t) n, counter_add_kernel, counter, n, delta);
}

void
ns_cuda_add_indexed_row (NsBackend *b, float *y, const float *x, const float *table,
                         const int32_t *rows_of, const int32_t *token, int rows, int dim)
{
  size_t n = (size_t) rows * dim;
  NS_LAUNCH (b, n, add_indexed_row_kernel, y, x, table, rows_of, token, dim, n);
}
