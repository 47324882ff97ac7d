/* cmd-bench.c — `nextstep bench`: the speed of the real per-token code
 * (engine/model/token-loop.c: the transformer decode step and the
 * flow-matching head's sampling loop with CFG) on a synthetic full-size
 * model: the tensor list the loader checks (engine/model/arch.c) at the
 * published NextStep-1.1 shapes, random bf16 held in memory (every tensor
 * views one random buffer: the CPU backend streams it as it would a mapped
 * checkpoint; a device backend copies it), int8/fp8/q4 quantized at upload as
 * a model load does. It reports per token the time, the bytes streamed
 * and their share of the measured read bandwidth, and (through
 * model/op-trace.c) the ops issued and host waits, then estimates whole
 * images. `nextstep generate --timings` prints the same per-token figures
 * for a real run. `nextstep bench tokenizer …` benchmarks the tokenizer. */
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "nextstep.h"
#include "backend.h"
#include "cpu/cpu-backend.h"
#include "q4-layout.h"
#include "commands.h"
#include "files/config.h"
#include "files/torch-checkpoint.h"
#include "model/arch.h"
#include "model/op-trace.h"
#include "model/pipeline-private.h"
#include "model/vae.h"
#ifdef _OPENMP
#  include <omp.h>
#endif

#define BANDWIDTH_FLOATS (64u << 20)   /* 256 MiB per array: far past any cache */
#define BANDWIDTH_REPEATS 5
#define ROWS 2                  /* CFG: cond + uncond, one image */

typedef struct {
  const char *backend;
  NsWeightFormat weights;
  int kv, steps, layers, tokens, threads;
  gboolean json;
  const char *vae_dir;
} Options;

typedef struct {
  const char *weights;
  int layers, all_layers, steps, kv, tokens, threads;
  double read_gbs, copy_gbs, floor_gbs;
  double token_ms, backbone_ms, head_ms;        /* per token, layers measured */
  /* The same in CPU time per thread (process CPU time / threads; run with
   * OMP_WAIT_POLICY=passive so that waiting threads do not spin): what a
   * shared machine's wall clock does not show. 0 for a device backend. */
  double read_cpu_gbs, token_cpu_ms, backbone_cpu_ms, head_cpu_ms;
  /* The head's f32 multiply-adds a token and the BLAS's measured rate
   * (CPU only, else 0): its adaLN products multiply steps · CFG rows rows,
   * which makes a head step compute-bound on a CPU whatever its bytes. */
  double head_gfma, fma_rate;
  double token_bytes;
  double layer_step_bytes, head_step_bytes;     /* one layer (with its KV), one head step */
  double ops, reads, writes, syncs;             /* per token */
  double full_token_ms;                         /* scaled to every layer */
  double e2e_256_s, e2e_512_s;
  double vae_256_ms, vae_512_ms;                /* 0 without --vae */
  double peak_gb;                               /* < 0 when not tracked */
} Result;

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

/* Bandwidth in GB/s. */
typedef struct {
  double read, copy, read_cpu;    /* read_cpu: per CPU-second of each thread */
} Bandwidth;

/* Each thread's share of a's floats summed (ns_cpu_stream_sum); returns the
 * total so the reads are not optimised away. */
static float
parallel_read (const float *a, size_t n, int threads)
{
  float total = 0;
#pragma omp parallel num_threads (threads) reduction (+:total)
  {
#ifdef _OPENMP
    int t = omp_get_thread_num (), nt = omp_get_num_threads ();
#else
    int t = 0, nt = 1;
#endif
    size_t chunk = (n / nt + 15) & ~(size_t) 15;
    size_t start = MIN (n, chunk * t);
    total += ns_cpu_stream_sum (a + start, MIN (chunk, n - start));
  }
  return total;
}

/* STREAM-like host bandwidth: best of several multi-threaded passes. read =
 * a vectorised, prefetched sum of floats (what a GEMV does, as fast as it
 * can do it), copy = a → b counting both. */
