/* sampler.c — the three token samplers, CFG and use_norm (golden README
 * "Samplers and the order of the noise draws", model doc §7.4 and §8).
 * The state is kept in double; the head sees float32. */
#include <math.h>
#include <string.h>

#include "model/pipeline-private.h"

/* The end of the gh-grid time grid and its final Euler step (1 − 0.96). */
#define GH_GRID_END 0.96
#define GH_GRID_LAST_DT 0.04

int
ns_sampler_draws_per_token (NsSampler sampler, int steps)
{
  switch (sampler)
    {
    case NS_SAMPLER_GH_GRID: return steps;
    case NS_SAMPLER_ODE: return 1;
    case NS_SAMPLER_HF_SDE:
    default: return steps + 1;
    }
}

static double
time_shift (double t, double s)
{
  return t / (s - (s - 1.0) * t);
}

int
ns_sampler_time_grid (NsSampler sampler, int steps, double shift, double *t)
{
  if (sampler == NS_SAMPLER_GH_GRID)
    {
      for (int i = 0; i < steps; i++)
        t[i] = time_shift (steps > 1 ? GH_GRID_END * i / (steps - 1) : 0.0, shift);
      return steps;
    }
  for (int i = 0; i < steps; i++)
    t[i] = time_shift ((double) i / steps, shift);
  t[steps] = 1.0;
  return steps + 1;
}

void
ns_cfg_for_token (NsCfgSchedule schedule, double cfg, double cfg_img, int token, int ntok,
                  double *cfg_t, double *cfg_img_t)
{
  if (schedule == NS_CFG_LINEAR)
    {
      /* the official operation order: (cfg − 1)·(ntok − t) / ntok */
      *cfg_t = 1.0 + (cfg - 1.0) * (ntok - token) / ntok;
      *cfg_img_t = 1.0 + (cfg_img - 1.0) * (ntok - token) / ntok;
      return;
    }
  *cfg_t = cfg;
  *cfg_img_t = cfg_img;
}

void
ns_cfg_combine (float *v, const float *v_rows, int cfg_mult, int n, int dim, double cfg,
                double cfg_img)
{
  size_t block = (size_t) n * dim;
  const float *c = v_rows, *u1 = v_rows + block, *u2 = v_rows + 2 * block;
  for (size_t i = 0; i < block; i++)
    {
      if (cfg_mult == 1)
        v[i] = c[i];
      else if (cfg_mult == 2)
        v[i] = (float) (u1[i] + cfg * ((double) c[i] - u1[i]));
      else
        v[i] = (float) (u2[i] + cfg_img * ((double) u1[i] - u2[i])
                        + cfg * ((double) c[i] - u1[i]));
    }
}

void
ns_token_layernorm (float *x, int n, int dim)
{
  for (int r = 0; r < n; r++)
    {
      float *row = x + (size_t) r * dim;
      double mean = 0, var = 0;
      for (int i = 0; i < dim; i++)
        mean += row[i];
      mean /= dim;
      for (int i = 0; i < dim; i++)
        var += (row[i] - mean) * (row[i] - mean);
      double inv = 1.0 / sqrt (var / dim + 1e-6);
      for (int i = 0; i < dim; i++)
        row[i] = (float) ((row[i] - mean) * inv);
    }
}

typedef struct {
  const NsSamplerPlan *plan;
  NsNoise *noise;
  int token;
  NsVelocityFunc velocity;
  gpointer user_data;
  size_t size;              /* n · dim */
  double *x;
  float *xf, *v, *eps;
} Run;

static void
eval (Run *r, int step)
{
  for (size_t i = 0; i < r->size; i++)
    r->xf[i] = (float) r->x[i];
  r->velocity (r->xf, step, r->v, r->user_data);
}

/* x += drift dt + sqrt(2 (1 − t)) ε sqrt(dt), drift = v + (1 − t) score. */
static void
sde_step (Run *r, double t, double t_next, int draw)
{
  double dt = t_next - t;
  double noise_scale = sqrt (2.0 * (1.0 - t)) * sqrt (dt);
  double denom = (1.0 - t) * (1.0 - t) + t * (1.0 - t);
  ns_noise_draw (r->noise, r->token, draw, r->eps);
  for (size_t i = 0; i < r->size; i++)
    {
      double score = (t * r->v[i] - r->x[i]) / denom;
      double drift = r->v[i] + (1.0 - t) * score;
      r->x[i] += drift * dt + noise_scale * r->eps[i];
    }
}

static void
ode_step (Run *r, double t, double t_next)
{
  for (size_t i = 0; i < r->size; i++)
    {
      double x0 = r->x[i] - r->v[i] * t;
      double x1 = r->x[i] + r->v[i] * (1.0 - t);
      r->x[i] = x0 * (1.0 - t_next) + x1 * t_next;
    }
}

void
ns_sampler_sample_token (const NsSamplerPlan *plan, NsNoise *noise, int token,
                         NsVelocityFunc velocity, gpointer user_data, float *out)
{
  Run r = { plan, noise, token, velocity, user_data, (size_t) plan->n * plan->dim,
            NULL, NULL, NULL, NULL };
  r.x = g_new (double, r.size);
  r.xf = g_new (float, r.size);
  r.v = g_new (float, r.size);
  r.eps = g_new (float, r.size);
  const double *t = plan->grid;
  int N = plan->steps;

  ns_noise_draw (noise, token, 0, r.eps);
  for (size_t i = 0; i < r.size; i++)
    r.x[i] = r.eps[i];
  switch (plan->sampler)
    {
    case NS_SAMPLER_GH_GRID:
      for (int i = 0; i + 1 < N; i++)
        {
          eval (&r, i);
          sde_step (&r, t[i], t[i + 1], i + 1);
        }
      eval (&r, N - 1);
      for (size_t i = 0; i < r.size; i++)
        r.x[i] += GH_GRID_LAST_DT * r.v[i];
      break;
    case NS_SAMPLER_ODE:
      for (int i = 0; i < N; i++)
        {
          eval (&r, i);
          ode_step (&r, t[i], t[i + 1]);
        }
      break;
    case NS_SAMPLER_HF_SDE:
    default:
      for (int i = 0; i < N; i++)
        {
          eval (&r, i);
          sde_step (&r, t[i], t[i + 1], i + 1);
        }
      break;
    }
  for (size_t i = 0; i < r.size; i++)
    out[i] = (float) r.x[i];
  g_free (r.x);
  g_free (r.xf);
  g_free (r.v);
  g_free (r.eps);
}
