/* PLACEHOLDER */
#include "cli.h"
int bn_cmd_encode_prompt (int argc, char **argv) { return 1; }