static void
host_bandwidth (int threads, Bandwidth *bw)
{
  size_t n = BANDWIDTH_FLOATS;
  float *a = g_new (float, n), *c = g_new (float, n);
#pragma omp parallel for num_threads (threads) schedule (static)
  for (size_t i = 0; i < n; i++)
    a[i] = c[i] = (float) (i & 1023);
  float sink = 0;
  *bw = (Bandwidth) { 0 };
  for (int rep = 0; rep < BANDWIDTH_REPEATS; rep++)
    {
      Stamp t0 = stamp_now ();
      sink += parallel_read (a, n, threads);
      Stamp read = stamp_since (t0);
      t0 = stamp_now ();
#pragma omp parallel for num_threads (threads) schedule (static)
      for (size_t i = 0; i < n; i++)
        c[i] = a[i];
      Stamp copy = stamp_since (t0);
      sink += c[rep];
      bw->read = MAX (bw->read, n * 4.0 / read.wall / 1e9);
      bw->read_cpu = MAX (bw->read_cpu, n * 4.0 * threads / read.cpu / 1e9);
      bw->copy = MAX (bw->copy, n * 8.0 / copy.wall / 1e9);
    }
  /* Keeps the read loop from being optimised away. */
  if (sink == 42)
    g_printerr ("%g\n", sink);
  g_free (a);
  g_free (c);
}

/* Device bandwidth through the backend's own copy (read + write counted). */
static gboolean
device_bandwidth (NsBackend *b, double *copy_gbs, GError **error)
{
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
  ns_backend_free_any (b, a);
  ns_backend_free_any (b, c);
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
    return ns_backend_cuda_new (0, 0, error);
  g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
               "unknown backend '%s' (use cpu or cuda)", name);
  return NULL;
}

/* ---- the synthetic model ----------------------------------------------------- */

typedef struct {
  NsBackend *inner, *b;     /* b counts what passes (model/op-trace.c) */
  NsModelConfig cfg;
  NsTensorStore *store;
  NsTransformer *tr;
  NsFmHead *head;
  NsKvCache *kv;
  double per_token_bytes, per_step_bytes;
  double layer_bytes, head_token_bytes;   /* all layers' weights; the head's read once */
  double head_fmas;                       /* the head's multiply-adds a token */
} Bench;

/* Bytes a weight streams as uploaded (quantized: codes + row scales; q4:
 * half a byte and an f16 scale per 32 elements). */
static double
upload_bytes (const NsBackend *b, const NsTensorView *t)
{
  NsDType dt = ns_backend_upload_dtype (b, t);
  if (dt == NS_DTYPE_Q4)
    return (double) ns_tensor_n_elements (t) * (0.5 + 2.0 / NS_Q4_GROUP);
  double bytes = (double) ns_tensor_n_elements (t) * ns_dtype_size (dt);
  if (dt != t->dtype)
    bytes += (double) t->shape[0] * sizeof (float);
  return bytes;
}

/* How often a token reads tensor `name`: once (backbone, projectors, the
 * head's condition and adaLN products), every step (the head's x path), or
 * never (embeddings, lm_head, the time embedding: once per request). */
static int
reads_per_token (const char *name, int steps)
{
  if (g_str_has_prefix (name, "embed_tokens") || g_str_has_prefix (name, "lm_head")
      || strstr (name, "time_embed") != NULL)
    return 0;
  if (!g_str_has_prefix (name, "image_head.") || strstr (name, "adaLN_modulation") != NULL
      || strstr (name, "cond_embed") != NULL)
    return 1;
  return steps;
}

/* Every tensor of the checkpoint layout, viewing one random bf16 buffer as
 * large as the largest. */
