/* core.c — error domain and version. */
#include "nextstep.h"

G_DEFINE_QUARK (ns-error-quark, ns_error)

const char *
ns_version (void)
{
  return NS_VERSION;
}
