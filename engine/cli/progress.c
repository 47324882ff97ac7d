/* progress.c — see progress.h. A ticker thread redraws the current stage
 * every second, so the elapsed time and ETA move (and a log gets its line
 * every LOG_SECONDS) even during a long stage that reports nothing, such as
 * the prefill or the upload of one large tensor. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"

#define BAR_WIDTH 24
#define LOG_SECONDS 10.0   /* a log line at most this often within a stage */
#define TICK_US G_USEC_PER_SEC

static double
seconds_since (gint64 us)
{
  return (g_get_monotonic_time () - us) / 1e6;
}

/* "42 s", "3 min 05 s": an ETA or an elapsed time at a glance. */
static char *
duration (double s)
{
  if (s < 60)
    return g_strdup_printf ("%.0f s", s);
  return g_strdup_printf ("%d min %02d s", (int) (s / 60), (int) s % 60);
}

static void
bar (GString *s, double fraction)
{
  int fill = (int) (CLAMP (fraction, 0.0, 1.0) * BAR_WIDTH);
  g_string_append_c (s, '[');
  for (int i = 0; i < BAR_WIDTH; i++)
    g_string_append_c (s, i < fill ? '#' : '.');
  g_string_append_printf (s, "] %3.0f%%", 100 * CLAMP (fraction, 0.0, 1.0));
}

/* The current stage as one line, with times as of now. Lock held. */
static char *
render (const NsCliProgress *p)
{
  g_autoptr (GString) s = g_string_new (NULL);
  double secs = seconds_since (p->stage_start);
  g_string_append_printf (s, "%-8s ", p->stage);
  if (p->unit == NULL)
    {
      g_autofree char *elapsed = duration (secs);
      bar (s, p->fraction);
      g_string_append_printf (s, "  %s  (%s)", p->note ? p->note : "", elapsed);
      return g_string_free (g_steal_pointer (&s), FALSE);
    }
  double rate = p->done > 0 && secs > 0 ? p->done / secs : 0;
  bar (s, p->total > 0 ? (double) p->done / p->total : 0);
  g_string_append_printf (s, "  %d/%d %s", p->done, p->total, p->unit);
  if (rate > 0)
    {
      g_autofree char *eta = duration ((p->total - p->done) / rate);
      g_string_append_printf (s, "  %.2f %s/s  ETA %s", rate, p->unit, eta);
    }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/* Shows the current stage: rewrites the terminal line, or prints a log line
 * when `due` or LOG_SECONDS have passed since the last. Lock held. */
static void
show (NsCliProgress *p, gboolean due)
{
  g_autofree char *text = render (p);
  if (p->tty)
    fprintf (stderr, "\r%s\033[K", text);
  else if (due || seconds_since (p->last_line) >= LOG_SECONDS)
    {
      fprintf (stderr, "nextstep: %s\n", text);
      p->last_line = g_get_monotonic_time ();
    }
  fflush (stderr);
}

static gpointer
tick (gpointer data)
{
  NsCliProgress *p = data;
  g_mutex_lock (&p->lock);
  while (!p->stop)
    {
      g_cond_wait_until (&p->wake, &p->lock, g_get_monotonic_time () + TICK_US);
      if (!p->stop && p->stage != NULL)
        show (p, FALSE);
    }
  g_mutex_unlock (&p->lock);
  return NULL;
}

void
ns_cli_progress_init (NsCliProgress *p, gboolean quiet)
{
  *p = (NsCliProgress) { .tty = isatty (STDERR_FILENO), .quiet = quiet,
                         .run_start = g_get_monotonic_time () };
  g_mutex_init (&p->lock);
  g_cond_init (&p->wake);
  if (!quiet)
    p->ticker = g_thread_new ("progress", tick, p);
}

/* Enters `stage` (starting its clock when it is new) and stores what it
 * reports; TRUE when the stage is new. Lock held. */
static gboolean
update (NsCliProgress *p, const char *stage, const char *note, const char *unit)
{
  gboolean is_new = g_strcmp0 (p->stage, stage) != 0;
  if (is_new)
    {
      g_free (p->stage);
      p->stage = g_strdup (stage);
      p->stage_start = g_get_monotonic_time ();
    }
  g_free (p->note);
  p->note = g_strdup (note);
  p->unit = unit;
  return is_new;
}

void
ns_cli_progress_fraction (NsCliProgress *p, const char *stage, double fraction, const char *note)
{
  if (p->quiet)
    return;
  g_mutex_lock (&p->lock);
  gboolean is_new = update (p, stage, note, NULL);
  p->fraction = fraction;
  show (p, is_new || fraction >= 1.0);
  g_mutex_unlock (&p->lock);
}

void
ns_cli_progress_count (NsCliProgress *p, const char *stage, int done, int total,
                       const char *unit)
{
  if (p->quiet)
    return;
  g_mutex_lock (&p->lock);
  gboolean is_new = update (p, stage, NULL, unit);
  p->done = done;
  p->total = total;
  show (p, is_new || done >= total);
  g_mutex_unlock (&p->lock);
}

void
ns_cli_progress_finish (NsCliProgress *p)
{
  if (p->ticker != NULL)
    {
      g_mutex_lock (&p->lock);
      p->stop = TRUE;
      g_cond_signal (&p->wake);
      g_mutex_unlock (&p->lock);
      g_thread_join (g_steal_pointer (&p->ticker));
    }
  if (!p->quiet && p->stage != NULL)
    {
      g_autofree char *total = duration (seconds_since (p->run_start));
      if (p->tty)
        fprintf (stderr, "\rdone in %s\033[K\n", total);
      else
        fprintf (stderr, "nextstep: done in %s\n", total);
    }
  g_clear_pointer (&p->stage, g_free);
  g_clear_pointer (&p->note, g_free);
  g_mutex_clear (&p->lock);
  g_cond_clear (&p->wake);
}

void
ns_cli_progress_on_load (double fraction, const char *what, gpointer data)
{
  ns_cli_progress_fraction (data, "loading", fraction, what);
}

void
ns_cli_progress_on_stage (NsStage stage, int done, int total, gpointer data)
{
  switch (stage)
    {
    case NS_STAGE_ENCODE:
      ns_cli_progress_fraction (data, "encoding", total > 0 ? (double) done / total : 0,
                                "the input image");
      break;
    case NS_STAGE_PREFILL:
      ns_cli_progress_fraction (data, "prefill", total > 0 ? (double) done / total : 0,
                                done < total ? "the prompt through the transformer" : "");
      break;
    case NS_STAGE_TOKENS:
      ns_cli_progress_count (data, "tokens", done, total, "tok");
      break;
    case NS_STAGE_DECODE:
      ns_cli_progress_count (data, "VAE", done, total, "images");
      break;
    }
}
