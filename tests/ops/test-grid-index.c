/* test-grid-index.c — the CUDA kernels' index math (kernels/grid-index.h)
 * run on the CPU: each kernel's grid is looped over as the GPU would run
 * it, and every output must be owned exactly once, at the place backend.h
 * gives. Needs no GPU, so index bugs cost no device time. */
#include <glib.h>
#include "grid-index.h"
#include "q4-layout.h"

/* Marks element i seen; it must be in range and new. */
static void
visit (guint8 *seen, size_t n, size_t i)
{
  g_assert_cmpuint (i, <, n);
  g_assert_cmpuint (seen[i], ==, 0);
  seen[i] = 1;
}

static void
assert_all_seen (const guint8 *seen, size_t n)
{
  for (size_t i = 0; i < n; i++)
    g_assert_cmpuint (seen[i], ==, 1);
}

/* Calls fn (at) for each 16-byte load of `vec` elements that the lanes of
 * every split make, walking k as the GEMV kernels do (lane · vec, stride
 * 32 lanes × 2 loads in flight). */
static void
each_load (int k, int splits, int vec, void (*fn) (int at, gpointer data), gpointer data)
{
  for (int s = 0; s < splits; s++)
    {
      int k0, k1;
      ns_ix_split_range (k, splits, vec, s, &k0, &k1);
      for (int lane = 0; lane < 32; lane++)
        for (int i = k0 + lane * vec; i < k1; i += 32 * vec * 2)
          for (int u = 0; u < 2 && i + u * 32 * vec < k1; u++)
            fn (i + u * 32 * vec, data);
    }
}

typedef struct {
  int k;
  int *seen;
  int vec;
} LaneWalk;

/* The q4 load at `at`: each nibble's element, byte and scale group are
 * those of q4-layout.h. */
static void
q4_load (int at, gpointer data)
{
  LaneWalk *walk = data;
  size_t vec = (size_t) at / NS_Q4_VEC;
  for (int kk = 0; kk < 8; kk++)
    for (int t = 0; t < 4; t++)
      {
        size_t e = ns_q4_vec_element (vec, t, kk);
        g_assert_cmpuint (e, <, (size_t) walk->k);
        g_assert_cmpuint (ns_q4_byte (e), ==, 16 * vec + 4 * t + kk / 2);
        g_assert_cmpint (ns_q4_shift (e), ==, 4 * (kk % 2));
        /* the kernel's scale: nibble 4·(kk / 4)'s group */
        size_t g = ns_q4_vec_element (vec, 0, NS_Q4_GROUP >= NS_Q4_BLOCK ? 0 : 4 * (kk / 4));
        g_assert_cmpuint (g / NS_Q4_GROUP, ==, e / NS_Q4_GROUP);
        walk->seen[e]++;
      }
}

/* A gemv.cuh load at `at`: elements at … at + vec − 1. */
static void
plain_load (int at, gpointer data)
{
  LaneWalk *walk = data;
  for (int e = at; e < at + walk->vec; e++)
    {
      g_assert_cmpint (e, <, walk->k);
      walk->seen[e]++;
    }
}

static void
test_patch (void)
{
  const int c = 3, gh = 4, gw = 5, p = 2;
  size_t dim = (size_t) c * p * p, n = gh * gw * dim;
  g_autofree guint8 *seen = g_new0 (guint8, n);
  for (size_t t = 0; t < n; t++)
    {
      size_t token = t / dim, k = t % dim, l = ns_ix_patch_latent (gh, gw, p, token, k);
      int ch = k / (p * p), a = k / p % p, bb = k % p, i = token / gw, j = token % gw;
      g_assert_cmpuint (l, ==, ((size_t) ch * gh * p + p * i + a) * (gw * p) + p * j + bb);
      visit (seen, n, l);
    }
  assert_all_seen (seen, n);
}

