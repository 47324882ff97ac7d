/* arguments.h — the PDB signature of the NextStep procedures.
 *
 * Every generation parameter is a real PDB argument, so scripts and the
 * headless tests can drive the plug-in exactly like the dialog does. The
 * arguments are the properties of NsSettings (ui/ns-settings.h), declared
 * from its table: their names, order, ranges and defaults are the plug-in's
 * public contract (see README.md); tests/gimp/check-pdb.py checks them in
 * GIMP, and that they are NsSettings's properties.
 */
#pragma once

#include <libgimp/gimp.h>

#include "nextstep.h"
#include "ns-settings.h"

G_BEGIN_DECLS

/* The arguments of plug-in-nextstep-generate (@mode generate) or -edit,
 * after run-mode, image, drawables. */
void     ns_plugin_add_arguments          (GimpProcedure *procedure, NsMode mode);

/* Return values of both procedures: the image and the new layers. */
void     ns_plugin_add_result_values      (GimpProcedure *procedure);

G_END_DECLS
