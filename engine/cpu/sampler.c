/* sampler.c — the flow-matching sampler as backend ops: the head's time
 * features, Gaussian draws (engine/philox.h), CFG combination and the
 * samplers' state updates (engine/model/sampler.c issues them). The state
 * is float64, as the reference sampler keeps it; the head sees float32. */
#include "cpu-backend.h"
#include "philox.h"

void
ns_cpu_time_features (NsBackend *b, float *out, const double *t, int n, int n_features)
{
  (void) b;
  int half = n_features / 2;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < half; k++)
      {
        double arg = t[i] * exp (-log (10000.0) * k / half);
        out[(size_t) i * n_features + k] = (float) cos (arg);
        out[(size_t) i * n_features + half + k] = (float) sin (arg);
      }
}

void
ns_cpu_noise (NsBackend *b, float *out, int n_images, int dim, guint64 seed,
              const float *table, int draws, const int32_t *token, int draw)
{
  (void) b;
  size_t block = (size_t) n_images * dim;
  if (table != NULL)
    {
      memcpy (out, table + ((size_t) *token * draws + draw) * block, block * sizeof (float));
      return;
    }
  for (int i = 0; i < n_images; i++)
    for (int q = 0; 4 * q < dim; q++)
      {
        float four[4];
        ns_philox_normal4 (seed, (uint32_t) i, (uint32_t) *token, (uint32_t) draw, (uint32_t) q,
                           four);
        memcpy (out + (size_t) i * dim + 4 * q, four, MIN (4, dim - 4 * q) * sizeof (float));
      }
}

void
ns_cpu_cfg_combine (NsBackend *b, float *v, const float *v_rows, int cfg_mult, size_t block,
                    const NsCfgParams *cfg, const int32_t *token)
{
  (void) b;
  double s, s_img;
  ns_cfg_scales (cfg, *token, &s, &s_img);
  for (size_t i = 0; i < block; i++)
    v[i] = ns_cfg_mix (v_rows, block, cfg_mult, i, s, s_img);
}

void
ns_cpu_sampler_step (NsBackend *b, double *state, float *x_rows, const float *v,
                     const float *eps, size_t block, int copies, const NsSamplerStep *step)
{
  (void) b;
  for (size_t i = 0; i < block; i++)
    {
      state[i] = ns_sampler_update (step, state[i], v[i], eps[i]);
      for (int c = 0; c < copies; c++)
        x_rows[(size_t) c * block + i] = (float) state[i];
    }
}

void
ns_cpu_sampler_finish (NsBackend *b, float *tok, const double *state, int n, int dim,
                       gboolean use_norm)
{
  (void) b;
  for (size_t i = 0; i < (size_t) n * dim; i++)
    tok[i] = (float) state[i];
  for (int r = 0; use_norm && r < n; r++)
    {
      float *row = tok + (size_t) r * dim;
      double mean = ns_cpu_mean (row, dim);
      double inv = 1.0 / sqrt (ns_cpu_variance (row, dim, mean) + 1e-6);
      for (int i = 0; i < dim; i++)
        row[i] = (float) ((row[i] - mean) * inv);
    }
}