static void
test_upsample (void)
{
  const int c = 3, h = 5, w = 7;
  size_t n = (size_t) c * h * w;
  g_autofree guint8 *count = g_new0 (guint8, n);
  for (size_t o = 0; o < 4 * n; o++)
    {
      size_t ox = o % (2 * w), oy = o / (2 * w) % (2 * h), ch = o / (4 * h * w);
      size_t src = ns_ix_upsample_src (h, w, o);
      g_assert_cmpuint (src, ==, (ch * h + oy / 2) * w + ox / 2);
      count[src]++;
    }
  for (size_t i = 0; i < n; i++)
    g_assert_cmpuint (count[i], ==, 4);
}

/* New positions land in [start, start + n) of each (sequence, kv head). */
static void
test_kv_cache (void)
{
  const int batch = 3, n = 4, kv_heads = 2, head_dim = 5, capacity = 11, start = 6;
  size_t total = (size_t) batch * n * kv_heads * head_dim;
  size_t cache = (size_t) batch * kv_heads * capacity * head_dim;
  g_autofree guint8 *seen = g_new0 (guint8, cache);
  for (size_t t = 0; t < total; t++)
    {
      size_t at = ns_ix_kv_cache (n, kv_heads, head_dim, capacity, start, t);
      int pos = (int) (at / head_dim % capacity);
      g_assert_cmpint (pos, >=, start);
      g_assert_cmpint (pos, <, start + n);
      g_assert_cmpint (pos - start, ==, (int) (t / (head_dim * kv_heads) % n));
      visit (seen, cache, at);
    }
}

static void
test_rope (void)
{
  const int batch = 2, n = 3, heads = 4, half = 8;
  size_t vecs = (size_t) batch * n * heads, total = vecs * half;
  g_autofree guint8 *seen = g_new0 (guint8, total);
  for (size_t t = 0; t < total; t++)
    {
      size_t vec, row;
      int pair;
      ns_ix_rope (heads, half, t, &vec, &pair, &row);
      g_assert_cmpuint (row, ==, vec / heads);
      g_assert_cmpuint (row, <, (size_t) batch * n);
      visit (seen, total, vec * half + pair);
    }
  assert_all_seen (seen, total);
}

/* Blocks z cover every query head once, each with its own kv head. */
static void
test_attention_heads (void)
{
  const int kv_heads = 3;
  for (int group = 1; group <= 20; group++)
    {
      int heads = group * kv_heads, slices = (group + NS_ATT_GROUP - 1) / NS_ATT_GROUP;
      g_autofree guint8 *seen = g_new0 (guint8, heads);
      for (int z = 0; z < kv_heads * slices; z++)
        {
          int h0, count;
          ns_ix_att_heads (group, z, &h0, &count);
          g_assert_cmpint (count, >=, 1);
          g_assert_cmpint (count, <=, NS_ATT_GROUP);
          for (int h = h0; h < h0 + count; h++)
            {
              g_assert_cmpint (h / group, ==, z / slices);
              visit (seen, heads, h);
            }
        }
      assert_all_seen (seen, heads);
    }
}

/* Every key belongs to one split; a query at `last` uses the splits the
 * combine kernel reads (last / chunk + 1 of them), and the partials fit
 * the budget unless one split is all there can be. */
static void
test_attention_splits (void)
{
  const int capacities[] = { 1, 7, 128, 129, 1800, 4100 };
  const size_t queries[] = { 1, 80, 24000 };
  for (int c = 0; c < (int) G_N_ELEMENTS (capacities); c++)
    for (int q = 0; q < (int) G_N_ELEMENTS (queries); q++)
      {
        int tiles, cap = capacities[c];
        size_t budget = (size_t) 16 << 20;
        int splits = ns_ix_att_splits (queries[q], 128, cap, budget, &tiles);
        int chunk = tiles * NS_ATT_TILE;
        g_assert_cmpint (splits, >=, 1);
        g_assert_cmpint ((size_t) splits * chunk, >=, cap);
        g_assert_cmpint ((splits - 1) * chunk, <, cap);
        g_assert_true (splits == 1 || queries[q] * splits * (128 + 3) <= budget);
        for (int last = 0; last < cap; last++)
          g_assert_cmpint (last / chunk + 1, <=, splits);
      }
}

