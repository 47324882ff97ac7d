/* test-cuda.c — what only the CUDA backend has: workspaces (issue 16: the
 * first use, a failed growth), reserve before capture, and graphs replaying
 * the per-token pattern (device counters advance, cuBLAS and the attention
 * workspace inside the graph, the fused linears) against the CPU running
 * the same ops.
 * Exits 77 without a device. Run each path in its own process: a CUDA
 * error is sticky (tests/device/run.sh does). */
#include "ops-util.h"

/* One decode-like step on any backend: y += table[rows_of[*token]],
 * z = linear(y) over `rows` rows, token += 1. */
typedef struct {
  float *y, *z, *table;
  int32_t *rows_of, *token;
  OpsWeight *w;
  int rows, dim, outs;
} Step;

static void
step_run (NsBackend *b, gconstpointer data)
{
  const Step *s = data;
  b->ops->add_indexed_row (b, s->y, s->y, s->table, s->rows_of, s->token, s->rows, s->dim);
  b->ops->linear (b, s->z, s->y, &s->w->mat, NULL, s->rows, FALSE);
  b->ops->counter_add (b, s->token, 1, 1);
}

static Step
step_new (NsBackend *b, int rows, int dim, int outs)
{
  Step s = { .rows = rows, .dim = dim, .outs = outs };
  g_autoptr (GRand) rng = g_rand_new_with_seed (71);
  g_autofree float *y = ops_random (rng, (size_t) rows * s.dim, 1.0f);
  g_autofree float *table = ops_random (rng, 8 * s.dim, 1.0f);
  const int32_t rows_of[8] = { 7, 6, 5, 4, 3, 2, 1, 0 }, token = 2;
  s.y = ops_upload (b, y, (size_t) rows * s.dim);
  s.z = ops_poisoned (b, (size_t) rows * s.outs);
  s.table = ops_upload (b, table, 8 * s.dim);
  s.rows_of = ops_upload_i32 (b, rows_of, 8);
  s.token = ops_upload_i32 (b, &token, 1);
  s.w = ops_weight_new (b, 72, NS_DTYPE_BF16, s.outs, s.dim, 0.1f);
  return s;
}

static void
step_free (NsBackend *b, Step *s)
{
  for (float *p[] = { s->y, s->z, s->table }, **it = p; it < p + 3; it++)
    b->ops->free (b, *it);
  ns_backend_free_any (b, s->rows_of);
  ns_backend_free_any (b, s->token);
  ops_weight_free (s->w);
}

/* Reserves `rows`, captures run (g) on the GPU, then replays the graph
 * `times` times while the CPU runs run (c) as often; free the graph. */
static NsGraph *
capture_and_replay (NsBackend *gpu, NsBackend *cpu, int rows,
                    void (*run) (NsBackend *b, gconstpointer data), gconstpointer g,
                    gconstpointer c, int times)
{
  GError *error = NULL;
  g_assert_true (gpu->ops->reserve (gpu, rows, &error));
  g_assert_true (gpu->ops->graph_begin (gpu, &error));
  run (gpu, g);
  NsGraph *graph = gpu->ops->graph_end (gpu, &error);
  g_assert_no_error (error);
  for (int i = 0; i < times; i++)
    {
      gpu->ops->graph_launch (gpu, graph);
      run (cpu, c);
    }
  return graph;
}

/* Three replays of a captured step equal three CPU steps; the token
 * counter moved by three. rows 2 takes the GEMV, 40 cuBLAS. */
static void
test_graph_replay (void)
{
  NsBackend *gpu = ops_cuda (), *cpu = ns_backend_cpu_new (1);
  for (int rows = 2; rows <= 40; rows += 38)
    {
      Step g = step_new (gpu, rows, 256, 96), c = step_new (cpu, rows, 256, 96);
      NsGraph *graph = capture_and_replay (gpu, cpu, rows, step_run, &g, &c, 3);
      size_t n = (size_t) rows * c.outs;
      g_autofree float *zg = ops_download (gpu, g.z, n), *zc = ops_download (cpu, c.z, n);
      g_autofree float *tg = ops_download (gpu, (float *) g.token, 1);
      g_assert_cmpint (*(int32_t *) tg, ==, 5);
      g_autofree char *what = g_strdup_printf ("graph replay, %d rows", rows);
      ops_assert_same (what, zg, zc, n, 2e-5);
      gpu->ops->graph_free (gpu, graph);
      step_free (gpu, &g);
      step_free (cpu, &c);
    }
  ns_backend_destroy (cpu);
}

