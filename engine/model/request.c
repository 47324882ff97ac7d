/* request.c — NsRequest defaults per checkpoint kind (model doc §9) and the
 * validation every NsModel implementation shares. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "model/model-iface.h"

/* Model doc §9 prompts (NextStep-1-Large, also HF/vLLM-Omni NextStep-1.1). */
#define LARGE_POSITIVE "masterpiece, film grained, best quality."
#define LARGE_NEGATIVE "lowres, bad anatomy, bad hands, text, error, missing fingers, " \
  "extra digit, fewer digits, cropped, worst quality, low quality, normal quality, "      \
  "jpeg artifacts, signature, watermark, username, blurry."
#define EDIT_NEGATIVE "Copy original image."
#define NS_REQUEST_DEFAULT_SEED 42

void
ns_request_init (NsRequest *r)
{
  memset (r, 0, sizeof *r);
  r->mode = NS_MODE_GENERATE;
  r->images = 1;
  r->sampler = NS_SAMPLER_DEFAULT;
  r->use_norm = -1;
  r->cfg_schedule = NS_CFG_CONSTANT;
  r->seed = NS_REQUEST_DEFAULT_SEED;
}

typedef struct {
  NsSampler sampler;
  int steps;
  double cfg, cfg_img, shift;
  gboolean use_norm;
  const char *positive, *negative;
} Defaults;

static const Defaults defaults_11 = { NS_SAMPLER_HF_SDE, 28, 7.5, 1.0, 1.0, FALSE,
                                      LARGE_POSITIVE, LARGE_NEGATIVE };
static const Defaults defaults_large = { NS_SAMPLER_GH_GRID, 50, 7.5, 1.0, 1.0, TRUE,
                                         LARGE_POSITIVE, LARGE_NEGATIVE };
static const Defaults defaults_edit = { NS_SAMPLER_GH_GRID, 50, 7.5, 2.0, 3.2, TRUE,
                                        "", EDIT_NEGATIVE };

/* The token-grid size nearest to `px` (a multiple of 16, at least 16). */
static int
snap16 (int px)
{
  return MAX (16, (int) lround (px / 16.0) * 16);
}

gboolean
ns_request_invalid (GError **error, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error_literal (error, NS_ERROR, NS_ERROR_INVALID_ARGUMENT, msg);
  return FALSE;
}

static gboolean
validate_edit_input (const NsModel *m, const NsRequest *r, GError **error)
{
  (void) m;
  if (r->mode != NS_MODE_EDIT)
    return TRUE;
  if (r->input.rgba == NULL || r->input.width <= 0 || r->input.height <= 0
      || r->input.stride < 4 * r->input.width)
    return ns_request_invalid (error, "Editing needs an input image (RGBA8, positive size, stride ≥ 4·width)");
  return TRUE;
}

static gboolean
validate (const NsModel *m, const NsRequest *r, GError **error)
{
  if (r->prompt == NULL)
    return ns_request_invalid (error, "The request has no prompt");
  if (r->width <= 0 || r->height <= 0 || r->width % 16 || r->height % 16)
    return ns_request_invalid (error, "Image size %d×%d: width and height must be positive multiples of 16",
                    r->width, r->height);
  if (r->images < 1 || r->images > 64)
    return ns_request_invalid (error, "Number of images %d: use 1 to 64", r->images);
  if (r->steps < 1 || r->steps > 10000)
    return ns_request_invalid (error, "Sampling steps %d: use 1 to 10000", r->steps);
  if (!(r->cfg >= 1.0) || !(r->cfg_img >= 1.0) || !isfinite (r->cfg) || !isfinite (r->cfg_img))
    return ns_request_invalid (error, "Guidance scales must be finite and ≥ 1 (cfg %g, cfg_img %g); the "
                    "official sampler breaks below 1", r->cfg, r->cfg_img);
  if (r->mode == NS_MODE_EDIT && r->cfg_img > 1.0 && r->cfg <= 1.0)
    {
      g_set_error (error, NS_ERROR, NS_ERROR_UNSUPPORTED,
                   "Image guidance (cfg_img %g) without text guidance (cfg 1) has no "
                   "official row layout; use cfg > 1 or cfg_img 1", r->cfg_img);
      return FALSE;
    }
  if (!(r->shift > 0.0) || !isfinite (r->shift))
    return ns_request_invalid (error, "Time shift %g: must be a positive number", r->shift);
  if (r->sampler < NS_SAMPLER_HF_SDE || r->sampler > NS_SAMPLER_ODE)
    return ns_request_invalid (error, "Unknown sampler %d", (int) r->sampler);
  if (r->cfg_schedule != NS_CFG_CONSTANT && r->cfg_schedule != NS_CFG_LINEAR)
    return ns_request_invalid (error, "Unknown CFG schedule %d", (int) r->cfg_schedule);
  if (r->preview_every < 0)
    return ns_request_invalid (error, "preview_every %d: must be ≥ 0", r->preview_every);
  return m->klass->check (m, r, error) && validate_edit_input (m, r, error);
}

gboolean
ns_request_resolve (const NsModel *m, NsRequest *r, GError **error)
{
  gboolean edit = r->mode == NS_MODE_EDIT;
  const Defaults *d = edit ? &defaults_edit
                           : (m->large_style || m->kind == NS_MODEL_KIND_EDIT) ? &defaults_large
                                                                                : &defaults_11;
  if (r->sampler == NS_SAMPLER_DEFAULT)
    r->sampler = d->sampler;
  if (r->steps == 0)
    r->steps = d->steps;
  if (r->cfg == 0)
    r->cfg = d->cfg;
  if (r->cfg_img == 0)
    r->cfg_img = edit ? d->cfg_img : 1.0;
  if (r->shift == 0)
    r->shift = d->shift;
  if (r->use_norm < 0)
    r->use_norm = d->use_norm;
  if (r->positive == NULL)
    r->positive = d->positive;
  if (r->negative == NULL)
    r->negative = d->negative;
  if (r->width == 0 && r->height == 0)
    {
      gboolean has_input = edit && r->input.rgba != NULL;
      r->width = has_input ? snap16 (r->input.width) : NS_REQUEST_DEFAULT_SIZE;
      r->height = has_input ? snap16 (r->input.height) : NS_REQUEST_DEFAULT_SIZE;
    }
  return validate (m, r, error);
}

