/* plugin-intl.h — gettext for the plug-in's own strings, in the
 * "gimp-nextstep" text domain that set_i18n hands to GIMP (GETTEXT_PACKAGE
 * and NS_LOCALEDIR come from meson). */
#pragma once

#include <glib/gi18n-lib.h>
