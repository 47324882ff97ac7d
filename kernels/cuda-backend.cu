/* cuda-backend.cu — the CUDA implementation of the backend ops table:
 * device selection, memory (with a cap so callers can plan and tests can
 * simulate small cards), weight upload (bf16/f16/f32 as stored, or
 * weight-only int8 / fp8 e4m3 with per-row scales), the one workspace,
 * asynchronous reads through pinned memory, graphs (stream capture), and
 * the table itself. The ops live one family per file beside this one. */
#include <string.h>

#include "cuda-common.cuh"

/* cuBLAS asks for 32 MiB on Hopper; a fixed one keeps its calls capturable. */
#define CUBLAS_WORKSPACE_BYTES (32u << 20)
/* Host staging for read_async before the first growth (one token's read). */
#define STAGING_FLOATS (1u << 18)

struct NsGraph {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
};

static gboolean
set_cuda_error (GError **error, cudaError_t err, const char *what)
{
  g_set_error (error, NS_ERROR, err == cudaErrorMemoryAllocation ? NS_ERROR_OUT_OF_MEMORY
                                                                 : NS_ERROR_BACKEND,
               "CUDA %s failed: %s (%s); check the driver with nvidia-smi, or use --backend cpu",
               what, cudaGetErrorString (err), cudaGetErrorName (err));
  return FALSE;
}

/* The first recorded failure as a GError (FALSE), or TRUE when none. */
static gboolean
report_first_error (NsCudaBackend *cb, GError **error)
{
  if (cb->first_error == cudaSuccess)
    return TRUE;
  g_set_error (error, NS_ERROR, cb->first_error == cudaErrorMemoryAllocation
                                  ? NS_ERROR_OUT_OF_MEMORY : NS_ERROR_BACKEND,
               "CUDA op %s failed: %s; the backend is unusable now: free memory (a smaller "
               "image, --weights int8) or use --backend cpu",
               cb->first_error_op, cudaGetErrorString (cb->first_error));
  return FALSE;
}

static gboolean
within_cap (NsCudaBackend *cb, size_t bytes, GError **error)
{
  if (cb->allocated + bytes > cb->memory_cap)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_OUT_OF_MEMORY,
                   "needs %.2f GB more GPU memory, %.2f GB free: try --weights int8, a smaller "
                   "image, or --backend cpu",
                   bytes / 1e9, (cb->memory_cap - cb->allocated) / 1e9);
      return FALSE;
    }
  return TRUE;
}

/* Stream-ordered allocation counted against the cap; on failure nothing
 * changes (no pointer, no accounting). */
static void *
device_alloc (NsCudaBackend *cb, size_t bytes, GError **error)
{
  void *p = NULL;
  if (!within_cap (cb, bytes, error))
    return NULL;
  cudaError_t err = cudaMallocAsync (&p, MAX (bytes, 1), cb->stream);
  if (err != cudaSuccess)
    {
      cudaGetLastError ();   /* an allocation failure is not sticky: clear it */
      set_cuda_error (error, err, "allocation");
      return NULL;
    }
  cb->allocated += bytes;
  cb->peak = MAX (cb->peak, cb->allocated);
  g_hash_table_insert (cb->sizes, p, GSIZE_TO_POINTER (bytes));
  return p;
}

/* NULL is a no-op here: cudaFreeAsync (NULL) is an error that sticks
 * (issue 16). */
static void
device_free (NsCudaBackend *cb, const void *p)
{
  if (p == NULL)
    return;
  gpointer bytes;
  if (g_hash_table_steal_extended (cb->sizes, p, NULL, &bytes))
    cb->allocated -= GPOINTER_TO_SIZE (bytes);
  ns_cuda_record (&cb->base, cudaFreeAsync ((void *) p, cb->stream), "free");
}

static float *
cuda_alloc (NsBackend *b, size_t n_floats, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
  g_return_val_if_fail (!cb->capturing, NULL);
  float *p = (float *) device_alloc (cb, n_floats * sizeof (float), error);
  if (p != NULL)
    ns_cuda_record (b, cudaMemsetAsync (p, 0, n_floats * sizeof (float), cb->stream), "alloc");
  return p;
}

