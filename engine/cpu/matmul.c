/* matmul.c — the blocked f32 matrix product behind prefill-size linear and
 * conv2d. C is computed in MR × NR tiles held in registers; B is packed per
 * (column block, k block) so it is converted/gathered once and then read from
 * cache by every row tile. A is packed per row tile too: its rows can be a
 * multiple of 4 KiB apart (x rows of 5120 floats), which would make them
 * evict each other from L1. */
#include "cpu-backend.h"

#define MR 6                  /* rows of a register tile: 6 × 16 floats = 12 vectors */
#define KB NS_CPU_KB           /* k block: a packed panel is KB × NR floats = 16 KiB */
#define NB (8 * NS_CPU_NR)    /* columns one thread owns at a time: 128 KiB of B */

/* packed[k · MR + m] = a[m, k] for k < kb; rows past mr repeat row 0 (their
 * results are computed and dropped, cheaper than a branch). */
static void
pack_rows (float *packed, const float *a, size_t lda, int mr, int kb)
{
  for (int m = 0; m < MR; m++)
    {
      const float *row = a + (m < mr ? (size_t) m * lda : 0);
      for (int k = 0; k < kb; k++)
        packed[k * MR + m] = row[k];
    }
}

/* c[0..mr, 0..nr] += a[0..mr, 0..kb] · panel[0..kb, 0..NR], a packed by pack_rows. */
NS_CPU_HOT static void
tile (const float *a, int mr, const float *panel, int kb, float *c, size_t ldc, int nr)
{
  NsF32x8 acc[MR][2] = { { { 0 } } };
  for (int k = 0; k < kb; k++)
    {
      NsF32x8 b0 = NS_F32X8_LOAD (panel + k * NS_CPU_NR);
      NsF32x8 b1 = NS_F32X8_LOAD (panel + k * NS_CPU_NR + 8);
      for (int m = 0; m < MR; m++)
        {
          float s = a[k * MR + m];
          acc[m][0] += s * b0;
          acc[m][1] += s * b1;
        }
    }

  for (int m = 0; m < mr; m++)
    {
      float *cm = c + (size_t) m * ldc;
      if (nr == NS_CPU_NR)
        {
          NS_F32X8_STORE (cm, NS_F32X8_LOAD (cm) + acc[m][0]);
          NS_F32X8_STORE (cm + 8, NS_F32X8_LOAD (cm + 8) + acc[m][1]);
          continue;
        }
      for (int j = 0; j < nr; j++)
        cm[j] += acc[m][j / 8][j % 8];
    }
}

/* One column block [n0, n0 + nb) of C, all k, all rows. */
static void
column_block (float *c, size_t ldc, const float *a, size_t lda, int m, int n0, int nb, int k,
              NsCpuPackFunc pack, const void *ctx, float *panels, float *rows)
{
  int n_panels = (nb + NS_CPU_NR - 1) / NS_CPU_NR;
  for (int k0 = 0; k0 < k; k0 += KB)
    {
      int kb = MIN (KB, k - k0);
      for (int p = 0; p < n_panels; p++)
        pack (ctx, panels + (size_t) p * KB * NS_CPU_NR, n0 + p * NS_CPU_NR,
              MIN (NS_CPU_NR, nb - p * NS_CPU_NR), k0, kb);
      for (int m0 = 0; m0 < m; m0 += MR)
        {
          int mr = MIN (MR, m - m0);
          pack_rows (rows, a + (size_t) m0 * lda + k0, lda, mr, kb);
          for (int p = 0; p < n_panels; p++)
            tile (rows, mr, panels + (size_t) p * KB * NS_CPU_NR, kb,
                  c + (size_t) m0 * ldc + n0 + p * NS_CPU_NR, ldc,
                  MIN (NS_CPU_NR, nb - p * NS_CPU_NR));
        }
    }
}

void
ns_cpu_matmul (NsBackend *b, float *c, size_t ldc, const float *a, size_t lda,
               int m, int n, int k, NsCpuPackFunc pack, const void *ctx)
{
  int n_blocks = (n + NB - 1) / NB;
#pragma omp parallel num_threads (ns_cpu_threads (b))
  {
    float *panels = g_new (float, (size_t) KB * NB);
    float *rows = g_new (float, (size_t) KB * MR);
#pragma omp for schedule (dynamic, 1)
    for (int blk = 0; blk < n_blocks; blk++)
      column_block (c, ldc, a, lda, m, blk * NB, MIN (NB, n - blk * NB), k, pack, ctx, panels,
                    rows);
    g_free (panels);
    g_free (rows);
  }
}
