/* no-cuda.c — the CUDA backend's entry points in a build without CUDA
 * (-Dcuda=disabled or no toolkit): asking for it says how to get it, so
 * callers and tests need no #ifdef to link. */
#include "backend.h"

NsBackend *
ns_backend_cuda_new (int device, guint64 memory_cap, GError **error)
{
  (void) device;
  (void) memory_cap;
  g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
               "this build has no CUDA backend; rebuild with -Dcuda=enabled (needs the CUDA "
               "toolkit) or use --backend cpu");
  return NULL;
}

/* Never reached: no CUDA backend can exist in this build. */
guint64
ns_backend_cuda_free_memory (NsBackend *b)
{
  (void) b;
  g_return_val_if_reached (0);
}

gboolean
ns_backend_cuda_has_fp8 (NsBackend *b)
{
  (void) b;
  g_return_val_if_reached (FALSE);
}

guint64
ns_backend_cuda_peak_memory (NsBackend *b)
{
  (void) b;
  g_return_val_if_reached (0);
}