/* Splits tile the vector part of k in whole vectors. */
static void
test_gemv_split_range (void)
{
  const int ks[] = { 16, 100, 5120, 13824 };
  for (int kk = 0; kk < (int) G_N_ELEMENTS (ks); kk++)
    for (int vec = 4; vec <= 16; vec *= 2)
      for (int splits = 1; splits <= NS_GEMV_MAX_SPLITS; splits++)
        {
          int k = ks[kk] - ks[kk] % vec, next = 0;
          for (int s = 0; s < splits; s++)
            {
              int k0, k1;
              ns_ix_split_range (k, splits, vec, s, &k0, &k1);
              g_assert_cmpint (k0, ==, MIN (next, k));
              g_assert_cmpint (k0 % vec, ==, 0);
              g_assert_cmpint (k1, >=, k0);
              next = k1;
            }
          g_assert_cmpint (next, ==, k);
        }
}

/* The GEMV grid (blocks × warps × NS_GEMV_OUTS rows) owns each output row
 * once; the split count stays in bounds and grows for few output rows. */
static void
test_gemv_grid (void)
{
  const int outs[] = { 1, 17, 1024, 5120, 13824, 152064 };
  for (int i = 0; i < (int) G_N_ELEMENTS (outs); i++)
    {
      int n_out = outs[i];
      int splits = ns_ix_gemv_splits (n_out, 5120, 8, 132, 4);
      g_assert_cmpint (splits, >=, 1);
      g_assert_cmpint (splits, <=, NS_GEMV_MAX_SPLITS);
      g_assert_cmpint (splits, <=, MAX (1, 5120 / (2 * 32 * 8)));
      int blocks = (n_out + NS_GEMV_OUTS * NS_GEMV_WARPS - 1) / (NS_GEMV_OUTS * NS_GEMV_WARPS);
      g_autofree guint8 *seen = g_new0 (guint8, n_out);
      for (int b = 0; b < blocks; b++)
        for (int w = 0; w < NS_GEMV_WARPS; w++)
          for (int o = 0; o < NS_GEMV_OUTS; o++)
            {
              int row = (b * NS_GEMV_WARPS + w) * NS_GEMV_OUTS + o;
              if (row < n_out)
                visit (seen, n_out, row);
            }
      assert_all_seen (seen, n_out);
    }
  g_assert_cmpint (ns_ix_gemv_splits (1024, 5120, 8, 132, 4), >, 1);   /* k/v projections */
  g_assert_cmpint (ns_ix_gemv_splits (1024, 5120, 8, 132, 4) * (1024 / 16), >=, 2 * 132);
}

/* gemv.cuh's lane walk over a split (lane · VEC, stride 32 lanes ×
 * GEMV_UNROLL loads) reads every element of k once, for each format's VEC. */
static void
test_gemv_lanes (void)
{
  const int ks[] = { 16, 64, 1536, 5120, 13824, 18944 };
  for (guint a = 0; a < G_N_ELEMENTS (ks); a++)
    for (int vec = 4; vec <= 16; vec *= 2)
      {
        int k = ks[a], splits = ns_ix_gemv_splits (1024, k, vec, 132, 4);
        g_autofree int *seen = g_new0 (int, k);
        LaneWalk walk = { k, seen, vec };
        each_load (k, splits, vec, plain_load, &walk);
        for (int e = 0; e < k; e++)
          g_assert_cmpint (seen[e], ==, 1);
      }
}

/* One GEMV launch over several matrices (gemv.cuh): the slots of every
 * warp own each weight row of each matrix exactly once (past the end:
 * nothing), each stored (slot, row of x) has its own lane, the split
 * partials of all matrices get distinct places inside the workspace that
 * linear.cu reserves, and the reduce kernel visits every output once. */
