/* attention.cu — the KV cache write and causal GQA attention with a key
 * mask (engine/cpu/attention.c), as flash-decoding: the keys of each query
 * are split across blocks, each block keeps an online softmax over its
 * keys for every query head of one GQA group (so K and V are read once per
 * group), and a second kernel merges the splits. Threads run across keys
 * for the scores and across head_dim for V. The grid depends on the
 * capacity, not on *start (graph-safe); blocks whose keys all lie past the
 * query exit at once. A query that sees no valid key averages V over its
 * causal keys, as the reference's finite mask value makes it do: each split
 * with no valid key stores its V sum in place of the weighted sum. */
#include "cuda-common.cuh"

#define ATT_MAX_HEAD_DIM 256
#define ATT_DIMS (ATT_MAX_HEAD_DIM / NS_ATT_TILE)   /* head_dim values per thread */
/* Floats of split partials (m, l, count, acc[head_dim]) per call: 64 MiB. */
#define ATT_PART_BUDGET ((size_t) 16 << 20)

__global__ void
kv_store_kernel (float *cache, const float *src, const int32_t *start, int n, int kv_heads,
                 int head_dim, int capacity, size_t total)
{
  int first = *start;
  NS_GRID_STRIDE (t, total)
    cache[ns_ix_kv_cache (n, kv_heads, head_dim, capacity, first, t)] = src[t];
}

void
ns_cuda_kv_store (NsBackend *b, float *cache, const float *src, int batch, int n,
                  const int32_t *start, int kv_heads, int head_dim, int capacity)
{
  size_t total = (size_t) batch * n * kv_heads * head_dim;
  if (total == 0)
    return;
  NS_LAUNCH (b, total, kv_store_kernel, cache, src, start, n, kv_heads, head_dim, capacity,
             total);
}

/* What one block works on. */
typedef struct {
  const float *q, *k, *v, *valid;
  int n, heads, kv_heads, head_dim, capacity, group, splits, tiles;
} AttArgs;

/* Per-head maximum (op 0) or sum (op 1) of v over the block; `red` holds
 * NS_ATT_TILE / 32 × NS_ATT_GROUP floats. Every thread gets all results. */
__device__ void
block_reduce_heads (float v[NS_ATT_GROUP], int count, int op, float *red)
{
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int h = 0; h < count; h++)
    {
      float x = v[h];
      for (int off = 16; off > 0; off >>= 1)
        {
          float o = __shfl_xor_sync (0xffffffffu, x, off);
          x = op == 0 ? fmaxf (x, o) : x + o;
        }
      if (lane == 0)
        red[warp * NS_ATT_GROUP + h] = x;
    }
  __syncthreads ();
  for (int h = 0; h < count; h++)
    {
      float x = red[h];
      for (int w = 1; w < NS_ATT_TILE / 32; w++)
        x = op == 0 ? fmaxf (x, red[w * NS_ATT_GROUP + h]) : x + red[w * NS_ATT_GROUP + h];
      v[h] = x;
    }
  __syncthreads ();
}

/* Scaled scores of key `key` against the block's query heads (-inf when the
 * key is masked or not causal); TRUE when it is valid and causal. */
__device__ bool
key_scores (const AttArgs a, const float *kb, const float *q_s, const float *valid, int key,
            int last, int count, float sc[NS_ATT_GROUP])
{
  bool live = key <= last && valid[key] != 0.0f;
  for (int h = 0; h < NS_ATT_GROUP; h++)
    sc[h] = 0.0f;
  if (live)
    {
      const float *kr = kb + (size_t) key * a.head_dim;
      for (int d = 0; d < a.head_dim; d++)
        {
          float kd = kr[d];
          for (int h = 0; h < count; h++)
            sc[h] += q_s[h * a.head_dim + d] * kd;
        }
    }
  float scale = 1.0f / sqrtf ((float) a.head_dim);
  for (int h = 0; h < NS_ATT_GROUP; h++)
    sc[h] = live ? sc[h] * scale : -INFINITY;
  return live;
}