static void
cuda_free (NsBackend *b, float *p)
{
  device_free (ns_cuda (b), p);
}

static void
cuda_write (NsBackend *b, float *dst, const float *src, size_t n)
{
  NsCudaBackend *cb = ns_cuda (b);
  g_return_if_fail (!cb->capturing);
  ns_cuda_record (b, cudaMemcpyAsync (dst, src, n * sizeof (float), cudaMemcpyHostToDevice,
                                      cb->stream), "write");
  /* The caller may reuse `src` at once. */
  ns_cuda_record (b, cudaStreamSynchronize (cb->stream), "write");
}

static void
cuda_read (NsBackend *b, float *dst, const float *src, size_t n)
{
  NsCudaBackend *cb = ns_cuda (b);
  g_return_if_fail (!cb->capturing);
  ns_cuda_record (b, cudaMemcpyAsync (dst, src, n * sizeof (float), cudaMemcpyDeviceToHost,
                                      cb->stream), "read");
  ns_cuda_record (b, cudaStreamSynchronize (cb->stream), "read");
}

static void
cuda_copy (NsBackend *b, float *dst, const float *src, size_t n)
{
  NsCudaBackend *cb = ns_cuda (b);
  ns_cuda_record (b, cudaMemcpyAsync (dst, src, n * sizeof (float), cudaMemcpyDeviceToDevice,
                                      cb->stream), "copy");
}

static gboolean
cuda_sync (NsBackend *b, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (cb->capturing)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_BACKEND,
                   "CUDA sync inside a graph capture: end the graph first (graph_end)");
      return FALSE;
    }
  ns_cuda_record (b, cudaStreamSynchronize (cb->stream), "sync");
  return report_first_error (cb, error);
}

/* ---- weights ------------------------------------------------------------ */

static void
note_matrix (NsCudaBackend *cb, const NsMat *m)
{
  cb->max_out = MAX (cb->max_out, m->rows);
  cb->max_in = MAX (cb->max_in, m->cols);
  if (m->dtype == NS_DTYPE_Q4)
    {
      cb->max_q4_out = MAX (cb->max_q4_out, m->rows);
      cb->max_q4_in = MAX (cb->max_q4_in, m->cols);
    }
}

/* Copies host bytes into new device memory (NULL with an error). */
static void *
upload_bytes (NsCudaBackend *cb, const void *src, size_t bytes, GError **error)
{
  void *data = device_alloc (cb, bytes, error);
  if (data == NULL)
    return NULL;
  cudaError_t err = cudaMemcpyAsync (data, src, bytes, cudaMemcpyHostToDevice, cb->stream);
  if (err != cudaSuccess)
    {
      device_free (cb, data);
      set_cuda_error (error, err, "weight upload");
      return NULL;
    }
  return data;
}

/* q4: codes and f16 group scales made on the device from the staged tensor. */
static gboolean
quantize_upload_q4 (NsCudaBackend *cb, void *staging, NsDType src_dtype, NsMat *out,
                    GError **error)
{
  size_t rows = (size_t) out->rows, cols = (size_t) out->cols;
  uint8_t *q = (uint8_t *) device_alloc (cb, rows * ns_q4_row_bytes (cols), error);
  uint16_t *scale = q != NULL ? (uint16_t *) device_alloc (cb, rows * ns_q4_row_groups (cols) * 2,
                                                           error)
                              : NULL;
  if (scale == NULL)
    {
      device_free (cb, q);
      device_free (cb, staging);
      return FALSE;
    }
  ns_cuda_quantize_q4_rows (&cb->base, q, scale, staging, src_dtype, out->rows, out->cols);
  device_free (cb, staging);
  out->dtype = NS_DTYPE_Q4;
  out->data = q;
  out->group_scale = scale;
  return cuda_sync (&cb->base, error);
}

