/* cmd-bench.c — `nextstep bench`: the speed of one backend on synthetic
 * full-size NextStep-1 weights (real shapes; bf16 as published, or int8/fp8
 * quantized at upload as a model load does), against this machine's
 * measured memory bandwidth. Decode and the FM head stream every weight once
 * per step, so bytes / time over the bandwidth says how close a backend is
 * to the floor; from the per-token times it estimates whole images.
 * `nextstep bench tokenizer …` benchmarks the tokenizer. */
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "nextstep.h"
#include "backend.h"
#include "commands.h"
#include "files/config.h"
#include "files/torch-checkpoint.h"
#include "model/vae.h"
#ifdef _OPENMP
#  include <omp.h>
#endif

/* The real shapes (docs/nextstep-model.md §4, §7). */
#define HIDDEN 5120
#define HEADS 40
#define KV_HEADS 8
#define HEAD_DIM 128
#define MLP 13824
#define FM_DIM 1536
#define FM_BLOCKS 12
#define FM_TOKEN 64
#define FM_TIME_FEATURES 256
#define ROWS 2                  /* CFG: cond + uncond */
#define KV_POSITIONS 300        /* prompt + image tokens already cached */
#define BANDWIDTH_FLOATS (64u << 20)   /* 256 MiB per array: far past any cache */
#define BANDWIDTH_REPEATS 5
#define ALL_LAYERS 48
#define DEFAULT_STEPS 28        /* NextStep-1.1 sampling steps per token */
#define LARGEST_WEIGHT ((size_t) MLP * HIDDEN)
#define DEVICE_RESERVE (3ull << 30)   /* left free on the GPU: FM head, scratch, cuBLAS */

typedef struct {
  NsBackend *b;
  /* One random source for every weight of a device backend, which copies on
   * upload: 141 MB of host memory instead of the 28 GB of the model. */
  uint16_t *shared_source;
  GPtrArray *host;        /* host weight bytes (the CPU backend points into them) */
  GPtrArray *buffers;     /* backend buffers to free */
  GPtrArray *mats;        /* uploaded weights (NsMat *) to release */
  guint64 seed;
} Bench;

typedef struct {
  NsMat in_norm, post_norm, q, q_bias, k, k_bias, v, v_bias, o, gate, up, down;
  float *k_cache, *v_cache;
} Layer;

typedef struct {
  NsMat ln_w, ln_b, ada, ada_b, mlp0, mlp0_b, mlp2, mlp2_b;
} FmBlock;

typedef struct {
  NsMat input, input_b, time0, time0_b, time2, time2_b, cond, cond_b;
  FmBlock blocks[FM_BLOCKS];
  NsMat final_ada, final_ada_b, final_out, final_out_b;
} FmHead;

/* xorshift64*: fast enough to fill gigabytes, one stream per chunk. */
static guint64
next_random (guint64 *s)
{
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

/* Random bf16 of magnitude 2^-8 … 2^-4 with random sign: realistic weights. */
static void
fill_bf16 (uint16_t *w, size_t n, guint64 seed)
{
  const size_t chunk = 1 << 20;
#pragma omp parallel for schedule (static)
  for (size_t c0 = 0; c0 < n; c0 += chunk)
    {
      guint64 s = seed ^ (c0 + 0x9e3779b97f4a7c15ull);
      for (size_t i = c0; i < MIN (n, c0 + chunk); i++)
        {
          guint64 r = next_random (&s);
          w[i] = (uint16_t) ((r & 0x8000) | ((119 + (r >> 16) % 5) << 7) | ((r >> 24) & 0x7f));
        }
    }
}

static gboolean
weight (Bench *bench, int rows, int cols, NsMat *out, GError **error)
{
  size_t n = (size_t) rows * cols;
  uint16_t *data = bench->shared_source;
  if (data == NULL)
    {
      if ((data = g_try_malloc (n * sizeof (uint16_t))) == NULL)
        {
          g_set_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY,
                       "no memory for a synthetic %d × %d weight; try fewer --layers", rows, cols);
          return FALSE;
        }
      g_ptr_array_add (bench->host, data);
      fill_bf16 (data, n, bench->seed++);
    }
  g_ptr_array_add (bench->mats, out);
  NsTensorView view = { .name = (char *) "synthetic", .dtype = NS_DTYPE_BF16, .n_dims = 2,
                        .shape = { rows, cols }, .data = data, .n_bytes = n * sizeof (uint16_t),
                        .file = "(bench)" };
  return bench->b->ops->upload (bench->b, &view, out, error);
}

/* A backend buffer of n floats, random in [-1, 1]. */
static float *
buffer (Bench *bench, size_t n, GError **error)
{
  float *p = bench->b->ops->alloc (bench->b, n, error);
  if (p == NULL)
    return NULL;
  g_ptr_array_add (bench->buffers, p);
  g_autofree float *host = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    host[i] = (float) (next_random (&bench->seed) >> 40) / (1 << 23) - 1.0f;
  bench->b->ops->write (bench->b, p, host, n);
  return p;
}

