/* test-linear-fused.c — the fused linears of backend.h (linear_multi,
 * linear_swiglu, norm_modulate_linear, linear_gated_add) against naive
 * double-precision loops on every backend, for every weight format, 1–8
 * rows (the fused GEMV) and prefill-sized rows (the GEMM path), shapes with
 * k a multiple of 16 (16-byte loads, split-K) and odd ones (the fallback);
 * and, on the CPU, bit for bit against the op sequence each one replaces. */
#include "ops-util.h"

#define FUSED_TOL 2e-5
/* q4 rounds the normalised rows to 8 bits per group (q4-layout.h); the
 * reference's rows (double, then f32) and a backend's (f32) may differ in
 * their last bit, and an element at a rounding boundary then gets the next
 * code: one step (1/127 of its group's largest value) in a few elements. */
#define FUSED_Q4_NORM_TOL 5e-3
#define LN_EPS 1e-6f

typedef enum { F_MULTI, F_SWIGLU, F_NORM, F_GATED, N_FUSED } FusedOp;

static const char *const op_names[N_FUSED] = { "linear_multi", "linear_swiglu",
                                               "norm_modulate_linear", "linear_gated_add" };

typedef struct {
  FusedOp op;
  NsDType dtype;
  int rows, cols, outs;
  gboolean flag;          /* bias (multi, swiglu, gated), silu and LN affine (norm) */
  gboolean unfused;       /* run the op sequence instead */
  guint32 seed;
  const float *x, *aux, *y0;   /* aux: modulation / gate rows [rows, 3·width]; y0: gated x */
} FusedCase;

/* linear_multi's third matrix is smaller: the k/v projections beside q. */
static int
outs_of (const FusedCase *fc, int j)
{
  return fc->op == F_MULTI && j > 0 ? fc->outs / 2 + 1 : fc->outs;
}

static int
n_mats (const FusedCase *fc)
{
  return fc->op == F_MULTI ? 3 : fc->op == F_SWIGLU ? 2 : 1;
}

/* Floats of the result: every output of linear_multi one after the other. */
static size_t
result_size (const FusedCase *fc)
{
  size_t n = 0;
  for (int j = 0; j < (fc->op == F_MULTI ? 3 : 1); j++)
    n += (size_t) fc->rows * outs_of (fc, j);
  return n;
}

/* Biases and LN gains stay in the file dtype; quantized matrices get F32 ones. */
static NsDType
vector_dtype (NsDType dtype)
{
  return dtype == NS_DTYPE_I8 || dtype == NS_DTYPE_F8_E4M3 || dtype == NS_DTYPE_Q4
           ? NS_DTYPE_F32 : dtype;
}

static gboolean
has_bias (const FusedCase *fc)
{
  return fc->op == F_NORM || fc->flag;
}

/* Width of the aux rows' thirds: the LayerNorm's dim (shift, scale) or the
 * gated output's (gate). */
static int
aux_width (const FusedCase *fc)
{
  return fc->op == F_NORM ? fc->cols : fc->outs;
}

/* ---- reference ------------------------------------------------------------ */

static double
silu (double v)
{
  return v / (1.0 + exp (-v));
}

/* u[r] = LN(x[r]) (· w + b) · (1 + scale) + shift, in double. */
static double *
norm_modulated (const FusedCase *fc)
{
  int d = fc->cols, stride = 3 * d;
  g_autofree double *w = ops_weight_values (fc->seed + 7, vector_dtype (fc->dtype), d, 1.0f);
  g_autofree double *bv = ops_weight_values (fc->seed + 8, vector_dtype (fc->dtype), d, 0.5f);
  double *u = g_new (double, (size_t) fc->rows * d);
  for (int r = 0; r < fc->rows; r++)
    {
      const float *xr = fc->x + (size_t) r * d, *sh = fc->aux + (size_t) r * stride;
      double mean = 0.0, var = 0.0;
      for (int i = 0; i < d; i++)
        mean += xr[i] / (double) d;
      for (int i = 0; i < d; i++)
        var += (xr[i] - mean) * (xr[i] - mean) / d;
      for (int i = 0; i < d; i++)
        {
          double v = (xr[i] - mean) / sqrt (var + LN_EPS);
          v = fc->flag ? v * w[i] + bv[i] : v;
          u[(size_t) r * d + i] = v * (1.0 + sh[d + i]) + sh[i];
        }
    }
  return u;
}

