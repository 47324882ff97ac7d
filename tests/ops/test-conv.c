/* test-conv.c — conv2d (padding, stride 2 with the VAE's asymmetric
 * padding, 1×1, non-square, k past one matmul block, the stride-1 row-run
 * gather and the general one), upsample2x, and the patch layout, against
 * direct loops. */
#include "ops-util.h"

#define CONV_TOL 2e-5

typedef struct {
  int ci, h, w, co, k, stride, pad_t, pad_l, pad_b, pad_r;
  gboolean bias;
  NsDType dtype;
  const float *x;
} ConvCase;

#define SEED_WEIGHT 61
#define SEED_BIAS 62

static int
out_h (const ConvCase *cc)
{
  return (cc->h + cc->pad_t + cc->pad_b - cc->k) / cc->stride + 1;
}

static int
out_w (const ConvCase *cc)
{
  return (cc->w + cc->pad_l + cc->pad_r - cc->k) / cc->stride + 1;
}

static size_t
out_size (const ConvCase *cc)
{
  return (size_t) cc->co * out_h (cc) * out_w (cc);
}

static float
weight_scale (const ConvCase *cc)
{
  return 1.0f / sqrtf (cc->ci * cc->k * cc->k);
}

static double *
reference (const ConvCase *cc)
{
  int kk = cc->k * cc->k, oh = out_h (cc), ow = out_w (cc);
  g_autofree double *w = ops_weight_values (SEED_WEIGHT, cc->dtype, (size_t) cc->co * cc->ci * kk,
                                            weight_scale (cc));
  g_autofree double *bias = cc->bias ? ops_weight_values (SEED_BIAS, cc->dtype, cc->co, 0.5f)
                                     : NULL;
  double *y = g_new (double, out_size (cc));
  for (int o = 0; o < cc->co; o++)
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++)
        {
          double s = bias ? bias[o] : 0.0;
          for (int c = 0; c < cc->ci; c++)
            for (int ky = 0; ky < cc->k; ky++)
              for (int kx = 0; kx < cc->k; kx++)
                {
                  int iy = oy * cc->stride + ky - cc->pad_t, ix = ox * cc->stride + kx - cc->pad_l;
                  if (iy >= 0 && iy < cc->h && ix >= 0 && ix < cc->w)
                    s += w[(size_t) o * cc->ci * kk + c * kk + ky * cc->k + kx]
                         * cc->x[((size_t) c * cc->h + iy) * cc->w + ix];
                }
          y[((size_t) o * oh + oy) * ow + ox] = s;
        }
  return y;
}

static float *
run_conv (NsBackend *b, gconstpointer data)
{
  const ConvCase *cc = data;
  OpsWeight *w = ops_weight_new (b, SEED_WEIGHT, cc->dtype, cc->co, cc->ci * cc->k * cc->k,
                                 weight_scale (cc));
  OpsWeight *bias = cc->bias ? ops_weight_new (b, SEED_BIAS, cc->dtype, 1, cc->co, 0.5f) : NULL;
  float *x = ops_upload (b, cc->x, (size_t) cc->ci * cc->h * cc->w);
  float *y = ops_poisoned (b, out_size (cc));
  b->ops->conv2d (b, y, x, &w->mat, ops_mat (bias), cc->ci, cc->h, cc->w, cc->co, cc->k,
                  cc->stride, cc->pad_t, cc->pad_l, cc->pad_b, cc->pad_r);
  float *result = ops_download (b, y, out_size (cc));
  b->ops->free (b, x);
  b->ops->free (b, y);
  ops_weight_free (w);
  ops_weight_free (bias);
  return result;
}

static void
test_conv2d (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (63);
  /* ci, h, w, co, k, stride, pad t/l/b/r, bias */
  const int shapes[][11] = {
    { 3, 7, 9, 5, 3, 1, 1, 1, 1, 1, TRUE },
    { 4, 6, 5, 7, 1, 1, 0, 0, 0, 0, TRUE },
    { 3, 8, 6, 4, 3, 2, 0, 0, 1, 1, FALSE },   /* the VAE's Downsample */
    { 2, 7, 9, 3, 3, 2, 0, 0, 1, 1, TRUE },    /* same, odd sizes */
    { 40, 5, 6, 70, 3, 1, 1, 1, 1, 1, TRUE },  /* k = 360: two matmul k blocks */
    { 16, 12, 11, 8, 3, 1, 1, 1, 1, 1, FALSE },/* 132 pixels: several column blocks */
    { 5, 6, 37, 9, 3, 1, 1, 1, 1, 1, TRUE },   /* row runs: left edge, inside, wrapping */
    { 4, 3, 20, 6, 1, 1, 0, 0, 0, 0, FALSE },  /* 1×1 row runs */
  };
  for (int d = 0; d < 3; d++)
    for (int s = 0; s < (int) G_N_ELEMENTS (shapes); s++)
      {
        const int *sh = shapes[s];
        ConvCase cc = { .ci = sh[0], .h = sh[1], .w = sh[2], .co = sh[3], .k = sh[4],
                        .stride = sh[5], .pad_t = sh[6], .pad_l = sh[7], .pad_b = sh[8],
                        .pad_r = sh[9], .bias = sh[10], .dtype = ops_weight_dtypes[d] };
        g_autofree float *x = ops_random (rng, (size_t) cc.ci * cc.h * cc.w, 1.0f);
        cc.x = x;
        g_autofree double *ref = reference (&cc);
        g_autofree char *what = g_strdup_printf ("conv2d %s %d×%d×%d → %d, k %d stride %d pad "
                                                 "%d/%d/%d/%d", ns_dtype_name (cc.dtype), cc.ci,
                                                 cc.h, cc.w, cc.co, cc.k, cc.stride, cc.pad_t,
                                                 cc.pad_l, cc.pad_b, cc.pad_r);
        ops_check (what, run_conv, &cc, ref, out_size (&cc), CONV_TOL);
      }
}

