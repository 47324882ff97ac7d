/* test-cuda.c — what only the CUDA backend has: workspaces (issue 16: the
 * first use, a failed growth), reserve before capture, and graphs replaying
 * the per-token pattern (device counters advance, cuBLAS and the attention
 * workspace inside the graph) against the CPU running the same ops.
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
step_run (NsBackend *b, const Step *s)
{
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

/* Three replays of a captured step equal three CPU steps; the token
 * counter moved by three. rows 2 takes the GEMV, 40 cuBLAS. */
static void
test_graph_replay (void)
{
  NsBackend *gpu = ops_cuda (), *cpu = ns_backend_cpu_new (1);
  for (int rows = 2; rows <= 40; rows += 38)
    {
      GError *error = NULL;
      g_assert_true (gpu->ops->reserve (gpu, rows, &error));
      Step g = step_new (gpu, rows, 256, 96), c = step_new (cpu, rows, 256, 96);
      g_assert_true (gpu->ops->graph_begin (gpu, &error));
      step_run (gpu, &g);
      NsGraph *graph = gpu->ops->graph_end (gpu, &error);
      g_assert_no_error (error);
      for (int i = 0; i < 3; i++)
        {
          gpu->ops->graph_launch (gpu, graph);
          step_run (cpu, &c);
        }
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
  g_test_add_func ("/cuda/graph/needs-reserve", test_graph_needs_reserve);
  g_test_add_func ("/cuda/workspace/first-use", test_workspace_first_use);
  g_test_add_func ("/cuda/workspace/failure", test_workspace_failure);
  g_test_add_func ("/cuda/memory/peak", test_peak_memory);
  return g_test_run ();
}