static gboolean
make_layer (Bench *bench, Layer *l, int capacity, GError **error)
{
  size_t cache = (size_t) ROWS * KV_HEADS * capacity * HEAD_DIM;
  return weight (bench, 1, HIDDEN, &l->in_norm, error)
         && weight (bench, 1, HIDDEN, &l->post_norm, error)
         && weight (bench, HEADS * HEAD_DIM, HIDDEN, &l->q, error)
         && weight (bench, 1, HEADS * HEAD_DIM, &l->q_bias, error)
         && weight (bench, KV_HEADS * HEAD_DIM, HIDDEN, &l->k, error)
         && weight (bench, 1, KV_HEADS * HEAD_DIM, &l->k_bias, error)
         && weight (bench, KV_HEADS * HEAD_DIM, HIDDEN, &l->v, error)
         && weight (bench, 1, KV_HEADS * HEAD_DIM, &l->v_bias, error)
         && weight (bench, HIDDEN, HEADS * HEAD_DIM, &l->o, error)
         && weight (bench, MLP, HIDDEN, &l->gate, error)
         && weight (bench, MLP, HIDDEN, &l->up, error)
         && weight (bench, HIDDEN, MLP, &l->down, error)
         && (l->k_cache = buffer (bench, cache, error)) != NULL
         && (l->v_cache = buffer (bench, cache, error)) != NULL;
}

static gboolean
make_fm_block (Bench *bench, FmBlock *f, GError **error)
{
  return weight (bench, 1, FM_DIM, &f->ln_w, error) && weight (bench, 1, FM_DIM, &f->ln_b, error)
         && weight (bench, 3 * FM_DIM, FM_DIM, &f->ada, error)
         && weight (bench, 1, 3 * FM_DIM, &f->ada_b, error)
         && weight (bench, FM_DIM, FM_DIM, &f->mlp0, error)
         && weight (bench, 1, FM_DIM, &f->mlp0_b, error)
         && weight (bench, FM_DIM, FM_DIM, &f->mlp2, error)
         && weight (bench, 1, FM_DIM, &f->mlp2_b, error);
}

static gboolean
make_fm_head (Bench *bench, FmHead *h, GError **error)
{
  for (int i = 0; i < FM_BLOCKS; i++)
    if (!make_fm_block (bench, &h->blocks[i], error))
      return FALSE;
  return weight (bench, FM_DIM, FM_TOKEN, &h->input, error)
         && weight (bench, 1, FM_DIM, &h->input_b, error)
         && weight (bench, FM_DIM, FM_TIME_FEATURES, &h->time0, error)
         && weight (bench, 1, FM_DIM, &h->time0_b, error)
         && weight (bench, FM_DIM, FM_DIM, &h->time2, error)
         && weight (bench, 1, FM_DIM, &h->time2_b, error)
         && weight (bench, FM_DIM, HIDDEN, &h->cond, error)
         && weight (bench, 1, FM_DIM, &h->cond_b, error)
         && weight (bench, 2 * FM_DIM, FM_DIM, &h->final_ada, error)
         && weight (bench, 1, 2 * FM_DIM, &h->final_ada_b, error)
         && weight (bench, FM_TOKEN, FM_DIM, &h->final_out, error)
         && weight (bench, 1, FM_TOKEN, &h->final_out_b, error);
}

static double
mat_bytes (const NsMat *m)
{
  return (double) m->rows * m->cols * ns_dtype_size (m->dtype);
}

/* Scratch activations of one decode step (ROWS rows each). */
typedef struct {
  float *x, *n, *q, *k, *v, *attn, *gate, *up, *valid;
} DecodeScratch;

/* One transformer layer on ROWS new tokens at cache position pos, as the
 * model runs it: pre-norm attention and SwiGLU MLP, both residual. */