static void
check_gemv_layout (const int *n_out, int n_mats, int paired, int k, int rows)
{
  int first[NS_GEMV_MAX_MATS + 1], total_rows = 0, max_out = 0;
  int blocks = ns_ix_gemv_first_blocks (n_out, n_mats, paired, first);
  GHashTable *seen = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_autofree gint64 *keys = g_new (gint64, (size_t) blocks * NS_GEMV_WARPS * NS_GEMV_OUTS);
  size_t n_keys = 0;
  for (int j = 0; j < n_mats; j++)
    {
      total_rows += n_out[j];
      max_out = MAX (max_out, n_out[j]);
    }
  for (int blk = 0; blk < blocks; blk++)
    for (int w = 0; w < NS_GEMV_WARPS; w++)
      for (int o = 0; o < NS_GEMV_OUTS; o++)
        {
          int mat, row;
          ns_ix_gemv_slot (first, n_mats, paired, blk, w, o, &mat, &row);
          g_assert_cmpint (mat, >=, 0);
          g_assert_cmpint (mat, <, n_mats);
          g_assert_cmpint (row, >=, 0);
          if (row >= n_out[mat])
            continue;
          keys[n_keys] = (gint64) mat << 32 | row;
          g_assert_true (g_hash_table_add (seen, &keys[n_keys++]));
        }
  g_assert_cmpuint (n_keys, ==, total_rows);
  g_hash_table_unref (seen);
  /* lanes o · R + r: distinct and inside the warp */
  g_assert_cmpint (NS_GEMV_OUTS * rows, <=, 32);
  int splits = ns_ix_gemv_splits_for_blocks (blocks, k, 8, 132, 4);
  size_t part_n = (size_t) splits * rows * total_rows;
  g_assert_cmpuint (part_n, <=, (size_t) rows * (2 * 132 * 4 * NS_GEMV_WARPS * NS_GEMV_OUTS
                                                + NS_GEMV_MAX_MATS
                                                  * (max_out + NS_GEMV_WARPS * NS_GEMV_OUTS)));
  g_autofree guint8 *part = g_new0 (guint8, part_n);
  for (int j = 0; j < n_mats; j++)
    for (int s = 0; s < splits; s++)
      for (int r = 0; r < rows; r++)
        for (int o = 0; o < n_out[j]; o++)
          visit (part, part_n, ns_ix_gemv_part (n_out, j, splits, rows, s, r, o));
  assert_all_seen (part, part_n);
  size_t outs = ns_ix_gemv_outputs (n_out, n_mats, paired, rows);
  g_assert_cmpuint (outs, ==, (size_t) rows * (paired ? n_out[0] : total_rows));
  g_autofree guint8 *out_seen = g_new0 (guint8, part_n);
  for (size_t e = 0; e < outs; e++)
    {
      int mat, r, o;
      ns_ix_gemv_output (n_out, rows, e, &mat, &r, &o);
      g_assert_cmpint (mat, <, paired ? 1 : n_mats);
      g_assert_cmpint (r, <, rows);
      g_assert_cmpint (o, <, n_out[mat]);
      visit (out_seen, part_n, ns_ix_gemv_part (n_out, mat, 1, rows, 0, r, o));
    }
}

static void
test_gemv_multi_grid (void)
{
  /* q/k/v of the real model (5120, 1024, 1024) and of 7B-class shapes,
   * gate/up (13824, 18944: paired), odd and tiny sizes */
  const int sets[][3] = { { 5120, 1024, 1024 }, { 3584, 512, 512 }, { 13824, 13824, 0 },
                          { 18944, 18944, 0 }, { 1, 1, 1 }, { 17, 5, 3 }, { 1024, 0, 0 },
                          { 7, 7, 0 }, { 1536, 0, 0 } };
  for (guint i = 0; i < G_N_ELEMENTS (sets); i++)
    for (int rows = 1; rows <= 8; rows++)
      {
        int n_mats = sets[i][1] == 0 ? 1 : sets[i][2] == 0 ? 2 : 3;
        check_gemv_layout (sets[i], n_mats, FALSE, 5120, rows);
        if (n_mats == 2)
          check_gemv_layout (sets[i], 2, TRUE, 5120, rows);
      }
  /* the k/v projections no longer launch alone: with q, the grid fills
   * two waves of 132 SMs without split-K on 5120-wide rows */
  int first[NS_GEMV_MAX_MATS + 1];
  int blocks = ns_ix_gemv_first_blocks (sets[0], 3, FALSE, first);
  g_assert_cmpint (blocks, ==, (5120 + 2 * 1024) / (NS_GEMV_WARPS * NS_GEMV_OUTS));
  g_assert_cmpint (blocks * ns_ix_gemv_splits_for_blocks (blocks, 5120, 8, 132, 4), >=, 2 * 132);
}

