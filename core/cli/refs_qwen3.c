/* PLACEHOLDER */
#include "cli.h"
gboolean bn_refs_check_qwen3 (const char *dir, BnRefTally *tally, GError **error) { return TRUE; }