static void
decode_layer (NsBackend *b, const Layer *l, const DecodeScratch *s, int pos, int capacity)
{
  const NsBackendOps *ops = b->ops;
  int32_t positions[ROWS];
  for (int r = 0; r < ROWS; r++)
    positions[r] = pos;
  ops->rmsnorm (b, s->n, s->x, &l->in_norm, ROWS, HIDDEN, 1e-5f);
  ops->linear (b, s->q, s->n, &l->q, &l->q_bias, ROWS, FALSE);
  ops->linear (b, s->k, s->n, &l->k, &l->k_bias, ROWS, FALSE);
  ops->linear (b, s->v, s->n, &l->v, &l->v_bias, ROWS, FALSE);
  ops->rope (b, s->q, positions, ROWS, HEADS, HEAD_DIM, 1e6);
  ops->rope (b, s->k, positions, ROWS, KV_HEADS, HEAD_DIM, 1e6);
  ops->kv_store (b, l->k_cache, s->k, ROWS, 1, pos, KV_HEADS, HEAD_DIM, capacity);
  ops->kv_store (b, l->v_cache, s->v, ROWS, 1, pos, KV_HEADS, HEAD_DIM, capacity);
  ops->attention (b, s->attn, s->q, l->k_cache, l->v_cache, s->valid, ROWS, 1, pos, HEADS,
                  KV_HEADS, HEAD_DIM, capacity);
  ops->linear (b, s->x, s->attn, &l->o, NULL, ROWS, TRUE);
  ops->rmsnorm (b, s->n, s->x, &l->post_norm, ROWS, HIDDEN, 1e-5f);
  ops->linear (b, s->gate, s->n, &l->gate, NULL, ROWS, FALSE);
  ops->linear (b, s->up, s->n, &l->up, NULL, ROWS, FALSE);
  ops->silu_mul (b, s->gate, s->gate, s->up, (size_t) ROWS * MLP);
  ops->linear (b, s->x, s->gate, &l->down, NULL, ROWS, TRUE);
}

static double
layer_weight_bytes (const Layer *l)
{
  const NsMat *all[] = { &l->in_norm, &l->post_norm, &l->q, &l->q_bias, &l->k, &l->k_bias,
                         &l->v, &l->v_bias, &l->o, &l->gate, &l->up, &l->down };
  double bytes = 0;
  for (size_t i = 0; i < G_N_ELEMENTS (all); i++)
    bytes += mat_bytes (all[i]);
  return bytes;
}

/* Scratch of one FM-head step: token x, condition y, adaLN rows, MLP. */
typedef struct {
  float *x, *y, *ys, *temb, *tfeat, *ada, *u, *h, *m, *out;
} FmScratch;

/* One sampling step of the head for ROWS rows. The condition embedding
 * runs once per token, not per step, so `cond` comes in precomputed. */
static void
fm_step (NsBackend *b, const FmHead *f, const FmScratch *s, const float *cond)
{
  const NsBackendOps *ops = b->ops;
  ops->linear (b, s->temb, s->tfeat, &f->time0, &f->time0_b, ROWS, FALSE);
  ops->silu (b, s->temb, s->temb, (size_t) ROWS * FM_DIM);
  ops->linear (b, s->y, s->temb, &f->time2, &f->time2_b, ROWS, FALSE);
  ops->add (b, s->y, s->y, cond, (size_t) ROWS * FM_DIM);
  ops->silu (b, s->ys, s->y, (size_t) ROWS * FM_DIM);
  ops->linear (b, s->h, s->x, &f->input, &f->input_b, ROWS, FALSE);
  for (int i = 0; i < FM_BLOCKS; i++)
    {
      const FmBlock *blk = &f->blocks[i];
      ops->linear (b, s->ada, s->ys, &blk->ada, &blk->ada_b, ROWS, FALSE);
      ops->layernorm (b, s->u, s->h, &blk->ln_w, &blk->ln_b, ROWS, FM_DIM, 1e-6f);
      ops->modulate (b, s->u, s->u, s->ada, s->ada + FM_DIM, ROWS, FM_DIM, 3 * FM_DIM);
      ops->linear (b, s->m, s->u, &blk->mlp0, &blk->mlp0_b, ROWS, FALSE);
      ops->silu (b, s->m, s->m, (size_t) ROWS * FM_DIM);
      ops->linear (b, s->u, s->m, &blk->mlp2, &blk->mlp2_b, ROWS, FALSE);
      ops->gated_add (b, s->h, s->ada + 2 * FM_DIM, s->u, ROWS, FM_DIM, 3 * FM_DIM);
    }
  ops->linear (b, s->ada, s->ys, &f->final_ada, &f->final_ada_b, ROWS, FALSE);
  ops->layernorm (b, s->u, s->h, NULL, NULL, ROWS, FM_DIM, 1e-6f);
  ops->modulate (b, s->u, s->u, s->ada, s->ada + FM_DIM, ROWS, FM_DIM, 2 * FM_DIM);
  ops->linear (b, s->out, s->u, &f->final_out, &f->final_out_b, ROWS, FALSE);
}

static double
fm_step_bytes (const FmHead *f)
{
  double bytes = mat_bytes (&f->time0) + mat_bytes (&f->time2) + mat_bytes (&f->input)
                 + mat_bytes (&f->final_ada) + mat_bytes (&f->final_out);
  for (int i = 0; i < FM_BLOCKS; i++)
    bytes += mat_bytes (&f->blocks[i].ada) + mat_bytes (&f->blocks[i].mlp0)
             + mat_bytes (&f->blocks[i].mlp2);
  return bytes;
}

/* Wall-clock and process CPU time. With one thread on a shared machine, CPU
 * time is what the work itself took; wall time includes waiting for a core. */
typedef struct {
  double wall, cpu;       /* seconds */
} Stamp;

