/* commands.h — the `nextstep` sub-commands. Each takes the argv after the
 * sub-command name (argv[0] = "nextstep <cmd>") and returns the exit code. */
#pragma once

int ns_cmd_inspect (int argc, char **argv);
int ns_cmd_make_tiny (int argc, char **argv);
int ns_cmd_tokenize (int argc, char **argv);
int ns_cmd_generate (int argc, char **argv);
int ns_cmd_edit (int argc, char **argv);
int ns_cmd_bench (int argc, char **argv);
int ns_cmd_convert (int argc, char **argv);
int ns_cmd_serve (int argc, char **argv);
/* `nextstep bench tokenizer …` (lives beside the tokenize command). */
int ns_bench_tokenizer (int argc, char **argv);
