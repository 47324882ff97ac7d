/* elementwise.cu — the memory-bound ops: SiLU, SiLU-gate, add, embedding
 * gather, nearest ×2 upsampling and (un)patchify between token rows and
 * latent images. Checked by tests/kernels. */
#include "cuda-common.cuh"

#define GRID_STRIDE(i, n)                                                        \
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < (n);      \
       i += (size_t) gridDim.x * blockDim.x)

static unsigned
grid_for (size_t n)
{
  return MIN (ns_div_up (n, 256), 65535u);
}

__device__ __forceinline__ float
silu (float v)
{
  return v / (1.0f + expf (-v));
}

__global__ void silu_kernel (float *y, const float *x, size_t n)
{
  GRID_STRIDE (i, n) y[i] = silu (x[i]);
}

__global__ void silu_mul_kernel (float *y, const float *gate, const float *up, size_t n)
{
  GRID_STRIDE (i, n) y[i] = silu (gate[i]) * up[i];
}

__global__ void add_kernel (float *y, const float *a, const float *c, size_t n)
{
  GRID_STRIDE (i, n) y[i] = a[i] + c[i];
}

__global__ void
embedding_kernel (float *out, NsMat table, const int32_t *ids, int n)
{
  size_t total = (size_t) n * table.cols;
  GRID_STRIDE (i, total)
    {
      size_t r = i / table.cols, c = i % table.cols;
      int id = ids[r];
      out[i] = ns_load_weight (table.data, table.dtype, (size_t) id * table.cols + c)
               * ns_row_scale (table, id);
    }
}

__global__ void
upsample2x_kernel (float *y, const float *x, int c, int h, int w)
{
  size_t total = (size_t) c * 4 * h * w;
  GRID_STRIDE (i, total)
    {
      size_t ox = i % (2 * w), oy = (i / (2 * w)) % (2 * h), ch = i / (4 * (size_t) h * w);
      y[i] = x[(ch * h + oy / 2) * w + ox / 2];
    }
}

/* token[i·gw + j][ch·p² + a·p + bb] ↔ latent[ch, p·i + a, p·j + bb] */
__global__ void
patch_kernel (float *tokens, float *latent, int c, int gh, int gw, int p, int to_tokens)
{
  size_t dim = (size_t) c * p * p, total = (size_t) gh * gw * dim;
  GRID_STRIDE (t, total)
    {
      size_t token = t / dim, k = t % dim;
      size_t i = token / gw, j = token % gw;
      size_t ch = k / (p * p), a = (k / p) % p, bb = k % p;
      size_t l = (ch * gh * p + p * i + a) * (size_t) (gw * p) + p * j + bb;
      if (to_tokens)
        tokens[t] = latent[l];
      else
        latent[l] = tokens[t];
    }
}

#define LAUNCH(b, n, kernel, ...)                                                        \
  do {                                                                                   \
    kernel<<<grid_for (n), 256, 0, ns_cuda (b)->stream>>> (__VA_ARGS__);                \
    ns_cuda_check_launch (b, #kernel);                                                   \
  } while (0)

void ns_cuda_silu (NsBackend *b, float *y, const float *x, size_t n)
{
  LAUNCH (b, n, silu_kernel, y, x, n);
}

void ns_cuda_silu_mul (NsBackend *b, float *y, const float *gate, const float *up, size_t n)
{
  LAUNCH (b, n, silu_mul_kernel, y, gate, up, n);
}

void ns_cuda_add (NsBackend *b, float *y, const float *a, const float *c, size_t n)
{
  LAUNCH (b, n, add_kernel, y, a, c, n);
}

void
ns_cuda_embedding (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n)
{
  const int32_t *dev_ids = ns_cuda_stage_indices (b, ids, n);
  LAUNCH (b, (size_t) n * table->cols, embedding_kernel, out, *table, dev_ids, n);
}

void
ns_cuda_upsample2x (NsBackend *b, float *y, const float *x, int c, int h, int w)
{
  LAUNCH (b, (size_t) c * 4 * h * w, upsample2x_kernel, y, x, c, h, w);
}

void
ns_cuda_patchify (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw, int p)
{
  LAUNCH (b, (size_t) gh * gw * c * p * p, patch_kernel, tokens, (float *) latent, c, gh, gw, p,
          1);
}

void
ns_cuda_unpatchify (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw,
                    int p)
{
  LAUNCH (b, (size_t) gh * gw * c * p * p, patch_kernel, (float *) tokens, latent, c, gh, gw, p,
          0);
}