static Stamp
stamp_now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (Stamp) { g_get_monotonic_time () / 1e6, ts.tv_sec + ts.tv_nsec / 1e9 };
}

static Stamp
stamp_since (Stamp t0)
{
  Stamp t1 = stamp_now ();
  return (Stamp) { t1.wall - t0.wall, t1.cpu - t0.cpu };
}

/* Bandwidth in GB/s; read_cpu counts CPU time instead of wall time. */
typedef struct {
  double read, copy, read_cpu;
} Bandwidth;

/* STREAM-like host bandwidth: best of several multi-threaded passes. read =
 * sum of 8-byte words (what a GEMV does), copy = a → b counting both. */
static void
host_bandwidth (int threads, Bandwidth *bw)
{
  size_t words = BANDWIDTH_FLOATS / 2;
  guint64 *a = g_new (guint64, words), *c = g_new (guint64, words);
#pragma omp parallel for num_threads (threads) schedule (static)
  for (size_t i = 0; i < words; i++)
    a[i] = c[i] = i;
  guint64 sink = 0;
  *bw = (Bandwidth) { 0 };
  for (int rep = 0; rep < BANDWIDTH_REPEATS; rep++)
    {
      Stamp t0 = stamp_now ();
      guint64 s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp parallel for num_threads (threads) schedule (static) reduction (+:s0, s1, s2, s3)
      for (size_t i = 0; i < words; i += 4)
        {
          s0 += a[i];
          s1 += a[i + 1];
          s2 += a[i + 2];
          s3 += a[i + 3];
        }
      Stamp read = stamp_since (t0);
      t0 = stamp_now ();
#pragma omp parallel for num_threads (threads) schedule (static)
      for (size_t i = 0; i < words; i++)
        c[i] = a[i];
      Stamp copy = stamp_since (t0);
      sink += s0 + s1 + s2 + s3 + c[rep];
      bw->read = MAX (bw->read, words * 8.0 / read.wall / 1e9);
      bw->read_cpu = MAX (bw->read_cpu, words * 8.0 / read.cpu / 1e9);
      bw->copy = MAX (bw->copy, words * 16.0 / copy.wall / 1e9);
    }
  /* Keeps the read loop from being optimised away. */
  if (sink == 42)
    g_printerr ("%" G_GUINT64_FORMAT "\n", sink);
  g_free (a);
  g_free (c);
}

/* Device bandwidth through the backend's own copy (read + write counted). */
static gboolean
device_bandwidth (Bench *bench, double *copy_gbs, GError **error)
{
  NsBackend *b = bench->b;
  float *a = b->ops->alloc (b, BANDWIDTH_FLOATS, error);
  float *c = a ? b->ops->alloc (b, BANDWIDTH_FLOATS, error) : NULL;
  gboolean ok = c != NULL && b->ops->sync (b, error);
  *copy_gbs = 0;
  for (int rep = 0; ok && rep < BANDWIDTH_REPEATS; rep++)
    {
      Stamp t0 = stamp_now ();
      b->ops->copy (b, c, a, BANDWIDTH_FLOATS);
      ok = b->ops->sync (b, error);
      *copy_gbs = MAX (*copy_gbs, BANDWIDTH_FLOATS * 8.0 / stamp_since (t0).wall / 1e9);
    }
  if (a)
    b->ops->free (b, a);
  if (c)
    b->ops->free (b, c);
  return ok;
}

static char *
cpu_model_name (void)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents ("/proc/cpuinfo", &text, NULL, NULL))
    return g_strdup ("unknown CPU");
  const char *line = strstr (text, "model name");
  const char *colon = line ? strchr (line, ':') : NULL;
  if (colon == NULL)
    return g_strdup ("unknown CPU");
  return g_strstrip (g_strndup (colon + 1, strcspn (colon + 1, "\n")));
}

static NsBackend *
open_backend (const char *name, int threads, GError **error)
{
  if (g_strcmp0 (name, "cpu") == 0)
    return ns_backend_cpu_new (threads);
  if (g_strcmp0 (name, "cuda") == 0)
    {
#ifdef NS_HAVE_CUDA
      return ns_backend_cuda_new (0, 0, error);
#else
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "this nextstep was built without CUDA; rebuild with -Dcuda=enabled");
      return NULL;
#endif
    }
  g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
               "unknown backend '%s' (use cpu or cuda)", name);
  return NULL;
}

typedef struct {
  double best_ms, mean_ms, best_cpu_ms;
} Timing;

/* Times `steps` calls of step (ctx, i), each followed by a sync. */
static gboolean
time_steps (NsBackend *b, int steps, void (*step) (gpointer, int), gpointer ctx, Timing *t,
            GError **error)
{
  *t = (Timing) { G_MAXDOUBLE, 0, G_MAXDOUBLE };
  for (int i = 0; i < steps; i++)
    {
      Stamp t0 = stamp_now ();
      step (ctx, i);
      if (!b->ops->sync (b, error))
        return FALSE;
      Stamp took = stamp_since (t0);
      t->best_ms = MIN (t->best_ms, took.wall * 1e3);
      t->best_cpu_ms = MIN (t->best_cpu_ms, took.cpu * 1e3);
      t->mean_ms += took.wall * 1e3 / steps;
    }
  return TRUE;
}

