/* log.c — logging switches and version strings. */
#include "bonsai/bonsai.h"
#include "kernels/kernels.h"

void
bonsai_log_set_verbose (gboolean verbose)
{
  /* GLib keeps the switch (and honours G_MESSAGES_DEBUG); we add no state. */
  g_log_set_debug_enabled (verbose);
}

const char *
bonsai_version (void)
{
  return BONSAI_VERSION_STRING;
}

const char *
bonsai_cpu_isa (void)
{
  return bn_isa_name (bn_cpu_isa ());
}
