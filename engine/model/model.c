/* model.c — the NsModel interface: loading picks the implementation (a
 * local checkpoint, or a server with NS_BACKEND_REMOTE); every other call
 * goes through the model's class or reads the part they share. */
#include <string.h>

#include "model/model-iface.h"

void
ns_model_base_init (NsModel *m, const NsModelClass *klass, const char *dir, const char *name)
{
  m->klass = klass;
  m->dir = g_strdup (dir);
  m->name = g_strdup (name);
  m->kind = NS_MODEL_KIND_T2I;
}

gboolean
ns_model_guess_large_style (const char *name_hint, const char *dir)
{
  g_autofree char *text = g_ascii_strdown (name_hint ? name_hint : dir, -1);
  g_autofree char *folder = g_ascii_strdown (dir, -1);
  gboolean is_11 = strstr (text, "1.1") || strstr (folder, "1.1");
  return !is_11 && (strstr (text, "large") || strstr (folder, "large"));
}

NsModel *
ns_model_load (const NsLoadOptions *options, GError **error)
{
  g_return_val_if_fail (options != NULL, NULL);
  if (options->backend == NS_BACKEND_REMOTE)
    return ns_remote_model_load (options, error);
  return ns_local_model_load (options, error);
}

void
ns_model_free (NsModel *m)
{
  if (m == NULL)
    return;
  m->klass->free (m);
  g_free (m->backend_note);
  g_free (m->name);
  g_free (m->dir);
  g_free (m);
}

NsResult *
ns_model_run (NsModel *m, const NsRequest *request, GError **error)
{
  g_return_val_if_fail (m != NULL && request != NULL, NULL);
  return m->klass->run (m, request, error);
}

NsModelKind
ns_model_get_kind (const NsModel *m)
{
  return m->kind;
}

/* The kind is a hint, not a gate: the official pipeline edits with any
 * NextStep checkpoint, only NextStep-1-Large-Edit was trained for it. */
char *
ns_model_mode_warning (const NsModel *m, NsMode mode)
{
  if (mode != NS_MODE_EDIT || m->kind == NS_MODEL_KIND_EDIT)
    return NULL;
  return g_strdup_printf ("%s looks like a text-to-image checkpoint; edits may be poor "
                          "(NextStep-1-Large-Edit is the model trained for editing)", m->dir);
}

const char *
ns_model_get_dir (const NsModel *m)
{
  return m->dir;
}

const char *
ns_model_get_name (const NsModel *m)
{
  return m->name;
}

NsBackendKind
ns_model_get_backend (const NsModel *m)
{
  return m->backend_kind;
}

const char *
ns_model_get_backend_note (const NsModel *m)
{
  return m->backend_note;
}

NsWeightFormat
ns_model_get_weight_format (const NsModel *m)
{
  return m->klass->weight_format (m);
}
