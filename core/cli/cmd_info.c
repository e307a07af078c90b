/* PLACEHOLDER */
#include "cli.h"
int bn_cmd_info (int argc, char **argv) { return 1; }