static gboolean
quantize_upload (NsCudaBackend *cb, const NsTensorView *t, NsDType q_dtype, NsMat *out,
                 GError **error)
{
  void *staging = upload_bytes (cb, t->data, t->n_bytes, error);
  if (staging == NULL)
    return FALSE;
  if (q_dtype == NS_DTYPE_Q4)
    return quantize_upload_q4 (cb, staging, t->dtype, out, error);
  void *q = device_alloc (cb, (size_t) out->rows * out->cols, error);
  float *scale = q != NULL ? (float *) device_alloc (cb, out->rows * sizeof (float), error) : NULL;
  if (scale == NULL)
    {
      device_free (cb, q);
      device_free (cb, staging);
      return FALSE;
    }
  ns_cuda_quantize_rows (&cb->base, q, scale, staging, t->dtype, q_dtype, out->rows, out->cols);
  device_free (cb, staging);
  out->dtype = q_dtype;
  out->data = q;
  out->scale = scale;
  return cuda_sync (&cb->base, error);
}

static gboolean
cuda_upload (NsBackend *b, const NsTensorView *t, NsMat *out, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (t->dtype != NS_DTYPE_F32 && t->dtype != NS_DTYPE_BF16 && t->dtype != NS_DTYPE_F16)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "%s: tensor '%s' has dtype %s; the engine needs F32, BF16 or F16 weights",
                   t->file ? t->file : "model", t->name, ns_dtype_name (t->dtype));
      return FALSE;
    }
  int64_t rows = t->n_dims >= 2 ? t->shape[0] : 1;
  int64_t cols = rows > 0 ? ns_tensor_n_elements (t) / rows : 0;
  if (rows < 1 || cols < 1 || rows > G_MAXINT || cols > G_MAXINT)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_MODEL,
                   "%s: tensor '%s' gives a %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT
                   " matrix, which the CUDA backend cannot hold (empty or too large)",
                   t->file ? t->file : "model", t->name, rows, cols);
      return FALSE;
    }
  if ((size_t) (rows * cols) * ns_dtype_size (t->dtype) != t->n_bytes)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "%s: tensor '%s' holds %" G_GSIZE_FORMAT " bytes, not the %" G_GINT64_FORMAT
                   " × %" G_GINT64_FORMAT " %s its shape says; the file is damaged",
                   t->file ? t->file : "model", t->name, t->n_bytes, rows, cols,
                   ns_dtype_name (t->dtype));
      return FALSE;
    }
  NsDType q_dtype = ns_backend_upload_dtype (b, t);
  *out = (NsMat) { q_dtype, (int) rows, (int) cols, NULL, NULL, NULL };
  note_matrix (cb, out);
  out->dtype = t->dtype;
  if (q_dtype != t->dtype)
    return quantize_upload (cb, t, q_dtype, out, error);
  out->data = upload_bytes (cb, t->data, t->n_bytes, error);
  return out->data != NULL;
}

/* A cache's q4 matrix: U8 codes [rows, cols / 2], F16 scales [rows, groups]. */
static gboolean
upload_quantized_q4 (NsCudaBackend *cb, const NsTensorView *q, const NsTensorView *scale,
                     NsMat *out, GError **error)
{
  int64_t rows = q->n_dims == 2 ? q->shape[0] : 0, cols = q->n_dims == 2 ? 2 * q->shape[1] : 0;
  if (rows < 1 || rows > G_MAXINT || cols > G_MAXINT || !ns_q4_cols_ok (cols)
      || q->n_bytes != (size_t) (rows * cols / 2) || scale->dtype != NS_DTYPE_F16
      || scale->n_dims != 2 || scale->shape[0] != rows
      || scale->shape[1] != cols / NS_Q4_GROUP || scale->n_bytes != (size_t) (rows * cols / NS_Q4_GROUP) * 2)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "4-bit weight %s in %s: expected U8 codes [rows, cols/2] with F16 scales "
                   "[rows, cols/%d]; delete the converted file and run nextstep convert again",
                   q->name, q->file ? q->file : "(memory)", NS_Q4_GROUP);
      return FALSE;
    }
  *out = (NsMat) { NS_DTYPE_Q4, (int) rows, (int) cols, NULL, NULL, NULL };
  note_matrix (cb, out);
  out->data = upload_bytes (cb, q->data, q->n_bytes, error);
  if (out->data == NULL)
    return FALSE;
  out->group_scale = (const uint16_t *) upload_bytes (cb, scale->data, scale->n_bytes, error);
  if (out->group_scale == NULL)
    {
      device_free (cb, out->data);
      return FALSE;
    }
  return TRUE;
}

