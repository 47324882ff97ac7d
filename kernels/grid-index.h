/* grid-index.h — the index math of the CUDA kernels: which element a thread
 * (or a warp, a block) of each kernel's grid owns. Plain C marked
 * __host__ __device__ under nvcc, so tests/ops/test-grid-index.c runs every
 * grid on the CPU and checks that it covers its outputs exactly once in the
 * layout backend.h gives (a wrong index costs no GPU time to find). */
#pragma once

#include <stddef.h>

#ifdef __CUDACC__
#  define NS_HD static inline __host__ __device__
#else
#  define NS_HD static inline
#endif

/* ---- image.cu ----------------------------------------------------------- */

/* Element of latent [c, gh·p, gw·p] that element k of token `token` holds
 * (backend.h, patchify). */
NS_HD size_t
ns_ix_patch_latent (int gh, int gw, int p, size_t token, size_t k)
{
  size_t i = token / gw, j = token % gw;
  size_t ch = k / ((size_t) p * p), a = k / p % p, bb = k % p;
  return (ch * gh * p + p * i + a) * ((size_t) gw * p) + p * j + bb;
}

/* Source element of output element o of a nearest ×2 upsampling of [c, h, w]. */
NS_HD size_t
ns_ix_upsample_src (int h, int w, size_t o)
{
  size_t ox = o % (2 * (size_t) w), oy = o / (2 * (size_t) w) % (2 * (size_t) h);
  size_t ch = o / (4 * (size_t) h * w);
  return (ch * h + oy / 2) * w + ox / 2;
}

/* ---- attention.cu: kv_store -------------------------------------------- */

/* Cache element that source element t of src [batch, n, kv_heads, head_dim]
 * goes to, cache [batch, kv_heads, capacity, head_dim], first new position
 * `start`. */
NS_HD size_t
ns_ix_kv_cache (int n, int kv_heads, int head_dim, int capacity, int start, size_t t)
{
  size_t d = t % head_dim, h = t / head_dim % kv_heads;
  size_t i = t / ((size_t) head_dim * kv_heads) % n, s = t / ((size_t) head_dim * kv_heads * n);
  return ((s * kv_heads + h) * capacity + start + i) * head_dim + d;
}

/* ---- rope.cu ------------------------------------------------------------ */

/* Thread t of the rope grid rotates pair (pair, pair + half) of head vector
 * `vec` (vec = row · heads + head); the row's position is *start + row % n. */
NS_HD void
ns_ix_rope (int heads, int half, size_t t, size_t *vec, int *pair, size_t *row)
{
  *pair = (int) (t % half);
  *vec = t / half;
  *row = *vec / heads;
}

/* ---- attention.cu: flash-decoding -------------------------------------- */

#define NS_ATT_TILE 128   /* keys per tile = threads per block */
#define NS_ATT_GROUP 8    /* most query heads one block serves */

/* The first query head and the head count of block z (kv head · slices +
 * slice) for a GQA ratio `group`: slices = ceil(group / NS_ATT_GROUP). */
NS_HD void
ns_ix_att_heads (int group, int z, int *h0, int *count)
{
  int slices = (group + NS_ATT_GROUP - 1) / NS_ATT_GROUP;
  int kvh = z / slices, slice = z % slices;
  *h0 = kvh * group + slice * NS_ATT_GROUP;
  int left = group - slice * NS_ATT_GROUP;
  *count = left < NS_ATT_GROUP ? left : NS_ATT_GROUP;
}

/* Splits of the key range so that the partial results of every query fit
 * in `budget` floats; fixed by the shapes and the capacity alone, so a
 * captured graph stays valid as the cache fills. Each split covers
 * `*tiles` tiles of NS_ATT_TILE keys. */
NS_HD int
ns_ix_att_splits (size_t queries, int head_dim, int capacity, size_t budget, int *tiles)
{
  int total = (capacity + NS_ATT_TILE - 1) / NS_ATT_TILE;
  size_t per_split = queries * (size_t) (head_dim + 3);
  size_t most = per_split > 0 ? budget / per_split : 1;
  int splits = total;
  if ((size_t) splits > most)
    splits = most > 0 ? (int) most : 1;
  *tiles = (total + splits - 1) / splits;
  return (total + *tiles - 1) / *tiles;
}

/* ---- linear.cu: GEMV ---------------------------------------------------- */

#define NS_GEMV_OUTS 4       /* output rows per warp */
#define NS_GEMV_WARPS 4      /* warps per block */
#define NS_GEMV_MAX_SPLITS 16

/* Split s of `splits` of k columns, in whole vectors of `vec` elements. */
NS_HD void
ns_ix_split_range (int k, int splits, int vec, int s, int *k0, int *k1)
{
  int vectors = k / vec;
  int per = (vectors + splits - 1) / splits;
  int a = s * per, b = a + per;
  *k0 = (a < vectors ? a : vectors) * vec;
  *k1 = (b < vectors ? b : vectors) * vec;
}

/* Split-K count for a GEMV grid of `blocks` blocks over k: enough blocks
 * for two waves of `resident` blocks on each of n_sms SMs (k/v projections
 * have few output rows), but at least two loads of `vec` elements per lane
 * in each split. */
