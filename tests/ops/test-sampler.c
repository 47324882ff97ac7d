/* test-sampler.c — the sampler ops (engine/cpu/sampler.c): time features,
 * Philox noise (against a double Box–Muller over the Philox words, and the
 * injected-draw table), CFG combination 1/2/3-way with a constant and a
 * linear schedule, every state-update kind, and the finish with and
 * without use_norm. Token indices live in backend memory. */
#include "ops-util.h"
#include "philox.h"

#define SAMPLER_TOL 1e-6

typedef struct {
  int n, n_features;
  const double *t;
} TimeCase;

static float *
run_time_features (NsBackend *b, gconstpointer data)
{
  const TimeCase *tc = data;
  size_t n = (size_t) tc->n * tc->n_features;
  double *t = ops_upload_f64 (b, tc->t, tc->n);
  float *out = ops_poisoned (b, n);
  b->ops->time_features (b, out, t, tc->n, tc->n_features);
  float *result = ops_download (b, out, n);
  ns_backend_free_any (b, t);
  b->ops->free (b, out);
  return result;
}

static void
test_time_features (void)
{
  const double t[] = { 0.0, 0.02, 0.5, 0.98, 1.0 };
  TimeCase tc = { G_N_ELEMENTS (t), 256, t };
  int half = tc.n_features / 2;
  g_autofree double *ref = g_new (double, (size_t) tc.n * tc.n_features);
  for (int i = 0; i < tc.n; i++)
    for (int k = 0; k < half; k++)
      {
        double f = exp (-log (10000.0) * k / half);
        ref[i * tc.n_features + k] = cos (t[i] * f);
        ref[i * tc.n_features + half + k] = sin (t[i] * f);
      }
  ops_check ("time_features", run_time_features, &tc, ref, (size_t) tc.n * tc.n_features,
             SAMPLER_TOL);
}

typedef struct {
  int n_images, dim, draws, token, draw;
  guint64 seed;
  const float *table;     /* NULL: Philox */
  int ntok;
} NoiseCase;

static float *
run_noise (NsBackend *b, gconstpointer data)
{
  const NoiseCase *nc = data;
  size_t n = (size_t) nc->n_images * nc->dim;
  float *table = nc->table ? ops_upload (b, nc->table, (size_t) nc->ntok * nc->draws * n) : NULL;
  int32_t *token = ops_upload_i32 (b, &nc->token, 1);
  float *out = ops_poisoned (b, n);
  b->ops->noise (b, out, nc->n_images, nc->dim, nc->seed, table, nc->draws, token, nc->draw);
  float *result = ops_download (b, out, n);
  ns_backend_free_any (b, table);
  ns_backend_free_any (b, token);
  b->ops->free (b, out);
  return result;
}

/* Box–Muller in double over the words of engine/philox.h's block function. */
static void
reference_noise (const NoiseCase *nc, double *ref)
{
  const uint32_t key[2] = { (uint32_t) nc->seed, (uint32_t) (nc->seed >> 32) };
  for (int i = 0; i < nc->n_images; i++)
    for (int q = 0; 4 * q < nc->dim; q++)
      {
        const uint32_t ctr[4] = { nc->token, nc->draw, i, q };
        uint32_t w[4];
        ns_philox4x32_10 (ctr, key, w);
        for (int j = 0; j < 4 && 4 * q + j < nc->dim; j++)
          {
            double u0 = (w[j & 2] + 0.5) / 4294967296.0, u1 = (w[(j & 2) + 1] + 0.5) / 4294967296.0;
            double r = sqrt (-2.0 * log (u0)), phi = 2.0 * G_PI * u1;
            ref[(size_t) i * nc->dim + 4 * q + j] = j % 2 == 0 ? r * cos (phi) : r * sin (phi);
          }
      }
}

/* Seeds with both key halves set; dim 66 cuts the last Philox block (its
 * two extra values must not be written). */
static void
test_noise (void)
{
  const guint64 seeds[] = { 0, 42, 0x123456789abcdefull };
  for (int s = 0; s < (int) G_N_ELEMENTS (seeds); s++)
    {
      NoiseCase nc = { .n_images = 3, .dim = s == 1 ? 66 : 68, .token = 517, .draw = 2 + s,
                       .seed = seeds[s] };
      g_autofree double *ref = g_new (double, (size_t) nc.n_images * nc.dim);
      reference_noise (&nc, ref);
      g_autofree char *what = g_strdup_printf ("noise seed %" G_GUINT64_FORMAT, nc.seed);
      ops_check (what, run_noise, &nc, ref, (size_t) nc.n_images * nc.dim, SAMPLER_TOL);
    }
}

