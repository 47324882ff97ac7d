/* test-golden-cli.c — every golden run reproduced through `nextstep generate`
 * / `nextstep edit` with --noise and --save-tokens, plus CLI input errors. */
#include <string.h>
#include <png.h>

#include "golden-run.h"
#include "files/safetensors.h"

static char *
fmt_double (double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  return g_strdup (g_ascii_dtostr (buf, sizeof buf, v));
}

static void
write_input_png (const GoldenRun *run, const char *path)
{
  png_image img;
  memset (&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = run->in_w;
  img.height = run->in_h;
  img.format = PNG_FORMAT_RGBA;
  g_assert_true (png_image_write_to_file (&img, path, 0, run->input_rgba, run->in_w * 4, NULL));
}

/* Runs the CLI; returns its exit status, stderr in *err. */
static int
run_cli (GPtrArray *args, char **err)
{
  g_ptr_array_insert (args, 0, g_strdup (g_getenv ("NS_CLI")));
  g_ptr_array_add (args, NULL);
  g_autoptr (GError) error = NULL;
  int status = 0;
  g_assert_true (g_spawn_sync (NULL, (char **) args->pdata, NULL, G_SPAWN_STDOUT_TO_DEV_NULL,
                               NULL, NULL, NULL, err, &status, &error));
  g_assert_no_error (error);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
add (GPtrArray *args, const char *flag, char *value)
{
  g_ptr_array_add (args, g_strdup (flag));
  g_ptr_array_add (args, value);
}

static GPtrArray *
run_args (const GoldenRun *run, const char *tmp)
{
  GPtrArray *a = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (a, g_strdup (run->edit ? "edit" : "generate"));
  add (a, "--model", g_strdup (run->model_dir));
  add (a, "--vae", ns_test_golden_path (run->case_name, "vae", NULL));
  add (a, "--prompt", g_strdup (run->prompt));
  add (a, "--positive", g_strdup (run->positive));
  add (a, "--negative", g_strdup (run->negative));
  add (a, "--width", g_strdup_printf ("%d", run->width));
  add (a, "--height", g_strdup_printf ("%d", run->height));
  add (a, "--images", g_strdup_printf ("%d", run->n));
  add (a, "--steps", g_strdup_printf ("%d", run->steps));
  add (a, "--cfg", fmt_double (run->cfg));
  add (a, "--cfg-schedule", g_strdup (run->cfg_schedule));
  add (a, "--shift", fmt_double (run->shift));
  add (a, "--sampler", g_strdup (run->sampler));
  add (a, "--use-norm", g_strdup (run->use_norm ? "on" : "off"));
  add (a, "--noise", g_strdup (run->tensors_path));
  add (a, "--save-tokens", g_build_filename (tmp, "out.safetensors", NULL));
  add (a, "--threads", g_strdup ("1"));
  add (a, "-o", g_build_filename (tmp, "out.png", NULL));
  if (run->edit)
    {
      g_autofree char *in = g_build_filename (tmp, "in.png", NULL);
      write_input_png (run, in);
      add (a, "--image", g_strdup (in));
      add (a, "--cfg-img", fmt_double (run->cfg_img));
    }
  return a;
}

static void
check_outputs (const GoldenRun *run, const char *tmp)
{
  g_autofree char *saved = g_build_filename (tmp, "out.safetensors", NULL);
  NsTensorStore *st = ns_test_load_safetensors (saved);
  const char *names[] = { "tokens", "latents", "decoded", "image_u8" };
  const float *f[3];
  for (int i = 0; i < 4; i++)
    {
      const NsTensorView *t = ns_tensor_store_find (st, names[i]);
      const NsTensorView *ref = ns_tensor_store_find (run->tensors, names[i]);
      g_assert_nonnull (t);
      g_assert_cmpint (t->n_dims, ==, ref->n_dims);
      for (int d = 0; d < t->n_dims; d++)
        g_assert_cmpint (t->shape[d], ==, ref->shape[d]);
      g_assert_cmpint (t->dtype, ==, i < 3 ? NS_DTYPE_F32 : NS_DTYPE_U8);
      if (i < 3)
        f[i] = t->data;
    }
  golden_run_check (run, f[0], f[1], f[2], ns_tensor_store_find (st, "image_u8")->data);
  for (int i = 0; i < run->n; i++)
    {
      g_autofree char *name = run->n == 1 ? g_strdup ("out.png")
                                          : g_strdup_printf ("out-%d.png", i + 1);
      g_autofree char *png = g_build_filename (tmp, name, NULL);
      g_assert_true (g_file_test (png, G_FILE_TEST_IS_REGULAR));
    }
  ns_tensor_store_free (st);
}

static void
test_golden_run (gconstpointer data)
{
  const char *const *names = data;
  if (ns_test_golden_dir () == NULL || g_getenv ("NS_CLI") == NULL)
    {
      g_test_skip ("no golden data or CLI");
      return;
    }
  GoldenRun *run = golden_run_load (names[0], names[1]);
  g_autofree char *tmp = ns_test_tmpdir ();
  g_autoptr (GPtrArray) args = run_args (run, tmp);
  g_autofree char *err = NULL;
  int rc = run_cli (args, &err);
  if (rc != 0)
    g_test_fail_printf ("nextstep exited with %d: %s", rc, err);
  else
    check_outputs (run, tmp);
  ns_test_rmtree (tmp);
  golden_run_free (run);
}

/* Bad input gives a message and a non-zero status, never a crash. */
static void
test_cli_errors (void)
{
  if (ns_test_golden_dir () == NULL || g_getenv ("NS_CLI") == NULL)
    {
      g_test_skip ("no golden data or CLI");
      return;
    }
  g_autofree char *tmp = ns_test_tmpdir ();
  g_autofree char *bad_png = g_build_filename (tmp, "bad.png", NULL);
  g_assert_true (g_file_set_contents (bad_png, "not a png", -1, NULL));
  g_autofree char *model = ns_test_golden_path ("edit-tiny", "model", NULL);
  g_autofree char *out = g_build_filename (tmp, "o.png", NULL);
  const char *const cases[][2] = {
    { "--image", bad_png },        /* edit: damaged input */
    { "--cfg", "0.5" },            /* guidance below 1 */
    { "--sampler", "euler" },      /* unknown sampler */
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GPtrArray) a = g_ptr_array_new_with_free_func (g_free);
      g_ptr_array_add (a, g_strdup ("edit"));
      add (a, "--model", g_strdup (model));
      add (a, "--prompt", g_strdup ("x"));
      add (a, "-o", g_strdup (out));
      if (i > 0)
        add (a, "--image", g_strdup (bad_png));
      add (a, cases[i][0], g_strdup (cases[i][1]));
      g_autofree char *err = NULL;
      int rc = run_cli (a, &err);
      g_assert_cmpint (rc, !=, 0);
      g_assert_true (strstr (err, "nextstep") != NULL);
    }
  ns_test_rmtree (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  golden_run_add_tests ("/model/cli/golden", test_golden_run);
  g_test_add_func ("/model/cli/errors", test_cli_errors);
  return g_test_run ();
}
