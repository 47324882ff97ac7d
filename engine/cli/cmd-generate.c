/* cmd-generate.c — placeholder until its owner lands it (development only). */
#include <stdio.h>
#include "commands.h"

int
ns_cmd_generate (int argc, char **argv)
{
  (void) argc;
  fprintf (stderr, "%s: not built yet\n", argv[0]);
  return 1;
}

int
ns_cmd_edit (int argc, char **argv)
{
  return ns_cmd_generate (argc, argv);
}