typedef struct {
  NsBackend *b;
  Layer *layers;
  int n_layers, capacity;
  DecodeScratch s;
} DecodeRun;

/* Step i decodes one token (all layers) at position KV_POSITIONS + i. */
static void
decode_token (gpointer ctx, int i)
{
  DecodeRun *run = ctx;
  for (int l = 0; l < run->n_layers; l++)
    decode_layer (run->b, &run->layers[l], &run->s, KV_POSITIONS + i, run->capacity);
}

typedef struct {
  NsBackend *b;
  FmHead *head;
  FmScratch s;
  float *cond;
} FmRun;

static void
fm_run_step (gpointer ctx, int i)
{
  (void) i;
  FmRun *run = ctx;
  fm_step (run->b, run->head, &run->s, run->cond);
}

/* cpu_floor_gbs > 0 adds the same in CPU time (single-threaded runs). */
static void
report (const char *what, const Timing *t, double bytes, double floor_gbs, double cpu_floor_gbs)
{
  double gbs = bytes / (t->best_ms * 1e6);
  printf ("%-18s %8.2f ms best, %8.2f ms mean; %6.1f MB streamed → %6.1f GB/s = %5.1f %% of "
          "the bandwidth floor\n", what, t->best_ms, t->mean_ms, bytes / 1e6, gbs,
          100.0 * gbs / floor_gbs);
  if (cpu_floor_gbs > 0)
    printf ("%-18s %8.2f ms CPU time → %6.1f GB/s = %5.1f %% of the CPU-time read bandwidth\n",
            "", t->best_cpu_ms, bytes / (t->best_cpu_ms * 1e6),
            100.0 * bytes / (t->best_cpu_ms * 1e6) / cpu_floor_gbs);
}

static gboolean
make_scratch (Bench *bench, DecodeScratch *s, FmScratch *f, float **cond, int capacity,
              GError **error)
{
  return (s->x = buffer (bench, ROWS * HIDDEN, error))
         && (s->n = buffer (bench, ROWS * HIDDEN, error))
         && (s->q = buffer (bench, ROWS * HIDDEN, error))
         && (s->k = buffer (bench, ROWS * KV_HEADS * HEAD_DIM, error))
         && (s->v = buffer (bench, ROWS * KV_HEADS * HEAD_DIM, error))
         && (s->attn = buffer (bench, ROWS * HIDDEN, error))
         && (s->gate = buffer (bench, ROWS * MLP, error))
         && (s->up = buffer (bench, ROWS * MLP, error))
         && (s->valid = buffer (bench, (size_t) ROWS * capacity, error))
         && (f->x = buffer (bench, ROWS * FM_TOKEN, error))
         && (f->y = buffer (bench, ROWS * FM_DIM, error))
         && (f->ys = buffer (bench, ROWS * FM_DIM, error))
         && (f->temb = buffer (bench, ROWS * FM_DIM, error))
         && (f->tfeat = buffer (bench, ROWS * FM_TIME_FEATURES, error))
         && (f->ada = buffer (bench, ROWS * 3 * FM_DIM, error))
         && (f->u = buffer (bench, ROWS * FM_DIM, error))
         && (f->h = buffer (bench, ROWS * FM_DIM, error))
         && (f->m = buffer (bench, ROWS * FM_DIM, error))
         && (f->out = buffer (bench, ROWS * FM_TOKEN, error))
         && (*cond = buffer (bench, ROWS * FM_DIM, error));
}

typedef struct {
  const char *weights;
  int layers, threads;
  double copy_gbs, read_gbs, floor_gbs;
  double layer_ms, layer_floor_pct, token_ms, fm_step_ms, fm_floor_pct, fm_token_ms;
  double e2e_256_s, e2e_512_s, first_preview_256_ms, first_preview_512_ms;
  double vae_256_ms, vae_512_ms;   /* 0 when no --vae was given */
  double peak_gb;         /* < 0 when the backend does not track it */
} BenchResult;

/* Whole-image estimates at the default settings: every token runs one
 * decode step (all ALL_LAYERS layers) and DEFAULT_STEPS head steps, then
 * the VAE decodes (when measured); the first preview needs one row of
 * tokens. Prefill is not included. */
static void
estimate_images (BenchResult *r)
{
  r->token_ms = r->layer_ms * ALL_LAYERS;
  r->fm_token_ms = r->fm_step_ms * DEFAULT_STEPS;
  double per_token = r->token_ms + r->fm_token_ms;
  r->e2e_256_s = (256 * per_token + r->vae_256_ms) / 1e3;
  r->e2e_512_s = (1024 * per_token + r->vae_512_ms) / 1e3;
  r->first_preview_256_ms = 16 * per_token;
  r->first_preview_512_ms = 32 * per_token;
}

