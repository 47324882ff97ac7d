/* ns-dialog-settings.h — every value the dialog shows, as a plain struct the
 * plug-in can save as its last-used values and hand back at the next start. */
#pragma once

#include "nextstep.h"
#include "ns-recipe.h"

G_BEGIN_DECLS

typedef enum {
  NS_SEED_RANDOM,               /* a new random seed at each Generate */
  NS_SEED_FIXED,                /* `seed` */
  NS_SEED_REUSE_LAST,           /* the seed of the previous run (random the first time) */
} NsSeedMode;

typedef struct {
  NsMode         mode;
  char          *prompt;
  char          *negative;      /* NULL: the model's default */
  int            width, height; /* generate; multiples of 16 (edit: the source's size) */
  int            steps;         /* 0: model default */
  double         cfg, cfg_img;  /* 0: model default */
  NsSampler      sampler;
  NsSeedMode     seed_mode;
  guint64        seed;          /* the fixed seed; on read-back, the last seed used */
  int            images;        /* per Generate, 1…8 */
  gboolean       draft;         /* few steps, half size (ns-dialog.c DRAFT_STEPS) */
  NsWeightFormat weights;
  NsBackendKind  backend;
  char          *model_dir;     /* NULL: ns_model_find (remote: the server's choice) */
  char          *vae_dir;       /* NULL: ns_vae_find (not shown in the dialog) */
  char          *server;        /* NS_BACKEND_REMOTE: the server's URL, or NULL */
  char          *api_key;       /* the server's key, or NULL; saved with the plug-in's
                                 * settings, never in a recipe */
} NsDialogSettings;

/* Defaults: generate, 512×512, model defaults, random seed, one image, auto. */
void     ns_dialog_settings_init (NsDialogSettings *settings);
void     ns_dialog_settings_clear (NsDialogSettings *settings);
void     ns_dialog_settings_copy (NsDialogSettings *dest, const NsDialogSettings *src);
/* Settings that make the recipe's image again (fixed seed): the plug-in's
 * "regenerate"; change `seed`/`seed_mode` afterwards for "vary seed". The
 * server and key are kept from `settings` (a recipe holds neither). */
gboolean ns_dialog_settings_from_recipe (NsDialogSettings *settings, const NsRecipe *recipe,
                                         GError **error);

G_END_DECLS