/* grid (splits, batch · n, kv_heads · head slices), NS_ATT_TILE threads. */
__global__ void __launch_bounds__ (NS_ATT_TILE)
attention_partial_kernel (float *part, const AttArgs a, const int32_t *start)
{
  __shared__ float q_s[NS_ATT_GROUP * ATT_MAX_HEAD_DIM];
  __shared__ float p_s[NS_ATT_GROUP][NS_ATT_TILE];
  __shared__ float red[NS_ATT_TILE / 32 * NS_ATT_GROUP];
  int qrow = blockIdx.y, s = qrow / a.n, i = qrow % a.n, last = *start + i;
  int key0 = blockIdx.x * a.tiles * NS_ATT_TILE;
  if (key0 > last)
    return;
  int h0, count;
  ns_ix_att_heads (a.group, blockIdx.z, &h0, &count);
  int kvh = h0 / a.group;
  for (int e = threadIdx.x; e < count * a.head_dim; e += blockDim.x)
    q_s[e] = a.q[((size_t) qrow * a.heads + h0) * a.head_dim + e];
  size_t cache_at = ((size_t) s * a.kv_heads + kvh) * a.capacity * a.head_dim;
  const float *kb = a.k + cache_at, *vb = a.v + cache_at, *valid = a.valid + (size_t) s * a.capacity;
  float m[NS_ATT_GROUP], l[NS_ATT_GROUP], acc[NS_ATT_GROUP][ATT_DIMS], vsum[ATT_DIMS];
  for (int h = 0; h < NS_ATT_GROUP; h++)
    {
      m[h] = -INFINITY;
      l[h] = 0.0f;
      for (int j = 0; j < ATT_DIMS; j++)
        acc[h][j] = 0.0f;
    }
  for (int j = 0; j < ATT_DIMS; j++)
    vsum[j] = 0.0f;
  float n_valid = 0.0f;
  __syncthreads ();
  for (int tile = 0; tile < a.tiles; tile++)
    {
      int base = key0 + tile * NS_ATT_TILE, key = base + threadIdx.x;
      if (base > last)
        break;
      float sc[NS_ATT_GROUP], mx[NS_ATT_GROUP], corr[NS_ATT_GROUP];
      bool live = key_scores (a, kb, q_s, valid, key, last, count, sc);
      for (int h = 0; h < NS_ATT_GROUP; h++)
        mx[h] = sc[h];
      block_reduce_heads (mx, count, 0, red);
      for (int h = 0; h < count; h++)
        {
          float m_new = fmaxf (m[h], mx[h]);
          corr[h] = m_new == -INFINITY ? 1.0f : expf (m[h] - m_new);
          sc[h] = sc[h] == -INFINITY ? 0.0f : expf (sc[h] - m_new);
          p_s[h][threadIdx.x] = sc[h];
          m[h] = m_new;
        }
      float lives[NS_ATT_GROUP] = { live ? 1.0f : 0.0f };
      block_reduce_heads (lives, 1, 1, red);
      n_valid += lives[0];
      block_reduce_heads (sc, count, 1, red);   /* also syncs p_s */
      int keys = min (NS_ATT_TILE, last + 1 - base);
      for (int j = 0; j < ATT_DIMS; j++)
        {
          int d = threadIdx.x + j * NS_ATT_TILE;
          if (d >= a.head_dim)
            break;
          float tile_acc[NS_ATT_GROUP] = { 0 };
          for (int t = 0; t < keys; t++)
            {
              float vv = vb[(size_t) (base + t) * a.head_dim + d];
              vsum[j] += vv;
              for (int h = 0; h < count; h++)
                tile_acc[h] += p_s[h][t] * vv;
            }
          for (int h = 0; h < count; h++)
            acc[h][j] = acc[h][j] * corr[h] + tile_acc[h];
        }
      for (int h = 0; h < count; h++)
        l[h] = l[h] * corr[h] + sc[h];
      __syncthreads ();
    }
  for (int h = 0; h < count; h++)
    {
      float *out = part + (((size_t) qrow * a.heads + h0 + h) * a.splits + blockIdx.x)
                            * (a.head_dim + 3);
      if (threadIdx.x == 0)
        {
          out[0] = m[h];
          out[1] = l[h];
          out[2] = n_valid;
        }
      for (int j = 0; j < ATT_DIMS; j++)
        {
          int d = threadIdx.x + j * NS_ATT_TILE;
          if (d < a.head_dim)
            out[3 + d] = n_valid > 0.0f ? acc[h][j] : vsum[j];
        }
    }
}

/* One block per (query row, head): merges the splits that hold keys. */
__global__ void
attention_combine_kernel (float *out, const float *part, const int32_t *start, int n, int heads,
                          int head_dim, int splits, int chunk)
{
  int qh = blockIdx.x, i = qh / heads % n, last = *start + i;
  int used = min (splits, last / chunk + 1);
  const float *p = part + (size_t) qh * splits * (head_dim + 3);
  float m_all = -INFINITY, total = 0.0f;
  for (int sp = 0; sp < used; sp++)
    {
      const float *ps = p + (size_t) sp * (head_dim + 3);
      total += ps[2];
      if (ps[2] > 0.0f)
        m_all = fmaxf (m_all, ps[0]);
    }
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    {
      float num = 0.0f, den = 0.0f;
      for (int sp = 0; sp < used; sp++)
        {
          const float *ps = p + (size_t) sp * (head_dim + 3);
          if (total == 0.0f)
            num += ps[3 + d];
          else if (ps[2] > 0.0f)
            {
              float c = expf (ps[0] - m_all);
              num += ps[3 + d] * c;
              den += ps[1] * c;
            }
        }
      out[(size_t) qh * head_dim + d] = num / (total == 0.0f ? (float) (last + 1) : den);
    }
}

void
ns_cuda_attention (NsBackend *b, float *out, const float *q, const float *k_cache,
                   const float *v_cache, const float *key_valid, int batch, int n,
                   const int32_t *start, int heads, int kv_heads, int head_dim, int capacity)
{
  if (head_dim > ATT_MAX_HEAD_DIM || kv_heads <= 0 || heads % kv_heads != 0)
    {
      ns_cuda_record (b, cudaErrorInvalidValue, "attention (head_dim > 256 or bad GQA ratio)");
      return;
    }
  if ((size_t) batch * n * heads == 0)
    return;
  AttArgs a = { q, k_cache, v_cache, key_valid, n, heads, kv_heads, head_dim, capacity,
                heads / kv_heads, 0, 0 };
  size_t queries = (size_t) batch * n * heads;
  a.splits = ns_ix_att_splits (queries, head_dim, capacity, ATT_PART_BUDGET, &a.tiles);
  float *part = (float *) ns_cuda_workspace (b, queries * a.splits * (head_dim + 3)
                                                  * sizeof (float));
  if (part == NULL)
    return;
  int slices = (a.group + NS_ATT_GROUP - 1) / NS_ATT_GROUP;
  cudaStream_t stream = ns_cuda (b)->stream;
  dim3 grid (a.splits, batch * n, kv_heads * slices);
  attention_partial_kernel<<<grid, NS_ATT_TILE, 0, stream>>> (part, a, start);
  attention_combine_kernel<<<queries, 128, 0, stream>>> (out, part, start, n, heads, head_dim,
                                                         a.splits, a.tiles * NS_ATT_TILE);
  ns_cuda_check_launch (b, "attention");
}
