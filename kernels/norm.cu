/* norm.cu — RMSNorm (Qwen2 layers), LayerNorm with or without affine (FM
 * head, use_norm, encoder_norm), adaLN modulate and gated residual. One
 * block per row; statistics in float with a block reduction.
 * Checked against the CPU reference by tests/kernels. */
#include "cuda-common.cuh"

#define NORM_THREADS 256

__global__ void
rmsnorm_kernel (float *y, const float *x, NsMat weight, int dim, float eps)
{
  __shared__ float shared[32];
  const float *xr = x + (size_t) blockIdx.x * dim;
  float *yr = y + (size_t) blockIdx.x * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    ss += xr[i] * xr[i];
  float inv = rsqrtf (ns_block_sum (ss, shared) / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] = xr[i] * inv * ns_load_weight (weight.data, weight.dtype, i);
}

__global__ void
layernorm_kernel (float *y, const float *x, NsMat weight, NsMat bias, int has_weight,
                  int has_bias, int dim, float eps)
{
  __shared__ float shared[32];
  const float *xr = x + (size_t) blockIdx.x * dim;
  float *yr = y + (size_t) blockIdx.x * dim;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    sum += xr[i];
  float mean = ns_block_sum (sum, shared) / dim;
  float var = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    var += (xr[i] - mean) * (xr[i] - mean);
  float inv = rsqrtf (ns_block_sum (var, shared) / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    {
      float v = (xr[i] - mean) * inv;
      if (has_weight)
        v *= ns_load_weight (weight.data, weight.dtype, i);
      if (has_bias)
        v += ns_load_weight (bias.data, bias.dtype, i);
      yr[i] = v;
    }
}

__global__ void
modulate_kernel (float *y, const float *x, const float *shift, const float *scale, int rows,
                 int dim, int mod_stride)
{
  size_t n = (size_t) rows * dim;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n;
       i += (size_t) gridDim.x * blockDim.x)
    {
      size_t r = i / dim, c = i % dim;
      y[i] = x[i] * (1.0f + scale[r * mod_stride + c]) + shift[r * mod_stride + c];
    }
}

__global__ void
gated_add_kernel (float *x, const float *gate, const float *m, int rows, int dim,
                  int gate_stride)
{
  size_t n = (size_t) rows * dim;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n;
       i += (size_t) gridDim.x * blockDim.x)
    x[i] += gate[(i / dim) * gate_stride + i % dim] * m[i];
}

void
ns_cuda_rmsnorm (NsBackend *b, float *y, const float *x, const NsMat *weight, int rows, int dim,
                 float eps)
{
  rmsnorm_kernel<<<rows, NORM_THREADS, 0, ns_cuda (b)->stream>>> (y, x, *weight, dim, eps);
  ns_cuda_check_launch (b, "rmsnorm");
}

void
ns_cuda_layernorm (NsBackend *b, float *y, const float *x, const NsMat *weight, const NsMat *bias,
                   int rows, int dim, float eps)
{
  NsMat none = { NS_DTYPE_F32, 0, 0, NULL, NULL };
  layernorm_kernel<<<rows, NORM_THREADS, 0, ns_cuda (b)->stream>>> (
    y, x, weight ? *weight : none, bias ? *bias : none, weight != NULL, bias != NULL, dim, eps);
  ns_cuda_check_launch (b, "layernorm");
}

void
ns_cuda_modulate (NsBackend *b, float *y, const float *x, const float *shift, const float *scale,
                  int rows, int dim, int mod_stride)
{
  size_t n = (size_t) rows * dim;
  modulate_kernel<<<MIN (ns_div_up (n, 256), 65535u), 256, 0, ns_cuda (b)->stream>>> (
    y, x, shift, scale, rows, dim, mod_stride);
  ns_cuda_check_launch (b, "modulate");
}

void
ns_cuda_gated_add (NsBackend *b, float *x, const float *gate, const float *m, int rows, int dim,
                   int gate_stride)
{
  size_t n = (size_t) rows * dim;
  gated_add_kernel<<<MIN (ns_div_up (n, 256), 65535u), 256, 0, ns_cuda (b)->stream>>> (
    x, gate, m, rows, dim, gate_stride);
  ns_cuda_check_launch (b, "gated_add");
}
