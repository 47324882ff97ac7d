/* op-trace.h — a counting (and logging) wrapper around any backend
 * (op-trace.c). */
#pragma once

#include "backend.h"

G_BEGIN_DECLS

typedef struct {
  guint64 ops;      /* ops issued (graph launches count once) */
  guint64 reads;    /* backend → host copies (read, read_async) */
  guint64 writes;   /* host → backend copies */
  guint64 syncs;    /* host waits (read, read_wait, sync) */
} NsOpCounts;

/* A backend forwarding to `inner` (which it does not own: destroy the
 * trace, then inner). With keep_log every op also leaves a line "name args"
 * (pointers, sizes, scalars) in ns_op_trace_log. */
NsBackend        *ns_op_trace_new (NsBackend *inner, gboolean keep_log);
const NsOpCounts *ns_op_trace_counts (NsBackend *trace);
GPtrArray        *ns_op_trace_log (NsBackend *trace);   /* NULL without keep_log */
void              ns_op_trace_reset (NsBackend *trace);

G_END_DECLS