static gboolean
cuda_upload_quantized (NsBackend *b, const NsTensorView *q, const NsTensorView *scale,
                       NsMat *out, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (q->dtype == NS_DTYPE_U8)
    return upload_quantized_q4 (cb, q, scale, out, error);
  int64_t rows = q->n_dims >= 2 ? q->shape[0] : 1;
  if ((q->dtype != NS_DTYPE_I8 && q->dtype != NS_DTYPE_F8_E4M3) || q->n_dims != 2
      || rows > G_MAXINT || q->shape[1] > G_MAXINT || scale->dtype != NS_DTYPE_F32
      || ns_tensor_n_elements (scale) != rows)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
                   "quantized weight %s in %s: expected 2-D I8 or F8_E4M3 data with one F32 "
                   "scale per row; delete the converted file and run nextstep convert again",
                   q->name, q->file ? q->file : "(memory)");
      return FALSE;
    }
  *out = (NsMat) { q->dtype, (int) rows, (int) q->shape[1], NULL, NULL, NULL };
  note_matrix (cb, out);
  out->data = upload_bytes (cb, q->data, q->n_bytes, error);
  if (out->data == NULL)
    return FALSE;
  out->scale = (const float *) upload_bytes (cb, scale->data, scale->n_bytes, error);
  if (out->scale == NULL)
    {
      device_free (cb, out->data);
      return FALSE;
    }
  return TRUE;
}

static void
cuda_release (NsBackend *b, NsMat *m)
{
  NsCudaBackend *cb = ns_cuda (b);
  device_free (cb, m->data);
  device_free (cb, m->scale);
  device_free (cb, m->group_scale);
  m->data = NULL;
  m->scale = NULL;
  m->group_scale = NULL;
}

/* ---- workspace, reserve ------------------------------------------------- */

/* Replaces the workspace by one of `bytes`; on failure there is none
 * (pointer and size agree: issue 16). A graph recorded the old one's
 * address, so it is kept until the last graph is freed. */
static gboolean
grow_workspace (NsCudaBackend *cb, size_t bytes, GError **error)
{
  if (bytes <= cb->workspace_bytes)
    return TRUE;
  if (cb->live_graphs > 0 && cb->workspace != NULL)
    g_ptr_array_add (cb->retired, cb->workspace);
  else
    device_free (cb, cb->workspace);
  cb->workspace = NULL;
  cb->workspace_bytes = 0;
  void *p = device_alloc (cb, bytes, error);
  if (p == NULL)
    return FALSE;
  cb->workspace = p;
  cb->workspace_bytes = bytes;
  return TRUE;
}

void *
ns_cuda_workspace (NsBackend *b, size_t bytes)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (bytes <= cb->workspace_bytes)
    return cb->workspace;
  if (cb->capturing)
    {
      ns_cuda_record (b, cudaErrorStreamCaptureUnsupported,
                      "workspace growth during graph capture (call reserve with the largest "
                      "row count first)");
      return NULL;
    }
  GError *error = NULL;
  /* Grow by half again so a slowly rising size does not reallocate each time. */
  if (!grow_workspace (cb, MAX (bytes, cb->workspace_bytes + cb->workspace_bytes / 2), &error)
      && !grow_workspace (cb, bytes, NULL))
    {
      ns_cuda_record (b, cudaErrorMemoryAllocation, "workspace");
      g_clear_error (&error);
      return NULL;
    }
  g_clear_error (&error);
  return cb->workspace;
}

