/* blas.c — the one place the CPU backend calls the BLAS (OpenBLAS from the
 * distribution). Products bound by arithmetic go here: prefill linears, the
 * VAE's convolutions (im2col) and spatial attention; the memory-bound decode
 * GEMV stays in linear.c. */
#include <cblas.h>
#include "cpu-backend.h"

#define SPLIT_ALIGN 16   /* columns of C per thread: a multiple of the BLAS's tiles */

/* OpenBLAS picks its kernels by CPU model when it loads. A release older
 * than the CPU (Debian 12's 0.3.21 on Sapphire/Emerald Rapids) falls back
 * to its Prescott (SSE3) kernels, measured 1.7–3× slower there than with
 * OPENBLAS_CORETYPE=SkylakeX. It cannot be changed once loaded: say so
 * once, with the fix. */
static void
check_core (void)
{
  static gsize checked = 0;
  if (!g_once_init_enter (&checked))
    return;
  const char *core = openblas_get_corename ();
  if (core != NULL && g_ascii_strcasecmp (core, "prescott") == 0
      && __builtin_cpu_supports ("avx2"))
    /* a message, not a warning: slower is not wrong (and tests make
     * warnings fatal) */
    g_message ("OpenBLAS does not know this CPU and uses its slowest kernels (core %s): set "
               "OPENBLAS_CORETYPE=%s for a 2–3× faster prefill and VAE, or install a newer "
               "OpenBLAS", core, __builtin_cpu_supports ("avx512f") ? "SkylakeX" : "Haswell");
  g_once_init_leave (&checked, 1);
}

void
ns_cpu_blas_serial (void)
{
  check_core ();
  openblas_set_num_threads (1);
}

void
ns_cpu_sgemm_serial (int m, int n, int k, const float *a, const float *bt, float *c, int ldc)
{
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, bt, k, 1.0f, c, ldc);
}

void
ns_cpu_sgemm (NsBackend *b, gboolean trans_a, gboolean trans_b, int m, int n, int k,
              float alpha, const float *a, int lda, const float *bm, int ldb, float beta,
              float *c, int ldc)
{
  /* The backend's OpenMP threads split the columns of C and each calls a
   * single-threaded BLAS. The BLAS's own thread pool would compete with the
   * OpenMP team for the cores (both spin while they wait), which on a busy
   * or small machine costs more than it gains. */
  ns_cpu_blas_serial ();
  int threads = MAX (1, MIN (ns_cpu_threads (b), n / SPLIT_ALIGN));
  int per = (n + threads - 1) / threads;
  per = (per + SPLIT_ALIGN - 1) / SPLIT_ALIGN * SPLIT_ALIGN;
#pragma omp parallel for num_threads (threads) schedule (static)
  for (int j0 = 0; j0 < n; j0 += per)
    {
      const float *bj = trans_b ? bm + (size_t) j0 * ldb : bm + j0;
      cblas_sgemm (CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                   trans_b ? CblasTrans : CblasNoTrans, m, MIN (per, n - j0), k, alpha, a, lda,
                   bj, ldb, beta, c + j0, ldc);
    }
}
