/* norm.c — RMSNorm and LayerNorm. Statistics accumulate in double
 * (two passes for the variance, biased as PyTorch's), which is closest to
 * PyTorch's own float32 reductions; the normalisation itself is f32. */
#include "cpu-backend.h"

/* HF order: h = x · rsqrt(mean(x²) + eps) in f32, then weight · h. */
void
ns_cpu_rmsnorm (NsBackend *b, float *y, const float *x, const NsMat *weight,
                int rows, int dim, float eps)
{
  g_return_if_fail (weight != NULL && weight->rows * weight->cols == dim);
  float *w = ns_cpu_mat_to_f32 (weight);
#pragma omp parallel for num_threads (ns_cpu_threads (b)) \
  if ((size_t) rows * dim > NS_CPU_PARALLEL_MIN)
  for (int r = 0; r < rows; r++)
    {
      const float *xr = x + (size_t) r * dim;
      float *yr = y + (size_t) r * dim;
      double squares = 0.0;
      for (int i = 0; i < dim; i++)
        squares += (double) xr[i] * xr[i];
      float inv = 1.0f / sqrtf ((float) (squares / dim) + eps);
      for (int i = 0; i < dim; i++)
        yr[i] = w[i] * (xr[i] * inv);
    }
  g_free (w);
}

void
ns_cpu_layernorm (NsBackend *b, float *y, const float *x, const NsMat *weight,
                  const NsMat *bias, int rows, int dim, float eps)
{
  float *w = ns_cpu_mat_to_f32 (weight);
  float *bv = ns_cpu_mat_to_f32 (bias);
#pragma omp parallel for num_threads (ns_cpu_threads (b)) \
  if ((size_t) rows * dim > NS_CPU_PARALLEL_MIN)
  for (int r = 0; r < rows; r++)
    {
      const float *xr = x + (size_t) r * dim;
      float *yr = y + (size_t) r * dim;
      double mean = ns_cpu_mean (xr, dim);
      float m = (float) mean;
      float inv = (float) (1.0 / sqrt (ns_cpu_variance (xr, dim, mean) + eps));
      for (int i = 0; i < dim; i++)
        {
          float v = (xr[i] - m) * inv;
          yr[i] = (w ? v * w[i] : v) + (bv ? bv[i] : 0.0f);
        }
    }
  g_free (w);
  g_free (bv);
}
