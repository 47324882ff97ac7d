/* test-attention.c — RoPE, kv_store, causal GQA attention (masking,
 * left padding, the no-valid-key rule) and spatial attention. */
#include "ops-util.h"

#define ROPE_TOL 1e-6
#define ATTENTION_TOL 2e-6

typedef struct {
  int batch, n, heads, head_dim;
  double theta;
  int32_t start;
  const float *x;
} RopeCase;

static float *
run_rope (NsBackend *b, gconstpointer data)
{
  const RopeCase *rc = data;
  size_t n = (size_t) rc->batch * rc->n * rc->heads * rc->head_dim;
  float *x = ops_upload (b, rc->x, n);
  int32_t *start = ops_upload_i32 (b, &rc->start, 1);
  b->ops->rope (b, x, start, rc->batch, rc->n, rc->heads, rc->head_dim, rc->theta);
  float *result = ops_download (b, x, n);
  b->ops->free (b, x);
  ns_backend_free_any (b, start);
  return result;
}

static void
test_rope (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (51);
  /* 2 × 35 rows × 4 heads × 128 is past the size where rope goes multi-threaded. */
  const int dims[] = { 2, 8, 128 };
  const double thetas[] = { 1e6, 1e4 };
  for (int d = 0; d < (int) G_N_ELEMENTS (dims); d++)
    for (int t = 0; t < 2; t++)
      {
        RopeCase rc = { .batch = 2, .n = dims[d] == 128 ? 35 : 3, .heads = 4,
                        .head_dim = dims[d], .theta = thetas[t], .start = 9000 + 17 * t };
        int half = rc.head_dim / 2;
        size_t n = (size_t) rc.batch * rc.n * rc.heads * rc.head_dim;
        g_autofree float *x = ops_random (rng, n, 1.0f);
        g_autofree double *ref = g_new (double, n);
        for (size_t v = 0; v < n; v += rc.head_dim)
          for (int i = 0; i < half; i++)
            {
              int row = (int) (v / ((size_t) rc.heads * rc.head_dim));
              double angle = (rc.start + row % rc.n) * pow (rc.theta, -2.0 * i / rc.head_dim);
              double x1 = x[v + i], x2 = x[v + i + half];
              ref[v + i] = x1 * cos (angle) - x2 * sin (angle);
              ref[v + i + half] = x2 * cos (angle) + x1 * sin (angle);
            }
        rc.x = x;
        g_autofree char *what = g_strdup_printf ("rope head_dim %d theta %g", dims[d], thetas[t]);
        ops_check (what, run_rope, &rc, ref, n, ROPE_TOL);
      }
}

typedef struct {
  int batch, n, start, kv_heads, head_dim, capacity;
  const float *cache, *src;
} KvCase;

static size_t
cache_size (const KvCase *kc)
{
  return (size_t) kc->batch * kc->kv_heads * kc->capacity * kc->head_dim;
}

static float *
run_kv_store (NsBackend *b, gconstpointer data)
{
  const KvCase *kc = data;
  float *cache = ops_upload (b, kc->cache, cache_size (kc));
  float *src = ops_upload (b, kc->src, (size_t) kc->batch * kc->n * kc->kv_heads * kc->head_dim);
  int32_t *start = ops_upload_i32 (b, (const int32_t[]) { kc->start }, 1);
  b->ops->kv_store (b, cache, src, kc->batch, kc->n, start, kc->kv_heads, kc->head_dim,
                    kc->capacity);
  float *result = ops_download (b, cache, cache_size (kc));
  ns_backend_free_any (b, start);
  b->ops->free (b, cache);
  b->ops->free (b, src);
  return result;
}

/* Positions outside [start, start + n) must keep their old values. */
static void
test_kv_store (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (52);
  KvCase kc = { .batch = 2, .n = 3, .start = 4, .kv_heads = 2, .head_dim = 5, .capacity = 9 };
  g_autofree float *cache = ops_random (rng, cache_size (&kc), 1.0f);
  g_autofree float *src = ops_random (rng, (size_t) kc.batch * kc.n * kc.kv_heads * kc.head_dim,
                                      1.0f);
  g_autofree double *ref = ops_to_double (cache, cache_size (&kc));
  for (int s = 0; s < kc.batch; s++)
    for (int t = 0; t < kc.n; t++)
      for (int h = 0; h < kc.kv_heads; h++)
        for (int d = 0; d < kc.head_dim; d++)
          ref[((s * kc.kv_heads + h) * kc.capacity + kc.start + t) * kc.head_dim + d] =
            src[((s * kc.n + t) * kc.kv_heads + h) * kc.head_dim + d];
  kc.cache = cache;
  kc.src = src;
  ops_check ("kv_store", run_kv_store, &kc, ref, cache_size (&kc), 0.0);
}

