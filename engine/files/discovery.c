/* discovery.c — where the model and VAE folders are (ns_model_find,
 * ns_vae_find) and the names of the enum options the CLI and the plug-in
 * show (ns-api-model.h). The Hugging Face cache keeps each repo as
 * <hub>/models--<org>--<name>/{refs/main, snapshots/<hash>/…}; refs/main
 * holds the hash of the snapshot the last download fetched. */
#include <string.h>

#include "nextstep.h"
#include "files/config.h"

/* ---- Enum names ------------------------------------------------------------ */

static const char *const sampler_names[] = { "hf-sde", "gh-grid", "ode" };
static const char *const backend_names[] = { "auto", "cpu", "cuda", "remote" };
static const char *const weight_names[] = { "auto", "bf16", "fp8", "int8", "q4" };

static const char *
name_of (const char *const *names, gsize n, int value)
{
  return value >= 0 && (gsize) value < n ? names[value] : NULL;
}

static gboolean
value_of (const char *const *names, gsize n, const char *name, int *out)
{
  for (gsize i = 0; name != NULL && i < n; i++)
    if (g_ascii_strcasecmp (name, names[i]) == 0)
      {
        *out = (int) i;
        return TRUE;
      }
  return FALSE;
}

const char *
ns_sampler_name (NsSampler sampler)
{
  return name_of (sampler_names, G_N_ELEMENTS (sampler_names), sampler);
}

gboolean
ns_sampler_from_name (const char *name, NsSampler *out)
{
  int v;
  if (!value_of (sampler_names, G_N_ELEMENTS (sampler_names), name, &v))
    return FALSE;
  *out = (NsSampler) v;
  return TRUE;
}

const char *
ns_backend_name (NsBackendKind backend)
{
  return name_of (backend_names, G_N_ELEMENTS (backend_names), backend);
}

gboolean
ns_backend_from_name (const char *name, NsBackendKind *out)
{
  int v;
  if (!value_of (backend_names, G_N_ELEMENTS (backend_names), name, &v))
    return FALSE;
  *out = (NsBackendKind) v;
  return TRUE;
}

const char *
ns_weight_format_name (NsWeightFormat format)
{
  return name_of (weight_names, G_N_ELEMENTS (weight_names), format);
}

gboolean
ns_weight_format_from_name (const char *name, NsWeightFormat *out)
{
  int v;
  if (!value_of (weight_names, G_N_ELEMENTS (weight_names), name, &v))
    return FALSE;
  *out = (NsWeightFormat) v;
  return TRUE;
}

/* ---- Folders ---------------------------------------------------------------- */

#define VAE_REPO "NextStep-1-f8ch16-Tokenizer"

/* The hub folder of the Hugging Face cache the environment names. */
static char *
default_hub (void)
{
  const char *hub = g_getenv ("HF_HUB_CACHE");
  if (hub != NULL && *hub != '\0')
    return g_strdup (hub);
  const char *home = g_getenv ("HF_HOME");
  if (home != NULL && *home != '\0')
    return g_build_filename (home, "hub", NULL);
  return g_build_filename (g_get_home_dir (), ".cache", "huggingface", "hub", NULL);
}

static gboolean
has_files (const char *dir, const char *const *names)
{
  for (; *names != NULL; names++)
    {
      g_autofree char *path = g_build_filename (dir, *names, NULL);
      if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
        return FALSE;
    }
  return TRUE;
}

/* The snapshot of a cache repo folder (models--org--name) that holds all of
 * `names`: the one refs/main names, else the first such snapshot by name
 * (a download by revision leaves no refs/main). NULL when none. */
