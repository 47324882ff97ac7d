/* ops-util.h — helpers for the backend op tests: random inputs, weights in
 * every storage dtype, NaN-poisoned outputs, and comparison with the naive
 * double-precision references the tests write themselves. Each case is
 * written once and runs on every backend present (ggml's test-backend-ops
 * pattern): the CPU at two thread counts always, CUDA when a device is
 * usable. */
#pragma once

#include <math.h>
#include <string.h>
#include "backend.h"
#include "test-util.h"

G_BEGIN_DECLS

/* Each op runs on one thread and on OPS_THREADS_MANY threads (more than this
 * machine has cores, so the work splits unevenly); both must match the
 * reference and each other. */
#define OPS_THREADS_MANY 3
extern const int ops_thread_counts[2];

extern const NsDType ops_weight_dtypes[3];
/* The stored dtypes and the weight-only quantized ones (linear): I8,
 * F8_E4M3 and Q4 (which stores rows that are not whole q4 blocks as I8,
 * the rule of cpu/quant.h). */
extern const NsDType ops_all_weight_dtypes[6];
/* The dtype a weight of `dtype` with `cols` columns is uploaded in. */
NsDType ops_stored_dtype (NsDType dtype, int cols);

/* The CUDA backend for this process (made once), or NULL without a device. */
NsBackend *ops_cuda (void);

/* Uniform in [-scale, scale] (g_free). */
float *ops_random (GRand *rng, size_t n, float scale);

/* A rows × cols weight stored in `dtype`, uniform in [-scale, scale] from
 * `seed` (the same seed gives the same weight on every backend), uploaded
 * to b. `exact` holds the stored values (rounded to the dtype). */
typedef struct {
  NsMat mat;
  double *exact;
  void *bytes;
  NsBackend *b;
} OpsWeight;

OpsWeight *ops_weight_new (NsBackend *b, guint32 seed, NsDType dtype, int rows, int cols,
                           float scale);
void       ops_weight_free (OpsWeight *w);
/* The `exact` values such a weight has, without a backend (g_free). */
double    *ops_weight_values (guint32 seed, NsDType dtype, size_t n, float scale);
/* Same for a rows × cols matrix, I8/F8_E4M3/Q4 included (quantized per row
 * or group from F32 values by the cpu/quant.h rule both backends follow,
 * dequantised in double). */
double    *ops_matrix_values (guint32 seed, NsDType dtype, int rows, int cols, float scale);
/* An uploaded weight's NsMat, or NULL for NULL (optional weights). */
const NsMat *ops_mat (const OpsWeight *w);

/* Backend buffers: a copy of host data, or n NaNs so an op that leaves any
 * element unwritten fails the comparison. */
float *ops_upload (NsBackend *b, const float *host, size_t n);
float *ops_poisoned (NsBackend *b, size_t n);
/* Reads n floats back into a new host array (g_free). */
float *ops_download (NsBackend *b, const float *dev, size_t n);
/* int32 counters and float64 arrays in backend memory. */
int32_t *ops_upload_i32 (NsBackend *b, const int32_t *host, size_t n);
double  *ops_upload_f64 (NsBackend *b, const double *host, size_t n);
double  *ops_download_f64 (NsBackend *b, const double *dev, size_t n);

/* Runs `run` on a fresh CPU backend for each of ops_thread_counts, then on
 * the CUDA backend when there is one; each result (n floats, freed here)
 * must match ref within tol, and the CPU results of the two thread counts
 * must match each other. */
typedef float *(*OpsRunFunc) (NsBackend *b, gconstpointer data);
void ops_check (const char *what, OpsRunFunc run, gconstpointer data, const double *ref,
                size_t n, double tol);

/* max|ours − ref| / max|ref| ≤ tol (NaN never passes). */
void ops_assert_close (const char *what, const float *ours, const double *ref, size_t n,
                       double tol);
/* Same, against another float result (threads=1 vs threads=N). */
void ops_assert_same (const char *what, const float *ours, const float *other, size_t n,
                      double tol);

/* The x that a linear with weights of `dtype` multiplies, in double: x
 * itself, or for q4 x rounded per group (q4-layout.h, "activations"), from
 * the same f32 operations as the backends (g_free). */
double *ops_multiplied_x (const float *x, int rows, int cols, NsDType dtype);

/* Float host data as double, for references (g_free). */
double *ops_to_double (const float *x, size_t n);

G_END_DECLS
