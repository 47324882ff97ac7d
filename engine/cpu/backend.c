/* backend.c — the CPU backend's ops table and constructor. */
#include "cpu-backend.h"
#ifdef _OPENMP
#  include <omp.h>
#endif

static void
cpu_destroy (NsBackend *b)
{
  g_hash_table_unref (((NsCpuBackend *) b)->owned);
  g_free (((NsCpuBackend *) b)->workspace);
  g_free (b);
}

static const NsBackendOps cpu_ops = {
  .name = "cpu",
  .destroy = cpu_destroy,
  .alloc = ns_cpu_alloc,
  .free = ns_cpu_free,
  .write = ns_cpu_write,
  .read = ns_cpu_write,
  .copy = ns_cpu_write,
  .upload = ns_cpu_upload,
  .release = ns_cpu_release,
  .sync = ns_cpu_sync,
  .embedding = ns_cpu_embedding,
  .linear = ns_cpu_linear,
  .linear_multi = ns_cpu_linear_multi,
  .linear_swiglu = ns_cpu_linear_swiglu,
  .norm_modulate_linear = ns_cpu_norm_modulate_linear,
  .linear_gated_add = ns_cpu_linear_gated_add,
  .rmsnorm = ns_cpu_rmsnorm,
  .layernorm = ns_cpu_layernorm,
  .modulate = ns_cpu_modulate,
  .gated_add = ns_cpu_gated_add,
  .silu = ns_cpu_silu,
  .silu_mul = ns_cpu_silu_mul,
  .add = ns_cpu_add,
  .rope = ns_cpu_rope,
  .kv_store = ns_cpu_kv_store,
  .attention = ns_cpu_attention,
  .conv2d = ns_cpu_conv2d,
  .groupnorm = ns_cpu_groupnorm,
  .upsample2x = ns_cpu_upsample2x,
  .attention_spatial = ns_cpu_attention_spatial,
  .patchify = ns_cpu_patchify,
  .unpatchify = ns_cpu_unpatchify,
  .upload_quantized = ns_cpu_upload_quantized,
  .counter_add = ns_cpu_counter_add,
  .add_indexed_row = ns_cpu_add_indexed_row,
  .time_features = ns_cpu_time_features,
  .noise = ns_cpu_noise,
  .cfg_combine = ns_cpu_cfg_combine,
  .sampler_step = ns_cpu_sampler_step,
  .sampler_finish = ns_cpu_sampler_finish,
  .reserve = ns_cpu_reserve,
  .read_async = ns_cpu_read_async,
  .read_wait = ns_cpu_sync,
  /* no graphs: every op runs when it is called */
};

NsBackend *
ns_backend_cpu_new (int threads)
{
  NsCpuBackend *cpu = g_new0 (NsCpuBackend, 1);
  cpu->parent.ops = &cpu_ops;
  ns_backend_set_weight_format (&cpu->parent, NS_WEIGHTS_BF16, NS_QUANT_MIN_ELEMENTS);
  cpu->owned = g_hash_table_new_full (g_direct_hash, g_direct_equal, g_free, NULL);
#ifdef _OPENMP
  cpu->threads = threads > 0 ? threads : omp_get_max_threads ();
#else
  cpu->threads = 1;
#endif
  return &cpu->parent;
}