static gboolean
make_store (Bench *bench, int steps, GError **error)
{
  g_autoptr (GArray) expected = ns_arch_expected_tensors (&bench->cfg);
  size_t largest = 0;
  for (guint i = 0; i < expected->len; i++)
    {
      const NsArchTensor *a = &g_array_index (expected, NsArchTensor, i);
      size_t n = 1;
      for (int d = 0; d < a->n_dims; d++)
        n *= (size_t) a->shape[d];
      largest = MAX (largest, n);
    }
  uint16_t *source = g_try_malloc (largest * sizeof (uint16_t));
  if (source == NULL)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY,
                   "no memory for %.1f GB of synthetic weights", largest * 2 / 1e9);
      return FALSE;
    }
  fill_bf16 (source, largest, 0x5eed);
  bench->store = ns_tensor_store_new ();
  ns_tensor_store_keep (bench->store, source, g_free);
  for (guint i = 0; i < expected->len; i++)
    {
      const NsArchTensor *a = &g_array_index (expected, NsArchTensor, i);
      NsTensorView v = { .name = a->name, .dtype = NS_DTYPE_BF16, .n_dims = a->n_dims,
                         .data = source, .file = "(synthetic)" };
      v.n_bytes = sizeof (uint16_t);
      for (int d = 0; d < a->n_dims; d++)
        {
          v.shape[d] = a->shape[d];
          v.n_bytes *= (size_t) a->shape[d];
        }
      if (!ns_tensor_store_add (bench->store, &v, error))
        return FALSE;
      int reads = reads_per_token (a->name, steps);
      double bytes = upload_bytes (bench->b, &v);
      if (g_str_has_prefix (a->name, "layers."))
        bench->layer_bytes += bytes;
      else if (reads == 1 && g_str_has_prefix (a->name, "image_head."))
        bench->head_token_bytes += bytes;
      /* every head matrix a token uses multiplies each step's CFG rows
       * (the adaLN ones too: their input depends on the step), but the
       * condition's, once */
      if (g_str_has_prefix (a->name, "image_head.") && a->n_dims == 2 && reads > 0)
        bench->head_fmas += (double) ns_tensor_n_elements (&v) * ROWS
                            * (strstr (a->name, "cond_embed") != NULL ? 1 : steps);
      if (reads == 1)
        bench->per_token_bytes += bytes;
      else if (reads > 1)
        bench->per_step_bytes += bytes;
    }
  return TRUE;
}

static gboolean
build (Bench *bench, const Options *o, int capacity, GError **error)
{
  if (!ns_arch_full_size_config (&bench->cfg, error))
    return FALSE;
  bench->cfg.num_hidden_layers = o->layers;
  return make_store (bench, o->steps, error)
    && (bench->tr = ns_transformer_new (bench->b, bench->store, &bench->cfg, error))
    && (bench->head = ns_fm_head_new (bench->b, bench->store, &bench->cfg, error))
    && bench->b->ops->reserve (bench->b, ROWS * o->steps, error)
    && (bench->kv = ns_kv_cache_new (bench->tr, ROWS, capacity, 1, error));
}

static void
bench_clear (Bench *bench)
{
  ns_kv_cache_free (bench->kv);
  ns_fm_head_free (bench->head);
  ns_transformer_free (bench->tr);
  ns_tensor_store_free (bench->store);
  ns_model_config_clear (&bench->cfg);
}

/* ---- timing ---------------------------------------------------------------- */

/* `tokens` image tokens through a token loop (each fed back), in ms
 * (wall and process CPU); counts holds what they issued (the closing wait
 * not included). */
static gboolean
time_tokens (Bench *bench, NsTokenLoop *loop, int first, int tokens, float *out, Stamp *ms,
             NsOpCounts *counts, GError **error)
{
  ns_op_trace_reset (bench->b);
  Stamp t0 = stamp_now ();
  for (int t = first; t < first + tokens; t++)
    if (!ns_token_loop_step (loop, t, TRUE, out, error))
      return FALSE;
  *counts = *ns_op_trace_counts (bench->b);
  if (!bench->b->ops->sync (bench->b, error))
    return FALSE;
  Stamp t = stamp_since (t0);
  *ms = (Stamp) { t.wall * 1e3, t.cpu * 1e3 };
  return TRUE;
}

