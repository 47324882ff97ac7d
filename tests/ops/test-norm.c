/* test-norm.c — RMSNorm, LayerNorm, GroupNorm against double references.
 * Inputs carry an offset so a one-pass variance would lose digits; the
 * largest shapes are past the size where the ops go multi-threaded. */
#include "ops-util.h"

#define NORM_TOL 1e-5
#define SEED_GAIN 21
#define SEED_SHIFT 22

typedef struct {
  int rows, dim;          /* GroupNorm: rows = channels, dim = h·w */
  int groups;
  gboolean affine, silu;
  NsDType dtype;
  float eps;
  const float *x;
} NormCase;

static size_t
norm_size (const NormCase *nc)
{
  return (size_t) nc->rows * nc->dim;
}

/* Gains/shifts: per element for RMSNorm/LayerNorm, per channel for GroupNorm. */
static int
affine_size (const NormCase *nc)
{
  return nc->groups ? nc->rows : nc->dim;
}

static OpsWeight *
affine_weight (NsBackend *b, const NormCase *nc, guint32 seed)
{
  return nc->affine ? ops_weight_new (b, seed, nc->dtype, 1, affine_size (nc), 1.0f) : NULL;
}

static double *
affine_values (const NormCase *nc, guint32 seed)
{
  return nc->affine ? ops_weight_values (seed, nc->dtype, affine_size (nc), 1.0f) : NULL;
}

/* y = (x − mean) / sqrt(var + eps) over a block of n values; without
 * centring (RMSNorm) the mean is taken as 0, so var = mean(x²). */
static void
normalize_block (double *y, const float *x, size_t n, gboolean centre, double eps)
{
  double mean = 0.0, var = 0.0;
  for (size_t i = 0; centre && i < n; i++)
    mean += x[i];
  mean /= n;
  for (size_t i = 0; i < n; i++)
    var += (x[i] - mean) * (x[i] - mean);
  var /= n;
  for (size_t i = 0; i < n; i++)
    y[i] = (x[i] - mean) / sqrt (var + eps);
}

typedef enum { RMS, LAYER, GROUP } NormKind;

/* RMSNorm neither centres nor shifts. */
static double *
reference (const NormCase *nc, NormKind kind)
{
  gboolean centre = kind != RMS;
  g_autofree double *gain = affine_values (nc, SEED_GAIN);
  g_autofree double *shift = centre ? affine_values (nc, SEED_SHIFT) : NULL;
  double *y = g_new (double, norm_size (nc));
  int blocks = nc->groups ? nc->groups : nc->rows;
  size_t block = norm_size (nc) / blocks;
  for (int i = 0; i < blocks; i++)
    normalize_block (y + i * block, nc->x + i * block, block, centre, nc->eps);
  for (size_t i = 0; i < norm_size (nc); i++)
    {
      size_t a = nc->groups ? i / nc->dim : i % nc->dim;
      double v = (gain ? y[i] * gain[a] : y[i]) + (shift ? shift[a] : 0.0);
      y[i] = nc->silu ? v / (1.0 + exp (-v)) : v;
    }
  return y;
}

static float *
run_norm (NsBackend *b, const NormCase *nc, NormKind kind)
{
  OpsWeight *gain = affine_weight (b, nc, SEED_GAIN);
  OpsWeight *shift = affine_weight (b, nc, SEED_SHIFT);
  float *x = ops_upload (b, nc->x, norm_size (nc));
  float *y = ops_poisoned (b, norm_size (nc));
  switch (kind)
    {
    case RMS:
      b->ops->rmsnorm (b, y, x, ops_mat (gain), nc->rows, nc->dim, nc->eps);
      break;
    case LAYER:
      b->ops->layernorm (b, y, x, ops_mat (gain), ops_mat (shift), nc->rows, nc->dim, nc->eps);
      break;
    case GROUP:
      b->ops->groupnorm (b, y, x, ops_mat (gain), ops_mat (shift), nc->rows, nc->dim,
                         nc->groups, nc->eps, nc->silu);
      break;
    }
  float *result = ops_download (b, y, norm_size (nc));
  b->ops->free (b, x);
  b->ops->free (b, y);
  ops_weight_free (gain);
  ops_weight_free (shift);
  return result;
}

static float *run_rms (NsBackend *b, gconstpointer nc) { return run_norm (b, nc, RMS); }
static float *run_layer (NsBackend *b, gconstpointer nc) { return run_norm (b, nc, LAYER); }
static float *run_group (NsBackend *b, gconstpointer nc) { return run_norm (b, nc, GROUP); }

/* x = offset + U(-1, 1) */
static float *
offset_input (GRand *rng, size_t n, float offset)
{
  float *x = ops_random (rng, n, 1.0f);
  for (size_t i = 0; i < n; i++)
    x[i] += offset;
  return x;
}

static void
check (GRand *rng, NormKind kind, NsDType dtype, int rows, int dim, int groups, gboolean affine,
       gboolean silu)
{
  NormCase nc = { .rows = rows, .dim = dim, .groups = groups, .affine = affine, .silu = silu,
                  .dtype = dtype };
  g_autofree float *x = offset_input (rng, norm_size (&nc), kind == RMS ? 0.3f : 4.0f);
  nc.x = x;
  nc.eps = kind == RMS ? 1e-5f : 1e-6f;
  g_autofree double *ref = reference (&nc, kind);
  const char *name = kind == RMS ? "rmsnorm" : kind == LAYER ? "layernorm" : "groupnorm";
  g_autofree char *what = g_strdup_printf ("%s %s %d × %d, groups %d%s%s", name,
                                           ns_dtype_name (nc.dtype), nc.rows, nc.dim, nc.groups,
                                           nc.affine ? ", affine" : "", nc.silu ? ", silu" : "");
  OpsRunFunc run = kind == RMS ? run_rms : kind == LAYER ? run_layer : run_group;
  ops_check (what, run, &nc, ref, norm_size (&nc), NORM_TOL);
}

static void
test_rmsnorm (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (31);
  const int shapes[][2] = { { 1, 1 }, { 2, 7 }, { 3, 64 }, { 2, 1000 }, { 3, 20001 } };
  for (int d = 0; d < 3; d++)
    for (int s = 0; s < (int) G_N_ELEMENTS (shapes); s++)
      check (rng, RMS, ops_weight_dtypes[d], shapes[s][0], shapes[s][1], 0, TRUE, FALSE);
}

static void
test_layernorm (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (32);
  const int shapes[][2] = { { 1, 2 }, { 3, 64 }, { 2, 1537 }, { 5, 9000 } };
  for (int d = 0; d < 3; d++)
    for (int s = 0; s < (int) G_N_ELEMENTS (shapes); s++)
      for (int affine = 0; affine < 2; affine++)
        check (rng, LAYER, ops_weight_dtypes[d], shapes[s][0], shapes[s][1], 0, affine, FALSE);
}

static void
test_groupnorm (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (33);
  const int shapes[][3] = { { 8, 13, 4 }, { 64, 50, 32 }, { 6, 1, 3 }, { 32, 7, 32 } };
  for (int d = 0; d < 3; d++)
    for (int s = 0; s < (int) G_N_ELEMENTS (shapes); s++)
      for (int silu = 0; silu < 2; silu++)
        check (rng, GROUP, ops_weight_dtypes[d], shapes[s][0], shapes[s][1], shapes[s][2], TRUE,
               silu);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/norm/rmsnorm", test_rmsnorm);
  g_test_add_func ("/ops/norm/layernorm", test_layernorm);
  g_test_add_func ("/ops/norm/groupnorm", test_groupnorm);
  return g_test_run ();
}
