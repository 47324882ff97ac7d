/* test-elementwise.c — modulate, gated_add, silu, silu_mul, add; sizes on
 * both sides of the threading threshold, in-place use where allowed; the
 * per-token counters (counter_add, add_indexed_row). */
#include "ops-util.h"

#define ELEMENTWISE_TOL 1e-6

typedef enum { MODULATE, GATED_ADD, SILU, SILU_MUL, ADD } Kind;

typedef struct {
  Kind kind;
  int rows, dim, stride;  /* row ops; n = rows · dim for the flat ones */
  gboolean in_place;      /* silu, add: y aliases the first input */
  const float *a, *c;     /* first input (x / gate); second (modulation rows / m / up) */
} Case;

static size_t
out_size (const Case *ec)
{
  return (size_t) ec->rows * ec->dim;
}

/* Size of the second input: strided modulation rows, or like the output. */
static size_t
second_size (const Case *ec)
{
  return ec->kind == MODULATE || ec->kind == GATED_ADD ? (size_t) ec->rows * ec->stride
                                                       : out_size (ec);
}

static double
silu (double v)
{
  return v / (1.0 + exp (-v));
}

static double *
reference (const Case *ec)
{
  double *y = g_new (double, out_size (ec));
  for (int r = 0; r < ec->rows; r++)
    for (int i = 0; i < ec->dim; i++)
      {
        size_t at = (size_t) r * ec->dim + i, mod = (size_t) r * ec->stride + i;
        double a = ec->a[at];
        switch (ec->kind)
          {
          case MODULATE: /* c row: [shift | scale | …] */
            y[at] = a * (1.0 + ec->c[mod + ec->dim]) + ec->c[mod];
            break;
          case GATED_ADD: /* a = x, c rows = gate, m = c past the gates */
            y[at] = a + (double) ec->c[mod] * ec->c[second_size (ec) + at];
            break;
          case SILU:
            y[at] = silu (a);
            break;
          case SILU_MUL:
            y[at] = silu (a) * ec->c[at];
            break;
          case ADD:
            y[at] = a + ec->c[at];
            break;
          }
      }
  return y;
}

static float *
run (NsBackend *b, gconstpointer data)
{
  const Case *ec = data;
  size_t n = out_size (ec), extra = ec->kind == GATED_ADD ? n : 0;
  float *a = ops_upload (b, ec->a, n);
  float *c = ops_upload (b, ec->c, second_size (ec) + extra);
  float *y = ec->in_place ? a : ops_poisoned (b, n);
  switch (ec->kind)
    {
    case MODULATE:
      b->ops->modulate (b, y, a, c, c + ec->dim, ec->rows, ec->dim, ec->stride);
      break;
    case GATED_ADD:
      b->ops->gated_add (b, y, c, c + second_size (ec), ec->rows, ec->dim, ec->stride);
      break;
    case SILU:
      b->ops->silu (b, y, a, n);
      break;
    case SILU_MUL:
      b->ops->silu_mul (b, y, a, c, n);
      break;
    case ADD:
      b->ops->add (b, y, a, c, n);
      break;
    }
  float *result = ops_download (b, y, n);
  if (y != a)
    b->ops->free (b, y);
  b->ops->free (b, a);
  b->ops->free (b, c);
  return result;
}

static void
check (Kind kind, int rows, int dim, int stride, gboolean in_place, const char *name)
{
  Case ec = { .kind = kind, .rows = rows, .dim = dim, .stride = stride, .in_place = in_place };
  g_autoptr (GRand) rng = g_rand_new_with_seed (41 + kind);
  size_t n = out_size (&ec), extra = ec.kind == GATED_ADD ? n : 0;
  g_autofree float *a = ops_random (rng, n, 6.0f);
  g_autofree float *c = ops_random (rng, second_size (&ec) + extra, 2.0f);
  ec.a = a;
  ec.c = c;
  g_autofree double *ref = reference (&ec);
  g_autofree char *what = g_strdup_printf ("%s %d × %d (stride %d)%s", name, ec.rows, ec.dim,
                                           ec.stride, ec.in_place ? ", in place" : "");
  ops_check (what, run, &ec, ref, n, ELEMENTWISE_TOL);
}

static void
test_modulate (void)
{
  check (MODULATE, 3, 7, 21, FALSE, "modulate");
  check (MODULATE, 2, 1536, 3 * 1536, FALSE, "modulate");
}

/* gated_add works in place on x, which is what the test reads back. */
static void
test_gated_add (void)
{
  check (GATED_ADD, 2, 9, 27, TRUE, "gated_add");
  check (GATED_ADD, 3, 1536, 3 * 1536, TRUE, "gated_add");
}

