/* conv2d.c — the VAE's 2-D convolution as im2col + sgemm: the patches of a
 * band of output pixels are gathered into a [ci·k·k × pixels] matrix and the
 * BLAS multiplies the weight [co × ci·k·k] by it. Bands keep that matrix
 * bounded (BAND_FLOATS) while still giving sgemm thousands of columns; a
 * 1×1 stride-1 convolution without padding multiplies x itself. */
#include "cpu-backend.h"

#define BAND_FLOATS (8 << 20)   /* 32 MiB of patches per band */

typedef struct {
  const float *x;
  int ci, h, w, k, stride, pad_t, pad_l, ow;
} ConvGeometry;

/* One output row's stretch [ox0, ox1) of weight column (ky, kx) of one
 * input plane into d: at stride 1 the in-image part is one copy, the
 * padding zeros; other strides gather. */
static void
row_run (const ConvGeometry *g, const float *plane, float *d, int oy, int ox0, int ox1, int ky,
         int kx)
{
  int iy = oy * g->stride - g->pad_t + ky;
  if (iy < 0 || iy >= g->h)
    {
      memset (d, 0, (size_t) (ox1 - ox0) * sizeof (float));
      return;
    }
  const float *src = plane + (size_t) iy * g->w;
  int ox = ox0;
  if (g->stride == 1)
    {
      /* in-image columns: ix = ox - pad_l + kx ∈ [0, w) */
      int lo = CLAMP (g->pad_l - kx, ox0, ox1), hi = CLAMP (g->w + g->pad_l - kx, lo, ox1);
      memset (d, 0, (size_t) (lo - ox0) * sizeof (float));
      memcpy (d + (lo - ox0), src + lo - g->pad_l + kx, (size_t) (hi - lo) * sizeof (float));
      memset (d + (hi - ox0), 0, (size_t) (ox1 - hi) * sizeof (float));
      return;
    }
  for (; ox < ox1; ox++)
    {
      int ix = ox * g->stride - g->pad_l + kx;
      d[ox - ox0] = ix >= 0 && ix < g->w ? src[ix] : 0.0f;
    }
}

/* cols[kk, j] = the input pixel that weight column kk = (ch, ky, kx) meets
 * at output pixel p0 + j, zero in the padding; j < np. */
static void
im2col (NsBackend *b, const ConvGeometry *g, float *cols, size_t p0, int np)
{
  int n_cols = g->ci * g->k * g->k;
#pragma omp parallel for num_threads (ns_cpu_threads (b)) schedule (static)
  for (int kk = 0; kk < n_cols; kk++)
    {
      int ch = kk / (g->k * g->k), ky = kk / g->k % g->k, kx = kk % g->k;
      const float *plane = g->x + (size_t) ch * g->h * g->w;
      float *d = cols + (size_t) kk * np;
      for (size_t p = p0; p < p0 + np;)
        {
          int oy = (int) (p / g->ow), ox0 = (int) (p % g->ow);
          int ox1 = (int) MIN ((size_t) g->ow, ox0 + (p0 + np - p));
          row_run (g, plane, d + (p - p0), oy, ox0, ox1, ky, kx);
          p += ox1 - ox0;
        }
    }
}

/* y [co, pixels] starts as the bias (or zero). */
static void
init_bias (float *y, const NsMat *bias, int co, size_t pixels)
{
  float *bv = ns_cpu_mat_to_f32 (bias);
  for (int o = 0; o < co; o++)
    for (size_t p = 0; p < pixels; p++)
      y[o * pixels + p] = bv ? bv[o] : 0.0f;
  g_free (bv);
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
  init_bias (y, bias, co, pixels);

  /* The BLAS takes f32: convert the weight once (VAE weights are f32 as
   * stored, so usually nothing to do). */
  float *converted = w->dtype == NS_DTYPE_F32 ? NULL : ns_cpu_mat_to_f32 (w);
  const float *a = converted ? converted : w->data;
  if (k == 1 && stride == 1 && pad_t + pad_l + pad_b + pad_r == 0)
    ns_cpu_sgemm (b, FALSE, FALSE, co, (int) pixels, ci, 1.0f, a, ci, x, (int) pixels, 1.0f, y,
                  (int) pixels);
  else
    {
      ConvGeometry g = { x, ci, h, wd, k, stride, pad_t, pad_l, ow };
      int band = (int) MIN (pixels, (size_t) MAX (1, BAND_FLOATS / w->cols));
      float *cols = g_new (float, (size_t) band * w->cols);
      for (size_t p0 = 0; p0 < pixels; p0 += band)
        {
          int np = (int) MIN ((size_t) band, pixels - p0);
          im2col (b, &g, cols, p0, np);
          ns_cpu_sgemm (b, FALSE, FALSE, co, np, w->cols, 1.0f, a, w->cols, cols, np, 1.0f,
                        y + p0, (int) pixels);
        }
      g_free (cols);
    }
  g_free (converted);
}
