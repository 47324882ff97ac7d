/* conv2d.cu — 2-D convolution of one image (VAE) as im2col + SGEMM, taken
 * over chunks of output pixels so the column buffer stays within a fixed
 * budget at any image size; 1×1 stride-1 convolutions skip im2col. Weights
 * are widened to float once per call so the result keeps float precision
 * (VAE weights are small). Mirrors engine/cpu/conv2d.c. */
#include "cuda-common.cuh"

#define CONV_COL_BUDGET (64u << 20)   /* floats in one column chunk (256 MB) */

__global__ void
widen_kernel (float *dst, NsMat w, size_t n)
{
  NS_GRID_STRIDE (i, n) dst[i] = ns_load_weight (w, i);
}

/* col[kk, p] for output pixels p0 … p0 + count, kk = (ci·k + ky)·k + kx. */
__global__ void
im2col_kernel (float *col, const float *x, int ci, int h, int w, int k, int stride, int pad_t,
               int pad_l, int ow, size_t p0, size_t count)
{
  size_t total = (size_t) ci * k * k * count;
  NS_GRID_STRIDE (t, total)
    {
      size_t p = p0 + t % count, kk = t / count;
      int kx = (int) (kk % k), ky = (int) ((kk / k) % k), c = (int) (kk / (k * k));
      int iy = (int) (p / ow) * stride - pad_t + ky, ix = (int) (p % ow) * stride - pad_l + kx;
      col[t] = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[((size_t) c * h + iy) * w + ix] : 0.0f;
    }
}

__global__ void
conv_bias_kernel (float *y, NsMat bias, size_t hw, size_t n)
{
  NS_GRID_STRIDE (i, n) y[i] += ns_load_weight (bias, i / hw);
}

void
ns_cuda_conv2d (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias, int ci,
                int h, int wd, int co, int k, int stride, int pad_t, int pad_l, int pad_b,
                int pad_r)
{
  cudaStream_t stream = ns_cuda (b)->stream;
  int oh = (h + pad_t + pad_b - k) / stride + 1, ow = (wd + pad_l + pad_r - k) / stride + 1;
  size_t ohw = (size_t) oh * ow, kdim = (size_t) ci * k * k;
  gboolean direct = k == 1 && stride == 1 && pad_t == 0 && pad_l == 0 && pad_b == 0 && pad_r == 0;
  size_t chunk = direct ? ohw : MAX ((size_t) 1, MIN (ohw, CONV_COL_BUDGET / kdim));
  size_t w_floats = w->dtype == NS_DTYPE_F32 ? 0 : (size_t) co * kdim;
  float *ws = (float *) ns_cuda_workspace (b, (w_floats + (direct ? 0 : kdim * chunk)) * 4);
  if (ws == NULL)
    return;
  const float *w32 = (const float *) w->data;
  if (w_floats > 0)
    {
      widen_kernel<<<ns_grid_for (w_floats), 256, 0, stream>>> (ws, *w, w_floats);
      w32 = ws;
    }
  float *col = ws + w_floats;
  for (size_t p0 = 0; p0 < ohw; p0 += chunk)
    {
      size_t count = MIN (chunk, ohw - p0);
      const float *a = x;
      if (!direct)
        {
          im2col_kernel<<<ns_grid_for (kdim * count), 256, 0, stream>>> (
            col, x, ci, h, wd, k, stride, pad_t, pad_l, ow, p0, count);
          a = col;
        }
      /* y row-major [co, ohw] is column-major (ohw × co): its rows p0… are
       * colᵀ(count × kdim) · Wᵀ(kdim × co). */
      ns_cuda_gemm_f32 (b, y + p0, a, w32, (int) count, co, (int) kdim, (int) (direct ? ohw : count),
                        (int) kdim, (int) ohw, FALSE, FALSE, 0.0f);
    }
  if (bias != NULL)
    conv_bias_kernel<<<ns_grid_for ((size_t) co * ohw), 256, 0, stream>>> (y, *bias, ohw,
                                                                            (size_t) co * ohw);
  ns_cuda_check_launch (b, "conv2d");
}
