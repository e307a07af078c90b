/* error.c — the BONSAI_ERROR domain. */
#include "bonsai/bonsai.h"

G_DEFINE_QUARK (bonsai-error-quark, bonsai_error)