static char *
repo_snapshot (const char *repo_dir, const char *const *names)
{
  g_autofree char *ref_path = g_build_filename (repo_dir, "refs", "main", NULL);
  g_autofree char *ref = NULL;
  if (g_file_get_contents (ref_path, &ref, NULL, NULL))
    {
      g_autofree char *snap = g_build_filename (repo_dir, "snapshots", g_strstrip (ref), NULL);
      if (*ref != '\0' && strchr (ref, '/') == NULL && has_files (snap, names))
        return g_steal_pointer (&snap);
    }
  g_autofree char *snaps = g_build_filename (repo_dir, "snapshots", NULL);
  g_autoptr (GDir) dir = g_dir_open (snaps, 0, NULL);
  g_autofree char *best = NULL;
  for (const char *e = dir ? g_dir_read_name (dir) : NULL; e != NULL; e = g_dir_read_name (dir))
    {
      g_autofree char *snap = g_build_filename (snaps, e, NULL);
      if (has_files (snap, names) && (best == NULL || strcmp (e, best) < 0))
        {
          g_free (best);
          best = g_strdup (e);
        }
    }
  return best != NULL ? g_build_filename (snaps, best, NULL) : NULL;
}

/* A folder given by the user: the folder itself when it holds `names`, or a
 * cache repo folder (models--…) resolved to its snapshot. */
static char *
resolve_dir (const char *dir, const char *const *names)
{
  if (has_files (dir, names))
    return g_strdup (dir);
  return repo_snapshot (dir, names);
}

/* The snapshot of stepfun-ai/<repo> in `hub`, noting the place in `looked`. */
static char *
hub_snapshot (const char *hub, const char *repo, const char *const *names, GString *looked)
{
  g_autofree char *folder = g_strdup_printf ("models--stepfun-ai--%s", repo);
  g_autofree char *repo_dir = g_build_filename (hub, folder, NULL);
  char *snap = repo_snapshot (repo_dir, names);
  if (snap == NULL)
    g_string_append_printf (looked, "\n  %s (%s)", repo_dir,
                            g_file_test (repo_dir, G_FILE_TEST_IS_DIR)
                              ? "no complete snapshot" : "absent");
  return snap;
}

static const char *const model_files[] = { "config.json", NULL };
static const char *const vae_files[] = { "config.json", "checkpoint.pt", NULL };

/* A folder the user named (--model / $NEXTSTEP_MODEL / --vae) must be
 * usable: silently looking elsewhere would run another model. */
static char *
named_dir (const char *dir, const char *what, const char *const *names, const char *hint,
           GError **error)
{
  char *found = resolve_dir (dir, names);
  if (found == NULL)
    {
      g_autofree char *list = g_strjoinv (" and ", (char **) names);
      g_set_error (error, NS_ERROR, NS_ERROR_FILE,
                   "%s '%s' has no %s (and is not a Hugging Face cache folder with such a "
                   "snapshot): %s", what, dir, list, hint);
    }
  return found;
}

char *
ns_model_find (const char *explicit_dir, gboolean want_edit, GError **error)
{
  static const char *const t2i_order[] = { "NextStep-1.1", "NextStep-1-Large",
                                           "NextStep-1-Large-Edit" };
  static const char *const edit_order[] = { "NextStep-1-Large-Edit", "NextStep-1.1",
                                            "NextStep-1-Large" };
  const char *hint = "point it at a NextStep-1 model folder (the one with config.json "
                     "and model*.safetensors)";
  if (explicit_dir != NULL)
    return named_dir (explicit_dir, "The model folder", model_files, hint, error);
  const char *env = g_getenv ("NEXTSTEP_MODEL");
  if (env != NULL && *env != '\0')
    return named_dir (env, "$NEXTSTEP_MODEL", model_files, hint, error);

  g_autofree char *hub = default_hub ();
  g_autoptr (GString) looked = g_string_new (NULL);
  const char *const *order = want_edit ? edit_order : t2i_order;
  for (gsize i = 0; i < G_N_ELEMENTS (t2i_order); i++)
    {
      char *snap = hub_snapshot (hub, order[i], model_files, looked);
      if (snap != NULL)
        return snap;
    }
  const char *repo = want_edit ? "NextStep-1-Large-Edit" : "NextStep-1.1";
  g_set_error (error, NS_ERROR, NS_ERROR_FILE,
               "No NextStep-1 model found. $NEXTSTEP_MODEL is not set, and the Hugging Face "
               "cache has none:%s\nDownload one with `hf download stepfun-ai/%s` (older "
               "clients: `huggingface-cli download stepfun-ai/%s`), or pass --model DIR or "
               "set $NEXTSTEP_MODEL to a model folder.", looked->str, repo, repo);
  return NULL;
}