NS_HD int
ns_ix_gemv_splits_for_blocks (int blocks, int k, int vec, int n_sms, int resident)
{
  int want = (2 * n_sms * resident + blocks - 1) / blocks;
  int most = k / (2 * 32 * vec);
  if (most > NS_GEMV_MAX_SPLITS)
    most = NS_GEMV_MAX_SPLITS;
  int splits = want < most ? want : most;
  return splits > 1 ? splits : 1;
}

/* The same for one matrix of n_out rows. */
NS_HD int
ns_ix_gemv_splits (int n_out, int k, int vec, int n_sms, int resident)
{
  int warps = (n_out + NS_GEMV_OUTS - 1) / NS_GEMV_OUTS;
  int blocks = (warps + NS_GEMV_WARPS - 1) / NS_GEMV_WARPS;
  return ns_ix_gemv_splits_for_blocks (blocks, k, vec, n_sms, resident);
}

/* ---- gemv.cuh: one GEMV grid over several matrices ----------------------
 * Concatenated layout (linear, linear_multi, …): the blocks of matrix 0,
 * then those of matrix 1, …; a warp owns NS_GEMV_OUTS consecutive rows of
 * one matrix. Paired layout (linear_swiglu: two matrices of n_out[0] rows):
 * a warp owns NS_GEMV_OUTS / 2 outputs, slot s the row of matrix
 * s / (NS_GEMV_OUTS / 2), so one lane holds both sums of an output. */

#define NS_GEMV_MAX_MATS 3

/* Blocks of the grid; first[j] = the first block of matrix j (of the pair's
 * outputs when paired), first[groups] = the count. */
NS_HD int
ns_ix_gemv_first_blocks (const int *n_out, int n_mats, int paired, int *first)
{
  int per = (paired ? NS_GEMV_OUTS / 2 : NS_GEMV_OUTS) * NS_GEMV_WARPS;
  int groups = paired ? 1 : n_mats;
  first[0] = 0;
  for (int j = 0; j < groups; j++)
    first[j + 1] = first[j] + (n_out[j] + per - 1) / per;
  return first[groups];
}

/* Matrix and row of slot `slot` of warp `warp` in block `block`; the row is
 * n_out[mat] or more past the end of the matrix (such slots store nothing). */
NS_HD void
ns_ix_gemv_slot (const int *first, int n_mats, int paired, int block, int warp, int slot,
                 int *mat, int *row)
{
  const int half = NS_GEMV_OUTS / 2;
  if (paired)
    {
      *mat = slot / half;
      *row = (block * NS_GEMV_WARPS + warp) * half + slot % half;
      return;
    }
  int j = 0;
  while (j + 1 < n_mats && block >= first[j + 1])
    j++;
  *mat = j;
  *row = ((block - first[j]) * NS_GEMV_WARPS + warp) * NS_GEMV_OUTS + slot;
}

/* Split partials: matrix after matrix, each [splits, rows, n_out]. */
NS_HD size_t
ns_ix_gemv_part (const int *n_out, int mat, int splits, int rows, int split, int r, int row)
{
  size_t at = 0;
  for (int j = 0; j < mat; j++)
    at += (size_t) splits * rows * n_out[j];
  return at + ((size_t) split * rows + r) * n_out[mat] + row;
}

/* Outputs the reduce kernel walks: every (matrix, row r, output row), or
 * the first matrix's only when paired (its partner is read with it). */
NS_HD size_t
ns_ix_gemv_outputs (const int *n_out, int n_mats, int paired, int rows)
{
  size_t n = 0;
  for (int j = 0; j < (paired ? 1 : n_mats); j++)
    n += (size_t) rows * n_out[j];
  return n;
}

NS_HD void
ns_ix_gemv_output (const int *n_out, int rows, size_t e, int *mat, int *r, int *row)
{
  int j = 0;
  while (e >= (size_t) rows * n_out[j])
    e -= (size_t) rows * n_out[j++];
  *mat = j;
  *r = (int) (e / n_out[j]);
  *row = (int) (e % n_out[j]);
}

/* ---- groupnorm.cu ------------------------------------------------------- */

/* Slice s of `splits` of a group's n elements. */
NS_HD void
ns_ix_slice (size_t n, int splits, int s, size_t *begin, size_t *end)
{
  size_t per = (n + splits - 1) / splits;
  size_t a = (size_t) s * per, b = a + per;
  *begin = a < n ? a : n;
  *end = b < n ? b : n;
}

/* Slices per group: two waves of blocks over n_sms SMs, each slice ≥ 4096
 * elements so the partial sums stay few. */
NS_HD int
ns_ix_groupnorm_splits (int groups, size_t n, int n_sms)
{
  int want = (2 * n_sms + groups - 1) / groups;
  size_t most = n / 4096;
  int splits = (size_t) want < most ? want : (int) most;
  return splits > 1 ? splits : 1;
}

/* ---- sampler.cu: noise -------------------------------------------------- */

/* Thread t of the noise grid makes Philox block `block` of image `image`
 * (engine/philox.h: four values per block, ceil(dim/4) blocks per image). */
NS_HD void
ns_ix_noise (int dim, size_t t, int *image, int *block)
{
  int per_image = (dim + 3) / 4;
  *image = (int) (t / per_image);
  *block = (int) (t % per_image);
}