typedef struct {
  int c, h, w;
  const float *x;
} UpsampleCase;

static float *
run_upsample (NsBackend *b, gconstpointer data)
{
  const UpsampleCase *uc = data;
  size_t n = (size_t) uc->c * uc->h * uc->w;
  float *x = ops_upload (b, uc->x, n);
  float *y = ops_poisoned (b, 4 * n);
  b->ops->upsample2x (b, y, x, uc->c, uc->h, uc->w);
  float *result = ops_download (b, y, 4 * n);
  b->ops->free (b, x);
  b->ops->free (b, y);
  return result;
}

static void
test_upsample2x (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (64);
  UpsampleCase uc = { 3, 5, 4, NULL };
  size_t n = (size_t) uc.c * uc.h * uc.w;
  g_autofree float *x = ops_random (rng, n, 1.0f);
  g_autofree double *ref = g_new (double, 4 * n);
  for (int c = 0; c < uc.c; c++)
    for (int yy = 0; yy < 2 * uc.h; yy++)
      for (int xx = 0; xx < 2 * uc.w; xx++)
        ref[((size_t) c * 2 * uc.h + yy) * 2 * uc.w + xx] = x[(c * uc.h + yy / 2) * uc.w + xx / 2];
  uc.x = x;
  ops_check ("upsample2x", run_upsample, &uc, ref, 4 * n, 0.0);
}

typedef struct {
  int c, gh, gw, p;
  gboolean inverse;       /* unpatchify */
  const float *in;
} PatchCase;

static float *
run_patch (NsBackend *b, gconstpointer data)
{
  const PatchCase *pc = data;
  size_t n = (size_t) pc->c * pc->gh * pc->gw * pc->p * pc->p;
  float *in = ops_upload (b, pc->in, n);
  float *out = ops_poisoned (b, n);
  if (pc->inverse)
    b->ops->unpatchify (b, out, in, pc->c, pc->gh, pc->gw, pc->p);
  else
    b->ops->patchify (b, out, in, pc->c, pc->gh, pc->gw, pc->p);
  float *result = ops_download (b, out, n);
  b->ops->free (b, in);
  b->ops->free (b, out);
  return result;
}

/* token[i·gw + j][ch·p·p + a·p + bb] = latent[ch, p·i + a, p·j + bb], written
 * out as loops over the latent; unpatchify is checked as the inverse map. */
static void
test_patchify (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (65);
  const int shapes[][4] = { { 16, 3, 2, 2 }, { 3, 2, 5, 1 }, { 2, 1, 3, 3 } };
  for (int s = 0; s < (int) G_N_ELEMENTS (shapes); s++)
    {
      int c = shapes[s][0], gh = shapes[s][1], gw = shapes[s][2], p = shapes[s][3];
      size_t n = (size_t) c * gh * gw * p * p;
      g_autofree float *latent = ops_random (rng, n, 1.0f);
      g_autofree double *tokens = g_new (double, n);
      for (int ch = 0; ch < c; ch++)
        for (int yy = 0; yy < gh * p; yy++)
          for (int xx = 0; xx < gw * p; xx++)
            {
              size_t token = (size_t) (yy / p) * gw + xx / p;
              tokens[token * c * p * p + ch * p * p + yy % p * p + xx % p] =
                latent[((size_t) ch * gh * p + yy) * gw * p + xx];
            }
      PatchCase pc = { c, gh, gw, p, FALSE, latent };
      ops_check ("patchify", run_patch, &pc, tokens, n, 0.0);

      g_autofree float *token_floats = g_new (float, n);
      for (size_t i = 0; i < n; i++)
        token_floats[i] = (float) tokens[i];
      g_autofree double *latent_ref = ops_to_double (latent, n);
      PatchCase inverse = { c, gh, gw, p, TRUE, token_floats };
      ops_check ("unpatchify", run_patch, &inverse, latent_ref, n, 0.0);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/conv/conv2d", test_conv2d);
  g_test_add_func ("/ops/conv/upsample2x", test_upsample2x);
  g_test_add_func ("/ops/conv/patchify", test_patchify);
  return g_test_run ();
}
