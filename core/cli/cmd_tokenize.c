/* PLACEHOLDER */
#include "cli.h"
int bn_cmd_tokenize (int argc, char **argv) { return 1; }
