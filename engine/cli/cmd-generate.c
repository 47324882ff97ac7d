/* cmd-generate.c — `nextstep generate` and `nextstep edit`: one request from
 * the command line to PNG files. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nextstep.h"
#include "commands.h"
#include "files/png.h"
#include "progress.h"

typedef struct {
  char *model, *vae, *prompt, *positive, *negative, *cfg_schedule, *sampler, *use_norm;
  char *seed, *noise, *save_tokens, *backend, *preview_dir, *output, *image;
  char *weights, *memory_cap, *quant_min, *server, *api_key;
  int width, height, images, steps, threads;
  double cfg, cfg_img, shift;
  gboolean quiet, timings;
} Args;

static void
args_clear (Args *a)
{
  char *strs[] = { a->model, a->vae, a->prompt, a->positive, a->negative, a->cfg_schedule,
                   a->sampler, a->use_norm, a->seed, a->noise, a->save_tokens, a->backend,
                   a->preview_dir, a->output, a->image, a->weights, a->memory_cap,
                   a->quant_min, a->server, a->api_key };
  for (size_t i = 0; i < G_N_ELEMENTS (strs); i++)
    g_free (strs[i]);
}

/* out.png for one image, out-1.png … out-N.png for several. */
static char *
output_name (const char *output, int index, int count)
{
  if (count == 1)
    return g_strdup (output);
  gsize len = strlen (output);
  if (len > 4 && g_ascii_strcasecmp (output + len - 4, ".png") == 0)
    len -= 4;
  return g_strdup_printf ("%.*s-%d.png", (int) len, output, index + 1);
}

/* ---- progress ----------------------------------------------------------- */

/* What the run's callbacks share (NsRequest has one user_data). */
typedef struct {
  NsCliProgress progress;
  const char *preview_dir;
} RunView;

static void
on_stage (NsStage stage, int done, int total, gpointer data)
{
  ns_cli_progress_on_stage (stage, done, total, &((RunView *) data)->progress);
}

static void
on_preview (int image, const guint8 *rgba, int width, int height, int tokens_done,
            gboolean vae_decoded, gpointer data)
{
  const char *preview_dir = ((RunView *) data)->preview_dir;
  int grid_w = width / 16;
  if (!vae_decoded && tokens_done % grid_w != 0)
    return;
  g_autofree char *name = g_strdup_printf ("preview-%d-%05d%s.png", image + 1, tokens_done,
                                           vae_decoded ? "-vae" : "");
  g_autofree char *path = g_build_filename (preview_dir, name, NULL);
  g_autoptr (GError) error = NULL;
  if (!ns_png_save_rgba (path, rgba, width, height, &error))
    fprintf (stderr, "warning: %s\n", error->message);
}

/* ---- options ------------------------------------------------------------ */

static gboolean
parse_choices (const Args *a, NsRequest *r, NsLoadOptions *lo, GError **error)
{
  if (a->sampler && !ns_sampler_from_name (a->sampler, &r->sampler))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--sampler %s: use hf-sde, gh-grid or ode", a->sampler), FALSE;
  if (a->backend && !ns_backend_from_name (a->backend, &lo->backend))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--backend %s: use auto, cpu, cuda or remote", a->backend), FALSE;
  if ((lo->backend == NS_BACKEND_REMOTE) != (a->server != NULL))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--backend remote and --server URL go together"), FALSE;
  if (a->weights && !ns_weight_format_from_name (a->weights, &lo->weights))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--weights %s: use auto, bf16, fp8, int8 or q4", a->weights), FALSE;
  if (a->memory_cap && !g_ascii_string_to_unsigned (a->memory_cap, 10, 1, G_MAXUINT64,
                                                    &lo->device_memory_cap, NULL))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--device-memory-cap %s: use a number of bytes", a->memory_cap), FALSE;
  guint64 quant_min = 0;
  if (a->quant_min && !g_ascii_string_to_unsigned (a->quant_min, 10, 1, G_MAXINT64, &quant_min,
                                                   NULL))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--quant-min-elements %s: use a number ≥ 1", a->quant_min), FALSE;
  lo->quant_min_elements = (int64_t) quant_min;
  if (a->cfg_schedule && strcmp (a->cfg_schedule, "constant") != 0
      && strcmp (a->cfg_schedule, "linear") != 0)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--cfg-schedule %s: use constant or linear", a->cfg_schedule), FALSE;
  r->cfg_schedule = a->cfg_schedule && strcmp (a->cfg_schedule, "linear") == 0
    ? NS_CFG_LINEAR : NS_CFG_CONSTANT;
  if (a->use_norm && strcmp (a->use_norm, "on") != 0 && strcmp (a->use_norm, "off") != 0
      && strcmp (a->use_norm, "auto") != 0)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--use-norm %s: use on, off or auto", a->use_norm), FALSE;
  r->use_norm = a->use_norm == NULL || strcmp (a->use_norm, "auto") == 0 ? -1
              : strcmp (a->use_norm, "on") == 0;
  if (a->seed && !g_ascii_string_to_unsigned (a->seed, 10, 0, G_MAXUINT64, &r->seed, NULL))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--seed %s: use a whole number ≥ 0", a->seed), FALSE;
  return TRUE;
}

