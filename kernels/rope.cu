/* rope.cu — rotary embedding in place (HF rotate_half pairs (i, i + d/2)),
 * row r of each sequence at position *start + r % n, angles and their
 * cos/sin in double as engine/cpu/rope.c; index math in grid-index.h. */
#include "cuda-common.cuh"

__global__ void
rope_kernel (float *x, const int32_t *start, int n, int heads, int head_dim, double theta,
             size_t total)
{
  int half = head_dim / 2;
  int first = *start;
  NS_GRID_STRIDE (t, total)
    {
      size_t vec, row;
      int i;
      ns_ix_rope (heads, half, t, &vec, &i, &row);
      double angle = (double) (first + (int) (row % n)) * pow (theta, -2.0 * i / head_dim);
      float c = (float) cos (angle), s = (float) sin (angle);
      float *v = x + vec * head_dim;
      float x1 = v[i], x2 = v[i + half];
      v[i] = x1 * c - x2 * s;
      v[i + half] = x2 * c + x1 * s;
    }
}

void
ns_cuda_rope (NsBackend *b, float *x, const int32_t *start, int batch, int n, int heads,
              int head_dim, double theta)
{
  size_t total = (size_t) batch * n * heads * (head_dim / 2);
  if (total == 0)
    return;
  NS_LAUNCH (b, total, rope_kernel, x, start, n, heads, head_dim, theta, total);
}