/* The fused linears of a decode layer and a head step (linear_multi,
 * linear_swiglu, norm_modulate_linear with SiLU, linear_gated_add) over
 * FUSED_ROWS rows of width FUSED_DIM, bf16 weights. */
#define FUSED_DIM 256
#define FUSED_ROWS 2

typedef struct {
  OpsWeight *q, *k, *gate, *up, *mlp, *down;
  float *x, *mod, *h, *yq, *yk, *s, *m1;
} Fused;

static void
fused_run (NsBackend *b, gconstpointer data)
{
  const Fused *f = data;
  const int d = FUSED_DIM;
  const NsLinearOut o[] = { { f->yq, &f->q->mat, NULL }, { f->yk, &f->k->mat, NULL } };
  const NsNormModulate nm = { NULL, NULL, 1e-6f, f->mod, f->mod + d, 3 * d };
  b->ops->linear_multi (b, o, 2, f->x, FUSED_ROWS);
  b->ops->linear_swiglu (b, f->s, f->x, &f->gate->mat, NULL, &f->up->mat, NULL, FUSED_ROWS);
  b->ops->norm_modulate_linear (b, f->m1, f->h, &nm, &f->mlp->mat, NULL, FUSED_ROWS, TRUE);
  b->ops->linear_gated_add (b, f->h, f->mod + 2 * d, f->m1, &f->down->mat, NULL, FUSED_ROWS,
                            3 * d);
}

static Fused
fused_new (NsBackend *b)
{
  const int d = FUSED_DIM, r = FUSED_ROWS;
  g_autoptr (GRand) rng = g_rand_new_with_seed (81);
  g_autofree float *x = ops_random (rng, (size_t) r * d, 1.0f);
  g_autofree float *mod = ops_random (rng, (size_t) r * 3 * d, 0.5f);
  g_autofree float *h = ops_random (rng, (size_t) r * d, 1.0f);
  Fused f = {
    ops_weight_new (b, 82, NS_DTYPE_BF16, d, d, 0.1f),
    ops_weight_new (b, 83, NS_DTYPE_BF16, d / 4, d, 0.1f),
    ops_weight_new (b, 84, NS_DTYPE_BF16, 2 * d, d, 0.1f),
    ops_weight_new (b, 85, NS_DTYPE_BF16, 2 * d, d, 0.1f),
    ops_weight_new (b, 86, NS_DTYPE_BF16, 2 * d, d, 0.1f),
    ops_weight_new (b, 87, NS_DTYPE_BF16, d, 2 * d, 0.1f),
    ops_upload (b, x, (size_t) r * d), ops_upload (b, mod, (size_t) r * 3 * d),
    ops_upload (b, h, (size_t) r * d), ops_poisoned (b, (size_t) r * d),
    ops_poisoned (b, (size_t) r * d / 4), ops_poisoned (b, (size_t) r * 2 * d),
    ops_poisoned (b, (size_t) r * 2 * d),
  };
  return f;
}

static void
fused_free (NsBackend *b, Fused *f)
{
  for (OpsWeight *w[] = { f->q, f->k, f->gate, f->up, f->mlp, f->down }, **it = w; it < w + 6;
       it++)
    ops_weight_free (*it);
  for (float *p[] = { f->x, f->mod, f->h, f->yq, f->yk, f->s, f->m1 }, **it = p; it < p + 7; it++)
    b->ops->free (b, *it);
}

/* Two replays of the captured fused sequence equal two CPU runs of it
 * (h accumulates through linear_gated_add, so each replay counts). */
static void
test_graph_fused (void)
{
  NsBackend *gpu = ops_cuda (), *cpu = ns_backend_cpu_new (1);
  Fused g = fused_new (gpu), c = fused_new (cpu);
  NsGraph *graph = capture_and_replay (gpu, cpu, FUSED_ROWS, fused_run, &g, &c, 2);
  const struct { const char *name; float *gb, *cb; size_t n; } outs[] = {
    { "q", g.yq, c.yq, FUSED_ROWS * FUSED_DIM }, { "k", g.yk, c.yk, FUSED_ROWS * FUSED_DIM / 4 },
    { "swiglu", g.s, c.s, FUSED_ROWS * 2 * FUSED_DIM },
    { "norm_modulate_linear", g.m1, c.m1, FUSED_ROWS * 2 * FUSED_DIM },
    { "gated residual", g.h, c.h, FUSED_ROWS * FUSED_DIM },
  };
  for (guint i = 0; i < G_N_ELEMENTS (outs); i++)
    {
      g_autofree float *og = ops_download (gpu, outs[i].gb, outs[i].n);
      g_autofree float *oc = ops_download (cpu, outs[i].cb, outs[i].n);
      g_autofree char *what = g_strdup_printf ("fused graph replay: %s", outs[i].name);
      ops_assert_same (what, og, oc, outs[i].n, 2e-5);
    }
  gpu->ops->graph_free (gpu, graph);
  fused_free (gpu, &g);
  fused_free (cpu, &c);
  ns_backend_destroy (cpu);
}

