/* nextstep.h — public API of libnextstep, the NextStep-1 inference engine.
 *
 * The only header the CLI, the GIMP plug-in, the dialog and the tests need.
 * Everything reports failure through GError in the NS_ERROR domain; no
 * function aborts on bad input. No global state: an NsModel is loaded once
 * and may serve many requests (one at a time per model).
 */
#pragma once

#include <glib.h>
#include <gio/gio.h>
#include <stdint.h>

G_BEGIN_DECLS

#define NS_ERROR (ns_error_quark ())
GQuark ns_error_quark (void);

typedef enum {
  NS_ERROR_FILE,              /* missing or unreadable file */
  NS_ERROR_FORMAT,            /* a file is damaged or not what it claims */
  NS_ERROR_MODEL,             /* model folder incomplete or inconsistent */
  NS_ERROR_INVALID_ARGUMENT,  /* a request value is out of range */
  NS_ERROR_UNSUPPORTED,       /* valid, but a feature we do not implement */
  NS_ERROR_CANCELLED,         /* the caller cancelled */
  NS_ERROR_BACKEND,           /* the compute backend failed (driver, kernel) */
  NS_ERROR_OUT_OF_MEMORY,     /* not enough host or device memory */
} NsErrorCode;

const char *ns_version (void);

G_END_DECLS

/* The model, request and run API follow in the sections below; each part of
 * the engine adds its section. */
#include "ns-api-model.h"
