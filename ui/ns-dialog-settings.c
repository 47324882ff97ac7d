/* ns-dialog-settings.c — see ns-dialog-settings.h. */
#include "ns-dialog-settings.h"

void
ns_dialog_settings_init (NsDialogSettings *settings)
{
  *settings = (NsDialogSettings) {
    .mode = NS_MODE_GENERATE,
    .width = 512,
    .height = 512,
    .sampler = NS_SAMPLER_DEFAULT,
    .seed_mode = NS_SEED_RANDOM,
    .images = 1,
    .weights = NS_WEIGHTS_AUTO,
    .backend = NS_BACKEND_AUTO,
  };
}

void
ns_dialog_settings_clear (NsDialogSettings *settings)
{
  g_free (settings->prompt);
  g_free (settings->negative);
  g_free (settings->model_dir);
  g_free (settings->vae_dir);
  g_free (settings->server);
  g_free (settings->api_key);
  ns_dialog_settings_init (settings);
}

void
ns_dialog_settings_copy (NsDialogSettings *dest, const NsDialogSettings *src)
{
  *dest = *src;
  dest->prompt = g_strdup (src->prompt);
  dest->negative = g_strdup (src->negative);
  dest->model_dir = g_strdup (src->model_dir);
  dest->vae_dir = g_strdup (src->vae_dir);
  dest->server = g_strdup (src->server);
  dest->api_key = g_strdup (src->api_key);
}

static gboolean
bad_name (GError **error, const char *field, const char *value)
{
  g_set_error (error, NS_ERROR, NS_ERROR_FORMAT,
               "Recipe field “%s” has the unknown value “%s”", field, value);
  return FALSE;
}

gboolean
ns_dialog_settings_from_recipe (NsDialogSettings *settings, const NsRecipe *recipe,
                                GError **error)
{
  NsDialogSettings s;
  ns_dialog_settings_init (&s);
  s.mode = g_strcmp0 (recipe->mode, "edit") == 0 ? NS_MODE_EDIT : NS_MODE_GENERATE;
  if (!ns_sampler_from_name (recipe->sampler, &s.sampler))
    return bad_name (error, "sampler", recipe->sampler);
  if (recipe->backend != NULL && !ns_backend_from_name (recipe->backend, &s.backend))
    return bad_name (error, "backend", recipe->backend);
  if (recipe->precision != NULL && !ns_weight_format_from_name (recipe->precision, &s.weights))
    return bad_name (error, "precision", recipe->precision);
  s.prompt = g_strdup (recipe->prompt);
  s.negative = g_strdup (recipe->negative);
  s.width = recipe->width;
  s.height = recipe->height;
  s.steps = recipe->steps;
  s.cfg = recipe->cfg;
  s.cfg_img = recipe->cfg_img;
  s.seed_mode = NS_SEED_FIXED;
  s.seed = recipe->seed;
  s.images = recipe->images;
  s.model_dir = g_strdup (recipe->model);
  s.server = g_steal_pointer (&settings->server);
  s.api_key = g_steal_pointer (&settings->api_key);
  ns_dialog_settings_clear (settings);
  *settings = s;
  return TRUE;
}
