/* norm.c — RMSNorm, LayerNorm, GroupNorm. Statistics accumulate in double
 * (two passes for the variance, biased as PyTorch's), which is closest to
 * PyTorch's own float32 reductions; the normalisation itself is f32. */
#include "cpu-backend.h"

static double
mean_of (const float *x, size_t n)
{
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += x[i];
  return s / (double) n;
}

static double
variance_of (const float *x, size_t n, double mean)
{
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += (x[i] - mean) * (x[i] - mean);
  return s / (double) n;
}

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
      double mean = mean_of (xr, dim);
      float m = (float) mean;
      float inv = (float) (1.0 / sqrt (variance_of (xr, dim, mean) + eps));
      for (int i = 0; i < dim; i++)
        {
          float v = (xr[i] - m) * inv;
          yr[i] = (w ? v * w[i] : v) + (bv ? bv[i] : 0.0f);
        }
    }
  g_free (w);
  g_free (bv);
}

void
ns_cpu_groupnorm (NsBackend *b, float *y, const float *x, const NsMat *gamma,
                  const NsMat *beta, int c, int hw, int groups, float eps, gboolean silu)
{
  g_return_if_fail (groups > 0 && c % groups == 0);
  float *g = ns_cpu_mat_to_f32 (gamma);
  float *bv = ns_cpu_mat_to_f32 (beta);
  int per_group = c / groups;
#pragma omp parallel for num_threads (ns_cpu_threads (b)) schedule (dynamic, 1)
  for (int grp = 0; grp < groups; grp++)
    {
      size_t first = (size_t) grp * per_group * hw, n = (size_t) per_group * hw;
      double mean = mean_of (x + first, n);
      float m = (float) mean;
      float inv = (float) (1.0 / sqrt (variance_of (x + first, n, mean) + eps));
      for (int ch = grp * per_group; ch < (grp + 1) * per_group; ch++)
        {
          float scale = g ? g[ch] : 1.0f, shift = bv ? bv[ch] : 0.0f;
          const float *xc = x + (size_t) ch * hw;
          float *yc = y + (size_t) ch * hw;
          for (int i = 0; i < hw; i++)
            {
              float v = (xc[i] - m) * inv * scale + shift;
              yc[i] = silu ? ns_cpu_silu1 (v) : v;
            }
        }
    }
  g_free (g);
  g_free (bv);
}
