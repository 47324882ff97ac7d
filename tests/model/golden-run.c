/* golden-run.c — see golden-run.h. */
#include <stdlib.h>
#include <string.h>

#include "golden-run.h"

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

char **
golden_run_names (const char *case_name)
{
  g_autofree char *dir = ns_test_golden_path (case_name, "runs", NULL);
  GPtrArray *names = g_ptr_array_new ();
  GDir *d = dir ? g_dir_open (dir, 0, NULL) : NULL;
  const char *entry;
  while (d && (entry = g_dir_read_name (d)) != NULL)
    if (g_str_has_suffix (entry, ".json"))
      g_ptr_array_add (names, g_strndup (entry, strlen (entry) - 5));
  if (d)
    g_dir_close (d);
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (names, FALSE);
}

void
golden_run_add_tests (const char *prefix, GTestDataFunc func)
{
  static const char *const cases[] = { "t2i-tiny", "edit-tiny" };
  for (size_t c = 0; c < G_N_ELEMENTS (cases) && ns_test_golden_dir (); c++)
    {
      g_auto (GStrv) names = golden_run_names (cases[c]);
      for (char **n = names; *n; n++)
        {
          char **pair = g_new0 (char *, 3);
          pair[0] = g_strdup (cases[c]);
          pair[1] = g_strdup (*n);
          g_autofree char *path = g_strdup_printf ("%s/%s/%s", prefix, cases[c], *n);
          g_test_add_data_func_full (path, pair, func, (GDestroyNotify) g_strfreev);
        }
    }
}

static char *
nullable_string (JsonObject *o, const char *name)
{
  JsonNode *node = json_object_get_member (o, name);
  return node == NULL || JSON_NODE_HOLDS_NULL (node) ? g_strdup ("")
                                                     : g_strdup (json_node_get_string (node));
}

static void
load_input (GoldenRun *run)
{
  const NsTensorView *t = ns_tensor_store_find (run->tensors, "input_image_u8");
  g_assert_nonnull (t);
  run->in_h = (int) t->shape[0];
  run->in_w = (int) t->shape[1];
  run->input_rgba = g_new (guint8, (size_t) run->in_h * run->in_w * 4);
  const guint8 *rgb = t->data;
  for (size_t px = 0; px < (size_t) run->in_h * run->in_w; px++)
    {
      memcpy (run->input_rgba + px * 4, rgb + px * 3, 3);
      run->input_rgba[px * 4 + 3] = 255;
    }
}

GoldenRun *
golden_run_load (const char *case_name, const char *run_name)
{
  GoldenRun *run = g_new0 (GoldenRun, 1);
  run->case_name = g_strdup (case_name);
  run->run_name = g_strdup (run_name);
  run->model_dir = ns_test_golden_path (case_name, "model", NULL);
  g_autofree char *json = g_strdup_printf ("%s.json", run_name);
  g_autofree char *st = g_strdup_printf ("%s.safetensors", run_name);
  g_autofree char *json_path = ns_test_golden_path (case_name, "runs", json, NULL);
  run->tensors_path = ns_test_golden_path (case_name, "runs", st, NULL);
  run->parser = ns_test_load_json (json_path);
  run->root = json_node_get_object (json_parser_get_root (run->parser));
  run->tensors = ns_test_load_safetensors (run->tensors_path);
  JsonObject *o = run->root;
  const char *caption = json_object_get_string_member (o, "caption");
  const char *image_tag = strstr (caption, "<image>");
  run->edit = image_tag != NULL;
  run->prompt = g_strdup (run->edit ? image_tag + strlen ("<image>") : caption);
  run->positive = nullable_string (o, "positive");
  run->negative = nullable_string (o, "negative");
  JsonArray *hw = json_object_get_array_member (o, "hw");
  run->height = (int) json_array_get_int_element (hw, 0);
  run->width = (int) json_array_get_int_element (hw, 1);
  run->n = (int) json_object_get_int_member (o, "n");
  run->steps = (int) json_object_get_int_member (o, "steps");
  run->cfg = json_object_get_double_member (o, "cfg");
  run->cfg_img = json_object_get_double_member (o, "cfg_img");
  run->shift = json_object_get_double_member (o, "shift");
  run->sampler = json_object_get_string_member (o, "sampler");
  run->cfg_schedule = json_object_get_string_member (o, "cfg_schedule");
  run->use_norm = json_object_get_boolean_member (o, "use_norm");
  if (run->edit)
    load_input (run);
  return run;
}