static void
test_groupnorm_slices (void)
{
  const size_t ns[] = { 1, 4095, 4096 * 3 + 1, 128 * 512 * 512 / 32 };
  for (int i = 0; i < (int) G_N_ELEMENTS (ns); i++)
    {
      int splits = ns_ix_groupnorm_splits (32, ns[i], 132);
      g_assert_cmpint (splits, >=, 1);
      g_assert_true (splits == 1 || 32 * splits >= 2 * 132 || ns[i] / splits >= 4096);
      size_t next = 0;
      for (int s = 0; s < splits; s++)
        {
          size_t begin, end;
          ns_ix_slice (ns[i], splits, s, &begin, &end);
          g_assert_cmpuint (begin, ==, next);
          g_assert_cmpuint (end, >=, begin);
          next = end;
        }
      g_assert_cmpuint (next, ==, ns[i]);
    }
}

/* Threads of the noise grid write each value once (the last Philox block
 * of an image is cut at dim). */
static void
test_noise_grid (void)
{
  for (int dim = 1; dim <= 9; dim++)
    {
      const int images = 3;
      size_t n = (size_t) images * dim, threads = (size_t) images * ((dim + 3) / 4);
      g_autofree guint8 *seen = g_new0 (guint8, n);
      for (size_t t = 0; t < threads; t++)
        {
          int image, block;
          ns_ix_noise (dim, t, &image, &block);
          for (int j = 0; j < 4 && 4 * block + j < dim; j++)
            visit (seen, n, (size_t) image * dim + 4 * block + j);
        }
      assert_all_seen (seen, n);
    }
}

/* linear-q4.cu's GEMV: the lanes of every split, walking 16-byte loads as
 * the kernel does (stride 32 lanes × Q4_UNROLL loads), read every element
 * of a row exactly once; the byte and the scale group the kernel uses for
 * each nibble are those of q4-layout.h for that element. */
static void
test_gemv_q4_grid (void)
{
  const int ks[] = { 64, 192, 1536, 5120, 13824 };
  const int outs[] = { 64, 1024, 5120 };
  for (guint a = 0; a < G_N_ELEMENTS (ks); a++)
    for (guint c = 0; c < G_N_ELEMENTS (outs); c++)
      {
        int k = ks[a], splits = ns_ix_gemv_splits (outs[c], k, NS_Q4_VEC, 132, 4);
        g_autofree int *seen = g_new0 (int, k);
        LaneWalk walk = { k, seen, NS_Q4_VEC };
        each_load (k, splits, NS_Q4_VEC, q4_load, &walk);
        for (int e = 0; e < k; e++)
          g_assert_cmpint (seen[e], ==, 1);
      }
  /* the k/v projections (1024 rows) split (at most k / (2 · 32 · 32) ways: two
   * 16-byte loads per lane and split) */
  g_assert_cmpint (ns_ix_gemv_splits (1024, 5120, NS_Q4_VEC, 132, 4), ==, 2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/grid-index/patch", test_patch);
  g_test_add_func ("/grid-index/upsample", test_upsample);
  g_test_add_func ("/grid-index/kv-cache", test_kv_cache);
  g_test_add_func ("/grid-index/rope", test_rope);
  g_test_add_func ("/grid-index/attention-heads", test_attention_heads);
  g_test_add_func ("/grid-index/attention-splits", test_attention_splits);
  g_test_add_func ("/grid-index/gemv-split-range", test_gemv_split_range);
  g_test_add_func ("/grid-index/gemv-grid", test_gemv_grid);
  g_test_add_func ("/grid-index/gemv-q4-grid", test_gemv_q4_grid);
  g_test_add_func ("/grid-index/gemv-lanes", test_gemv_lanes);
  g_test_add_func ("/grid-index/gemv-multi-grid", test_gemv_multi_grid);
  g_test_add_func ("/grid-index/groupnorm-slices", test_groupnorm_slices);
  g_test_add_func ("/grid-index/noise", test_noise_grid);
  return g_test_run ();
}