static void
test_noise_table (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (61);
  NoiseCase nc = { .n_images = 2, .dim = 6, .draws = 3, .token = 4, .draw = 1, .ntok = 5 };
  size_t block = (size_t) nc.n_images * nc.dim;
  g_autofree float *table = ops_random (rng, nc.ntok * nc.draws * block, 3.0f);
  nc.table = table;
  g_autofree double *ref = ops_to_double (table + (nc.token * nc.draws + nc.draw) * block, block);
  ops_check ("noise from a table", run_noise, &nc, ref, block, 0.0);
}

typedef struct {
  int cfg_mult, token;
  size_t block;
  NsCfgParams cfg;
  const float *rows;
} CfgCase;

static float *
run_cfg (NsBackend *b, gconstpointer data)
{
  const CfgCase *cc = data;
  float *rows = ops_upload (b, cc->rows, cc->cfg_mult * cc->block);
  int32_t *token = ops_upload_i32 (b, &cc->token, 1);
  float *v = ops_poisoned (b, cc->block);
  b->ops->cfg_combine (b, v, rows, cc->cfg_mult, cc->block, &cc->cfg, token);
  float *result = ops_download (b, v, cc->block);
  b->ops->free (b, rows);
  b->ops->free (b, v);
  ns_backend_free_any (b, token);
  return result;
}

static void
test_cfg_combine (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (62);
  for (int mult = 1; mult <= 3; mult++)
    for (int linear = 0; linear < 2; linear++)
      {
        CfgCase cc = { mult, 300, 130, { 7.5, 1.5, linear, 1024 }, NULL };
        g_autofree float *rows = ops_random (rng, mult * cc.block, 2.0f);
        cc.rows = rows;
        double s = 7.5, s_img = 1.5;
        if (linear)
          {
            s = 1.0 + 6.5 * (1024 - 300) / 1024.0;
            s_img = 1.0 + 0.5 * (1024 - 300) / 1024.0;
          }
        g_autofree double *ref = g_new (double, cc.block);
        const float *c = rows, *u1 = rows + cc.block, *u2 = rows + 2 * cc.block;
        for (size_t i = 0; i < cc.block; i++)
          ref[i] = mult == 1 ? c[i]
                   : mult == 2 ? u1[i] + s * ((double) c[i] - u1[i])
                               : u2[i] + s_img * ((double) u1[i] - u2[i]) + s * ((double) c[i] - u1[i]);
        g_autofree char *what = g_strdup_printf ("cfg_combine %d-way %s", mult,
                                                 linear ? "linear" : "constant");
        ops_check (what, run_cfg, &cc, ref, cc.block, SAMPLER_TOL);
      }
}

typedef struct {
  NsSamplerStep step;
  size_t block;
  int copies;
  const double *state;
  const float *v, *eps;
} StepCase;

/* Result: the new state (as floats) followed by the copies. */
static float *
run_step (NsBackend *b, gconstpointer data)
{
  const StepCase *sc = data;
  double *state = ops_upload_f64 (b, sc->state, sc->block);
  float *v = ops_upload (b, sc->v, sc->block), *eps = ops_upload (b, sc->eps, sc->block);
  float *x = ops_poisoned (b, sc->copies * sc->block);
  b->ops->sampler_step (b, state, x, v, eps, sc->block, sc->copies, &sc->step);
  g_autofree double *st = ops_download_f64 (b, state, sc->block);
  g_autofree float *rows = ops_download (b, x, sc->copies * sc->block);
  float *result = g_new (float, (sc->copies + 1) * sc->block);
  for (size_t i = 0; i < sc->block; i++)
    result[i] = (float) st[i];
  memcpy (result + sc->block, rows, sc->copies * sc->block * sizeof (float));
  ns_backend_free_any (b, state);
  for (float *p[] = { v, eps, x }, **it = p; it < p + G_N_ELEMENTS (p); it++)
    b->ops->free (b, *it);
  return result;
}