static gboolean
grow_staging (NsCudaBackend *cb, size_t n, GError **error)
{
  if (n <= cb->staging_floats)
    return TRUE;
  float *p = NULL;
  cudaError_t err = cudaHostAlloc ((void **) &p, n * sizeof (float), cudaHostAllocDefault);
  if (err != cudaSuccess)
    {
      cudaGetLastError ();
      return set_cuda_error (error, err, "pinned host allocation");
    }
  cudaFreeHost (cb->staging);
  cb->staging = p;
  cb->staging_floats = n;
  return TRUE;
}

static gboolean
cuda_reserve (NsBackend *b, int max_rows, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
  g_return_val_if_fail (!cb->capturing, FALSE);
  return grow_workspace (cb, MAX (ns_cuda_linear_workspace (b, max_rows),
                                  ns_cuda_fused_workspace (b, max_rows)), error)
         && grow_staging (cb, STAGING_FLOATS, error);
}

/* ---- asynchronous reads -------------------------------------------------- */

static gboolean
cuda_read_wait (NsBackend *b, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (cb->reads->len > 0)
    ns_cuda_record (b, cudaEventSynchronize (cb->read_done), "read_wait");
  for (guint i = 0; i < cb->reads->len; i++)
    {
      NsCudaRead *r = &g_array_index (cb->reads, NsCudaRead, i);
      if (cb->first_error == cudaSuccess)
        memcpy (r->dst, cb->staging + r->offset, r->n * sizeof (float));
    }
  g_array_set_size (cb->reads, 0);
  cb->staging_used = 0;
  return report_first_error (cb, error);
}

static void
cuda_read_async (NsBackend *b, float *dst, const float *src, size_t n)
{
  NsCudaBackend *cb = ns_cuda (b);
  g_return_if_fail (!cb->capturing);
  if (cb->staging_used + n > cb->staging_floats)
    {
      /* The staging buffer moves: finish the reads in it first. */
      cuda_read_wait (b, NULL);
      GError *error = NULL;
      if (!grow_staging (cb, MAX (n, 2 * cb->staging_floats), &error))
        {
          g_clear_error (&error);
          ns_cuda_record (b, cudaErrorMemoryAllocation, "read_async staging");
          return;
        }
    }
  NsCudaRead r = { dst, cb->staging_used, n };
  ns_cuda_record (b, cudaMemcpyAsync (cb->staging + r.offset, src, n * sizeof (float),
                                      cudaMemcpyDeviceToHost, cb->stream), "read_async");
  ns_cuda_record (b, cudaEventRecord (cb->read_done, cb->stream), "read_async");
  g_array_append_val (cb->reads, r);
  cb->staging_used += n;
}

/* ---- graphs -------------------------------------------------------------- */

static gboolean
cuda_graph_begin (NsBackend *b, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (cb->capturing || !report_first_error (cb, error))
    {
      if (cb->capturing)
        g_set_error (error, NS_ERROR, NS_ERROR_BACKEND,
                     "a CUDA graph is already being recorded: end it first (graph_end)");
      return FALSE;
    }
  cudaError_t err = cudaStreamBeginCapture (cb->stream, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess)
    return set_cuda_error (error, err, "graph capture");
  cb->capturing = TRUE;
  return TRUE;
}

static NsGraph *
cuda_graph_end (NsBackend *b, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
  g_return_val_if_fail (cb->capturing, NULL);
  cb->capturing = FALSE;
  NsGraph *g = g_new0 (NsGraph, 1);
  cudaError_t err = cudaStreamEndCapture (cb->stream, &g->graph);
  ns_cuda_record (b, err, "graph capture");
  if (err == cudaSuccess && cb->first_error == cudaSuccess)
    ns_cuda_record (b, cudaGraphInstantiate (&g->exec, g->graph, 0), "graph instantiation");
  if (report_first_error (cb, error))
    {
      cb->live_graphs++;
      return g;
    }
  if (g->graph != NULL)
    cudaGraphDestroy (g->graph);
  g_free (g);
  return NULL;
}

static void
cuda_graph_launch (NsBackend *b, NsGraph *graph)
{
  ns_cuda_record (b, cudaGraphLaunch (graph->exec, ns_cuda (b)->stream), "graph launch");
}

