/* PLACEHOLDER */
#include "cli.h"
gboolean bn_refs_check_dit (const char *dir, BnRefTally *tally, GError **error) { return TRUE; }
