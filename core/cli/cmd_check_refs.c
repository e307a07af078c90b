/* PLACEHOLDER */
#include "cli.h"
int bn_cmd_check_refs (int argc, char **argv) { return 1; }
