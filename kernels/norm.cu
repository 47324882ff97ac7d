/* norm.cu — RMSNorm (Qwen2 layers) and LayerNorm with or without affine
 * (FM head, encoder_norm), as engine/cpu/norm.c: statistics accumulate in
 * double (two passes for the variance), the normalisation is f32. One block
 * per row. */
#include "cuda-common.cuh"

#define NORM_THREADS 256

__global__ void
rmsnorm_kernel (float *y, const float *x, NsMat weight, int dim, float eps)
{
  __shared__ double shared[32];
  const float *xr = x + (size_t) blockIdx.x * dim;
  float *yr = y + (size_t) blockIdx.x * dim;
  double squares = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    squares += (double) xr[i] * xr[i];
  float inv = 1.0f / sqrtf ((float) (ns_block_sum (squares, shared) / dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] = ns_load_weight (weight, i) * (xr[i] * inv);
}

__global__ void
layernorm_kernel (float *y, const float *x, NsMat weight, NsMat bias, int dim, float eps)
{
  __shared__ double shared[32];
  const float *xr = x + (size_t) blockIdx.x * dim;
  float *yr = y + (size_t) blockIdx.x * dim;
  double sum = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    sum += xr[i];
  double mean = ns_block_sum (sum, shared) / dim;
  double var = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    var += (xr[i] - mean) * (xr[i] - mean);
  float inv = (float) (1.0 / sqrt (ns_block_sum (var, shared) / dim + eps));
  float m = (float) mean;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    {
      float v = (xr[i] - m) * inv;
      yr[i] = (weight.data ? v * ns_load_weight (weight, i) : v)
              + (bias.data ? ns_load_weight (bias, i) : 0.0f);
    }
}

void
ns_cuda_rmsnorm (NsBackend *b, float *y, const float *x, const NsMat *weight, int rows, int dim,
                 float eps)
{
  if (rows == 0)
    return;
  rmsnorm_kernel<<<rows, NORM_THREADS, 0, ns_cuda (b)->stream>>> (y, x, *weight, dim, eps);
  ns_cuda_check_launch (b, "rmsnorm");
}

void
ns_cuda_layernorm (NsBackend *b, float *y, const float *x, const NsMat *weight, const NsMat *bias,
                   int rows, int dim, float eps)
{
  if (rows == 0)
    return;
  layernorm_kernel<<<rows, NORM_THREADS, 0, ns_cuda (b)->stream>>> (
    y, x, ns_mat_or_none (weight), ns_mat_or_none (bias), dim, eps);
  ns_cuda_check_launch (b, "layernorm");
}