typedef struct {
  int batch, n, start, heads, kv_heads, head_dim, capacity;
  const float *q, *k, *v, *valid;
} AttentionCase;

static size_t
q_size (const AttentionCase *ac)
{
  return (size_t) ac->batch * ac->n * ac->heads * ac->head_dim;
}

static size_t
kv_size (const AttentionCase *ac)
{
  return (size_t) ac->batch * ac->kv_heads * ac->capacity * ac->head_dim;
}

/* Straight from the contract: softmax over the valid causal keys, or a
 * uniform average over all causal keys when none is valid. */
static void
reference_query (const AttentionCase *ac, int s, int i, int h, double *out)
{
  int n_keys = ac->start + i + 1, hd = ac->head_dim;
  const float *q = ac->q + (((size_t) s * ac->n + i) * ac->heads + h) * hd;
  size_t base = ((size_t) s * ac->kv_heads + h / (ac->heads / ac->kv_heads)) * ac->capacity;
  g_autofree double *p = g_new0 (double, n_keys);
  double max = -INFINITY, sum = 0.0;
  for (int j = 0; j < n_keys; j++)
    if (ac->valid[s * ac->capacity + j] != 0.0f)
      {
        for (int d = 0; d < hd; d++)
          p[j] += (double) q[d] * ac->k[(base + j) * hd + d];
        p[j] /= sqrt (hd);
        max = MAX (max, p[j]);
      }
  for (int j = 0; j < n_keys; j++)
    {
      gboolean valid = ac->valid[s * ac->capacity + j] != 0.0f;
      p[j] = max == -INFINITY ? 1.0 : valid ? exp (p[j] - max) : 0.0;
      sum += p[j];
    }
  for (int d = 0; d < hd; d++)
    {
      out[d] = 0.0;
      for (int j = 0; j < n_keys; j++)
        out[d] += p[j] / sum * ac->v[(base + j) * hd + d];
    }
}

static float *
run_attention (NsBackend *b, gconstpointer data)
{
  const AttentionCase *ac = data;
  float *q = ops_upload (b, ac->q, q_size (ac));
  float *k = ops_upload (b, ac->k, kv_size (ac));
  float *v = ops_upload (b, ac->v, kv_size (ac));
  float *valid = ops_upload (b, ac->valid, (size_t) ac->batch * ac->capacity);
  float *out = ops_poisoned (b, q_size (ac));
  int32_t *start = ops_upload_i32 (b, (const int32_t[]) { ac->start }, 1);
  b->ops->attention (b, out, q, k, v, valid, ac->batch, ac->n, start, ac->heads,
                     ac->kv_heads, ac->head_dim, ac->capacity);
  float *result = ops_download (b, out, q_size (ac));
  ns_backend_free_any (b, start);
  for (float *p[] = { q, k, v, valid, out }, **it = p; it < p + G_N_ELEMENTS (p); it++)
    b->ops->free (b, *it);
  return result;
}

/* Cache slots past start + n hold NaN: attention must never read them. */
static float *
cache_with_future_nan (GRand *rng, const AttentionCase *ac)
{
  float *c = ops_random (rng, kv_size (ac), 1.0f);
  for (size_t at = 0; at < kv_size (ac); at++)
    if ((int) (at / ac->head_dim % ac->capacity) >= ac->start + ac->n)
      c[at] = NAN;
  return c;
}

/* pad: the first `pad` keys of sequence 1 are invalid (left padding), so its
 * first queries may see no valid key at all. */
static void
check_attention (GRand *rng, int batch, int n, int start, int heads, int kv_heads, int head_dim,
                 int capacity, int pad)
{
  AttentionCase ac = { .batch = batch, .n = n, .start = start, .heads = heads,
                       .kv_heads = kv_heads, .head_dim = head_dim, .capacity = capacity };
  g_autofree float *q = ops_random (rng, q_size (&ac), 2.0f);
  g_autofree float *k = cache_with_future_nan (rng, &ac);
  g_autofree float *v = cache_with_future_nan (rng, &ac);
  g_autofree float *valid = g_new (float, (size_t) ac.batch * ac.capacity);
  for (int s = 0; s < ac.batch; s++)
    for (int j = 0; j < ac.capacity; j++)
      valid[s * ac.capacity + j] = s == 1 ? j >= pad : g_rand_int_range (rng, 0, 4) != 0;
  ac.q = q;
  ac.k = k;
  ac.v = v;
  ac.valid = valid;
  g_autofree double *ref = g_new (double, q_size (&ac));
  for (int s = 0; s < ac.batch; s++)
    for (int i = 0; i < ac.n; i++)
      for (int h = 0; h < ac.heads; h++)
        reference_query (&ac, s, i, h,
                         ref + (((size_t) s * ac.n + i) * ac.heads + h) * ac.head_dim);
  g_autofree char *what = g_strdup_printf ("attention batch %d n %d start %d heads %d/%d "
                                           "head_dim %d", ac.batch, ac.n, ac.start, ac.heads,
                                           ac.kv_heads, ac.head_dim);
  ops_check (what, run_attention, &ac, ref, q_size (&ac), ATTENTION_TOL);
}

