/* groupnorm.c — GroupNorm (affine, optional swish); statistics in double
 * as norm.c says. */
#include "cpu-backend.h"

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
      double mean = ns_cpu_mean (x + first, n);
      float m = (float) mean;
      float inv = (float) (1.0 / sqrt (ns_cpu_variance (x + first, n, mean) + eps));
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
