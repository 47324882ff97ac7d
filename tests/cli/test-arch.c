/* test-arch.c — the expected tensor set against the golden checkpoints, and
 * what ns_arch_check_model reports for damaged ones. */
#include <string.h>

#include "nextstep.h"
#include "files/safetensors.h"
#include "model/arch.h"
#include "test-util.h"

typedef struct {
  NsModelConfig cfg;
  NsTensorStore *store;
  char *dir;
} Golden;

static gboolean
golden_load (Golden *g, const char *name)
{
  g->dir = ns_test_golden_path (name, "model", NULL);
  if (g->dir == NULL)
    {
      g_test_skip ("no golden data");
      return FALSE;
    }
  g_autofree char *config = g_build_filename (g->dir, "config.json", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (ns_model_config_load (&g->cfg, config, &error));
  g->store = ns_safetensors_load_dir (g->dir, &error);
  g_assert_no_error (error);
  return TRUE;
}

static void
golden_clear (Golden *g)
{
  ns_model_config_clear (&g->cfg);
  g_clear_pointer (&g->store, ns_tensor_store_free);
  g_clear_pointer (&g->dir, g_free);
}

/* Fails the test when a problem line lacks `needle`, or none has it. */
static void
assert_problem (GPtrArray *problems, const char *needle)
{
  for (guint i = 0; i < problems->len; i++)
    if (strstr (problems->pdata[i], needle) != NULL)
      return;
  g_error ("no problem mentions \"%s\" (%u problems, first: %s)", needle, problems->len,
           problems->len ? (char *) problems->pdata[0] : "none");
}

static void
test_golden_complete (gconstpointer data)
{
  Golden g = { 0 };
  if (!golden_load (&g, data))
    return;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  gboolean ok = ns_arch_check_model (g.store, &g.cfg, problems);
  for (guint i = 0; i < problems->len; i++)
    g_printerr ("%s\n", (char *) problems->pdata[i]);
  g_assert_true (ok);
  g_assert_cmpuint (problems->len, ==, 0);

  /* Every stored tensor but the gen_pos_embed buffer is in the list. */
  g_autoptr (GArray) expected = ns_arch_expected_tensors (&g.cfg);
  g_assert_cmpuint (expected->len + 1, ==, ns_tensor_store_len (g.store));
  g_assert_cmpint (ns_arch_guess_kind (g.dir, &g.cfg), ==,
                   strstr (data, "edit") ? NS_MODEL_KIND_EDIT : NS_MODEL_KIND_T2I);
  golden_clear (&g);
}

static void
test_wrong_config (void)
{
  Golden g = { 0 };
  if (!golden_load (&g, "t2i-tiny"))
    return;
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  g.cfg.hidden_size *= 2;
  g_assert_false (ns_arch_check_model (g.store, &g.cfg, problems));
  assert_problem (problems, "norm.weight has shape");
  assert_problem (problems, "model-00001-of-00003.safetensors: embed_tokens.weight");

  g.cfg.hidden_size /= 2;
  g.cfg.num_hidden_layers -= 1;
  g.cfg.o_attention_bias = TRUE;
  g.cfg.use_gen_pos_embed = TRUE;
  g_ptr_array_set_size (problems, 0);
  g_assert_false (ns_arch_check_model (g.store, &g.cfg, problems));
  assert_problem (problems, "unexpected tensor layers.1.self_attn.q_proj.weight");
  assert_problem (problems, "missing tensor layers.0.self_attn.o_proj.bias");
  golden_clear (&g);
}

/* A copy of the golden store without `drop` and with extra views. */
static void
test_damaged_store (void)
{
  Golden g = { 0 };
  if (!golden_load (&g, "edit-tiny"))
    return;
  g_autoptr (NsTensorStore) copy = ns_tensor_store_new ();
  for (guint i = 0; i < ns_tensor_store_len (g.store); i++)
    {
      const NsTensorView *t = ns_tensor_store_get (g.store, i);
      if (strcmp (t->name, "image_head.net.cond_embed.bias") != 0
          && strcmp (t->name, "gen_pos_embed") != 0)
        g_assert_true (ns_tensor_store_add (copy, t, NULL));
    }
  static const int32_t ints[4] = { 0 };
  NsTensorView extra = { (char *) "image_head.net.extra", NS_DTYPE_F32, 1, { 4 }, ints, 16, NULL };
  NsTensorView as_int = { (char *) "gen_pos_embed", NS_DTYPE_I32, 3, { 1, 2, g.cfg.hidden_size },
                          ints, 16, NULL };
  g_assert_true (ns_tensor_store_add (copy, &extra, NULL));
  g_assert_true (ns_tensor_store_add (copy, &as_int, NULL));
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  g_assert_false (ns_arch_check_model (copy, &g.cfg, problems));
  assert_problem (problems, "missing tensor image_head.net.cond_embed.bias");
  assert_problem (problems, "unexpected tensor image_head.net.extra [4]");
  assert_problem (problems, "gen_pos_embed has shape [1, 2,");
  assert_problem (problems, "gen_pos_embed has dtype I32");
  g_assert_cmpuint (problems->len, ==, 4);
  golden_clear (&g);
}

static void
test_guess_kind (void)
{
  NsModelConfig cfg = { 0 };
  g_assert_cmpint (ns_arch_guess_kind ("/models/NextStep-1.1", &cfg), ==, NS_MODEL_KIND_T2I);
  g_assert_cmpint (ns_arch_guess_kind ("/hub/models--stepfun-ai--NextStep-1-Large-Edit/snapshots/x",
                                       &cfg), ==, NS_MODEL_KIND_EDIT);
  cfg.name_or_path = (char *) "stepfun-ai/NextStep-1-Large-EDIT";
  g_assert_cmpint (ns_arch_guess_kind ("/models/x", &cfg), ==, NS_MODEL_KIND_EDIT);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/arch/golden/t2i", "t2i-tiny", test_golden_complete);
  g_test_add_data_func ("/arch/golden/edit", "edit-tiny", test_golden_complete);
  g_test_add_func ("/arch/wrong-config", test_wrong_config);
  g_test_add_func ("/arch/damaged-store", test_damaged_store);
  g_test_add_func ("/arch/guess-kind", test_guess_kind);
  return g_test_run ();
}