/* out[r, o] = bias[o] + Σ_i in[r, i] · W_j[o, i] for matrix j. */
static double *
product (const FusedCase *fc, int j, const double *in)
{
  int outs = outs_of (fc, j);
  g_autofree double *w = ops_matrix_values (fc->seed + 2 * j, fc->dtype, outs, fc->cols,
                                            1.0f / sqrtf (fc->cols));
  g_autofree double *bias = has_bias (fc) ? ops_weight_values (fc->seed + 2 * j + 1,
                                                               vector_dtype (fc->dtype), outs,
                                                               0.5f)
                                          : NULL;
  double *out = g_new (double, (size_t) fc->rows * outs);
  for (int r = 0; r < fc->rows; r++)
    for (int o = 0; o < outs; o++)
      {
        double s = bias ? bias[o] : 0.0;
        for (int i = 0; i < fc->cols; i++)
          s += in[(size_t) r * fc->cols + i] * w[(size_t) o * fc->cols + i];
        out[(size_t) r * outs + o] = s;
      }
  return out;
}

static double *
reference (const FusedCase *fc)
{
  size_t nx = (size_t) fc->rows * fc->cols, n = result_size (fc), at = 0;
  g_autofree double *u = fc->op == F_NORM ? norm_modulated (fc) : NULL;
  g_autofree float *uf = g_new (float, MAX (nx, 1));
  for (size_t i = 0; i < nx; i++)
    uf[i] = u ? (float) u[i] : fc->x[i];
  g_autofree double *in = u && ops_stored_dtype (fc->dtype, fc->cols) != NS_DTYPE_Q4
                            ? g_steal_pointer (&u)
                            : ops_multiplied_x (uf, fc->rows, fc->cols, fc->dtype);
  double *ref = g_new (double, n);
  for (int j = 0; j < (fc->op == F_MULTI ? 3 : 1); j++)
    {
      g_autofree double *p = product (fc, j, in);
      g_autofree double *up = fc->op == F_SWIGLU ? product (fc, 1, in) : NULL;
      for (size_t e = 0; e < (size_t) fc->rows * outs_of (fc, j); e++)
        {
          size_t r = e / fc->outs, o = e % fc->outs;
          double gate = fc->op == F_GATED ? fc->aux[r * 3 * fc->outs + 2 * fc->outs + o] : 0.0;
          ref[at + e] = fc->op == F_SWIGLU ? silu (p[e]) * up[e]
                      : fc->op == F_GATED ? fc->y0[e] + gate * p[e]
                      : fc->op == F_NORM && fc->flag ? silu (p[e]) : p[e];
        }
      at += (size_t) fc->rows * outs_of (fc, j);
    }
  return ref;
}

/* ---- running the op (or its sequence) -------------------------------------- */

typedef struct {
  OpsWeight *w[3], *bias[3], *ln_w, *ln_b;
  float *x, *aux, *y;
} FusedBufs;

static void
bufs_init (NsBackend *b, const FusedCase *fc, FusedBufs *fb)
{
  *fb = (FusedBufs) { 0 };
  for (int j = 0; j < n_mats (fc); j++)
    {
      fb->w[j] = ops_weight_new (b, fc->seed + 2 * j, fc->dtype, outs_of (fc, j), fc->cols,
                                 1.0f / sqrtf (fc->cols));
      if (has_bias (fc))
        fb->bias[j] = ops_weight_new (b, fc->seed + 2 * j + 1, vector_dtype (fc->dtype), 1,
                                      outs_of (fc, j), 0.5f);
    }
  if (fc->op == F_NORM && fc->flag)
    {
      fb->ln_w = ops_weight_new (b, fc->seed + 7, vector_dtype (fc->dtype), 1, fc->cols, 1.0f);
      fb->ln_b = ops_weight_new (b, fc->seed + 8, vector_dtype (fc->dtype), 1, fc->cols, 0.5f);
    }
  fb->x = ops_upload (b, fc->x, (size_t) fc->rows * fc->cols);
  fb->aux = fc->aux ? ops_upload (b, fc->aux, (size_t) fc->rows * 3 * aux_width (fc)) : NULL;
  fb->y = fc->y0 ? ops_upload (b, fc->y0, result_size (fc)) : ops_poisoned (b, result_size (fc));
}

static void
bufs_clear (NsBackend *b, FusedBufs *fb)
{
  for (int j = 0; j < 3; j++)
    {
      ops_weight_free (fb->w[j]);
      ops_weight_free (fb->bias[j]);
    }
  ops_weight_free (fb->ln_w);
  ops_weight_free (fb->ln_b);
  ns_backend_free_any (b, fb->x);
  ns_backend_free_any (b, fb->aux);
  ns_backend_free_any (b, fb->y);
}