/* An op that needs more workspace than reserve gave fails the capture with
 * an error that says to reserve first; nothing is allocated meanwhile. */
static void
test_graph_needs_reserve (void)
{
  g_autoptr (GError) error = NULL;
  NsBackend *b = ns_backend_cuda_new (0, 0, &error);
  g_assert_no_error (error);
  g_assert_true (b->ops->reserve (b, 1, &error));
  /* a GEMM whose staging exceeds what reserve (1) sizes for the split-K
   * GEMVs of every resident warp */
  Step s = step_new (b, 256, 4096, 4096);
  guint64 before = ns_backend_cuda_free_memory (b);
  g_assert_true (b->ops->graph_begin (b, &error));
  step_run (b, &s);
  g_assert_null (b->ops->graph_end (b, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_BACKEND);
  g_assert_nonnull (strstr (error->message, "reserve"));
  g_assert_cmpuint (ns_backend_cuda_free_memory (b), ==, before);
  ns_backend_destroy (b);
}

/* The first op that uses the workspace on a fresh backend must not leave an
 * error behind (issue 16: cudaFreeAsync (NULL) stuck one). */
static void
test_workspace_first_use (void)
{
  g_autoptr (GError) error = NULL;
  NsBackend *b = ns_backend_cuda_new (0, 0, &error);
  g_assert_no_error (error);
  Step s = step_new (b, 40, 256, 96);
  step_run (b, &s);
  g_assert_true (b->ops->sync (b, &error));
  g_assert_no_error (error);
  step_free (b, &s);
  ns_backend_destroy (b);
}

/* A workspace that cannot grow is reported, leaves the accounting as it was
 * (issue 16: a stale pointer with the new size), and reserve says so with
 * an error while a smaller reserve still works. */
static void
test_workspace_failure (void)
{
  g_autoptr (GError) error = NULL;
  NsBackend *b = ns_backend_cuda_new (0, (guint64) 40 << 20, &error);
  g_assert_no_error (error);
  /* 40 MiB: cuBLAS's 32, the 2 MiB weight, and room for the GEMV only. */
  OpsWeight *w = ops_weight_new (b, 73, NS_DTYPE_F16, 1024, 1024, 0.01f);
  guint64 before = ns_backend_cuda_free_memory (b);
  g_assert_false (b->ops->reserve (b, 4096, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY);
  g_clear_error (&error);
  g_assert_cmpuint (ns_backend_cuda_free_memory (b), ==, before);
  g_assert_true (b->ops->reserve (b, 8, &error));
  g_assert_no_error (error);
  float *x = ops_poisoned (b, 1024 * 600), *y = ops_poisoned (b, 1024 * 600);
  b->ops->linear (b, y, x, &w->mat, NULL, 600, FALSE);
  g_assert_false (b->ops->sync (b, &error));
  g_assert_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY);
  g_assert_nonnull (strstr (error->message, "workspace"));
  ns_backend_destroy (b);
}

static void
test_peak_memory (void)
{
  NsBackend *b = ops_cuda ();
  guint64 free_before = ns_backend_cuda_free_memory (b);
  float *p = ops_poisoned (b, 1 << 20);
  g_assert_cmpuint (ns_backend_cuda_free_memory (b), ==, free_before - (4u << 20));
  g_assert_cmpuint (ns_backend_cuda_peak_memory (b), >=, 4u << 20);
  b->ops->free (b, p);
  g_assert_cmpuint (ns_backend_cuda_free_memory (b), ==, free_before);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (ops_cuda () == NULL)
    {
      g_print ("SKIP: no CUDA device\n");
      return 77;
    }
  g_test_add_func ("/cuda/graph/replay", test_graph_replay);
  g_test_add_func ("/cuda/graph/fused", test_graph_fused);
  g_test_add_func ("/cuda/graph/needs-reserve", test_graph_needs_reserve);
  g_test_add_func ("/cuda/workspace/first-use", test_workspace_first_use);
  g_test_add_func ("/cuda/workspace/failure", test_workspace_failure);
  g_test_add_func ("/cuda/memory/peak", test_peak_memory);
  return g_test_run ();
}
