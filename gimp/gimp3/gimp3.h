/* gimp3.h — the GIMP 3.0 front-end's internal interface between its
 * procedures (plugin.c) and its dialog (dialog.c). */
#ifndef BN_GIMP3_H
#define BN_GIMP3_H

#include "common.h"

#include <libgimp/gimp.h>

/* What the dialog offers besides the procedure's arguments. */
typedef struct {
  gboolean edit;           /* the edit procedure (else generate) */
  gboolean has_image;      /* generate: a new layer is possible */
  gboolean has_selection;  /* edit: margin and feather apply */
} BnGimp3DialogOptions;

/* Adds the dialog-only argument (the size preset) to the generate
 * procedure; it is remembered with the last values. */
void bn_gimp3_add_dialog_arguments (GimpProcedure *procedure);

/* Shows the procedure dialog over `config` (gimp_ui_init must have run).
 * TRUE when the user asked to generate: `config` then holds the choices. */
gboolean bn_gimp3_dialog (GimpProcedure *procedure, GimpProcedureConfig *config,
                          const BnGimp3DialogOptions *opts);

#endif
