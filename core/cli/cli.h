/* cli.h — the bonsai-image subcommands.  Each takes the arguments after its
 * name (argv[0] is the subcommand) and returns the process exit status. */
#ifndef BN_CLI_H
#define BN_CLI_H

#include <glib.h>

int bn_cmd_info (int argc, char **argv);
int bn_cmd_bench (int argc, char **argv);
int bn_cmd_tokenize (int argc, char **argv);
int bn_cmd_encode_prompt (int argc, char **argv);
int bn_cmd_check_refs (int argc, char **argv);

/* Prints "bonsai-image: <message>" for a failed command and frees the error;
 * returns the exit status 1. */
int bn_cli_fail (GError *error);

#endif
