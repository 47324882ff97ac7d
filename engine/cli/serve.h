/* serve.h — `nextstep serve`: the parts of the server as they call each
 * other. cmd-serve.c: options, models, HTTP routing and limits;
 * serve-job.c: one image request from parsing to its reply, run on the
 * single worker, streamed as server-sent events when asked. */
#pragma once

#include <libsoup/soup.h>

#include "nextstep.h"
#include "remote/protocol.h"

G_BEGIN_DECLS

#define SERVE_MAX_BODY ((goffset) 32 << 20)    /* request bytes */

typedef struct {
  SoupServer *soup;
  NsModel *t2i, *edit;          /* edit: --edit-model, else t2i */
  GThreadPool *worker;          /* one thread: one run at a time */
  int pending, max_pending;     /* jobs running or waiting (main thread) */
  gboolean plain;               /* test hook: answer /v1/models as vLLM-Omni does */
  GCancellable *stopping;       /* cancelled at shutdown: cancels every job */
} Server;

/* Sends {"error": {"message", "type"}} with `status`. */
void serve_reply_error (SoupServerMessage *msg, guint status, const char *message);
/* The HTTP status for an engine error. */
guint serve_status_for (const GError *error);

/* Checks `fields` (from JSON, or from the edit form), queues the run on
 * the worker and answers `msg` when it ends (or at once when the request
 * is refused). `input` (edit) is taken. */
void serve_job_start (Server *server, SoupServerMessage *msg, JsonObject *fields,
                      gboolean edit, guint8 *input, int input_width, int input_height);
/* The worker's GThreadPool function. */
void serve_job_run (gpointer job, gpointer server);

G_END_DECLS
