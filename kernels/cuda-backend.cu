/* cuda-backend.cu — the CUDA implementation of the backend ops table:
 * device selection, memory (with a cap so callers can plan and tests can
 * simulate small cards), weight upload (bf16/f16/f32 as stored, or
 * weight-only int8 / fp8 e4m3 with per-row scales), and the table itself.
 * The ops live one family per file beside this one. */
#include <string.h>

#include "cuda-common.cuh"

static gboolean
set_cuda_error (GError **error, cudaError_t err, const char *what)
{
  g_set_error (error, NS_ERROR, err == cudaErrorMemoryAllocation ? NS_ERROR_OUT_OF_MEMORY
                                                                 : NS_ERROR_BACKEND,
               "CUDA %s failed: %s (%s)", what, cudaGetErrorString (err), cudaGetErrorName (err));
  return FALSE;
}

static gboolean
reserve (NsCudaBackend *cb, size_t bytes, GError **error)
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

static void *
device_alloc (NsCudaBackend *cb, size_t bytes, GError **error)
{
  void *p = NULL;
  if (!reserve (cb, bytes, error))
    return NULL;
  cudaError_t err = cudaMallocAsync (&p, MAX (bytes, 1), cb->stream);
  if (err != cudaSuccess)
    {
      set_cuda_error (error, err, "allocation");
      return NULL;
    }
  cb->allocated += bytes;
  cb->peak = MAX (cb->peak, cb->allocated);
  g_hash_table_insert (cb->sizes, p, GSIZE_TO_POINTER (bytes));
  return p;
}

static void
device_free (NsCudaBackend *cb, const void *p)
{
  if (p == NULL)
    return;
  gpointer bytes;
  if (g_hash_table_steal_extended (cb->sizes, p, NULL, &bytes))
    cb->allocated -= GPOINTER_TO_SIZE (bytes);
  cudaFreeAsync ((void *) p, cb->stream);
}

static float *
cuda_alloc (NsBackend *b, size_t n_floats, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
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
  ns_cuda_record (b, cudaMemcpyAsync (dst, src, n * sizeof (float), cudaMemcpyHostToDevice,
                                      cb->stream), "write");
  /* The caller may reuse `src` at once: pageable copies are staged, but wait
   * to be sure. */
  ns_cuda_record (b, cudaStreamSynchronize (cb->stream), "write");
}

static void
cuda_read (NsBackend *b, float *dst, const float *src, size_t n)
{
  NsCudaBackend *cb = ns_cuda (b);
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
  ns_cuda_record (b, cudaStreamSynchronize (cb->stream), "sync");
  if (cb->first_error != cudaSuccess)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_BACKEND, "CUDA op %s failed: %s",
                   cb->first_error_op, cudaGetErrorString (cb->first_error));
      return FALSE;
    }
  return TRUE;
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

static gboolean
quantize_upload (NsCudaBackend *cb, const NsTensorView *t, NsDType q_dtype, NsMat *out,
                 GError **error)
{
  void *staging = device_alloc (cb, t->n_bytes, error);
  if (staging == NULL)
    return FALSE;
  void *q = device_alloc (cb, (size_t) out->rows * out->cols, error);
  float *scale = q != NULL ? (float *) device_alloc (cb, out->rows * sizeof (float), error) : NULL;
  if (scale == NULL)
    {
      device_free (cb, q);
      device_free (cb, staging);
      return FALSE;
    }
  ns_cuda_record (&cb->base, cudaMemcpyAsync (staging, t->data, t->n_bytes,
                                              cudaMemcpyHostToDevice, cb->stream), "upload");
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
  if (rows > G_MAXINT || cols > G_MAXINT)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED, "tensor '%s' is too large", t->name);
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
  *out = (NsMat) { t->dtype, (int) rows, (int) cols, NULL, NULL };
  NsDType q_dtype = ns_backend_upload_dtype (b, t);
  if (q_dtype != t->dtype)
    return quantize_upload (cb, t, q_dtype, out, error);

  out->data = upload_bytes (cb, t->data, t->n_bytes, error);
  return out->data != NULL;
}

static gboolean
cuda_upload_quantized (NsBackend *b, const NsTensorView *q, const NsTensorView *scale,
                       NsMat *out, GError **error)
{
  NsCudaBackend *cb = ns_cuda (b);
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
  *out = (NsMat) { q->dtype, (int) rows, (int) q->shape[1], NULL, NULL };
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
  m->data = NULL;
  m->scale = NULL;
}

