/* memory.c — host memory ops, weights that point into the file mapping, and
 * quantized weights the backend owns. */
#include <stdlib.h>
#include "cpu-backend.h"
#include "cpu/quant.h"
#include "nextstep.h"

/* Cache-line aligned so vector loads never split lines at row starts. */
#define NS_CPU_ALIGN 64

float *
ns_cpu_alloc (NsBackend *b, size_t n_floats, GError **error)
{
  (void) b;
  size_t n = MAX (n_floats, 1);
  void *p = NULL;
  if (n > G_MAXSIZE / sizeof (float) || posix_memalign (&p, NS_CPU_ALIGN, n * sizeof (float)) != 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY,
                   "CPU backend: cannot allocate %" G_GSIZE_FORMAT " floats (%.1f MiB) of host "
                   "memory; close other programs or generate a smaller image",
                   n_floats, (double) n_floats * sizeof (float) / (1024.0 * 1024.0));
      return NULL;
    }
  memset (p, 0, n * sizeof (float));
  return p;
}

void
ns_cpu_free (NsBackend *b, float *p)
{
  (void) b;
  free (p);
}

/* write, read and copy: all host memory here, so one function serves all three. */
void
ns_cpu_write (NsBackend *b, float *dst, const float *src, size_t n)
{
  (void) b;
  memmove (dst, src, n * sizeof (float));
}

/* Weight memory the backend owns, 64-byte aligned (freed with free). */
static void *
aligned_bytes (size_t n)
{
  void *p = NULL;
  if (posix_memalign (&p, NS_CPU_ALIGN, MAX (n, 1)) != 0)
    g_error ("out of memory allocating %" G_GSIZE_FORMAT " bytes of weights", n);
  return p;
}

/* [d0, rest…] → d0 × prod(rest); a 1-D tensor is one row, a scalar 1 × 1. */
static gboolean
matrix_shape (const NsTensorView *t, int *rows, int *cols, GError **error)
{
  int64_t r = t->n_dims >= 2 ? t->shape[0] : 1;
  int64_t c = 1;
  for (int d = t->n_dims >= 2 ? 1 : 0; d < t->n_dims; d++)
    c *= t->shape[d];
  if (r < 1 || c < 1 || r > G_MAXINT || c > G_MAXINT)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "tensor %s in %s: shape gives a %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT
                   " matrix, which the CPU backend cannot hold (empty or too large)",
                   t->name, t->file ? t->file : "(memory)", r, c);
      return FALSE;
    }
  *rows = (int) r;
  *cols = (int) c;
  return TRUE;
}

gboolean
ns_cpu_upload (NsBackend *b, const NsTensorView *t, NsMat *out, GError **error)
{
  if (t->dtype != NS_DTYPE_F32 && t->dtype != NS_DTYPE_BF16 && t->dtype != NS_DTYPE_F16)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "tensor %s in %s has dtype %s; the CPU backend computes from F32, BF16 or "
                   "F16 weights only (convert the checkpoint to one of those)",
                   t->name, t->file ? t->file : "(memory)", ns_dtype_name (t->dtype));
      return FALSE;
    }
  int rows, cols;
  if (!matrix_shape (t, &rows, &cols, error))
    return FALSE;
  if ((size_t) rows * (size_t) cols * ns_dtype_size (t->dtype) != t->n_bytes)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "tensor %s in %s: %" G_GSIZE_FORMAT " bytes of data do not match its "
                   "%d × %d %s shape; the file is damaged",
                   t->name, t->file ? t->file : "(memory)", t->n_bytes, rows, cols,
                   ns_dtype_name (t->dtype));
      return FALSE;
    }
  *out = (NsMat) { .dtype = t->dtype, .rows = rows, .cols = cols, .data = t->data };
  NsDType q_dtype = ns_backend_upload_dtype (b, t);
  if (q_dtype == NS_DTYPE_Q4)
    {
      GHashTable *owned = ((NsCpuBackend *) b)->owned;
      uint8_t *q = aligned_bytes ((size_t) rows * ns_q4_row_bytes (cols));
      uint16_t *scale = g_new (uint16_t, (size_t) rows * ns_q4_row_groups (cols));
      ns_quantize_q4_rows (t->data, t->dtype, rows, cols, q, scale);
      g_hash_table_add (owned, q);
      g_hash_table_add (owned, scale);
      *out = (NsMat) { .dtype = q_dtype, .rows = rows, .cols = cols, .data = q,
                       .group_scale = scale };
    }
  else if (q_dtype != t->dtype)
    {
      GHashTable *owned = ((NsCpuBackend *) b)->owned;
      void *q = g_malloc ((size_t) rows * cols);
      float *scale = g_new (float, rows);
      ns_quantize_rows (t->data, t->dtype, rows, cols, q_dtype, q, scale);
      g_hash_table_add (owned, q);
      g_hash_table_add (owned, scale);
      *out = (NsMat) { .dtype = q_dtype, .rows = rows, .cols = cols, .data = q, .scale = scale };
    }
  return TRUE;
}

