/* conv2d.c — the VAE's 2-D convolution: implicit im2col feeding the blocked
 * matmul. */
#include "cpu-backend.h"

typedef struct {
  const float *x;
  int h, w, k, stride, pad_t, pad_l, ow;
} ConvGeometry;

/* One input row segment for 16 output pixels that share an output row at
 * stride 1: in-image runs are plain copies, padding is zeros. */
static void
pack_row_run (const ConvGeometry *g, float *dst, int oy, int ox0, int k0, int kb)
{
  for (int kk = 0; kk < kb; kk++)
    {
      int col = k0 + kk, ch = col / (g->k * g->k), ky = col / g->k % g->k, kx = col % g->k;
      int iy = oy - g->pad_t + ky, ix0 = ox0 - g->pad_l + kx;
      float *d = dst + kk * NS_CPU_NR;
      if (iy < 0 || iy >= g->h)
        {
          memset (d, 0, NS_CPU_NR * sizeof (float));
          continue;
        }
      const float *src = g->x + ((size_t) ch * g->h + iy) * g->w;
      if (ix0 >= 0 && ix0 + NS_CPU_NR <= g->w)
        memcpy (d, src + ix0, NS_CPU_NR * sizeof (float));
      else
        for (int j = 0; j < NS_CPU_NR; j++)
          d[j] = ix0 + j >= 0 && ix0 + j < g->w ? src[ix0 + j] : 0.0f;
    }
}

/* The matmul's B[kk, p] is the input pixel that weight column kk (channel,
 * ky, kx) meets at output pixel p: im2col, gathered one panel at a time. */
static void
pack_patches (const void *ctx, float *dst, int n0, int nr, int k0, int kb)
{
  const ConvGeometry *g = ctx;
  if (g->stride == 1 && nr == NS_CPU_NR && n0 % g->ow + NS_CPU_NR <= g->ow)
    {
      pack_row_run (g, dst, n0 / g->ow, n0 % g->ow, k0, kb);
      return;
    }
  int iy0[NS_CPU_NR], ix0[NS_CPU_NR];
  for (int j = 0; j < nr; j++)
    {
      iy0[j] = (n0 + j) / g->ow * g->stride - g->pad_t;
      ix0[j] = (n0 + j) % g->ow * g->stride - g->pad_l;
    }
  for (int kk = 0; kk < kb; kk++)
    {
      int col = k0 + kk, ch = col / (g->k * g->k), ky = col / g->k % g->k, kx = col % g->k;
      const float *plane = g->x + (size_t) ch * g->h * g->w;
      float *d = dst + kk * NS_CPU_NR;
      for (int j = 0; j < NS_CPU_NR; j++)
        {
          int iy = j < nr ? iy0[j] + ky : -1, ix = j < nr ? ix0[j] + kx : -1;
          gboolean inside = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w;
          d[j] = inside ? plane[(size_t) iy * g->w + ix] : 0.0f;
        }
    }
}

void
ns_cpu_conv2d (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias,
               int ci, int h, int wd, int co, int k, int stride,
               int pad_t, int pad_l, int pad_b, int pad_r)
{
  g_return_if_fail (w->rows == co && w->cols == ci * k * k && stride > 0);
  int oh = (h + pad_t + pad_b - k) / stride + 1, ow = (wd + pad_l + pad_r - k) / stride + 1;
  g_return_if_fail (oh > 0 && ow > 0);
  size_t pixels = (size_t) oh * ow;

  float *bv = ns_cpu_mat_to_f32 (bias);
  for (int o = 0; o < co; o++)
    for (size_t p = 0; p < pixels; p++)
      y[o * pixels + p] = bv ? bv[o] : 0.0f;
  g_free (bv);

  /* The matmul takes A as f32: convert the weight once, not per tile. */
  float *converted = w->dtype == NS_DTYPE_F32 ? NULL : ns_cpu_mat_to_f32 (w);
  const float *a = converted ? converted : w->data;
  ConvGeometry g = { x, h, wd, k, stride, pad_t, pad_l, ow };
  ns_cpu_matmul (b, y, pixels, a, w->cols, co, (int) pixels, w->cols, pack_patches, &g);
  g_free (converted);
}
