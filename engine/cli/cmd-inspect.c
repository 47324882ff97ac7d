/* cmd-inspect.c — placeholder until its owner lands it (development only). */
#include <stdio.h>
#include "commands.h"

int
ns_cmd_inspect (int argc, char **argv)
{
  (void) argc;
  fprintf (stderr, "%s: not built yet\n", argv[0]);
  return 1;
}