static gboolean
check_numbers (const Args *a, gboolean edit, GError **error)
{
  if ((a->width == 0) != (a->height == 0))
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "Give both --width and --height, or neither"), FALSE;
  if (a->width < 0 || a->height < 0 || a->images < 0 || a->steps < 0 || a->threads < 0)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--width, --height, --images, --steps and --threads must be positive"),
           FALSE;
  if (a->prompt == NULL)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--prompt is required"), FALSE;
  if (a->output == NULL)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "-o OUT.png is required"), FALSE;
  if (edit && a->image == NULL)
    return g_set_error (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT,
                        "--image IN.png is required for edit"), FALSE;
  return TRUE;
}

static int
fail (GError *error)
{
  fprintf (stderr, "nextstep: %s\n", error->message);
  g_error_free (error);
  return 1;
}

/* Always said, not only on a terminal and not silenced by --quiet: a script
 * should see why a run is slow or its images differ. */
static void
say_choices (const NsModel *model, const NsLoadOptions *lo, NsCliProgress *progress)
{
  if (progress->tty && !progress->quiet)
    fputc ('\n', stderr);   /* keep the loading line */
  if (ns_model_get_backend_note (model) && lo->backend == NS_BACKEND_AUTO)
    fprintf (stderr, "Running on the CPU: %s\n", ns_model_get_backend_note (model));
  if (lo->weights != NS_WEIGHTS_AUTO || lo->backend == NS_BACKEND_REMOTE)
    return;
  gboolean cpu = ns_model_get_backend (model) == NS_BACKEND_CPU;
  NsWeightFormat chosen = ns_model_get_weight_format (model);
  fprintf (stderr, "Weights: %s (--weights auto: %s in %s)\n",
           ns_weight_format_name (chosen),
           chosen == NS_WEIGHTS_BF16 ? "bf16 fits"
           : chosen == NS_WEIGHTS_INT8 ? "bf16 does not fit"
                                       : "neither bf16 nor int8 fits",
           cpu ? "the available RAM" : "the GPU memory");
}

/* --timings: one "timing: STAGE MS" line per stage, for scripts. Per-token
 * figures divide by every token of every image; total includes the load. */
static void
print_timings (const NsResult *res, double load_ms)
{
  const NsRunTimings *t = &res->timings;
  double tokens = MAX (1, res->ntok * res->n_images);
  const struct { const char *name; double ms; } rows[] = {
    { "load", load_ms }, { "encode", t->encode_ms }, { "prefill", t->prefill_ms },
    { "tokens", t->tokens_ms }, { "per-token", t->tokens_ms / tokens },
    { "backbone-per-token", t->backbone_ms / tokens }, { "head-per-token", t->head_ms / tokens },
    { "vae", t->vae_ms }, { "total", load_ms + t->total_ms },
  };
  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    printf ("timing: %s %.1f\n", rows[i].name, rows[i].ms);
}

static gboolean
save_images (const NsResult *res, const char *output, GError **error)
{
  for (int i = 0; i < res->n_images; i++)
    {
      g_autofree char *path = output_name (output, i, res->n_images);
      if (!ns_png_save_rgba (path, res->rgba[i], res->width, res->height, error))
        return FALSE;
    }
  return TRUE;
}

