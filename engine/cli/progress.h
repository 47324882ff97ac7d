/* progress.h — what a command-line run shows while it works, for generate,
 * edit and convert: on a terminal one line rewritten in place every second
 * (stage, bar or count, elapsed time or rate and ETA); when stderr is not a
 * terminal plain lines a log can keep (each stage's start and end, and one
 * line every 10 s in between); nothing when quiet. The callbacks may come
 * from any thread. */
#pragma once

#include "nextstep.h"

G_BEGIN_DECLS

typedef struct {
  gboolean tty, quiet;
  gint64 run_start, stage_start, last_line;   /* monotonic µs */
  /* the stage shown now and what it last reported: a fraction and a note,
   * or (unit != NULL) done of total units */
  char *stage, *note;
  const char *unit;
  double fraction;
  int done, total;
  GMutex lock;                                /* guards all of the above */
  GCond wake;
  gboolean stop;
  GThread *ticker;                            /* redraws every second */
} NsCliProgress;

void ns_cli_progress_init (NsCliProgress *p, gboolean quiet);
/* Stops the ticker, ends the terminal line with the run's total time and
 * frees the state. */
void ns_cli_progress_finish (NsCliProgress *p);

/* A stage measured as a fraction (0 … 1) with a note on what it does now. */
void ns_cli_progress_fraction (NsCliProgress *p, const char *stage, double fraction,
                               const char *note);
/* A stage measured in units: done of total, with rate and ETA. */
void ns_cli_progress_count (NsCliProgress *p, const char *stage, int done, int total,
                            const char *unit);

/* NsLoadOptions.progress and NsRequest.on_stage; data is the NsCliProgress. */
void ns_cli_progress_on_load (double fraction, const char *what, gpointer data);
void ns_cli_progress_on_stage (NsStage stage, int done, int total, gpointer data);

G_END_DECLS