static void
print_json (const BenchResult *r, const char *backend)
{
  g_autoptr (JsonBuilder) jb = json_builder_new ();
  json_builder_begin_object (jb);
#define MEMBER_D(name, v) (json_builder_set_member_name (jb, name), json_builder_add_double_value (jb, v))
  json_builder_set_member_name (jb, "backend");
  json_builder_add_string_value (jb, backend);
  json_builder_set_member_name (jb, "weights");
  json_builder_add_string_value (jb, r->weights);
  json_builder_set_member_name (jb, "layers_measured");
  json_builder_add_int_value (jb, r->layers);
  json_builder_set_member_name (jb, "steps");
  json_builder_add_int_value (jb, DEFAULT_STEPS);
  MEMBER_D ("copy_gbs", r->copy_gbs);
  MEMBER_D ("floor_gbs", r->floor_gbs);
  MEMBER_D ("transformer_ms_per_token", r->token_ms);
  MEMBER_D ("transformer_floor_pct", r->layer_floor_pct);
  MEMBER_D ("fm_head_ms_per_token", r->fm_token_ms);
  MEMBER_D ("fm_head_floor_pct", r->fm_floor_pct);
  MEMBER_D ("e2e_256_s", r->e2e_256_s);
  MEMBER_D ("e2e_512_s", r->e2e_512_s);
  MEMBER_D ("first_preview_256_ms", r->first_preview_256_ms);
  MEMBER_D ("first_preview_512_ms", r->first_preview_512_ms);
  if (r->vae_512_ms > 0)
    {
      MEMBER_D ("vae_256_ms", r->vae_256_ms);
      MEMBER_D ("vae_512_ms", r->vae_512_ms);
    }
  if (r->peak_gb >= 0)
    MEMBER_D ("peak_vram_gb", r->peak_gb);
#undef MEMBER_D
  json_builder_end_object (jb);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (jb);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
}

static void
print_estimates (const BenchResult *r)
{
  printf ("per token (%d layers, %d head steps): transformer %.2f ms, FM head %.2f ms\n",
          ALL_LAYERS, DEFAULT_STEPS, r->token_ms, r->fm_token_ms);
  if (r->vae_512_ms > 0)
    printf ("VAE decode: 256² %.1f ms, 512² %.1f ms\n", r->vae_256_ms, r->vae_512_ms);
  printf ("estimate without prefill%s: 256² %.1f s, 512² %.1f s; first preview after "
          "%.0f ms (256²) / %.0f ms (512²)\n", r->vae_512_ms > 0 ? "" : " and VAE",
          r->e2e_256_s, r->e2e_512_s, r->first_preview_256_ms, r->first_preview_512_ms);
  if (r->peak_gb >= 0)
    printf ("peak device memory: %.2f GB\n", r->peak_gb);
}

/* Best of two decodes of a random side × side latent, in ms. */
static gboolean
time_vae_decode (NsVae *vae, int side, double *ms, GError **error)
{
  int z = ns_vae_get_config (vae)->z_channels;
  size_t n = (size_t) z * side * side;
  g_autofree float *latent = g_new (float, n);
  g_autofree float *rgb = g_new (float, (size_t) 3 * 64 * side * side);
  guint64 s = 0x7ae;
  for (size_t i = 0; i < n; i++)
    latent[i] = (float) (next_random (&s) >> 40) / (1 << 23) - 1.0f;
  *ms = G_MAXDOUBLE;
  for (int rep = 0; rep < 2; rep++)
    {
      Stamp t0 = stamp_now ();
      if (!ns_vae_decode (vae, latent, side, side, rgb, NULL, error))
        return FALSE;
      *ms = MIN (*ms, stamp_since (t0).wall * 1e3);
    }
  return TRUE;
}

/* VAE decode at 256² and 512² with the VAE of `dir` (config.json +
 * checkpoint.pt: the published one gives the real shapes). */
static gboolean
measure_vae (NsBackend *b, const char *dir, BenchResult *res, GError **error)
{
  NsVaeConfig cfg;
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *ckpt = g_build_filename (dir, "checkpoint.pt", NULL);
  if (!ns_vae_config_load (&cfg, cfg_path, error))
    return FALSE;
  g_autoptr (NsTensorStore) store = ns_torch_checkpoint_load (ckpt, error);
  NsVae *vae = store ? ns_vae_new (b, store, &cfg, error) : NULL;
  gboolean ok = vae != NULL && time_vae_decode (vae, 256 / 8, &res->vae_256_ms, error)
                && time_vae_decode (vae, 512 / 8, &res->vae_512_ms, error);
  ns_vae_free (vae);
  return ok;
}

/* Measures bandwidth, then times decode and FM steps (and the VAE when
 * `vae_dir` is set), and prints it all. */
