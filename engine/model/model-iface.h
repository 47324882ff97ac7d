/* model-iface.h — NsModel as an interface: what every implementation (the
 * local checkpoint in local-model.c, the server in remote/remote-model.c)
 * provides, and the part they share. model.c dispatches the public calls. */
#pragma once

#include "nextstep.h"

G_BEGIN_DECLS

typedef struct {
  /* The checks only this implementation can make, after the shared ones
   * (the local model knows its positions; a server checks for itself). */
  gboolean       (*check) (const NsModel *model, const NsRequest *request, GError **error);
  /* Runs a request that ns_request_resolve has accepted. */
  NsResult      *(*run) (NsModel *model, const NsRequest *request, GError **error);
  NsWeightFormat (*weight_format) (const NsModel *model);
  void           (*free) (NsModel *model);   /* frees what follows the base */
} NsModelClass;

struct NsModel {
  const NsModelClass *klass;
  char *dir;                /* model folder, or server URL */
  char *name;               /* folder base name, or the server's model id */
  NsModelKind kind;
  gboolean large_style;     /* NextStep-1-Large defaults (else 1.1) */
  NsBackendKind backend_kind;
  char *backend_note;
};

/* The width and height of a request that gives none, and of the load plan. */
#define NS_REQUEST_DEFAULT_SIZE 512

/* Sets the shared part (strings copied; kind T2I, not large style). */
void ns_model_base_init (NsModel *model, const NsModelClass *klass, const char *dir,
                         const char *name);
/* NextStep-1-Large defaults when the checkpoint names itself "Large" in
 * `name_hint` (a config's name_or_path, a server's model id; may be NULL)
 * or `dir` (model doc §9); otherwise NextStep-1.1's. */
gboolean ns_model_guess_large_style (const char *name_hint, const char *dir);

NsModel *ns_local_model_load (const NsLoadOptions *options, GError **error);
NsModel *ns_remote_model_load (const NsLoadOptions *options, GError **error);

/* request.c: an NS_ERROR_INVALID_ARGUMENT error; returns FALSE. */
gboolean ns_request_invalid (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

G_END_DECLS
