/* progress.c — see progress.h. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"

#define BAR_WIDTH 24
#define LOG_SECONDS 10.0   /* a log line at most this often within a stage */

void
ns_cli_progress_init (NsCliProgress *p, gboolean quiet)
{
  *p = (NsCliProgress) { isatty (STDERR_FILENO), quiet, g_get_monotonic_time (), 0, 0, NULL };
}

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

/* Starts the clock of a new stage; TRUE when `stage` is new. */
static gboolean
enter (NsCliProgress *p, const char *stage)
{
  if (g_strcmp0 (p->stage, stage) == 0)
    return FALSE;
  g_free (p->stage);
  p->stage = g_strdup (stage);
  p->stage_start = g_get_monotonic_time ();
  p->last_line = 0;
  return TRUE;
}

/* Shows `text`: rewrites the terminal line, or prints a log line when the
 * stage is new, has ended, or LOG_SECONDS have passed. */
static void
show (NsCliProgress *p, gboolean is_new, gboolean ended, const char *text)
{
  if (p->tty)
    fprintf (stderr, "\r%s\033[K", text);
  else if (is_new || ended || seconds_since (p->last_line) >= LOG_SECONDS)
    {
      fprintf (stderr, "nextstep: %s\n", text);
      p->last_line = g_get_monotonic_time ();
    }
  fflush (stderr);
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

void
ns_cli_progress_fraction (NsCliProgress *p, const char *stage, double fraction, const char *note)
{
  if (p->quiet)
    return;
  gboolean is_new = enter (p, stage);
  g_autoptr (GString) s = g_string_new (NULL);
  g_autofree char *elapsed = duration (seconds_since (p->stage_start));
  g_string_append_printf (s, "%-8s ", stage);
  bar (s, fraction);
  g_string_append_printf (s, "  %s  (%s)", note ? note : "", elapsed);
  show (p, is_new, fraction >= 1.0, s->str);
}

void
ns_cli_progress_count (NsCliProgress *p, const char *stage, int done, int total,
                       const char *unit)
{
  if (p->quiet)
    return;
  gboolean is_new = enter (p, stage);
  double secs = seconds_since (p->stage_start);
  double rate = done > 0 && secs > 0 ? done / secs : 0;
  g_autoptr (GString) s = g_string_new (NULL);
  g_string_append_printf (s, "%-8s ", stage);
  bar (s, total > 0 ? (double) done / total : 0);
  g_string_append_printf (s, "  %d/%d %s", done, total, unit);
  if (rate > 0)
    {
      g_autofree char *eta = duration ((total - done) / rate);
      g_string_append_printf (s, "  %.2f %s/s  ETA %s", rate, unit, eta);
    }
  show (p, is_new, done >= total, s->str);
}

void
ns_cli_progress_finish (NsCliProgress *p)
{
  if (!p->quiet && p->stage != NULL)
    {
      g_autofree char *total = duration (seconds_since (p->run_start));
      g_autofree char *text = g_strdup_printf ("done in %s", total);
      if (p->tty)
        fprintf (stderr, "\r%s\033[K\n", text);
      else
        fprintf (stderr, "nextstep: %s\n", text);
    }
  g_clear_pointer (&p->stage, g_free);
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