/* The sequence each fused op replaces (engine/model before the fusion). */
static void
run_unfused (NsBackend *b, const FusedCase *fc, FusedBufs *fb, const NsNormModulate *nm)
{
  const NsBackendOps *ops = b->ops;
  int rows = fc->rows, outs = fc->outs;
  size_t at = 0, n = (size_t) rows * outs;
  float *tmp = ops_poisoned (b, MAX (n, (size_t) rows * fc->cols));
  switch (fc->op)
    {
    case F_MULTI:
      for (int j = 0; j < 3; j++)
        {
          ops->linear (b, fb->y + at, fb->x, &fb->w[j]->mat, ops_mat (fb->bias[j]), rows, FALSE);
          at += (size_t) rows * outs_of (fc, j);
        }
      break;
    case F_SWIGLU:
      ops->linear (b, fb->y, fb->x, &fb->w[0]->mat, ops_mat (fb->bias[0]), rows, FALSE);
      ops->linear (b, tmp, fb->x, &fb->w[1]->mat, ops_mat (fb->bias[1]), rows, FALSE);
      ops->silu_mul (b, fb->y, fb->y, tmp, n);
      break;
    case F_NORM:
      ops->layernorm (b, tmp, fb->x, nm->weight, nm->bias, rows, fc->cols, nm->eps);
      ops->modulate (b, tmp, tmp, nm->shift, nm->scale, rows, fc->cols, nm->mod_stride);
      ops->linear (b, fb->y, tmp, &fb->w[0]->mat, ops_mat (fb->bias[0]), rows, FALSE);
      if (fc->flag)
        ops->silu (b, fb->y, fb->y, n);
      break;
    default:
      ops->linear (b, tmp, fb->x, &fb->w[0]->mat, ops_mat (fb->bias[0]), rows, FALSE);
      ops->gated_add (b, fb->y, fb->aux + 2 * outs, tmp, rows, outs, 3 * outs);
      break;
    }
  b->ops->free (b, tmp);
}

static void
run_fused_op (NsBackend *b, const FusedCase *fc, FusedBufs *fb, const NsNormModulate *nm)
{
  const NsBackendOps *ops = b->ops;
  int rows = fc->rows, outs = fc->outs;
  size_t n0 = (size_t) rows * outs, n1 = (size_t) rows * outs_of (fc, 1);
  switch (fc->op)
    {
    case F_MULTI:
      {
        const NsLinearOut o[] = {
          { fb->y, &fb->w[0]->mat, ops_mat (fb->bias[0]) },
          { fb->y + n0, &fb->w[1]->mat, ops_mat (fb->bias[1]) },
          { fb->y + n0 + n1, &fb->w[2]->mat, ops_mat (fb->bias[2]) },
        };
        ops->linear_multi (b, o, 3, fb->x, rows);
        break;
      }
    case F_SWIGLU:
      ops->linear_swiglu (b, fb->y, fb->x, &fb->w[0]->mat, ops_mat (fb->bias[0]), &fb->w[1]->mat,
                          ops_mat (fb->bias[1]), rows);
      break;
    case F_NORM:
      ops->norm_modulate_linear (b, fb->y, fb->x, nm, &fb->w[0]->mat, ops_mat (fb->bias[0]),
                                 rows, fc->flag);
      break;
    default:
      ops->linear_gated_add (b, fb->y, fb->aux + 2 * outs, fb->x, &fb->w[0]->mat,
                             ops_mat (fb->bias[0]), rows, 3 * outs);
      break;
    }
}

static float *
run_fused (NsBackend *b, gconstpointer data)
{
  const FusedCase *fc = data;
  FusedBufs fb;
  bufs_init (b, fc, &fb);
  NsNormModulate nm = { ops_mat (fb.ln_w), ops_mat (fb.ln_b), LN_EPS, fb.aux,
                        fb.aux ? fb.aux + fc->cols : NULL, 3 * fc->cols };
  if (fc->unfused)
    run_unfused (b, fc, &fb, &nm);
  else
    run_fused_op (b, fc, &fb, &nm);
  float *result = ops_download (b, fb.y, result_size (fc));
  bufs_clear (b, &fb);
  return result;
}

/* ---- cases ------------------------------------------------------------------ */

typedef struct {
  FusedCase fc;
  float *x, *aux, *y0;
} CaseData;

static void
case_init (CaseData *cd, GRand *rng, FusedOp op, NsDType dtype, int rows, int cols, int outs,
           gboolean flag)
{
  cd->fc = (FusedCase) { op, dtype, rows, cols, outs, flag, FALSE, g_rand_int (rng), NULL, NULL,
                        NULL };
  cd->x = ops_random (rng, (size_t) rows * cols, 1.0f);
  cd->aux = op == F_NORM || op == F_GATED
              ? ops_random (rng, (size_t) rows * 3 * aux_width (&cd->fc), 1.0f) : NULL;
  cd->y0 = op == F_GATED ? ops_random (rng, (size_t) rows * outs, 1.0f) : NULL;
  cd->fc.x = cd->x;
  cd->fc.aux = cd->aux;
  cd->fc.y0 = cd->y0;
}