static void
test_attention (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (53);
  /* GQA ratios 1, 2, 5; prefill from 0, prefill after a prefix, decode. */
  check_attention (rng, 2, 5, 0, 4, 4, 16, 8, 2);
  check_attention (rng, 2, 1, 6, 4, 2, 8, 10, 3);
  check_attention (rng, 2, 3, 4, 10, 2, 128, 9, 5);
  check_attention (rng, 1, 7, 0, 5, 1, 3, 7, 0);
  /* Keys over several flash-decoding tiles and splits; GQA 10 (two head
   * slices per group); no valid key in the first 200 of sequence 1. */
  check_attention (rng, 2, 2, 300, 20, 2, 32, 310, 200);
}

/* Decode over an edit-length cache: ≈1,700 keys × 3 rows (edit CFG), the
 * real head shape (40 heads over 8 kv heads of 128). */
static void
test_attention_edit_length (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (55);
  check_attention (rng, 3, 1, 1700, 40, 8, 128, 1800, 40);
}

typedef struct {
  int c, n;
  const float *q, *k, *v;
} SpatialCase;

static float *
run_spatial (NsBackend *b, gconstpointer data)
{
  const SpatialCase *sc = data;
  size_t n = (size_t) sc->c * sc->n;
  float *q = ops_upload (b, sc->q, n), *k = ops_upload (b, sc->k, n);
  float *v = ops_upload (b, sc->v, n), *out = ops_poisoned (b, n);
  b->ops->attention_spatial (b, out, q, k, v, sc->c, sc->n);
  float *result = ops_download (b, out, n);
  for (float *p[] = { q, k, v, out }, **it = p; it < p + G_N_ELEMENTS (p); it++)
    b->ops->free (b, *it);
  return result;
}

static void
test_attention_spatial (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (54);
  const int shapes[][2] = { { 8, 37 }, { 32, 100 }, { 3, 1 } };
  for (int s = 0; s < (int) G_N_ELEMENTS (shapes); s++)
    {
      SpatialCase sc = { .c = shapes[s][0], .n = shapes[s][1] };
      size_t n = (size_t) sc.c * sc.n;
      g_autofree float *q = ops_random (rng, n, 2.0f);
      g_autofree float *k = ops_random (rng, n, 2.0f);
      g_autofree float *v = ops_random (rng, n, 1.0f);
      g_autofree double *ref = g_new0 (double, n);
      g_autofree double *p = g_new (double, sc.n);
      for (int i = 0; i < sc.n; i++)
        {
          double max = -INFINITY, sum = 0.0;
          for (int j = 0; j < sc.n; j++)
            {
              p[j] = 0.0;
              for (int ch = 0; ch < sc.c; ch++)
                p[j] += (double) q[ch * sc.n + i] * k[ch * sc.n + j] / sqrt (sc.c);
              max = MAX (max, p[j]);
            }
          for (int j = 0; j < sc.n; j++)
            sum += p[j] = exp (p[j] - max);
          for (int ch = 0; ch < sc.c; ch++)
            for (int j = 0; j < sc.n; j++)
              ref[ch * sc.n + i] += p[j] / sum * v[ch * sc.n + j];
        }
      sc.q = q;
      sc.k = k;
      sc.v = v;
      g_autofree char *what = g_strdup_printf ("attention_spatial c %d n %d", sc.c, sc.n);
      ops_check (what, run_spatial, &sc, ref, n, ATTENTION_TOL);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/attention/rope", test_rope);
  g_test_add_func ("/ops/attention/kv-store", test_kv_store);
  g_test_add_func ("/ops/attention/causal", test_attention);
  g_test_add_func ("/ops/attention/edit-length", test_attention_edit_length);
  g_test_add_func ("/ops/attention/spatial", test_attention_spatial);
  return g_test_run ();
}
