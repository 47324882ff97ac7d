/* sampler.cu — the flow-matching sampler on the device (engine/cpu/sampler.c):
 * the head's time features, Gaussian draws from engine/philox.h (the same
 * inline code the CPU runs, so a seed gives the same bits), CFG combination
 * and the float64 state updates. The token index and the CFG schedule come
 * from the device-resident counter `token`, so a token's ops replay as a
 * graph. Arithmetic in double where the reference uses double. */
#include "cuda-common.cuh"
#include "philox.h"

#define FINISH_THREADS 256

__global__ void
time_features_kernel (float *out, const double *t, int half, size_t n)
{
  NS_GRID_STRIDE (e, n)
    {
      size_t i = e / half;
      int k = (int) (e % half);
      double arg = t[i] * exp (-log (10000.0) * k / half);
      out[i * 2 * half + k] = (float) cos (arg);
      out[i * 2 * half + half + k] = (float) sin (arg);
    }
}

/* One thread per Philox block of four values (grid-index.h). */
__global__ void
noise_kernel (float *out, int dim, guint64 seed, const int32_t *token, int draw, size_t n)
{
  NS_GRID_STRIDE (t, n)
    {
      int image, block;
      ns_ix_noise (dim, t, &image, &block);
      float v[4];
      ns_philox_normal4 (seed, (uint32_t) image, (uint32_t) *token, (uint32_t) draw,
                         (uint32_t) block, v);
      float *o = out + (size_t) image * dim + 4 * block;
      for (int j = 0; j < 4 && 4 * block + j < dim; j++)
        o[j] = v[j];
    }
}

/* Injected draws: table [ntok, draws, block]. */
__global__ void
noise_table_kernel (float *out, const float *table, int draws, const int32_t *token, int draw,
                    size_t n)
{
  const float *src = table + ((size_t) *token * draws + draw) * n;
  NS_GRID_STRIDE (i, n) out[i] = src[i];
}

__global__ void
cfg_combine_kernel (float *v, const float *rows, int cfg_mult, NsCfgParams cfg,
                    const int32_t *token, size_t n)
{
  double s, s_img;
  ns_cfg_scales (&cfg, *token, &s, &s_img);
  NS_GRID_STRIDE (i, n) v[i] = ns_cfg_mix (rows, n, cfg_mult, i, s, s_img);
}

__global__ void
sampler_step_kernel (double *state, float *x_rows, const float *v, const float *eps,
                     int copies, NsSamplerStep step, size_t n)
{
  NS_GRID_STRIDE (i, n)
    {
      double x = ns_sampler_update (&step, state[i], v[i], eps[i]);
      state[i] = x;
      for (int c = 0; c < copies; c++)
        x_rows[(size_t) c * n + i] = (float) x;
    }
}

/* One block per row: the float row, then (use_norm) LayerNorm in double. */
__global__ void
sampler_finish_kernel (float *tok, const double *state, int dim, int use_norm)
{
  __shared__ double shared[32];
  float *row = tok + (size_t) blockIdx.x * dim;
  const double *st = state + (size_t) blockIdx.x * dim;
  double sum = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    {
      row[i] = (float) st[i];
      sum += (float) st[i];
    }
  if (!use_norm)
    return;
  double mean = ns_block_sum (sum, shared) / dim, var = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    var += ((float) st[i] - mean) * ((float) st[i] - mean);
  double inv = 1.0 / sqrt (ns_block_sum (var, shared) / dim + 1e-6);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    row[i] = (float) (((float) st[i] - mean) * inv);
}

void
ns_cuda_time_features (NsBackend *b, float *out, const double *t, int n, int n_features)
{
  size_t total = (size_t) n * (n_features / 2);
  if (total > 0)
    NS_LAUNCH (b, total, time_features_kernel, out, t, n_features / 2, total);
}

void
ns_cuda_noise (NsBackend *b, float *out, int n_images, int dim, guint64 seed,
               const float *table, int draws, const int32_t *token, int draw)
{
  size_t n = (size_t) n_images * dim;
  if (n == 0)
    return;
  if (table != NULL)
    NS_LAUNCH (b, n, noise_table_kernel, out, table, draws, token, draw, n);
  else
    {
      size_t blocks = (size_t) n_images * ((dim + 3) / 4);
      NS_LAUNCH (b, blocks, noise_kernel, out, dim, seed, token, draw, blocks);
    }
}

void
ns_cuda_cfg_combine (NsBackend *b, float *v, const float *v_rows, int cfg_mult, size_t block,
                     const NsCfgParams *cfg, const int32_t *token)
{
  if (block > 0)
    NS_LAUNCH (b, block, cfg_combine_kernel, v, v_rows, cfg_mult, *cfg, token, block);
}

void
ns_cuda_sampler_step (NsBackend *b, double *state, float *x_rows, const float *v,
                      const float *eps, size_t block, int copies, const NsSamplerStep *step)
{
  if (block > 0)
    NS_LAUNCH (b, block, sampler_step_kernel, state, x_rows, v, eps, copies, *step, block);
}

void
ns_cuda_sampler_finish (NsBackend *b, float *tok, const double *state, int n, int dim,
                        gboolean use_norm)
{
  if (n == 0)
    return;
  sampler_finish_kernel<<<n, FINISH_THREADS, 0, ns_cuda (b)->stream>>> (tok, state, dim,
                                                                         use_norm);
  ns_cuda_check_launch (b, "sampler_finish");
}