static NsTokenLoop *
new_loop (Bench *bench, const Options *o, int ntok, gboolean timings, GError **error)
{
  NsTokenLoopSpec spec = {
    .n = 1, .cfg_mult = ROWS, .ntok = ntok, .dim = bench->cfg.latent_channels * 4,
    .sampler = NS_SAMPLER_HF_SDE, .steps = o->steps, .shift = 1.0,
    .cfg = { 7.5, 1.0, FALSE, ntok }, .seed = 1, .width_px = 16 * ntok,
    .timings = timings,
  };
  return ns_token_loop_new (bench->b, bench->tr, bench->head, bench->kv, &spec, error);
}

/* Per-token time, counts and (in a second pass with waits between the two)
 * the backbone / head split. */
static gboolean
measure_tokens (Bench *bench, const Options *o, Result *r, GError **error)
{
  int ntok = 2 * o->tokens + 2;
  g_autofree float *out = g_new (float, (size_t) ntok * bench->cfg.latent_channels * 4);
  ns_kv_cache_skip (bench->kv, o->kv);
  NsTokenLoop *plain = new_loop (bench, o, ntok, FALSE, error);
  NsTokenLoop *split = plain ? new_loop (bench, o, ntok, TRUE, error) : NULL;
  Stamp ms = { 0 };
  NsOpCounts c = { 0 };
  /* the first token captures the graphs where the backend has them */
  gboolean ok = split != NULL && time_tokens (bench, plain, 0, 1, out, &ms, &c, error)
                && time_tokens (bench, plain, 1, o->tokens, out, &ms, &c, error);
  r->token_ms = ms.wall / o->tokens;
  if (g_strcmp0 (bench->inner->ops->name, "cpu") == 0)
    r->token_cpu_ms = ms.cpu / o->tokens / o->threads;
  r->ops = (double) c.ops / o->tokens;
  r->reads = (double) c.reads / o->tokens;
  r->writes = (double) c.writes / o->tokens;
  r->syncs = (double) c.syncs / o->tokens;
  ok = ok && time_tokens (bench, split, 1 + o->tokens, o->tokens, out, &ms, &c, error);
  if (ok)
    {
      ns_token_loop_get_timings (split, &r->head_ms, &r->backbone_ms);
      r->head_ms /= o->tokens;
      r->backbone_ms /= o->tokens;
      if (r->token_cpu_ms > 0)
        {
          ns_token_loop_get_cpu_timings (split, &r->head_cpu_ms, &r->backbone_cpu_ms);
          r->head_cpu_ms /= o->tokens * o->threads;
          r->backbone_cpu_ms /= o->tokens * o->threads;
        }
    }
  ns_token_loop_free (plain);
  ns_token_loop_free (split);
  return ok;
}

/* Bytes one token streams: weights read once, the head's x path every
 * step, and the f32 KV cache (k and v of both rows) at the mean length;
 * and of that, one decode layer-step (its weights and KV) and one head step
 * (the x path, plus a step's share of the adaLN and condition products). */
static void
token_bytes (const Bench *bench, const Options *o, Result *r)
{
  const NsModelConfig *c = &bench->cfg;
  double kv_len = o->kv + 1.0 + o->tokens;
  double kv = 2.0 * ROWS * c->num_hidden_layers * c->num_key_value_heads * c->head_dim * kv_len
              * sizeof (float);
  r->token_bytes = bench->per_token_bytes + o->steps * bench->per_step_bytes + kv;
  r->layer_step_bytes = (bench->layer_bytes + kv) / c->num_hidden_layers;
  r->head_step_bytes = bench->head_token_bytes / o->steps + bench->per_step_bytes;
  r->head_gfma = bench->head_fmas / 1e9;
}

/* ms a head step needs at the measured multiply-add rate (0: not measured). */
static double
head_compute_ms (const Result *r)
{
  return r->fma_rate > 0 ? r->head_gfma / r->fma_rate / r->steps * 1e3 : 0.0;
}

