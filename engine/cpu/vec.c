/* vec.c — the vector kernels several ops share. */
#include "cpu-backend.h"

NS_CPU_HOT float
ns_cpu_dot (const float *a, const float *c, int n)
{
  NsF32x8 acc0 = { 0 }, acc1 = { 0 };
  int i = 0;
  for (; i + 16 <= n; i += 16)
    {
      acc0 += NS_F32X8_LOAD (a + i) * NS_F32X8_LOAD (c + i);
      acc1 += NS_F32X8_LOAD (a + i + 8) * NS_F32X8_LOAD (c + i + 8);
    }
  NsF32x8 acc = acc0 + acc1;
  float s = NS_F32X8_SUM (acc);
  for (; i < n; i++)
    s += a[i] * c[i];
  return s;
}

/* y += a · x */
NS_CPU_HOT void
ns_cpu_axpy (float *restrict y, float a, const float *restrict x, int n)
{
  for (int i = 0; i < n; i++)
    y[i] += a * x[i];
}
