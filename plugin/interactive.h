/* interactive.h — the dialog of ui/ inside GIMP: it stays open, keeps the
 * model loaded and runs the engine on its worker; each Insert becomes a new
 * layer (one undo group each). */
#pragma once

#include <libgimp/gimp.h>

#include "nextstep.h"

G_BEGIN_DECLS

/* Opens the dialog for @mode on @image (NULL for generate with no image
 * open: the first Insert opens a new one) and @drawable (the edit source;
 * the layer the results go above). Pre-filled from @config's last-used
 * values, or from the recipe of @drawable when the user asks to make it
 * again; the values shown at Close are saved back into @config. */
GimpValueArray *ns_interactive_run (GimpProcedure *procedure, NsMode mode,
                                    GimpImage *image, GimpDrawable *drawable,
                                    GimpProcedureConfig *config);

G_END_DECLS