/* The BLAS's f32 multiply-adds a second (G) on the CPU backend's threads:
 * best of three 1024³ products, which stay in cache. */
static double
fma_rate (NsBackend *b)
{
  const int n = 1024;
  g_autofree float *a = g_new (float, (size_t) n * n), *c = g_new0 (float, (size_t) n * n);
  for (size_t i = 0; i < (size_t) n * n; i++)
    a[i] = (float) (i % 17) / 16.0f - 0.5f;
  double best = 0;
  for (int rep = 0; rep < 3; rep++)
    {
      Stamp t0 = stamp_now ();
      ns_cpu_sgemm (b, FALSE, TRUE, n, n, n, 1.0f, a, n, a, n, 0.0f, c, n);
      best = MAX (best, (double) n * n * n / stamp_since (t0).wall / 1e9);
    }
  return best;
}

static void
measure_bandwidth (NsBackend *b, int threads, Result *r, GError **error, gboolean *ok)
{
  if (g_strcmp0 (b->ops->name, "cpu") == 0)
    {
      Bandwidth bw;
      host_bandwidth (threads, &bw);
      r->read_gbs = r->floor_gbs = bw.read;
      r->read_cpu_gbs = bw.read_cpu;
      r->copy_gbs = bw.copy;
      r->fma_rate = fma_rate (b);
      return;
    }
  *ok = device_bandwidth (b, &r->copy_gbs, error);
  /* a copy moves its bytes twice and a read-only stream is no faster than
   * the two together: the copy's total rate is the floor */
  r->floor_gbs = r->copy_gbs;
}

/* Whole images at every layer: each token one decode step and the sampling
 * loop (per-token time at this cache length), then the VAE when measured.
 * Prefill is not included. */
