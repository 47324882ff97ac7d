/* groupnorm.cu — GroupNorm over [c, hw] (VAE), affine, optionally followed
 * by swish, as engine/cpu/groupnorm.c: mean, then the variance around it,
 * both summed in double. The VAE has 32 groups, far fewer than SMs, so each
 * group's elements are split over several blocks (grid (splits, groups))
 * and three kernels pass partial sums through the workspace: sums, squared
 * deviations, normalisation. Slicing in grid-index.h. */
#include "cuda-common.cuh"

#define GN_THREADS 256

typedef struct {
  const float *x;
  float *y;
  size_t n;          /* elements per group */
  int splits;
} GnArgs;

/* Σ over the block's slice of f(x) (f = x, or (x − mean)² when square). */
__device__ double
slice_sum (const GnArgs a, double mean, bool square)
{
  __shared__ double shared[32];
  size_t begin, end;
  ns_ix_slice (a.n, a.splits, blockIdx.x, &begin, &end);
  const float *xg = a.x + blockIdx.y * a.n;
  double s = 0.0;
  for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    s += square ? (xg[i] - mean) * (xg[i] - mean) : (double) xg[i];
  return ns_block_sum (s, shared);
}

/* Σ of the group's partials, in split order (the same in every block). */
__device__ double
partials_total (const double *partial, int splits)
{
  double s = 0.0;
  for (int sp = 0; sp < splits; sp++)
    s += partial[blockIdx.y * splits + sp];
  return s;
}

__global__ void
gn_sum_kernel (double *sums, const GnArgs a)
{
  double s = slice_sum (a, 0.0, false);
  if (threadIdx.x == 0)
    sums[blockIdx.y * a.splits + blockIdx.x] = s;
}

__global__ void
gn_square_kernel (double *squares, const double *sums, const GnArgs a)
{
  double s = slice_sum (a, partials_total (sums, a.splits) / a.n, true);
  if (threadIdx.x == 0)
    squares[blockIdx.y * a.splits + blockIdx.x] = s;
}

__global__ void
gn_apply_kernel (const double *sums, const double *squares, const GnArgs a, NsMat gamma,
                 NsMat beta, int channels_per_group, int hw, float eps, int silu)
{
  double mean = partials_total (sums, a.splits) / a.n;
  float m = (float) mean;
  float inv = (float) (1.0 / sqrt (partials_total (squares, a.splits) / a.n + eps));
  size_t begin, end;
  ns_ix_slice (a.n, a.splits, blockIdx.x, &begin, &end);
  size_t at = blockIdx.y * a.n;
  for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    {
      int ch = blockIdx.y * channels_per_group + (int) (i / hw);
      float v = (a.x[at + i] - m) * inv * (gamma.data ? ns_load_weight (gamma, ch) : 1.0f)
                + (beta.data ? ns_load_weight (beta, ch) : 0.0f);
      a.y[at + i] = silu ? v / (1.0f + expf (-v)) : v;
    }
}

void
ns_cuda_groupnorm (NsBackend *b, float *y, const float *x, const NsMat *gamma, const NsMat *beta,
                   int c, int hw, int groups, float eps, gboolean silu)
{
  if (groups <= 0 || c % groups != 0)
    {
      ns_cuda_record (b, cudaErrorInvalidValue, "groupnorm (channels not a multiple of groups)");
      return;
    }
  GnArgs a = { x, y, (size_t) (c / groups) * hw, 0 };
  if (a.n == 0)
    return;
  a.splits = ns_ix_groupnorm_splits (groups, a.n, ns_cuda (b)->n_sms);
  double *sums = (double *) ns_cuda_workspace (b, 2 * sizeof (double) * groups * a.splits);
  if (sums == NULL)
    return;
  double *squares = sums + groups * a.splits;
  cudaStream_t stream = ns_cuda (b)->stream;
  dim3 grid (a.splits, groups);
  gn_sum_kernel<<<grid, GN_THREADS, 0, stream>>> (sums, a);
  gn_square_kernel<<<grid, GN_THREADS, 0, stream>>> (squares, sums, a);
  gn_apply_kernel<<<grid, GN_THREADS, 0, stream>>> (sums, squares, a, ns_mat_or_none (gamma),
                                                    ns_mat_or_none (beta), c / groups, hw, eps,
                                                    silu);
  ns_cuda_check_launch (b, "groupnorm");
}