static double
step_reference (const NsSamplerStep *st, double x, double v, double eps)
{
  double t = st->t, tn = st->t_next, dt = tn - t;
  switch (st->kind)
    {
    case NS_STEP_INIT: return eps;
    case NS_STEP_SDE:
      {
        double score = (t * v - x) / ((1 - t) * (1 - t) + t * (1 - t));
        return x + (v + (1 - t) * score) * dt + sqrt (2 * (1 - t)) * sqrt (dt) * eps;
      }
    case NS_STEP_ODE: return (x - v * t) * (1 - tn) + (x + v * (1 - t)) * tn;
    default: return x + st->dt * v;
    }
}

static void
test_sampler_step (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (63);
  const NsStepKind kinds[] = { NS_STEP_INIT, NS_STEP_SDE, NS_STEP_ODE, NS_STEP_EULER };
  const char *names[] = { "init", "sde", "ode", "euler" };
  for (int k = 0; k < 4; k++)
    {
      StepCase sc = { { kinds[k], 0.3, 0.34, 0.04 }, 257, 2, NULL, NULL, NULL };
      g_autofree double *state = g_new (double, sc.block);
      for (size_t i = 0; i < sc.block; i++)
        state[i] = g_rand_double_range (rng, -2, 2);
      g_autofree float *v = ops_random (rng, sc.block, 2.0f);
      g_autofree float *eps = ops_random (rng, sc.block, 2.0f);
      sc.state = state;
      sc.v = v;
      sc.eps = eps;
      g_autofree double *ref = g_new (double, 3 * sc.block);
      for (size_t i = 0; i < sc.block; i++)
        for (int c = 0; c < 3; c++)
          ref[c * sc.block + i] = step_reference (&sc.step, state[i], v[i], eps[i]);
      g_autofree char *what = g_strdup_printf ("sampler_step %s", names[k]);
      ops_check (what, run_step, &sc, ref, 3 * sc.block, SAMPLER_TOL);
    }
}

typedef struct {
  int n, dim;
  gboolean use_norm;
  const double *state;
} FinishCase;

static float *
run_finish (NsBackend *b, gconstpointer data)
{
  const FinishCase *fc = data;
  size_t n = (size_t) fc->n * fc->dim;
  double *state = ops_upload_f64 (b, fc->state, n);
  float *tok = ops_poisoned (b, n);
  b->ops->sampler_finish (b, tok, state, fc->n, fc->dim, fc->use_norm);
  float *result = ops_download (b, tok, n);
  ns_backend_free_any (b, state);
  b->ops->free (b, tok);
  return result;
}

static void
test_sampler_finish (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (64);
  for (int use_norm = 0; use_norm < 2; use_norm++)
    {
      FinishCase fc = { 3, 64, use_norm, NULL };
      size_t n = (size_t) fc.n * fc.dim;
      g_autofree double *state = g_new (double, n);
      for (size_t i = 0; i < n; i++)
        state[i] = g_rand_double_range (rng, -3, 5);
      fc.state = state;
      g_autofree double *ref = g_new (double, n);
      for (int r = 0; r < fc.n; r++)
        {
          const double *row = state + r * fc.dim;
          double mean = 0, var = 0;
          for (int i = 0; i < fc.dim; i++)
            mean += (float) row[i];
          mean /= fc.dim;
          for (int i = 0; i < fc.dim; i++)
            var += ((float) row[i] - mean) * ((float) row[i] - mean);
          var /= fc.dim;
          for (int i = 0; i < fc.dim; i++)
            ref[r * fc.dim + i] = use_norm ? ((float) row[i] - mean) / sqrt (var + 1e-6)
                                           : (float) row[i];
        }
      ops_check (use_norm ? "sampler_finish use_norm" : "sampler_finish", run_finish, &fc, ref,
                 n, SAMPLER_TOL);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/sampler/time-features", test_time_features);
  g_test_add_func ("/ops/sampler/noise", test_noise);
  g_test_add_func ("/ops/sampler/noise-table", test_noise_table);
  g_test_add_func ("/ops/sampler/cfg-combine", test_cfg_combine);
  g_test_add_func ("/ops/sampler/step", test_sampler_step);
  g_test_add_func ("/ops/sampler/finish", test_sampler_finish);
  return g_test_run ();
}
