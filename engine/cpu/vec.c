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

/* Eight accumulators hide the add latency and the prefetch distance is the
 * GEMV's (linear.c): a scalar 8-byte-word sum read slower than the GEMV
 * itself and made its "% of the floor" exceed 100 %. */
#define STREAM_SUMS 8
#define STREAM_PREFETCH 32768   /* bytes, into L2: GEMV_PREFETCH of linear.c */

NS_CPU_HOT float
ns_cpu_stream_sum (const float *a, size_t n)
{
  NsF32x8 acc[STREAM_SUMS] = { { 0 } };
  size_t i = 0;
  for (; i + 8 * STREAM_SUMS <= n; i += 8 * STREAM_SUMS)
    {
      __builtin_prefetch ((const char *) (a + i) + STREAM_PREFETCH, 0, 2);
      for (int k = 0; k < STREAM_SUMS; k++)
        acc[k] += NS_F32X8_LOAD (a + i + 8 * k);
    }
  for (int k = 1; k < STREAM_SUMS; k++)
    acc[0] += acc[k];
  float s = NS_F32X8_SUM (acc[0]);
  for (; i < n; i++)
    s += a[i];
  return s;
}
