/* gimp2.h — the GIMP 2.10 front-end's internal interface between its
 * procedures (plugin.c) and its dialog (dialog.c). */
#ifndef BN_GIMP2_H
#define BN_GIMP2_H

#include "common.h"

/* What the dialog offers besides the values. */
typedef struct {
  gboolean edit;           /* the edit procedure (else generate) */
  gboolean has_image;      /* generate: a new layer is possible */
  gboolean has_selection;  /* edit: margin and feather apply */
} BnGimp2DialogOptions;

/* Shows the dialog over `v` (GTK 2 through libgimpui; gimp_ui_init must
 * have run).  TRUE when the user asked to generate: `v` then holds the
 * choices; FALSE on cancel, `v` unchanged. */
gboolean bn_gimp2_dialog (BnGimpValues *v, const BnGimp2DialogOptions *opts);

#endif