/* A q4 matrix from a cache: U8 [rows, cols / 2] codes (viewed in the
 * mapping) and F16 [rows, cols / NS_Q4_GROUP] scales (copied, small). */
static gboolean
upload_q4 (NsBackend *b, const NsTensorView *q, const NsTensorView *scale, NsMat *out,
           GError **error)
{
  int rows, half;
  if (!matrix_shape (q, &rows, &half, error))
    return FALSE;
  int64_t cols = 2 * (int64_t) half;
  if (q->n_dims != 2 || q->n_bytes != (size_t) rows * half || cols > G_MAXINT
      || !ns_q4_cols_ok (cols) || scale->dtype != NS_DTYPE_F16 || scale->n_dims != 2
      || scale->shape[0] != rows || scale->shape[1] != cols / NS_Q4_GROUP
      || scale->n_bytes != (size_t) rows * ns_q4_row_groups (cols) * 2)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "4-bit weight %s in %s: expected U8 codes [rows, cols/2] with F16 scales "
                   "[rows, cols/%d] in %s (%s); delete the converted file and run nextstep "
                   "convert again", q->name, q->file ? q->file : "(memory)", NS_Q4_GROUP,
                   scale->name, ns_dtype_name (scale->dtype));
      return FALSE;
    }
  GHashTable *owned = ((NsCpuBackend *) b)->owned;
  uint16_t *s = g_memdup2 (scale->data, scale->n_bytes);
  g_hash_table_add (owned, s);
  /* The codes stay in the mapping, aligned or not (safetensors aligns only
   * to 8): every GEMV load of them is an unaligned one (linear.c, gemv-
   * avx512.c). A 32-byte-aligned copy of each misaligned matrix held all
   * 7 GB of a full-size model's codes twice, in the page cache and in the
   * heap: 15 GB peak RSS for a q4 generate (docs/benchmarks.md). */
  *out = (NsMat) { .dtype = NS_DTYPE_Q4, .rows = rows, .cols = (int) cols, .data = q->data,
                   .group_scale = s };
  return TRUE;
}

gboolean
ns_cpu_upload_quantized (NsBackend *b, const NsTensorView *q, const NsTensorView *scale,
                         NsMat *out, GError **error)
{
  if (q->dtype == NS_DTYPE_U8)
    return upload_q4 (b, q, scale, out, error);
  int rows, cols;
  if (!matrix_shape (q, &rows, &cols, error))
    return FALSE;
  if ((q->dtype != NS_DTYPE_I8 && q->dtype != NS_DTYPE_F8_E4M3)
      || q->n_bytes != (size_t) rows * cols || scale->dtype != NS_DTYPE_F32
      || ns_tensor_n_elements (scale) != rows || scale->n_bytes != rows * sizeof (float))
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "quantized weight %s in %s: expected I8 or F8_E4M3 data with one F32 scale "
                   "per row (%s is %s); delete the converted file and run nextstep convert again",
                   q->name, q->file ? q->file : "(memory)", scale->name,
                   ns_dtype_name (scale->dtype));
      return FALSE;
    }
  /* The file's F32 data need not be 4-byte aligned: copy the scales. */
  float *s = g_memdup2 (scale->data, scale->n_bytes);
  g_hash_table_add (((NsCpuBackend *) b)->owned, s);
  *out = (NsMat) { .dtype = q->dtype, .rows = rows, .cols = cols, .data = q->data, .scale = s };
  return TRUE;
}

/* Weights from the mapping stay; quantized copies are freed. */
void
ns_cpu_release (NsBackend *b, NsMat *m)
{
  GHashTable *owned = ((NsCpuBackend *) b)->owned;
  g_hash_table_remove (owned, m->data);
  g_hash_table_remove (owned, m->scale);
  g_hash_table_remove (owned, m->group_scale);
  *m = (NsMat) { 0 };
}

gboolean
ns_cpu_sync (NsBackend *b, GError **error)
{
  (void) b;
  (void) error;
  return TRUE;
}

/* The CPU ops keep no workspace between calls. */
gboolean
ns_cpu_reserve (NsBackend *b, int max_rows, GError **error)
{
  (void) b;
  (void) max_rows;
  (void) error;
  return TRUE;
}

float *
ns_cpu_workspace (NsBackend *b, size_t n)
{
  NsCpuBackend *cpu = (NsCpuBackend *) b;
  if (n > cpu->workspace_floats)
    {
      cpu->workspace_floats = MAX (n, cpu->workspace_floats + cpu->workspace_floats / 2);
      g_free (cpu->workspace);
      cpu->workspace = g_new (float, cpu->workspace_floats);
    }
  return cpu->workspace;
}

/* Host memory: the copy is done when the call returns. */
void
ns_cpu_read_async (NsBackend *b, float *dst, const float *src, size_t n)
{
  ns_cpu_write (b, dst, src, n);
}