static gboolean
measure (Bench *bench, DecodeRun *dr, FmRun *fr, int tokens, int threads, gboolean json,
         const char *vae_dir, GError **error)
{
  NsBackend *b = bench->b;
  /* Every key valid (random floats are not 0/1). */
  g_autofree float *ones = g_new (float, ROWS * dr->capacity);
  for (int i = 0; i < ROWS * dr->capacity; i++)
    ones[i] = 1.0f;
  b->ops->write (b, dr->s.valid, ones, ROWS * dr->capacity);
  /* The condition is embedded once per token, outside the timed steps. */
  b->ops->linear (b, fr->cond, dr->s.x, &fr->head->cond, &fr->head->cond_b, ROWS, FALSE);

  Bandwidth bw = { 0 };
  if (g_strcmp0 (b->ops->name, "cpu") == 0)
    host_bandwidth (threads, &bw);
  else if (!device_bandwidth (bench, &bw.copy, error))
    return FALSE;
  double floor_gbs = bw.read > 0 ? bw.read : bw.copy / 2;
  /* CPU time measures the work only when one thread does all of it. */
  double cpu_floor_gbs = threads == 1 ? bw.read_cpu : 0;

  Timing decode, fm;
  if (!time_steps (b, 1, decode_token, dr, &decode, error)    /* warm-up */
      || !time_steps (b, tokens, decode_token, dr, &decode, error)
      || !time_steps (b, 1, fm_run_step, fr, &fm, error)
      || !time_steps (b, MAX (tokens, 4), fm_run_step, fr, &fm, error))
    return FALSE;

  g_autofree char *model = cpu_model_name ();
  double kv_bytes = 2.0 * ROWS * KV_HEADS * KV_POSITIONS * HEAD_DIM * sizeof (float);
  Timing per_layer = { decode.best_ms / dr->n_layers, decode.mean_ms / dr->n_layers,
                       decode.best_cpu_ms / dr->n_layers };
  double layer_bytes = layer_weight_bytes (&dr->layers[0]) + kv_bytes;
  BenchResult res = {
    .weights = ns_weight_format_name (b->weight_format), .layers = dr->n_layers,
    .threads = threads, .copy_gbs = bw.copy, .read_gbs = bw.read, .floor_gbs = floor_gbs,
    .layer_ms = per_layer.best_ms, .fm_step_ms = fm.best_ms, .peak_gb = -1,
    .layer_floor_pct = 100.0 * layer_bytes / (per_layer.best_ms * 1e6) / floor_gbs,
    .fm_floor_pct = 100.0 * fm_step_bytes (fr->head) / (fm.best_ms * 1e6) / floor_gbs,
  };
  if (vae_dir != NULL && !measure_vae (b, vae_dir, &res, error))
    return FALSE;
#ifdef NS_HAVE_CUDA
  if (g_strcmp0 (b->ops->name, "cuda") == 0)
    res.peak_gb = ns_backend_cuda_peak_memory (b) / 1e9;
#endif
  estimate_images (&res);
  if (json)
    {
      print_json (&res, b->ops->name);
      return TRUE;
    }
  printf ("backend %s, %d thread(s), host CPU %s\n", b->ops->name, threads, model);
  if (bw.read > 0)
    printf ("memory bandwidth (best of %d, 256 MiB arrays): read %.1f GB/s, copy %.1f GB/s "
            "(read in CPU time %.1f GB/s)\n", BANDWIDTH_REPEATS, bw.read, bw.copy, bw.read_cpu);
  else
    printf ("device bandwidth (copy, read + write): %.1f GB/s\n", bw.copy);
  printf ("decode: %d layer(s) × %d token(s), %d rows, KV cache %d positions (f32)\n",
          dr->n_layers, tokens, ROWS, KV_POSITIONS);
  report ("decode layer-step", &per_layer, layer_bytes, floor_gbs, cpu_floor_gbs);
  report ("FM head step", &fm, fm_step_bytes (fr->head), floor_gbs, cpu_floor_gbs);
  printf ("bytes: %s weights read per step (+ the f32 KV cache for decode); "
          "bandwidth floor = %s bandwidth\n", res.weights, bw.read > 0 ? "read" : "half the copy");
  print_estimates (&res);
  return TRUE;
}

/* Device backends: as many layers as fit beside DEVICE_RESERVE (all 48 with
 * room), the per-token time scaled to 48 in estimate_images. */
static int
layers_that_fit (NsBackend *b, int asked)
{
#ifdef NS_HAVE_CUDA
  if (asked == 0 && g_strcmp0 (b->ops->name, "cuda") == 0)
    {
      double per_layer = 275.3e6 * (b->weight_format == NS_WEIGHTS_BF16 ? 2.0 : 1.0);
      guint64 free_bytes = ns_backend_cuda_free_memory (b);
      double room = free_bytes > DEVICE_RESERVE ? (double) (free_bytes - DEVICE_RESERVE) : 0;
      return CLAMP ((int) (room / per_layer), 1, ALL_LAYERS);
    }
#else
  (void) b;
#endif
  return asked > 0 ? asked : 2;
}