void
golden_run_free (GoldenRun *run)
{
  g_free (run->case_name);
  g_free (run->run_name);
  g_free (run->model_dir);
  g_free (run->tensors_path);
  g_free (run->prompt);
  g_free (run->positive);
  g_free (run->negative);
  g_free (run->input_rgba);
  ns_tensor_store_free (run->tensors);
  g_object_unref (run->parser);
  g_free (run);
}

void
golden_run_request (const GoldenRun *run, NsRequest *r)
{
  ns_request_init (r);
  r->mode = run->edit ? NS_MODE_EDIT : NS_MODE_GENERATE;
  r->prompt = run->prompt;
  r->positive = run->positive;
  r->negative = run->negative;
  r->width = run->width;
  r->height = run->height;
  r->images = run->n;
  r->steps = run->steps;
  r->cfg = run->cfg;
  r->cfg_img = run->cfg_img;
  r->shift = run->shift;
  g_assert_true (ns_sampler_from_name (run->sampler, &r->sampler));
  r->cfg_schedule = strcmp (run->cfg_schedule, "linear") == 0 ? NS_CFG_LINEAR : NS_CFG_CONSTANT;
  r->use_norm = run->use_norm;
  r->noise_file = run->tensors_path;
  if (run->edit)
    r->input = (NsImage) { run->in_w, run->in_h, run->input_rgba, run->in_w * 4 };
}

void
golden_run_compare (const GoldenRun *run, const char *name, const float *ours,
                    const guint8 *keep)
{
  g_autofree char *ref_name = g_strdup_printf ("%s_f64", name);
  const NsTensorView *ref = ns_tensor_store_find (run->tensors, ref_name);
  g_assert_nonnull (ref);
  double tol = ns_test_tolerance (run->root, name, 1e-6);
  double err = ns_test_rel_error_masked (ours, ref, (size_t) ns_tensor_n_elements (ref), keep);
  g_test_message ("%s/%s %s: rel error %.3g (tolerance %.3g)", run->case_name, run->run_name,
                  name, err, tol);
  if (!(err <= tol))
    g_test_fail_printf ("%s/%s %s: rel error %.3g exceeds tolerance %.3g", run->case_name,
                        run->run_name, name, err, tol);
}

static void
check_image_u8 (const GoldenRun *run, const guint8 *image_u8)
{
  const NsTensorView *ref = ns_tensor_store_find (run->tensors, "image_u8_f64");
  g_assert_nonnull (ref);
  JsonObject *rule = json_object_get_object_member (run->root, "image_u8_rule");
  int max_abs = (int) json_object_get_int_member (rule, "max_abs_diff");
  double max_fraction = json_object_get_double_member (rule, "max_fraction");
  const guint8 *want = ref->data;
  size_t n = (size_t) ns_tensor_n_elements (ref), differ = 0;
  int worst = 0;
  for (size_t i = 0; i < n; i++)
    {
      int d = abs ((int) image_u8[i] - (int) want[i]);
      worst = MAX (worst, d);
      differ += d != 0;
    }
  g_test_message ("%s/%s image_u8: max diff %d, %zu of %zu differ", run->case_name,
                  run->run_name, worst, differ, n);
  if (worst > max_abs || differ > max_fraction * n)
    g_test_fail_printf ("%s/%s image_u8: max diff %d (allowed %d), %zu of %zu values differ "
                        "(allowed fraction %g)", run->case_name, run->run_name, worst, max_abs,
                        differ, n, max_fraction);
}

void
golden_run_check (const GoldenRun *run, const float *tokens, const float *latents,
                  const float *decoded, const guint8 *image_u8)
{
  golden_run_compare (run, "tokens", tokens, NULL);
  golden_run_compare (run, "latents", latents, NULL);
  golden_run_compare (run, "decoded", decoded, NULL);
  check_image_u8 (run, image_u8);
}
