/* op-trace.c — a backend that forwards every op to another one and counts
 * (and, when asked, logs) what passes: ops issued, reads, writes and host
 * waits. `nextstep bench` prints its counts per token; tests use the log to
 * check that two image tokens issue the same ops with the same arguments
 * (docs/architecture.md, "The per-token loop") and that a token does at most
 * one read and no write. */
#include <stdarg.h>
#include <stdio.h>

#include "model/op-trace.h"

typedef struct {
  NsBackend parent;
  NsBackend *inner;
  NsOpCounts counts;
  GPtrArray *log;           /* op lines (g_free'd strings), or NULL */
} NsOpTrace;

enum { OP, READ, READ_SYNC, WRITE, SYNC };

static NsOpTrace *
trace_of (NsBackend *b)
{
  return (NsOpTrace *) b;
}

/* The inner backend, with the weight format the caller set on the trace. */
static NsBackend *
inner_of (NsBackend *b)
{
  NsBackend *in = trace_of (b)->inner;
  in->weight_format = b->weight_format;
  in->quant_min_elements = b->quant_min_elements;
  return in;
}

#define IN inner_of (b)

static void
note (NsBackend *b, const char *op, int kind, const char *fmt, ...)
{
  NsOpTrace *t = trace_of (b);
  t->counts.ops++;
  t->counts.reads += kind == READ || kind == READ_SYNC;
  t->counts.writes += kind == WRITE;
  t->counts.syncs += kind == READ_SYNC || kind == SYNC;
  if (t->log == NULL)
    return;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *args = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_ptr_array_add (t->log, g_strdup_printf ("%s %s", op, args));
}

static const void *
mat_data (const NsMat *m)
{
  return m ? m->data : NULL;
}