static void
cuda_graph_free (NsBackend *b, NsGraph *graph)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (graph == NULL)
    return;
  cudaGraphExecDestroy (graph->exec);
  cudaGraphDestroy (graph->graph);
  g_free (graph);
  if (--cb->live_graphs == 0)
    {
      for (guint i = 0; i < cb->retired->len; i++)
        device_free (cb, g_ptr_array_index (cb->retired, i));
      g_ptr_array_set_size (cb->retired, 0);
    }
}

/* ---- the backend ---------------------------------------------------------- */

static void
cuda_destroy (NsBackend *b)
{
  NsCudaBackend *cb = ns_cuda (b);
  /* Also called on a half-built backend: skip what was never made. */
  if (cb->stream != NULL)
    {
      device_free (cb, cb->workspace);
      for (guint i = 0; i < cb->retired->len; i++)
        device_free (cb, g_ptr_array_index (cb->retired, i));
      cudaStreamSynchronize (cb->stream);
    }
  cudaFree (cb->cublas_workspace);
  cudaFreeHost (cb->staging);
  if (cb->read_done != NULL)
    cudaEventDestroy (cb->read_done);
  if (cb->cublas != NULL)
    cublasDestroy (cb->cublas);
  if (cb->stream != NULL)
    cudaStreamDestroy (cb->stream);
  g_array_unref (cb->reads);
  g_ptr_array_unref (cb->retired);
  g_hash_table_unref (cb->sizes);
  g_free (cb);
}

static const NsBackendOps cuda_ops = {
  .name = "cuda",
  .destroy = cuda_destroy,
  .alloc = cuda_alloc,
  .free = cuda_free,
  .write = cuda_write,
  .read = cuda_read,
  .copy = cuda_copy,
  .upload = cuda_upload,
  .release = cuda_release,
  .sync = cuda_sync,
  .embedding = ns_cuda_embedding,
  .linear = ns_cuda_linear,
  .linear_multi = ns_cuda_linear_multi,
  .linear_swiglu = ns_cuda_linear_swiglu,
  .norm_modulate_linear = ns_cuda_norm_modulate_linear,
  .linear_gated_add = ns_cuda_linear_gated_add,
  .rmsnorm = ns_cuda_rmsnorm,
  .layernorm = ns_cuda_layernorm,
  .modulate = ns_cuda_modulate,
  .gated_add = ns_cuda_gated_add,
  .silu = ns_cuda_silu,
  .silu_mul = ns_cuda_silu_mul,
  .add = ns_cuda_add,
  .rope = ns_cuda_rope,
  .kv_store = ns_cuda_kv_store,
  .attention = ns_cuda_attention,
  .counter_add = ns_cuda_counter_add,
  .add_indexed_row = ns_cuda_add_indexed_row,
  .time_features = ns_cuda_time_features,
  .noise = ns_cuda_noise,
  .cfg_combine = ns_cuda_cfg_combine,
  .sampler_step = ns_cuda_sampler_step,
  .sampler_finish = ns_cuda_sampler_finish,
  .conv2d = ns_cuda_conv2d,
  .groupnorm = ns_cuda_groupnorm,
  .upsample2x = ns_cuda_upsample2x,
  .attention_spatial = ns_cuda_attention_spatial,
  .patchify = ns_cuda_patchify,
  .unpatchify = ns_cuda_unpatchify,
  .upload_quantized = cuda_upload_quantized,
  .reserve = cuda_reserve,
  .read_async = cuda_read_async,
  .read_wait = cuda_read_wait,
  .graph_begin = cuda_graph_begin,
  .graph_end = cuda_graph_end,
  .graph_launch = cuda_graph_launch,
  .graph_free = cuda_graph_free,
};

/* Stream, cuBLAS (fixed workspace, no reduced-precision reductions: results
 * must match the f32 CPU reference) and the read event. */