static void
test_flat (void)
{
  const struct { Kind kind; const char *name; } ops[] = {
    { SILU, "silu" }, { SILU_MUL, "silu_mul" }, { ADD, "add" },
  };
  for (int o = 0; o < (int) G_N_ELEMENTS (ops); o++)
    for (int in_place = 0; in_place < 2; in_place++)
      {
        check (ops[o].kind, 1, 5, 5, in_place, ops[o].name);
        check (ops[o].kind, 1, 40001, 40001, in_place, ops[o].name);
      }
}

/* counter_add over n counters by delta, read back as floats of the ints. */
typedef struct {
  int n, delta;
} CounterCase;

static float *
run_counter (NsBackend *b, gconstpointer data)
{
  const CounterCase *cc = data;
  g_autofree int32_t *init = g_new (int32_t, cc->n + 1);
  for (int i = 0; i <= cc->n; i++)
    init[i] = 3 * i - 7;
  int32_t *counter = ops_upload_i32 (b, init, cc->n + 1);
  b->ops->counter_add (b, counter, cc->n, cc->delta);
  b->ops->counter_add (b, counter, cc->n, cc->delta);
  g_autofree int32_t *back = (int32_t *) ops_download (b, (float *) counter, cc->n + 1);
  float *result = g_new (float, cc->n + 1);
  for (int i = 0; i <= cc->n; i++)
    result[i] = (float) back[i];
  ns_backend_free_any (b, counter);
  return result;
}

/* Counters past n stay as they were. */
static void
test_counter_add (void)
{
  const CounterCase cases[] = { { 1, 1 }, { 3, -2 }, { 70000, 5 } };
  for (int c = 0; c < (int) G_N_ELEMENTS (cases); c++)
    {
      g_autofree double *ref = g_new (double, cases[c].n + 1);
      for (int i = 0; i <= cases[c].n; i++)
        ref[i] = 3.0 * i - 7 + (i < cases[c].n ? 2 * cases[c].delta : 0);
      g_autofree char *what = g_strdup_printf ("counter_add n %d delta %d", cases[c].n,
                                               cases[c].delta);
      ops_check (what, run_counter, &cases[c], ref, cases[c].n + 1, 0.0);
    }
}

typedef struct {
  int rows, dim, table_rows, token;
  gboolean in_place;
  const float *x, *table;
  const int32_t *rows_of;
} IndexedCase;

static float *
run_indexed_row (NsBackend *b, gconstpointer data)
{
  const IndexedCase *ic = data;
  size_t n = (size_t) ic->rows * ic->dim;
  float *x = ops_upload (b, ic->x, n);
  float *table = ops_upload (b, ic->table, (size_t) ic->table_rows * ic->dim);
  int32_t *rows_of = ops_upload_i32 (b, ic->rows_of, ic->table_rows);
  int32_t *token = ops_upload_i32 (b, &ic->token, 1);
  float *y = ic->in_place ? x : ops_poisoned (b, n);
  b->ops->add_indexed_row (b, y, x, table, rows_of, token, ic->rows, ic->dim);
  float *result = ops_download (b, y, n);
  if (y != x)
    b->ops->free (b, y);
  b->ops->free (b, x);
  b->ops->free (b, table);
  ns_backend_free_any (b, rows_of);
  ns_backend_free_any (b, token);
  return result;
}

static void
test_add_indexed_row (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (47);
  const int32_t rows_of[] = { 4, 0, 2, 3, 1 };
  for (int in_place = 0; in_place < 2; in_place++)
    {
      IndexedCase ic = { .rows = 3, .dim = 37, .table_rows = 5, .token = 2 + in_place,
                         .in_place = in_place, .rows_of = rows_of };
      g_autofree float *x = ops_random (rng, (size_t) ic.rows * ic.dim, 2.0f);
      g_autofree float *table = ops_random (rng, (size_t) ic.table_rows * ic.dim, 2.0f);
      ic.x = x;
      ic.table = table;
      g_autofree double *ref = g_new (double, (size_t) ic.rows * ic.dim);
      for (int r = 0; r < ic.rows; r++)
        for (int i = 0; i < ic.dim; i++)
          ref[r * ic.dim + i] = (double) x[r * ic.dim + i]
                                + table[rows_of[ic.token] * ic.dim + i];
      ops_check (in_place ? "add_indexed_row in place" : "add_indexed_row", run_indexed_row, &ic,
                 ref, (size_t) ic.rows * ic.dim, ELEMENTWISE_TOL);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/elementwise/modulate", test_modulate);
  g_test_add_func ("/ops/elementwise/gated-add", test_gated_add);
  g_test_add_func ("/ops/elementwise/flat", test_flat);
  g_test_add_func ("/ops/elementwise/counter-add", test_counter_add);
  g_test_add_func ("/ops/elementwise/add-indexed-row", test_add_indexed_row);
  return g_test_run ();
}
