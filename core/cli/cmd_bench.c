/* PLACEHOLDER */
#include "cli.h"
int bn_cmd_bench (int argc, char **argv) { return 1; }
