/* rope.c — rotary position embedding (HF rotate_half), angles in double. */
#include "cpu-backend.h"

void
ns_cpu_rope (NsBackend *b, float *x, const int32_t *start, int batch, int n, int heads,
             int head_dim, double theta)
{
  int half = head_dim / 2, rows = batch * n;
  float *cos_sin = g_new (float, (size_t) rows * half * 2);
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < half; i++)
      {
        double angle = (double) (*start + r % n) * pow (theta, -2.0 * i / head_dim);
        cos_sin[((size_t) r * half + i) * 2] = (float) cos (angle);
        cos_sin[((size_t) r * half + i) * 2 + 1] = (float) sin (angle);
      }
#pragma omp parallel for num_threads (ns_cpu_threads (b)) \
  if ((size_t) rows * heads * head_dim > NS_CPU_PARALLEL_MIN)
  for (int rh = 0; rh < rows * heads; rh++)
    {
      float *v = x + (size_t) rh * head_dim;
      const float *cs = cos_sin + (size_t) (rh / heads) * half * 2;
      for (int i = 0; i < half; i++)
        {
          float x1 = v[i], x2 = v[i + half], c = cs[2 * i], s = cs[2 * i + 1];
          v[i] = x1 * c - x2 * s;
          v[i + half] = x2 * c + x1 * s;
        }
    }
  g_free (cos_sin);
}