static int
run_request (Args *a, gboolean edit)
{
  GError *error = NULL;
  NsRequest r;
  NsLoadOptions lo = { 0 };
  ns_request_init (&r);
  if (!check_numbers (a, edit, &error) || !parse_choices (a, &r, &lo, &error))
    return fail (error);
  g_autofree guint8 *input = NULL;
  if (edit && !(input = ns_png_load_rgba (a->image, &r.input.width, &r.input.height, &error)))
    return fail (error);
  r.input.rgba = input;
  r.input.stride = r.input.width * 4;
  r.mode = edit ? NS_MODE_EDIT : NS_MODE_GENERATE;
  r.prompt = a->prompt;
  r.positive = a->positive;
  r.negative = a->negative;
  r.width = a->width;
  r.height = a->height;
  r.images = a->images ? a->images : 1;
  r.steps = a->steps;
  r.cfg = a->cfg;
  r.cfg_img = a->cfg_img;
  r.shift = a->shift;
  r.noise_file = a->noise;

  /* Remote: --model names the server's model (default: the server's). */
  g_autofree char *model_dir = lo.backend == NS_BACKEND_REMOTE ? g_strdup (a->model)
                                                               : ns_model_find (a->model, edit,
                                                                                &error);
  if (model_dir == NULL && lo.backend != NS_BACKEND_REMOTE)
    return fail (error);
  lo.model_dir = model_dir;
  lo.vae_dir = a->vae;
  lo.threads = a->threads;
  lo.server = a->server;
  lo.api_key = a->api_key;
  lo.want_edit = edit;
  RunView view = { .preview_dir = a->preview_dir };
  NsCliProgress *progress = &view.progress;
  ns_cli_progress_init (progress, a->quiet);
  lo.progress = ns_cli_progress_on_load;
  lo.progress_data = progress;
  gint64 load_start = g_get_monotonic_time ();
  g_autoptr (NsModel) model = ns_model_load (&lo, &error);
  double load_ms = (g_get_monotonic_time () - load_start) / 1e3;
  if (model == NULL)
    {
      ns_cli_progress_finish (progress);
      return fail (error);
    }
  say_choices (model, &lo, progress);
  g_autofree char *warning = ns_model_mode_warning (model, r.mode);
  if (warning != NULL)
    fprintf (stderr, "Warning: %s\n", warning);

  r.on_stage = on_stage;
  r.timings = a->timings;
  r.user_data = &view;
  if (a->preview_dir)
    {
      if (g_mkdir_with_parents (a->preview_dir, 0755) != 0)
        {
          ns_cli_progress_finish (progress);
          fprintf (stderr, "nextstep: cannot create %s: %s\n", a->preview_dir,
                   g_strerror (errno));
          return 1;
        }
      r.on_preview = on_preview;
      r.preview_every = 8;
    }
  g_autoptr (NsResult) res = ns_model_run (model, &r, &error);
  ns_cli_progress_finish (progress);
  if (res == NULL || !save_images (res, a->output, &error)
      || (a->save_tokens && !ns_result_save_tokens (res, a->save_tokens, &error)))
    return fail (error);
  if (a->timings)
    print_timings (res, load_ms);
  return 0;
}

