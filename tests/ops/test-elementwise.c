/* test-elementwise.c — modulate, gated_add, silu, silu_mul, add; sizes on
 * both sides of the threading threshold, in-place use where allowed. */
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

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/elementwise/modulate", test_modulate);
  g_test_add_func ("/ops/elementwise/gated-add", test_gated_add);
  g_test_add_func ("/ops/elementwise/flat", test_flat);
  return g_test_run ();
}