static void
case_clear (CaseData *cd)
{
  g_free (cd->x);
  g_free (cd->aux);
  g_free (cd->y0);
}

static void
check_case (GRand *rng, FusedOp op, NsDType dtype, int rows, int cols, int outs, gboolean flag)
{
  CaseData cd;
  case_init (&cd, rng, op, dtype, rows, cols, outs, flag);
  g_autofree double *ref = reference (&cd.fc);
  g_autofree char *what = g_strdup_printf ("%s %s rows %d, %d → %d%s", op_names[op],
                                           ns_dtype_name (dtype), rows, cols, outs,
                                           flag ? " (bias / silu, affine)" : "");
  gboolean rounded_norm = op == F_NORM && ops_stored_dtype (dtype, cols) == NS_DTYPE_Q4;
  ops_check (what, run_fused, &cd.fc, ref, result_size (&cd.fc),
             rounded_norm ? FUSED_Q4_NORM_TOL : FUSED_TOL);
  case_clear (&cd);
}

/* k a multiple of 16 (the fused GEMV; 2048 over few outputs splits K),
 * 96 (q4 keeps int8), odd (the fallback), each at 1–8 rows. */
static const int decode_shapes[][2] = { { 64, 24 }, { 2048, 20 }, { 96, 9 }, { 37, 5 } };

static void
test_decode (gconstpointer data)
{
  FusedOp op = GPOINTER_TO_INT (data);
  g_autoptr (GRand) rng = g_rand_new_with_seed (40 + op);
  for (int d = 0; d < (int) G_N_ELEMENTS (ops_all_weight_dtypes); d++)
    for (int s = 0; s < (int) G_N_ELEMENTS (decode_shapes); s++)
      for (int rows = 1; rows <= 8; rows++)
        check_case (rng, op, ops_all_weight_dtypes[d], rows, decode_shapes[s][0],
                    decode_shapes[s][1], rows % 2 == 1);
}

/* More than 8 rows: the grouped GEMV and the GEMM of the linear op. */
static void
test_prefill (gconstpointer data)
{
  FusedOp op = GPOINTER_TO_INT (data);
  g_autoptr (GRand) rng = g_rand_new_with_seed (50 + op);
  for (int d = 0; d < (int) G_N_ELEMENTS (ops_all_weight_dtypes); d++)
    {
      check_case (rng, op, ops_all_weight_dtypes[d], 13, 128, 40, TRUE);
      check_case (rng, op, ops_all_weight_dtypes[d], 40, 192, 33, FALSE);
    }
}

/* On the CPU the fused op is the sequence it replaces, to the bit. */
static void
test_cpu_bit_identical (void)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (60);
  NsBackend *cpu = ns_backend_cpu_new (OPS_THREADS_MANY);
  const int rows[] = { 1, 3, 8, 21 };
  for (int op = 0; op < N_FUSED; op++)
    for (int d = 0; d < (int) G_N_ELEMENTS (ops_all_weight_dtypes); d++)
      for (int r = 0; r < (int) G_N_ELEMENTS (rows); r++)
        {
          CaseData cd;
          case_init (&cd, rng, op, ops_all_weight_dtypes[d], rows[r], 256, 72, r % 2 == 0);
          g_autofree float *fused = run_fused (cpu, &cd.fc);
          cd.fc.unfused = TRUE;
          g_autofree float *seq = run_fused (cpu, &cd.fc);
          if (memcmp (fused, seq, result_size (&cd.fc) * sizeof (float)) != 0)
            g_test_fail_printf ("%s %s rows %d: not the unfused sequence's bits", op_names[op],
                                ns_dtype_name (ops_all_weight_dtypes[d]), rows[r]);
          case_clear (&cd);
        }
  ns_backend_destroy (cpu);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (int op = 0; op < N_FUSED; op++)
    {
      g_autofree char *decode = g_strdup_printf ("/ops/linear-fused/%s/decode", op_names[op]);
      g_autofree char *prefill = g_strdup_printf ("/ops/linear-fused/%s/prefill", op_names[op]);
      g_test_add_data_func (decode, GINT_TO_POINTER (op), test_decode);
      g_test_add_data_func (prefill, GINT_TO_POINTER (op), test_prefill);
    }
  g_test_add_func ("/ops/linear-fused/cpu-bit-identical", test_cpu_bit_identical);
  return g_test_run ();
}