static gboolean
init_device_state (NsCudaBackend *cb, GError **error)
{
  cudaError_t err;
  if ((err = cudaStreamCreateWithFlags (&cb->stream, cudaStreamNonBlocking)) != cudaSuccess
      || (err = cudaEventCreateWithFlags (&cb->read_done, cudaEventDisableTiming)) != cudaSuccess
      || (err = cudaMalloc (&cb->cublas_workspace, CUBLAS_WORKSPACE_BYTES)) != cudaSuccess)
    return set_cuda_error (error, err, "stream setup");
  if (cublasCreate (&cb->cublas) != CUBLAS_STATUS_SUCCESS
      || cublasSetStream (cb->cublas, cb->stream) != CUBLAS_STATUS_SUCCESS
      || cublasSetWorkspace (cb->cublas, cb->cublas_workspace, CUBLAS_WORKSPACE_BYTES)
           != CUBLAS_STATUS_SUCCESS
      || cublasSetMathMode (cb->cublas, (cublasMath_t) (CUBLAS_DEFAULT_MATH
                                        | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION))
           != CUBLAS_STATUS_SUCCESS)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_BACKEND,
                   "cuBLAS could not be initialised; check that libcublas matches the driver "
                   "(nvidia-smi), or use --backend cpu");
      return FALSE;
    }
  cb->allocated = CUBLAS_WORKSPACE_BYTES;
  return TRUE;
}

static NsCudaBackend *
backend_new (int device, guint64 memory_cap, size_t free_bytes)
{
  NsCudaBackend *cb = g_new0 (NsCudaBackend, 1);
  cb->base.ops = &cuda_ops;
  cb->device = device;
  /* Leave some room for the context and cuBLAS's own allocations. */
  guint64 usable = free_bytes > (512u << 20) ? free_bytes - (512u << 20) : 0;
  cb->memory_cap = memory_cap != 0 ? MIN (memory_cap, usable) : usable;
  cb->sizes = g_hash_table_new (g_direct_hash, g_direct_equal);
  cb->reads = g_array_new (FALSE, FALSE, sizeof (NsCudaRead));
  cb->retired = g_ptr_array_new ();
  ns_backend_set_weight_format (&cb->base, NS_WEIGHTS_BF16, NS_QUANT_MIN_ELEMENTS);
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties (&prop, device) == cudaSuccess)
    {
      cb->sm = prop.major * 10 + prop.minor;
      cb->n_sms = prop.multiProcessorCount;
    }
  cb->n_sms = MAX (cb->n_sms, 1);
  return cb;
}

NsBackend *
ns_backend_cuda_new (int device, guint64 memory_cap, GError **error)
{
  int count = 0;
  cudaError_t err = cudaGetDeviceCount (&count);
  if (err != cudaSuccess || count == 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_BACKEND,
                   "no usable CUDA device (%s); use --backend cpu",
                   err != cudaSuccess ? cudaGetErrorString (err) : "none found");
      return NULL;
    }
  if (device < 0 || device >= count)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "CUDA device %d does not exist (%d found); pick one below %d", device, count,
                   count);
      return NULL;
    }
  size_t free_bytes = 0, total_bytes = 0;
  if ((err = cudaSetDevice (device)) != cudaSuccess
      || (err = cudaMemGetInfo (&free_bytes, &total_bytes)) != cudaSuccess)
    return set_cuda_error (error, err, "device selection"), (NsBackend *) NULL;
  NsCudaBackend *cb = backend_new (device, memory_cap, free_bytes);
  if (!init_device_state (cb, error))
    {
      cuda_destroy (&cb->base);
      return NULL;
    }
  return &cb->base;
}

guint64
ns_backend_cuda_free_memory (NsBackend *b)
{
  NsCudaBackend *cb = ns_cuda (b);
  return cb->memory_cap > cb->allocated ? cb->memory_cap - cb->allocated : 0;
}

gboolean
ns_backend_cuda_has_fp8 (NsBackend *b)
{
  return ns_cuda (b)->sm >= 89;
}

guint64
ns_backend_cuda_peak_memory (NsBackend *b)
{
  return ns_cuda (b)->peak;
}