static gboolean
run_bench (Bench *bench, int n_layers, int tokens, int threads, gboolean json,
           const char *vae_dir, GError **error)
{
  int capacity = KV_POSITIONS + tokens + 1;
  DecodeRun dr = { bench->b, g_new0 (Layer, n_layers), n_layers, capacity, { 0 } };
  FmRun fr = { bench->b, g_new0 (FmHead, 1), { 0 }, NULL };
  gboolean ok = make_scratch (bench, &dr.s, &fr.s, &fr.cond, capacity, error)
                && make_fm_head (bench, fr.head, error);
  for (int l = 0; ok && l < n_layers; l++)
    ok = make_layer (bench, &dr.layers[l], capacity, error);
  ok = ok && measure (bench, &dr, &fr, tokens, threads, json, vae_dir, error);
  for (guint i = 0; i < bench->mats->len; i++)
    bench->b->ops->release (bench->b, bench->mats->pdata[i]);
  g_ptr_array_set_size (bench->mats, 0);
  g_free (dr.layers);
  g_free (fr.head);
  return ok;
}

int
ns_cmd_bench (int argc, char **argv)
{
  if (argc >= 2 && strcmp (argv[1], "tokenizer") == 0)
    return ns_bench_tokenizer (argc - 1, argv + 1);

  g_autofree char *backend = NULL, *weights = NULL, *vae_dir = NULL;
  int layers = 0, threads = 0, tokens = 8;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "backend", 0, 0, G_OPTION_ARG_STRING, &backend, "cpu (default) or cuda", "NAME" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &weights, "bf16 (default), int8 or fp8", "FORMAT" },
    { "layers", 0, 0, G_OPTION_ARG_INT, &layers, "Transformer layers to generate (default: 2 "
      "on the CPU, as many of 48 as fit on a GPU; each is 550 MB of bf16)", "N" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the results as JSON", NULL },
    { "vae", 0, 0, G_OPTION_ARG_FILENAME, &vae_dir, "Also time VAE decodes at 256² and 512² "
      "with this VAE folder (config.json + checkpoint.pt)", "DIR" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "CPU threads (default 0 = all cores)", "N" },
    { "tokens", 0, 0, G_OPTION_ARG_INT, &tokens, "Decode steps to time (default 8)", "N" },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("[tokenizer …]");
  g_option_context_set_summary (ctx, "Time decode and FM-head steps on synthetic full-size "
                                "bf16 weights against the measured memory bandwidth.\n"
                                "'nextstep bench tokenizer --help' benchmarks the tokenizer.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("%s: %s\n", argv[0], error->message);
      return 2;
    }
  NsWeightFormat format = NS_WEIGHTS_BF16;
  if (layers < 0 || layers > ALL_LAYERS || tokens < 1 || threads < 0
      || (weights && (!ns_weight_format_from_name (weights, &format) || format == NS_WEIGHTS_AUTO)))
    {
      g_printerr ("%s: --layers must be 1–48, --tokens at least 1, --threads 0 or more, "
                  "--weights bf16, int8 or fp8\n", argv[0]);
      return 2;
    }
#ifdef _OPENMP
  if (threads == 0)
    threads = omp_get_max_threads ();
#else
  threads = 1;
#endif

  Bench bench = { .host = g_ptr_array_new_with_free_func (g_free),
                  .buffers = g_ptr_array_new (), .mats = g_ptr_array_new (), .seed = 0x5eed };
  bench.b = open_backend (backend ? backend : "cpu", threads, &error);
  if (bench.b != NULL)
    {
      ns_backend_set_weight_format (bench.b, format, NS_QUANT_MIN_ELEMENTS);
      if (g_strcmp0 (bench.b->ops->name, "cpu") != 0)
        {
          bench.shared_source = g_new (uint16_t, LARGEST_WEIGHT);
          fill_bf16 (bench.shared_source, LARGEST_WEIGHT, bench.seed);
        }
      layers = layers_that_fit (bench.b, layers);
    }
  gboolean ok = bench.b != NULL && run_bench (&bench, layers, tokens, threads, json, vae_dir,
                                                  &error);
  g_free (bench.shared_source);
  if (bench.b)
    {
      for (guint i = 0; i < bench.buffers->len; i++)
        bench.b->ops->free (bench.b, bench.buffers->pdata[i]);
      ns_backend_destroy (bench.b);
    }
  g_ptr_array_free (bench.buffers, TRUE);
  g_ptr_array_free (bench.mats, TRUE);
  g_ptr_array_free (bench.host, TRUE);
  if (!ok)
    {
      g_printerr ("%s: %s\n", argv[0], error->message);
      return 1;
    }
  return 0;
}
