/* sampler.c — the three token samplers with CFG (docs/model.md §7
 * and §8), issued as backend
 * ops (backend.h: noise, cfg_combine, sampler_step, sampler_finish) so the
 * whole loop of a token runs on the device without the host.
 *
 * Draw 0 starts every sampler. hf-sde: N SDE steps over the grid, draw i+1
 * in step i. gh-grid: N−1 SDE steps over the first N grid points, then one
 * Euler step of 1 − 0.96 at the last. ode: N deterministic steps. */
#include <math.h>

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

typedef struct {
  const NsSamplerPlan *p;
  NsBackend *b;
  NsHeadFunc head;
  NsVelocityHook hook;
  gpointer data;
} Loop;

/* v = CFG-combined head velocity at grid point `step`. */
static void
eval (const Loop *l, int step)
{
  const NsSamplerPlan *p = l->p;
  l->head (l->data, step, p->x_rows, p->v_rows);
  l->b->ops->cfg_combine (l->b, p->v, p->v_rows, p->cfg_mult, (size_t) p->n * p->dim, &p->cfg,
                          p->token);
  if (l->hook)
    l->hook (l->data, step, p->v);
}

static void
update (const Loop *l, NsStepKind kind, double t, double t_next, double dt, int draw)
{
  const NsSamplerPlan *p = l->p;
  if (draw >= 0)
    l->b->ops->noise (l->b, p->eps, p->n, p->dim, p->seed, p->noise_table, p->draws, p->token,
                      draw);
  NsSamplerStep step = { kind, t, t_next, dt };
  l->b->ops->sampler_step (l->b, p->state, p->x_rows, p->v, p->eps, (size_t) p->n * p->dim,
                           p->cfg_mult, &step);
}

void
ns_sampler_sample_token (const NsSamplerPlan *p, NsHeadFunc head, NsVelocityHook hook,
                         gpointer data, float *tok, gboolean use_norm)
{
  NsBackend *b = p->backend;
  Loop l = { p, b, head, hook, data };
  const double *t = p->grid;
  int N = p->steps;
  update (&l, NS_STEP_INIT, 0.0, 0.0, 0.0, 0);
  switch (p->sampler)
    {
    case NS_SAMPLER_GH_GRID:
      for (int i = 0; i + 1 < N; i++)
        {
          eval (&l, i);
          update (&l, NS_STEP_SDE, t[i], t[i + 1], 0.0, i + 1);
        }
      eval (&l, N - 1);
      update (&l, NS_STEP_EULER, t[N - 1], 1.0, GH_GRID_LAST_DT, -1);
      break;
    case NS_SAMPLER_ODE:
      for (int i = 0; i < N; i++)
        {
          eval (&l, i);
          update (&l, NS_STEP_ODE, t[i], t[i + 1], 0.0, -1);
        }
      break;
    case NS_SAMPLER_HF_SDE:
    default:
      for (int i = 0; i < N; i++)
        {
          eval (&l, i);
          update (&l, NS_STEP_SDE, t[i], t[i + 1], 0.0, i + 1);
        }
      break;
    }
  b->ops->sampler_finish (b, tok, p->state, p->n, p->dim, use_norm);
}
