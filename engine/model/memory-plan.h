/* memory-plan.h — how much backend memory a model and a request need, worked
 * out from the configs alone before anything is loaded, so a load that would
 * run out of GPU memory half-way is refused up front with a suggestion. */
#pragma once

#include "backend.h"
#include "files/config.h"

G_BEGIN_DECLS

/* Tokens a prompt is planned for at load time (the template plus a long
 * caption; docs/model.md §4: prompts are 100–300 tokens). */
#define NS_PLAN_PROMPT_TOKENS 512

typedef struct {
  int width, height;            /* output pixels */
  int images;
  int cfg_mult;                 /* 2 for generate, 3 for edit */
  int prompt_tokens;            /* text tokens (edit: plus the input image's tokens) */
} NsPlanRequest;

typedef struct {
  guint64 weights;              /* transformer, projectors, FM head, gen_pos_embed */
  guint64 vae_weights;          /* as stored in checkpoint.pt (F32) */
  guint64 kv_cache;             /* keys and values of every layer, f32 */
  guint64 activations;          /* transformer step, FM head state, pipeline buffers */
  guint64 vae_workspace;        /* decoder activations of one tile */
  guint64 total;
} NsMemoryPlan;

/* Bytes of one weight tensor `name` of `n_dims` dims [rows × cols] in
 * `format` (bf16 when stored as published; int8/fp8: 1 byte plus a 4-byte
 * scale per row for 2-D matrices of at least `min_quant` elements; q4: half
 * a byte plus a 2-byte scale per 32 elements for the matrices the q4 rule
 * of cpu/quant.h allows, int8 for the others). */
guint64 ns_plan_tensor_bytes (const char *name, int n_dims, int64_t rows, int64_t cols,
                              NsWeightFormat format, int64_t min_quant);

/* The plan for `cfg`/`vae` with weights in `format` (AUTO counts as bf16). */
void ns_memory_plan (const NsModelConfig *cfg, const NsVaeConfig *vae, NsWeightFormat format,
                     int64_t min_quant, const NsPlanRequest *request, NsMemoryPlan *plan);

/* Which memory a plan is checked against. */
typedef enum {
  NS_PLAN_GPU,                  /* the CUDA device's free memory */
  NS_PLAN_RAM,                  /* the host's available RAM (CPU backend) */
  NS_PLAN_CAP                   /* the test cap, --device-memory-cap */
} NsPlanMemory;

/* FALSE with NS_ERROR_OUT_OF_MEMORY when plan->total exceeds `available`:
 * "needs 21.3 GB of GPU memory, 15.8 GB free: try --weights int8, a smaller
 * image or --backend cpu" (int8 for bf16 plans, q4 for int8/fp8 plans, the CPU only for the
 * GPU; on the CPU it names `nextstep convert`; the test cap is "device"
 * memory). */
gboolean ns_memory_plan_check (const NsMemoryPlan *plan, guint64 available, NsPlanMemory memory,
                               NsWeightFormat format, GError **error);

/* Bytes of RAM the kernel says can be had without swapping (MemAvailable,
 * page cache included); 0 when unknown. */
guint64 ns_memory_available_ram (void);

G_END_DECLS
