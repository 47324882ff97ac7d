/* image.cu — nearest ×2 upsampling and the token ↔ latent patch layout
 * (engine/cpu/image.c); index math in grid-index.h. */
#include "cuda-common.cuh"

__global__ void
upsample2x_kernel (float *y, const float *x, int h, int w, size_t n)
{
  NS_GRID_STRIDE (i, n) y[i] = x[ns_ix_upsample_src (h, w, i)];
}

/* One thread per token element; to_tokens picks the direction. */
__global__ void
patch_kernel (float *tokens, float *latent, int gh, int gw, int p, size_t dim, size_t n,
              int to_tokens)
{
  NS_GRID_STRIDE (t, n)
    {
      size_t l = ns_ix_patch_latent (gh, gw, p, t / dim, t % dim);
      if (to_tokens)
        tokens[t] = latent[l];
      else
        latent[l] = tokens[t];
    }
}

void
ns_cuda_upsample2x (NsBackend *b, float *y, const float *x, int c, int h, int w)
{
  size_t n = (size_t) c * 4 * h * w;
  NS_LAUNCH (b, n, upsample2x_kernel, y, x, h, w, n);
}

void
ns_cuda_patchify (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw, int p)
{
  size_t dim = (size_t) c * p * p, n = (size_t) gh * gw * dim;
  NS_LAUNCH (b, n, patch_kernel, tokens, (float *) latent, gh, gw, p, dim, n, 1);
}

void
ns_cuda_unpatchify (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw,
                    int p)
{
  size_t dim = (size_t) c * p * p, n = (size_t) gh * gw * dim;
  NS_LAUNCH (b, n, patch_kernel, (float *) tokens, latent, gh, gw, p, dim, n, 0);
}