/* The hub folder a snapshot folder lives in (<hub>/models--…/snapshots/<hash>),
 * NULL when `dir` is not inside a cache. */
static char *
hub_of (const char *dir)
{
  g_autofree char *snapshots = g_path_get_dirname (dir);
  g_autofree char *base = g_path_get_basename (snapshots);
  if (strcmp (base, "snapshots") != 0)
    return NULL;
  g_autofree char *repo_dir = g_path_get_dirname (snapshots);
  g_autofree char *repo = g_path_get_basename (repo_dir);
  if (!g_str_has_prefix (repo, "models--"))
    return NULL;
  return g_path_get_dirname (repo_dir);
}

/* <model>/vae, then the config's vae_name_or_path (relative to the model
 * folder, not to the working directory as the official code does). */
static char *
vae_beside_model (const char *model_dir, GString *looked)
{
  g_autofree char *inside = g_build_filename (model_dir, "vae", NULL);
  if (has_files (inside, vae_files))
    return g_steal_pointer (&inside);
  g_string_append_printf (looked, "\n  %s", inside);

  NsModelConfig cfg;
  g_autofree char *config_path = g_build_filename (model_dir, "config.json", NULL);
  if (!ns_model_config_load (&cfg, config_path, NULL))
    return NULL;
  char *found = NULL;
  if (cfg.vae_name_or_path != NULL && *cfg.vae_name_or_path != '\0')
    {
      g_autofree char *path = g_path_is_absolute (cfg.vae_name_or_path)
                                ? g_strdup (cfg.vae_name_or_path)
                                : g_build_filename (model_dir, cfg.vae_name_or_path, NULL);
      g_autofree char *canon = g_canonicalize_filename (path, NULL);
      found = resolve_dir (canon, vae_files);
      if (found == NULL && strcmp (canon, inside) != 0)
        g_string_append_printf (looked, "\n  %s (vae_name_or_path of %s)", canon, config_path);
    }
  ns_model_config_clear (&cfg);
  return found;
}

char *
ns_vae_find (const char *model_dir, const char *explicit_dir, GError **error)
{
  if (explicit_dir != NULL)
    return named_dir (explicit_dir, "The VAE folder", vae_files,
                      "point --vae at the NextStep-1-f8ch16-Tokenizer folder", error);
  g_return_val_if_fail (model_dir != NULL, NULL);

  g_autoptr (GString) looked = g_string_new (NULL);
  char *found = vae_beside_model (model_dir, looked);
  g_autofree char *model_hub = hub_of (model_dir);
  g_autofree char *env_hub = default_hub ();
  if (found == NULL && model_hub != NULL)
    found = hub_snapshot (model_hub, VAE_REPO, vae_files, looked);
  if (found == NULL && (model_hub == NULL || strcmp (model_hub, env_hub) != 0))
    found = hub_snapshot (env_hub, VAE_REPO, vae_files, looked);
  if (found == NULL)
    g_set_error (error, NS_ERROR, NS_ERROR_FILE,
                 "No VAE (a folder with config.json and checkpoint.pt) found for the model "
                 "in %s. Looked in:%s\nDownload it with `hf download stepfun-ai/" VAE_REPO
                 "` (older clients: `huggingface-cli download stepfun-ai/" VAE_REPO
                 "`), or pass --vae DIR.", model_dir, looked->str);
  return found;
}