static int
command (int argc, char **argv, gboolean edit)
{
  Args a = { 0 };
  /* Prompt texts are FILENAME options: taken byte for byte (UTF-8 is checked
   * by the tokenizer), never converted from the locale's charset. */
  GOptionEntry common[] = {
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &a.model,
      "Model folder (default: search); remote: the server's model name", "DIR" },
    { "vae", 0, 0, G_OPTION_ARG_FILENAME, &a.vae, "VAE folder (default: beside the model)", "DIR" },
    { "prompt", 0, 0, G_OPTION_ARG_FILENAME, &a.prompt,
      edit ? "Editing instruction" : "Caption", "TEXT" },
    { "positive", 0, 0, G_OPTION_ARG_FILENAME, &a.positive, "Positive prompt ('' for none)", "TEXT" },
    { "negative", 0, 0, G_OPTION_ARG_FILENAME, &a.negative, "Negative prompt ('' for empty)", "TEXT" },
    { "width", 0, 0, G_OPTION_ARG_INT, &a.width, "Output width (multiple of 16)", "PX" },
    { "height", 0, 0, G_OPTION_ARG_INT, &a.height, "Output height (multiple of 16)", "PX" },
    { "images", 0, 0, G_OPTION_ARG_INT, &a.images, "Images to make (1)", "N" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &a.steps, "Sampling steps per token", "N" },
    { "cfg", 0, 0, G_OPTION_ARG_DOUBLE, &a.cfg, "Text guidance scale (≥ 1)", "F" },
    { "cfg-schedule", 0, 0, G_OPTION_ARG_STRING, &a.cfg_schedule, "constant or linear", "S" },
    { "shift", 0, 0, G_OPTION_ARG_DOUBLE, &a.shift, "Time shift", "F" },
    { "sampler", 0, 0, G_OPTION_ARG_STRING, &a.sampler, "hf-sde, gh-grid or ode", "NAME" },
    { "use-norm", 0, 0, G_OPTION_ARG_STRING, &a.use_norm, "on, off or auto", "MODE" },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &a.seed, "Random seed (42)", "N" },
    { "noise", 0, 0, G_OPTION_ARG_FILENAME, &a.noise, "Take the draws from a golden run file", "FILE" },
    { "save-tokens", 0, 0, G_OPTION_ARG_FILENAME, &a.save_tokens,
      "Write tokens, latents, decoded and image_u8 as safetensors", "FILE" },
    { "backend", 0, 0, G_OPTION_ARG_STRING, &a.backend, "auto, cpu, cuda or remote", "NAME" },
    { "server", 0, 0, G_OPTION_ARG_STRING, &a.server,
      "With --backend remote: the server (nextstep serve, vLLM-Omni)", "URL" },
    { "api-key", 0, 0, G_OPTION_ARG_STRING, &a.api_key, "The server's API key", "KEY" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &a.threads, "CPU threads (0 = all)", "N" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &a.weights,
      "auto, bf16, fp8, int8 or q4 (auto: bf16 when it fits in GPU memory or RAM, else int8, else q4)", "FORMAT" },
    /* Test hooks: pretend the device has this much memory; quantize small matrices too. */
    { "device-memory-cap", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &a.memory_cap, NULL, NULL },
    { "quant-min-elements", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &a.quant_min, NULL, NULL },
    { "preview-dir", 0, 0, G_OPTION_ARG_FILENAME, &a.preview_dir, "Write preview PNGs here", "DIR" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &a.output, "Output PNG", "OUT.png" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &a.quiet, "No progress on stderr", NULL },
    { "timings", 0, 0, G_OPTION_ARG_NONE, &a.timings,
      "Print 'timing: STAGE MS' lines on stdout (load, encode, prefill, tokens, per-token, "
      "backbone-per-token, head-per-token, vae, total)", NULL },
    G_OPTION_ENTRY_NULL
  };
  GOptionEntry edit_only[] = {
    { "image", 0, 0, G_OPTION_ARG_FILENAME, &a.image, "Input image", "IN.png" },
    { "cfg-img", 0, 0, G_OPTION_ARG_DOUBLE, &a.cfg_img, "Image guidance scale (≥ 1)", "F" },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new (NULL);
  g_option_context_set_summary (ctx, edit ? "Edit an image following an instruction."
                                          : "Generate images from a prompt.");
  g_option_context_add_main_entries (ctx, common, NULL);
  if (edit)
    g_option_context_add_main_entries (ctx, edit_only, NULL);
  GError *error = NULL;
  int rc;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "%s: %s\n", argv[0], error->message);
      g_error_free (error);
      rc = 2;
    }
  else if (argc > 1)
    {
      fprintf (stderr, "%s: unexpected argument '%s'\n", argv[0], argv[1]);
      rc = 2;
    }
  else
    rc = run_request (&a, edit);
  args_clear (&a);
  return rc;
}

int
ns_cmd_generate (int argc, char **argv)
{
  return command (argc, argv, FALSE);
}

int
ns_cmd_edit (int argc, char **argv)
{
  return command (argc, argv, TRUE);
}