static void
estimate_images (Result *r)
{
  r->full_token_ms = r->head_ms + r->backbone_ms * r->all_layers / r->layers;
  if (r->head_ms + r->backbone_ms <= 0)
    r->full_token_ms = r->token_ms * r->all_layers / r->layers;
  r->e2e_256_s = (256 * r->full_token_ms + r->vae_256_ms) / 1e3;
  r->e2e_512_s = (1024 * r->full_token_ms + r->vae_512_ms) / 1e3;
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
measure_vae (NsBackend *b, const char *dir, Result *res, GError **error)
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

/* ---- output -------------------------------------------------------------- */

/* % of `gbs` that a decode layer-step / a head step streams, given the
 * backbone's / the head's ms a token. */
static double
layer_pct (const Result *r, double backbone_ms, double gbs)
{
  return 100.0 * r->layer_step_bytes / (backbone_ms / r->layers * 1e6) / gbs;
}

static double
head_pct (const Result *r, double head_ms, double gbs)
{
  return 100.0 * r->head_step_bytes / (head_ms / r->steps * 1e6) / gbs;
}

/* The least a head step can take: streaming its bytes at the read floor or
 * its multiply-adds at the BLAS's rate, whichever is slower (they overlap
 * at best). */
static double
head_floor_ms (const Result *r)
{
  return MAX (r->head_step_bytes / (r->floor_gbs * 1e6), head_compute_ms (r));
}

static void
print_json (const Result *r, const char *backend)
{
  g_autoptr (JsonBuilder) jb = json_builder_new ();
  json_builder_begin_object (jb);
#define MEMBER_D(name, v) (json_builder_set_member_name (jb, name), json_builder_add_double_value (jb, v))
#define MEMBER_I(name, v) (json_builder_set_member_name (jb, name), json_builder_add_int_value (jb, v))
  json_builder_set_member_name (jb, "backend");
  json_builder_add_string_value (jb, backend);
  json_builder_set_member_name (jb, "weights");
  json_builder_add_string_value (jb, r->weights);
  MEMBER_I ("layers_measured", r->layers);
  MEMBER_I ("steps", r->steps);
  MEMBER_I ("kv", r->kv);
  MEMBER_I ("tokens", r->tokens);
  MEMBER_I ("threads", r->threads);
  MEMBER_D ("read_gbs", r->read_gbs);
  MEMBER_D ("copy_gbs", r->copy_gbs);
  MEMBER_D ("floor_gbs", r->floor_gbs);
  MEMBER_D ("ms_per_token", r->token_ms);
  MEMBER_D ("backbone_ms_per_token", r->backbone_ms);
  MEMBER_D ("head_ms_per_token", r->head_ms);
  MEMBER_D ("layer_step_floor_pct", layer_pct (r, r->backbone_ms, r->floor_gbs));
  MEMBER_D ("head_step_floor_pct", head_pct (r, r->head_ms, r->floor_gbs));
  MEMBER_D ("bytes_per_token", r->token_bytes);
  if (r->fma_rate > 0)
    {
      MEMBER_D ("fma_gflops", 2 * r->fma_rate);
      MEMBER_D ("head_gflop_per_token", 2 * r->head_gfma);
      MEMBER_D ("head_step_compute_floor_ms", head_compute_ms (r));
      MEMBER_D ("head_step_floor_ms", head_floor_ms (r));
      MEMBER_D ("head_step_combined_floor_pct", 100.0 * head_floor_ms (r) / (r->head_ms / r->steps));
    }
  MEMBER_D ("floor_pct", 100.0 * r->token_bytes / (r->token_ms * 1e6) / r->floor_gbs);
  if (r->token_cpu_ms > 0)
    {
      MEMBER_D ("read_cpu_gbs", r->read_cpu_gbs);
      MEMBER_D ("cpu_ms_per_token", r->token_cpu_ms);
      MEMBER_D ("backbone_cpu_ms_per_token", r->backbone_cpu_ms);
      MEMBER_D ("head_cpu_ms_per_token", r->head_cpu_ms);
      MEMBER_D ("cpu_floor_pct", 100.0 * r->token_bytes / (r->token_cpu_ms * 1e6)
                / r->read_cpu_gbs);
      MEMBER_D ("layer_step_cpu_floor_pct", layer_pct (r, r->backbone_cpu_ms, r->read_cpu_gbs));
      MEMBER_D ("head_step_cpu_floor_pct", head_pct (r, r->head_cpu_ms, r->read_cpu_gbs));
    }
  MEMBER_D ("ops_per_token", r->ops);
  MEMBER_D ("reads_per_token", r->reads);
  MEMBER_D ("writes_per_token", r->writes);
  MEMBER_D ("syncs_per_token", r->syncs);
  MEMBER_D ("ms_per_token_all_layers", r->full_token_ms);
  MEMBER_D ("e2e_256_s", r->e2e_256_s);
  MEMBER_D ("e2e_512_s", r->e2e_512_s);
  if (r->vae_512_ms > 0)
    {
      MEMBER_D ("vae_256_ms", r->vae_256_ms);
      MEMBER_D ("vae_512_ms", r->vae_512_ms);
    }
  if (r->peak_gb >= 0)
    MEMBER_D ("peak_gb", r->peak_gb);
#undef MEMBER_D
#undef MEMBER_I
  json_builder_end_object (jb);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (jb);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
}

static void
print_text (const Result *r, const char *backend)
{
  g_autofree char *model = cpu_model_name ();
  printf ("backend %s, %d thread(s), host CPU %s\n", backend, r->threads, model);
  if (r->read_gbs > 0)
    printf ("memory bandwidth (best of %d, 256 MiB arrays): read %.1f GB/s, copy %.1f GB/s\n",
            BANDWIDTH_REPEATS, r->read_gbs, r->copy_gbs);
  else
    printf ("device bandwidth (copy, read + write counted): %.1f GB/s; that is the floor\n",
            r->copy_gbs);
  printf ("model: %s weights, %d of %d layers, %d head steps, CFG rows %d, KV cache %d "
          "positions, %d tokens timed\n", r->weights, r->layers, r->all_layers, r->steps, ROWS,
          r->kv, r->tokens);
  double pct = 100.0 * r->token_bytes / (r->token_ms * 1e6) / r->floor_gbs;
  printf ("per token: %.2f ms, %.1f MB streamed = %.0f %% of the floor (%.1f GB/s)\n",
          r->token_ms, r->token_bytes / 1e6, pct, r->floor_gbs);
  printf ("  backbone %.2f ms (%.3f ms a layer = %.0f %%), head %.2f ms (%.3f ms a step = "
          "%.0f %%); measured apart, with a wait between\n", r->backbone_ms,
          r->backbone_ms / r->layers, layer_pct (r, r->backbone_ms, r->floor_gbs), r->head_ms,
          r->head_ms / r->steps, head_pct (r, r->head_ms, r->floor_gbs));
  if (r->token_cpu_ms > 0)
    printf ("CPU time per thread: %.2f ms a token = %.0f %% of the CPU-time read floor "
            "(%.1f GB/s); %.3f ms a layer = %.0f %%, %.3f ms a head step = %.0f %%\n",
            r->token_cpu_ms, 100.0 * r->token_bytes / (r->token_cpu_ms * 1e6) / r->read_cpu_gbs,
            r->read_cpu_gbs, r->backbone_cpu_ms / r->layers,
            layer_pct (r, r->backbone_cpu_ms, r->read_cpu_gbs), r->head_cpu_ms / r->steps,
            head_pct (r, r->head_cpu_ms, r->read_cpu_gbs));
  if (r->fma_rate > 0)
    printf ("head arithmetic: %.1f GFLOP a token at the BLAS's %.0f GFLOP/s = %.3f ms a step; "
            "with the read floor's %.3f ms, a step needs ≥ %.3f ms: measured %.0f %% of that\n",
            2 * r->head_gfma, 2 * r->fma_rate, head_compute_ms (r),
            r->head_step_bytes / (r->floor_gbs * 1e6), head_floor_ms (r),
            100.0 * head_floor_ms (r) / (r->head_ms / r->steps));
  printf ("  %.1f ops issued, %.1f reads, %.1f writes, %.1f host waits\n", r->ops, r->reads,
          r->writes, r->syncs);
  if (r->vae_512_ms > 0)
    printf ("VAE decode: 256² %.1f ms, 512² %.1f ms\n", r->vae_256_ms, r->vae_512_ms);
  printf ("estimate at %d layers without prefill%s: %.2f ms a token; 256² %.1f s, 512² %.1f s\n",
          r->all_layers, r->vae_512_ms > 0 ? "" : " and VAE", r->full_token_ms, r->e2e_256_s,
          r->e2e_512_s);
  if (r->peak_gb >= 0)
    printf ("peak device memory: %.2f GB\n", r->peak_gb);
}

/* ---- the command ------------------------------------------------------------ */

static gboolean
run_bench (NsBackend *inner, const Options *o, GError **error)
{
  Bench bench = { .inner = inner, .b = ns_op_trace_new (inner, FALSE) };
  Result r = { .weights = ns_weight_format_name (o->weights), .layers = o->layers,
               .steps = o->steps, .kv = o->kv, .tokens = o->tokens, .threads = o->threads,
               .peak_gb = -1 };
  ns_backend_set_weight_format (bench.b, o->weights, NS_QUANT_MIN_ELEMENTS);
  gboolean ok = TRUE;
  measure_bandwidth (inner, o->threads, &r, error, &ok);
  ok = ok && build (&bench, o, o->kv + 2 * o->tokens + 3, error)
       && measure_tokens (&bench, o, &r, error)
       && (o->vae_dir == NULL || measure_vae (bench.b, o->vae_dir, &r, error));
  if (ok)
    {
      NsModelConfig full;
      ok = ns_arch_full_size_config (&full, error);
      r.all_layers = full.num_hidden_layers;
      ns_model_config_clear (&full);
      token_bytes (&bench, o, &r);
      if (g_strcmp0 (inner->ops->name, "cuda") == 0)
        r.peak_gb = ns_backend_cuda_peak_memory (inner) / 1e9;
      estimate_images (&r);
      if (o->json)
        print_json (&r, inner->ops->name);
      else
        print_text (&r, inner->ops->name);
    }
  bench_clear (&bench);
  ns_backend_destroy (bench.b);
  return ok;
}

/* Layers held at once: every one where weights are streamed from the
 * shared buffer (CPU bf16) or on a device; a CPU quantizes each layer into
 * its own memory, so 12 there unless asked. */
static int
default_layers (const Options *o)
{
  if (g_strcmp0 (o->backend, "cpu") == 0 && o->weights != NS_WEIGHTS_BF16)
    return 12;
  return 48;
}

int
ns_cmd_bench (int argc, char **argv)
{
  if (argc >= 2 && strcmp (argv[1], "tokenizer") == 0)
    return ns_bench_tokenizer (argc - 1, argv + 1);

  g_autofree char *backend = NULL, *weights = NULL, *vae_dir = NULL;
  Options o = { .kv = 256, .steps = 28, .tokens = 4 };
  GOptionEntry entries[] = {
    { "backend", 0, 0, G_OPTION_ARG_STRING, &backend, "cpu (default) or cuda", "NAME" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &weights, "bf16 (default), int8, fp8 or q4", "FORMAT" },
    { "kv", 0, 0, G_OPTION_ARG_INT, &o.kv, "Positions already in the KV cache (default 256; "
      "a 512² image ends near 1,100)", "N" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &o.steps, "Sampling steps per token (default 28, "
      "NextStep-1.1)", "N" },
    { "layers", 0, 0, G_OPTION_ARG_INT, &o.layers, "Transformer layers (default 48; 12 on the "
      "CPU with int8/fp8/q4, which quantizes each into its own memory)", "N" },
    { "tokens", 0, 0, G_OPTION_ARG_INT, &o.tokens, "Image tokens to time (default 4)", "N" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &o.threads, "CPU threads (default 0 = all cores)",
      "N" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &o.json, "Print the results as JSON", NULL },
    { "vae", 0, 0, G_OPTION_ARG_FILENAME, &vae_dir, "Also time VAE decodes at 256² and 512² "
      "with this VAE folder (config.json + checkpoint.pt)", "DIR" },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("[tokenizer …]");
  g_option_context_set_summary (ctx, "Time the real per-token code (decode step and sampling "
                                "loop) on a synthetic full-size NextStep-1.1 against the "
                                "measured memory bandwidth.\n'nextstep bench tokenizer --help' "
                                "benchmarks the tokenizer.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("%s: %s\n", argv[0], error->message);
      return 2;
    }
  o.backend = backend ? backend : "cpu";
  o.vae_dir = vae_dir;
  o.weights = NS_WEIGHTS_BF16;
  if (weights && (!ns_weight_format_from_name (weights, &o.weights)
                  || o.weights == NS_WEIGHTS_AUTO))
    o.weights = NS_WEIGHTS_AUTO;
  if (o.layers == 0)
    o.layers = default_layers (&o);
  if (o.layers < 1 || o.layers > 48 || o.tokens < 1 || o.threads < 0 || o.kv < 0
      || o.kv > 100000 || o.steps < 1 || o.steps > 1000 || o.weights == NS_WEIGHTS_AUTO)
    {
      g_printerr ("%s: --layers must be 1–48, --tokens at least 1, --kv 0–100000, --steps "
                  "1–1000, --threads 0 or more, --weights bf16, int8, fp8 or q4\n", argv[0]);
      return 2;
    }
#ifdef _OPENMP
  if (o.threads == 0)
    o.threads = omp_get_max_threads ();
#else
  o.threads = 1;
#endif
  NsBackend *inner = open_backend (o.backend, o.threads, &error);
  gboolean ok = inner != NULL && run_bench (inner, &o, &error);
  ns_backend_destroy (inner);
  if (!ok)
    {
      g_printerr ("%s: %s\n", argv[0], error->message);
      return 1;
    }
  return 0;
}