/* One forwarding function per op: note it, then run it on the inner backend. */
#define TRACED(name, kind, params, args, fmt, ...) \
  static void trace_##name params \
  { \
    note (b, #name, kind, fmt, __VA_ARGS__); \
    IN->ops->name args; \
  }

TRACED (write, WRITE, (NsBackend *b, float *dst, const float *src, size_t n),
        (IN, dst, src, n),
        "%p %p %zu", (const void *) dst, (const void *) src, n)
TRACED (read, READ_SYNC, (NsBackend *b, float *dst, const float *src, size_t n),
        (IN, dst, src, n),
        "%p %p %zu", (const void *) dst, (const void *) src, n)
TRACED (copy, OP, (NsBackend *b, float *dst, const float *src, size_t n),
        (IN, dst, src, n),
        "%p %p %zu", (const void *) dst, (const void *) src, n)
TRACED (embedding, OP, (NsBackend *b, float *out, const NsMat *table, const int32_t *ids, int n),
        (IN, out, table, ids, n),
        "%p %p %p %d", (const void *) out, mat_data (table), (const void *) ids, (int) n)
TRACED (linear, OP, (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias, int rows, gboolean accumulate),
        (IN, y, x, w, bias, rows, accumulate),
        "%p %p %p %p %d %d", (const void *) y, (const void *) x, mat_data (w), mat_data (bias), (int) rows, (int) accumulate)
TRACED (linear_swiglu, OP, (NsBackend *b, float *y, const float *x, const NsMat *gate_w, const NsMat *gate_b, const NsMat *up_w, const NsMat *up_b, int rows),
        (IN, y, x, gate_w, gate_b, up_w, up_b, rows),
        "%p %p %p %p %p %p %d", (const void *) y, (const void *) x, mat_data (gate_w), mat_data (gate_b), mat_data (up_w), mat_data (up_b), (int) rows)
TRACED (norm_modulate_linear, OP, (NsBackend *b, float *y, const float *x, const NsNormModulate *nm, const NsMat *w, const NsMat *bias, int rows, gboolean silu),
        (IN, y, x, nm, w, bias, rows, silu),
        "%p %p nm(%p %p %.9g %p %p %d) %p %p %d %d", (const void *) y, (const void *) x, mat_data (nm->weight), mat_data (nm->bias), (double) nm->eps, (const void *) nm->shift, (const void *) nm->scale, nm->mod_stride, mat_data (w), mat_data (bias), (int) rows, (int) silu)
TRACED (linear_gated_add, OP, (NsBackend *b, float *x, const float *gate, const float *m, const NsMat *w, const NsMat *bias, int rows, int gate_stride),
        (IN, x, gate, m, w, bias, rows, gate_stride),
        "%p %p %p %p %p %d %d", (const void *) x, (const void *) gate, (const void *) m, mat_data (w), mat_data (bias), (int) rows, (int) gate_stride)
TRACED (rmsnorm, OP, (NsBackend *b, float *y, const float *x, const NsMat *weight, int rows, int dim, float eps),
        (IN, y, x, weight, rows, dim, eps),
        "%p %p %p %d %d %.9g", (const void *) y, (const void *) x, mat_data (weight), (int) rows, (int) dim, (double) eps)
TRACED (layernorm, OP, (NsBackend *b, float *y, const float *x, const NsMat *weight, const NsMat *bias, int rows, int dim, float eps),
        (IN, y, x, weight, bias, rows, dim, eps),
        "%p %p %p %p %d %d %.9g", (const void *) y, (const void *) x, mat_data (weight), mat_data (bias), (int) rows, (int) dim, (double) eps)
TRACED (modulate, OP, (NsBackend *b, float *y, const float *x, const float *shift, const float *scale, int rows, int dim, int mod_stride),
        (IN, y, x, shift, scale, rows, dim, mod_stride),
        "%p %p %p %p %d %d %d", (const void *) y, (const void *) x, (const void *) shift, (const void *) scale, (int) rows, (int) dim, (int) mod_stride)
TRACED (gated_add, OP, (NsBackend *b, float *x, const float *gate, const float *m, int rows, int dim, int gate_stride),
        (IN, x, gate, m, rows, dim, gate_stride),
        "%p %p %p %d %d %d", (const void *) x, (const void *) gate, (const void *) m, (int) rows, (int) dim, (int) gate_stride)
TRACED (silu, OP, (NsBackend *b, float *y, const float *x, size_t n),
        (IN, y, x, n),
        "%p %p %zu", (const void *) y, (const void *) x, n)
TRACED (silu_mul, OP, (NsBackend *b, float *y, const float *gate, const float *up, size_t n),
        (IN, y, gate, up, n),
        "%p %p %p %zu", (const void *) y, (const void *) gate, (const void *) up, n)
TRACED (add, OP, (NsBackend *b, float *y, const float *a, const float *c, size_t n),
        (IN, y, a, c, n),
        "%p %p %p %zu", (const void *) y, (const void *) a, (const void *) c, n)
TRACED (rope, OP, (NsBackend *b, float *x, const int32_t *start, int batch, int n, int heads, int head_dim, double theta),
        (IN, x, start, batch, n, heads, head_dim, theta),
        "%p %p %d %d %d %d %.9g", (const void *) x, (const void *) start, (int) batch, (int) n, (int) heads, (int) head_dim, (double) theta)
TRACED (kv_store, OP, (NsBackend *b, float *cache, const float *src, int batch, int n, const int32_t *start, int kv_heads, int head_dim, int capacity),
        (IN, cache, src, batch, n, start, kv_heads, head_dim, capacity),
        "%p %p %d %d %p %d %d %d", (const void *) cache, (const void *) src, (int) batch, (int) n, (const void *) start, (int) kv_heads, (int) head_dim, (int) capacity)
TRACED (attention, OP, (NsBackend *b, float *out, const float *q, const float *k_cache, const float *v_cache, const float *key_valid, int batch, int n, const int32_t *start, int heads, int kv_heads, int head_dim, int capacity),
        (IN, out, q, k_cache, v_cache, key_valid, batch, n, start, heads, kv_heads, head_dim, capacity),
        "%p %p %p %p %p %d %d %p %d %d %d %d", (const void *) out, (const void *) q, (const void *) k_cache, (const void *) v_cache, (const void *) key_valid, (int) batch, (int) n, (const void *) start, (int) heads, (int) kv_heads, (int) head_dim, (int) capacity)
TRACED (counter_add, OP, (NsBackend *b, int32_t *counter, int n, int32_t delta),
        (IN, counter, n, delta),
        "%p %d %d", (const void *) counter, (int) n, (int) delta)
TRACED (add_indexed_row, OP, (NsBackend *b, float *y, const float *x, const float *table, const int32_t *rows_of, const int32_t *token, int rows, int dim),
        (IN, y, x, table, rows_of, token, rows, dim),
        "%p %p %p %p %p %d %d", (const void *) y, (const void *) x, (const void *) table, (const void *) rows_of, (const void *) token, (int) rows, (int) dim)
TRACED (time_features, OP, (NsBackend *b, float *out, const double *t, int n, int n_features),
        (IN, out, t, n, n_features),
        "%p %p %d %d", (const void *) out, (const void *) t, (int) n, (int) n_features)
TRACED (noise, OP, (NsBackend *b, float *out, int n_images, int dim, guint64 seed, const float *table, int draws, const int32_t *token, int draw),
        (IN, out, n_images, dim, seed, table, draws, token, draw),
        "%p %d %d %" G_GUINT64_FORMAT " %p %d %p %d", (const void *) out, (int) n_images, (int) dim, seed, (const void *) table, (int) draws, (const void *) token, (int) draw)
TRACED (cfg_combine, OP, (NsBackend *b, float *v, const float *v_rows, int cfg_mult, size_t block, const NsCfgParams *cfg, const int32_t *token),
        (IN, v, v_rows, cfg_mult, block, cfg, token),
        "%p %p %d %zu cfg(%g %g %d %d) %p", (const void *) v, (const void *) v_rows, (int) cfg_mult, block, cfg->cfg, cfg->cfg_img, cfg->linear, cfg->ntok, (const void *) token)
TRACED (sampler_step, OP, (NsBackend *b, double *state, float *x_rows, const float *v, const float *eps, size_t block, int copies, const NsSamplerStep *step),
        (IN, state, x_rows, v, eps, block, copies, step),
        "%p %p %p %p %zu %d step(%d %.17g %.17g %.17g)", (const void *) state, (const void *) x_rows, (const void *) v, (const void *) eps, block, (int) copies, step->kind, step->t, step->t_next, step->dt)
TRACED (sampler_finish, OP, (NsBackend *b, float *tok, const double *state, int n, int dim, gboolean use_norm),
        (IN, tok, state, n, dim, use_norm),
        "%p %p %d %d %d", (const void *) tok, (const void *) state, (int) n, (int) dim, (int) use_norm)
TRACED (conv2d, OP, (NsBackend *b, float *y, const float *x, const NsMat *w, const NsMat *bias, int ci, int h, int wd, int co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r),
        (IN, y, x, w, bias, ci, h, wd, co, k, stride, pad_t, pad_l, pad_b, pad_r),
        "%p %p %p %p %d %d %d %d %d %d %d %d %d %d", (const void *) y, (const void *) x, mat_data (w), mat_data (bias), (int) ci, (int) h, (int) wd, (int) co, (int) k, (int) stride, (int) pad_t, (int) pad_l, (int) pad_b, (int) pad_r)
TRACED (groupnorm, OP, (NsBackend *b, float *y, const float *x, const NsMat *gamma, const NsMat *beta, int c, int hw, int groups, float eps, gboolean silu),
        (IN, y, x, gamma, beta, c, hw, groups, eps, silu),
        "%p %p %p %p %d %d %d %.9g %d", (const void *) y, (const void *) x, mat_data (gamma), mat_data (beta), (int) c, (int) hw, (int) groups, (double) eps, (int) silu)
TRACED (upsample2x, OP, (NsBackend *b, float *y, const float *x, int c, int h, int w),
        (IN, y, x, c, h, w),
        "%p %p %d %d %d", (const void *) y, (const void *) x, (int) c, (int) h, (int) w)
TRACED (attention_spatial, OP, (NsBackend *b, float *out, const float *q, const float *k, const float *v, int c, int n),
        (IN, out, q, k, v, c, n),
        "%p %p %p %p %d %d", (const void *) out, (const void *) q, (const void *) k, (const void *) v, (int) c, (int) n)
TRACED (patchify, OP, (NsBackend *b, float *tokens, const float *latent, int c, int gh, int gw, int p),
        (IN, tokens, latent, c, gh, gw, p),
        "%p %p %d %d %d %d", (const void *) tokens, (const void *) latent, (int) c, (int) gh, (int) gw, (int) p)
TRACED (unpatchify, OP, (NsBackend *b, float *latent, const float *tokens, int c, int gh, int gw, int p),
        (IN, latent, tokens, c, gh, gw, p),
        "%p %p %d %d %d %d", (const void *) latent, (const void *) tokens, (int) c, (int) gh, (int) gw, (int) p)
TRACED (read_async, READ, (NsBackend *b, float *dst, const float *src, size_t n),
        (IN, dst, src, n),
        "%p %p %zu", (const void *) dst, (const void *) src, n)

/* One log line for all outputs: (y w bias) per output. */
static void
trace_linear_multi (NsBackend *b, const NsLinearOut *outs, int n, const float *x, int rows)
{
  g_autoptr (GString) args = g_string_new (NULL);
  for (int j = 0; j < n; j++)
    g_string_append_printf (args, "(%p %p %p) ", (const void *) outs[j].y, mat_data (outs[j].w),
                            mat_data (outs[j].bias));
  note (b, "linear_multi", OP, "%s%p %d", args->str, (const void *) x, rows);
  IN->ops->linear_multi (IN, outs, n, x, rows);
}

static float *
trace_alloc (NsBackend *b, size_t n, GError **error)
{
  return IN->ops->alloc (IN, n, error);
}

static void
trace_free (NsBackend *b, float *p)
{
  IN->ops->free (IN, p);
}

static gboolean
trace_upload (NsBackend *b, const NsTensorView *t, NsMat *out, GError **error)
{
  return IN->ops->upload (IN, t, out, error);
}

static gboolean
trace_upload_quantized (NsBackend *b, const NsTensorView *q, const NsTensorView *scale,
                        NsMat *out, GError **error)
{
  return IN->ops->upload_quantized (IN, q, scale, out, error);
}

static void
trace_release (NsBackend *b, NsMat *m)
{
  IN->ops->release (IN, m);
}

static gboolean
trace_sync (NsBackend *b, GError **error)
{
  note (b, "sync", SYNC, "");
  return IN->ops->sync (IN, error);
}

static gboolean
trace_read_wait (NsBackend *b, GError **error)
{
  note (b, "read_wait", SYNC, "");
  return IN->ops->read_wait (IN, error);
}

static gboolean
trace_reserve (NsBackend *b, int max_rows, GError **error)
{
  note (b, "reserve", OP, "%d", max_rows);
  return IN->ops->reserve (IN, max_rows, error);
}

static gboolean
trace_graph_begin (NsBackend *b, GError **error)
{
  note (b, "graph_begin", OP, "");
  return IN->ops->graph_begin (IN, error);
}

static NsGraph *
trace_graph_end (NsBackend *b, GError **error)
{
  note (b, "graph_end", OP, "");
  return IN->ops->graph_end (IN, error);
}

static void
trace_graph_launch (NsBackend *b, NsGraph *graph)
{
  note (b, "graph_launch", OP, "%p", (void *) graph);
  IN->ops->graph_launch (IN, graph);
}

static void
trace_graph_free (NsBackend *b, NsGraph *graph)
{
  IN->ops->graph_free (IN, graph);
}

static void
trace_destroy (NsBackend *b)
{
  NsOpTrace *t = trace_of (b);
  if (t->log)
    g_ptr_array_unref (t->log);
  g_free ((gpointer) t->parent.ops);
  g_free (t);
}

NsBackend *
ns_op_trace_new (NsBackend *inner, gboolean keep_log)
{
  NsOpTrace *t = g_new0 (NsOpTrace, 1);
  NsBackendOps *ops = g_new0 (NsBackendOps, 1);
#define SET(name) ops->name = trace_##name
  ops->name = "trace";
  SET (destroy); SET (alloc); SET (free); SET (write); SET (read); SET (copy); SET (upload);
  SET (release); SET (sync); SET (embedding); SET (linear); SET (linear_multi);
  SET (linear_swiglu); SET (norm_modulate_linear); SET (linear_gated_add); SET (rmsnorm);
  SET (layernorm);
  SET (modulate); SET (gated_add); SET (silu); SET (silu_mul); SET (add); SET (rope);
  SET (kv_store); SET (attention); SET (counter_add); SET (add_indexed_row);
  SET (time_features); SET (noise); SET (cfg_combine); SET (sampler_step);
  SET (sampler_finish); SET (conv2d); SET (groupnorm); SET (upsample2x);
  SET (attention_spatial); SET (patchify); SET (unpatchify); SET (upload_quantized);
  SET (reserve); SET (read_async); SET (read_wait);
#undef SET
  /* graphs only where the inner backend has them */
  if (inner->ops->graph_begin != NULL)
    {
      ops->graph_begin = trace_graph_begin;
      ops->graph_end = trace_graph_end;
      ops->graph_launch = trace_graph_launch;
      ops->graph_free = trace_graph_free;
    }
  t->parent.ops = ops;
  t->parent.weight_format = inner->weight_format;
  t->parent.quant_min_elements = inner->quant_min_elements;
  t->inner = inner;
  t->log = keep_log ? g_ptr_array_new_with_free_func (g_free) : NULL;
  return &t->parent;
}

const NsOpCounts *
ns_op_trace_counts (NsBackend *trace)
{
  return &trace_of (trace)->counts;
}

GPtrArray *
ns_op_trace_log (NsBackend *trace)
{
  return trace_of (trace)->log;
}

void
ns_op_trace_reset (NsBackend *trace)
{
  NsOpTrace *t = trace_of (trace);
  t->counts = (NsOpCounts) { 0 };
  if (t->log)
    g_ptr_array_set_size (t->log, 0);
}
