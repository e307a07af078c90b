/* PLACEHOLDER */
#include "cli.h"
int bn_bench_text_encoder (int argc, char **argv) { return 1; }
