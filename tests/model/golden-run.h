/* golden-run.h — a golden run (<case>/runs/<run>.json + .safetensors) as a
 * request, and the comparison of a result with its float64 tensors. */
#pragma once

#include "test-util.h"
#include "nextstep.h"

typedef struct {
  char *case_name, *run_name;
  char *model_dir, *tensors_path;
  JsonParser *parser;
  JsonObject *root;
  NsTensorStore *tensors;
  gboolean edit;
  char *prompt;             /* caption, or the instruction after "<image>" */
  char *positive, *negative;  /* "" when the JSON says null */
  int height, width, n, steps;
  double cfg, cfg_img, shift;
  const char *sampler, *cfg_schedule;
  gboolean use_norm;
  guint8 *input_rgba;       /* edit: RGBA8 of input_image_u8 */
  int in_h, in_w;
} GoldenRun;

/* Every run name of a case ("t2i-ghgrid-64", …), sorted; NULL-terminated. */
char **golden_run_names (const char *case_name);
/* Registers `func` once per golden run of both tiny cases as
 * "<prefix>/<case>/<run>"; its data is the strings {case, run}. */
void golden_run_add_tests (const char *prefix, GTestDataFunc func);
GoldenRun *golden_run_load (const char *case_name, const char *run_name);
void golden_run_free (GoldenRun *run);
/* The request of the run (strings point into `run`); noise from its file. */
void golden_run_request (const GoldenRun *run, NsRequest *r);
/* Compares tokens/latents/decoded with the _f64 tensors within the run's
 * tolerances and image_u8 (rgb [n, H, W, 3]) with image_u8_f64 by its rule. */
void golden_run_check (const GoldenRun *run, const float *tokens, const float *latents,
                       const float *decoded, const guint8 *image_u8);
/* Compares `ours` with tensor name_f64 within tolerance[name]; `keep` may
 * select a subset. */
void golden_run_compare (const GoldenRun *run, const char *name, const float *ours,
                         const guint8 *keep);
