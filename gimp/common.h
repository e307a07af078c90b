/* common.h — the part of the GIMP plug-ins that knows no libgimp: procedure
 * values and their defaults, checks, the request record stored on a layer,
 * generation through libbonsai with progress, the region and mask of an
 * edit, and the translation set-up.  The GIMP 3.0 (gimp3/) and GIMP 2.10
 * (gimp2/) front-ends turn procedure arguments into BnGimpValues and
 * BonsaiImages into layers; everything else is here so both behave alike.
 *
 * Errors are in the BONSAI_ERROR domain, messages translated, and name what
 * to change.
 */
#ifndef BN_GIMP_COMMON_H
#define BN_GIMP_COMMON_H

#include "bonsai/bonsai.h"

#include <glib/gi18n-lib.h>

#define BN_GIMP_PROC_GENERATE "plug-in-bonsai-generate"
#define BN_GIMP_PROC_EDIT "plug-in-bonsai-edit"
/* The layer parasite holding the request (JSON, see bn_gimp_record). */
#define BN_GIMP_PARASITE "bonsai-image-request"

#define BN_GIMP_DEFAULT_SIZE 1024
#define BN_GIMP_DEFAULT_STEPS 4
/* The real model, offered for download; the dialog starts with
 * bonsai_model_default_name (), the bundled one when this is not installed. */
#define BN_GIMP_DEFAULT_MODEL "ternary"
#define BN_GIMP_DEFAULT_MARGIN 32   /* context pixels around a selection */
#define BN_GIMP_DEFAULT_FEATHER 8   /* mask feather radius in pixels */
#define BN_GIMP_MAX_MARGIN 1024
#define BN_GIMP_MAX_FEATHER 256
#define BN_GIMP_MIN_EDIT_SIDE 64    /* the engine's smallest reference side */

typedef enum {
  BN_GIMP_OUTPUT_NEW_IMAGE,  /* a new image holding one layer */
  BN_GIMP_OUTPUT_NEW_LAYER,  /* a new layer on top of the given image */
} BnGimpOutput;

/* The arguments of both procedures (generate uses width, height and
 * output; edit uses margin and feather).  Strings are owned. */
typedef struct {
  char *prompt;
  int width, height;
  int steps;
  gint64 seed;              /* -1: draw one */
  char *model;              /* short name or folder */
  BnGimpOutput output;
  int margin, feather;
} BnGimpValues;

/* Defaults: empty prompt, 1024 × 1024, 4 steps, random seed, the default
 * model, a new image, margin 32, feather 8. */
void bn_gimp_values_init (BnGimpValues *v);
void bn_gimp_values_clear (BnGimpValues *v);
/* Replaces the strings of `v` with copies of `prompt` and `model`. */
void bn_gimp_values_set_strings (BnGimpValues *v, const char *prompt,
                                 const char *model);

/* The values as JSON (for GIMP 2.10's last values); caller owns it. */
char *bn_gimp_values_to_json (const BnGimpValues *v);
/* Reads what bn_gimp_values_to_json wrote over `v`; members missing or of
 * the wrong type keep their value.  FALSE (v untouched) for text that is
 * not a JSON object. */
gboolean bn_gimp_values_from_json (BnGimpValues *v, const char *json,
                                   gssize length);

/* The checks that need no model: a prompt that is not blank, a model
 * name, steps in 1 … BONSAI_MAX_STEPS, seed ≥ −1, margin and feather in
 * range.  Sizes are the engine's to judge (it knows the model's multiple). */
gboolean bn_gimp_values_check (const BnGimpValues *v, gboolean edit,
                               GError **error);

/* What the model chooser lists: `current` (unless blank), the installed
 * models (bonsai_models_installed), then the default model's name, each
 * once.  Caller owns the array and its strings. */
GPtrArray *bn_gimp_model_choices (const char *current);

/* Opens the model `v->model` names; the error says which model. */
BonsaiModel *bn_gimp_model_open (const BnGimpValues *v, GError **error);

/* Progress of a generation: fraction of the whole in [0, 1] and, when the
 * stage changes, a line to show (otherwise NULL). */
typedef void (*BnGimpProgressFunc) (double fraction, const char *text,
                                     gpointer user_data);

/* Generates `v`'s prompt at v->width × v->height — or, with a reference,
 * an edit of it at its own size — into a new RGBA8 image the caller owns.
 * The seed used (v->seed, or a random one for −1) is stored in *seed. */
BonsaiImage *bn_gimp_generate (BonsaiModel *model, const BnGimpValues *v,
                               const BonsaiImage *reference, gint *seed,
                               BnGimpProgressFunc progress,
                               gpointer user_data, GError **error);

/* The record stored on a new layer: prompt, seed, steps, width, height,
 * model, mode ("generate" or "edit") and engine version, as JSON.  Caller
 * owns it. */
char *bn_gimp_record (const BnGimpValues *v, const char *mode, int width,
                      int height, gint seed);

/* The name of a new layer: "Bonsai: " (or "Bonsai edit: ") and the start
 * of the prompt.  Caller owns it. */
char *bn_gimp_layer_name (const char *prompt, gboolean edit);

/* ---- edits ----------------------------------------------------------------- */

typedef struct {
  int x, y, width, height;
} BnGimpRect;

/* The part of a layer (layer_w × layer_h, layer coordinates) an edit reads
 * and replaces: the whole layer, or the selection's bounds (NULL for no
 * selection) plus `margin` of context on every side.  It is then widened
 * to at least BN_GIMP_MIN_EDIT_SIDE and to multiples of `multiple` where
 * the layer allows (so the result lines up pixel for pixel), and kept
 * inside the layer.  INVALID_INPUT when the layer is too small or the
 * selection misses it. */
gboolean bn_gimp_edit_region (int layer_w, int layer_h,
                              const BnGimpRect *selection, int margin,
                              int multiple, BnGimpRect *region,
                              GError **error);

/* Feathers a mask (width × height bytes, row-major) in place with three
 * box blurs that together reach `radius` pixels: a Gaussian-like soft
 * edge.  Radius 0 leaves it as it is. */
void bn_gimp_feather (guint8 *mask, int width, int height, int radius);

/* ---- sizes and translations ---------------------------------------------- */

typedef struct {
  int width, height;
  const char *label;  /* untranslated (N_); show with _() */
} BnGimpPreset;

/* The dialog's size presets; *n receives their number. */
const BnGimpPreset *bn_gimp_presets (int *n);

/* Binds the "bonsai-image" gettext domain to the catalogues beside the
 * plug-in, in the locale/ folder of `plug_in_path`'s folder (where GIMP 3.0
 * looks by itself), and returns that folder; caller owns it. */
char *bn_gimp_i18n_init (const char *plug_in_path);

#endif