const int32_t *
ns_cuda_stage_indices (NsBackend *b, const int32_t *host, int n)
{
  NsCudaBackend *cb = ns_cuda (b);
  if ((size_t) n > cb->index_capacity)
    {
      cudaFreeAsync (cb->index_scratch, cb->stream);
      cb->index_capacity = MAX ((size_t) n, 2 * cb->index_capacity);
      ns_cuda_record (b, cudaMallocAsync ((void **) &cb->index_scratch,
                                          cb->index_capacity * sizeof (int32_t), cb->stream),
                      "index scratch");
    }
  ns_cuda_record (b, cudaMemcpyAsync (cb->index_scratch, host, n * sizeof (int32_t),
                                      cudaMemcpyHostToDevice, cb->stream), "indices");
  /* The host array may be reused by the caller right after the op. */
  ns_cuda_record (b, cudaStreamSynchronize (cb->stream), "indices");
  return cb->index_scratch;
}

void *
ns_cuda_workspace (NsBackend *b, size_t bytes)
{
  NsCudaBackend *cb = ns_cuda (b);
  if (bytes > cb->workspace_bytes)
    {
      cudaFreeAsync (cb->workspace, cb->stream);
      cb->workspace_bytes = MAX (bytes, cb->workspace_bytes + cb->workspace_bytes / 2);
      ns_cuda_record (b, cudaMallocAsync (&cb->workspace, cb->workspace_bytes, cb->stream),
                      "workspace");
    }
  return cb->workspace;
}

static void
cuda_destroy (NsBackend *b)
{
  NsCudaBackend *cb = ns_cuda (b);
  cudaFreeAsync (cb->index_scratch, cb->stream);
  cudaFreeAsync (cb->workspace, cb->stream);
  cudaStreamSynchronize (cb->stream);
  g_hash_table_unref (cb->sizes);
  cublasDestroy (cb->cublas);
  cudaStreamDestroy (cb->stream);
  g_free (cb);
}

static const NsBackendOps cuda_ops = {
  "cuda",
  cuda_destroy,
  cuda_alloc,
  cuda_free,
  cuda_write,
  cuda_read,
  cuda_copy,
  cuda_upload,
  cuda_release,
  cuda_sync,
  ns_cuda_embedding,
  ns_cuda_linear,
  ns_cuda_rmsnorm,
  ns_cuda_layernorm,
  ns_cuda_modulate,
  ns_cuda_gated_add,
  ns_cuda_silu,
  ns_cuda_silu_mul,
  ns_cuda_add,
  ns_cuda_rope,
  ns_cuda_kv_store,
  ns_cuda_attention,
  ns_cuda_conv2d,
  ns_cuda_groupnorm,
  ns_cuda_upsample2x,
  ns_cuda_attention_spatial,
  ns_cuda_patchify,
  ns_cuda_unpatchify,
  cuda_upload_quantized,
};

NsBackend *
ns_backend_cuda_new (int device, guint64 memory_cap, GError **error)
{
  int count = 0;
  cudaError_t err = cudaGetDeviceCount (&count);
  if (err != cudaSuccess || count == 0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_BACKEND, "no usable CUDA device (%s)",
                   err != cudaSuccess ? cudaGetErrorString (err) : "none found");
      return NULL;
    }
  if (device < 0 || device >= count)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                   "CUDA device %d does not exist (%d found)", device, count);
      return NULL;
    }
  if ((err = cudaSetDevice (device)) != cudaSuccess)
    return set_cuda_error (error, err, "device selection"), (NsBackend *) NULL;

  size_t free_bytes = 0, total_bytes = 0;
  if ((err = cudaMemGetInfo (&free_bytes, &total_bytes)) != cudaSuccess)
    return set_cuda_error (error, err, "memory query"), (NsBackend *) NULL;

  NsCudaBackend *cb = g_new0 (NsCudaBackend, 1);
  cb->base.ops = &cuda_ops;
  cb->device = device;
  /* Leave some room for cuBLAS, the context and the workspaces. */
  guint64 usable = free_bytes > (512u << 20) ? free_bytes - (512u << 20) : 0;
  cb->memory_cap = memory_cap != 0 ? MIN (memory_cap, usable) : usable;
  cb->sizes = g_hash_table_new (g_direct_hash, g_direct_equal);
  ns_backend_set_weight_format (&cb->base, NS_WEIGHTS_BF16, NS_QUANT_MIN_ELEMENTS);
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties (&prop, device) == cudaSuccess)
    cb->sm = prop.major * 10 + prop.minor;
  if ((err = cudaStreamCreateWithFlags (&cb->stream, cudaStreamNonBlocking)) != cudaSuccess
      || cublasCreate (&cb->cublas) != CUBLAS_STATUS_SUCCESS)
    {
      if (err == cudaSuccess)
        g_set_error (error, NS_ERROR, NS_ERROR_BACKEND, "cuBLAS could not be initialised");
      else
        set_cuda_error (error, err, "stream creation");
      g_hash_table_unref (cb->sizes);
      g_free (cb);
      return NULL;
    }
  cublasSetStream (cb->cublas, cb->stream);
  return &cb->base;
}

guint64
ns_backend_cuda_free_memory (NsBackend *b)
{
  NsCudaBackend *cb = ns_cuda (b);
  return cb->memory_cap - cb->allocated;
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
