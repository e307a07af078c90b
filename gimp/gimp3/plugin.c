/* plugin.c — the GIMP 3.0 plug-in: plug-in-bonsai-generate and
 * plug-in-bonsai-edit as GimpImageProcedures of a GimpPlugIn, their config
 * turned into BnGimpValues, and the generated pixels turned into a layer.
 *
 * GIMP ends the plug-in's process when the user cancels, so the picture is
 * made in memory first and the image is only touched at the end, in one
 * undo group: a cancelled or failed run leaves it exactly as it was.
 * Translations: GIMP binds the "bonsai-image" domain (the plug-in's folder
 * name) to the catalogues in its locale/ folder.
 */
#include "gimp3.h"

#include <libgimp/gimpui.h>

#include <string.h>

#define PLUG_IN_BINARY "bonsai-image"

typedef struct {
  GimpPlugIn parent_instance;
} BonsaiPlugIn;

typedef struct {
  GimpPlugInClass parent_class;
} BonsaiPlugInClass;

GType bonsai_plug_in_get_type (void);

G_DEFINE_TYPE (BonsaiPlugIn, bonsai_plug_in, GIMP_TYPE_PLUG_IN)

GIMP_MAIN (bonsai_plug_in_get_type ())

/* ---- config ---------------------------------------------------------------------- */

static void
values_from_config (GimpProcedureConfig *config, gboolean edit, BnGimpValues *v)
{
  g_autofree char *prompt = NULL, *model = NULL;
  int steps = 0, seed = 0;
  g_object_get (config, "prompt", &prompt, "model", &model, "steps", &steps, "seed", &seed,
                NULL);
  bn_gimp_values_set_strings (v, prompt, model);
  v->steps = steps;
  v->seed = seed;
  if (edit)
    g_object_get (config, "margin", &v->margin, "feather", &v->feather, NULL);
  else
    {
      int output = 0;
      g_object_get (config, "width", &v->width, "height", &v->height, "output", &output, NULL);
      v->output = (BnGimpOutput) output;
    }
}

/* ---- pixels to layers ------------------------------------------------------------ */

static void
show_progress (double fraction, const char *text, gpointer data)
{
  if (text)
    gimp_progress_set_text (text);
  gimp_progress_update (fraction);
}

/* RGBA for an RGB image, gray + alpha for a gray one (GEGL converts the
 * pixels); FALSE for an indexed image. */
static gboolean
layer_type (GimpImage *image, GimpImageType *type, GError **error)
{
  switch (gimp_image_get_base_type (image))
    {
    case GIMP_RGB:
      *type = GIMP_RGBA_IMAGE;
      return TRUE;
    case GIMP_GRAY:
      *type = GIMP_GRAYA_IMAGE;
      return TRUE;
    default:
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("The image is indexed: convert it to RGB (Image ▸ Mode ▸ RGB) "
                     "to add a generated layer."));
      return FALSE;
    }
}

/* A new layer of `image` (not yet inserted) holding `px`, with the record
 * of the request attached. */
static GimpLayer *
new_layer (GimpImage *image, GimpImageType type, const BonsaiImage *px, const char *name,
           const char *record)
{
  GimpLayer *layer = gimp_layer_new (image, name, px->width, px->height, type, 100.0,
                                     GIMP_LAYER_MODE_NORMAL);
  GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (layer));
  gegl_buffer_set (buffer, GEGL_RECTANGLE (0, 0, px->width, px->height), 0,
                   babl_format ("R'G'B'A u8"), px->pixels, (gint) px->stride);
  g_object_unref (buffer);  /* flushes the tiles to GIMP */
  GimpParasite *parasite = gimp_parasite_new (BN_GIMP_PARASITE,
                                              GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                                              (guint32) strlen (record) + 1, record);
  gimp_item_attach_parasite (GIMP_ITEM (layer), parasite);
  gimp_parasite_free (parasite);
  return layer;
}

/* ---- generate ------------------------------------------------------------------- */

static gboolean
generate (GimpRunMode run_mode, GimpImage *image, const BnGimpValues *v,
          GimpImage **out_image, GimpLayer **out_layer, gint *seed, GError **error)
{
  GimpImageType type = GIMP_RGBA_IMAGE;
  gboolean into_image = v->output == BN_GIMP_OUTPUT_NEW_LAYER;
  if (!bn_gimp_values_check (v, FALSE, error))
    return FALSE;
  if (into_image && !image)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("Output 1 (a new layer) needs an image to add the layer to."));
      return FALSE;
    }
  if (into_image && !layer_type (image, &type, error))
    return FALSE;

  gimp_progress_init (_("Bonsai Image"));
  BonsaiModel *model = bn_gimp_model_open (v, error);
  BonsaiImage *px = model ? bn_gimp_generate (model, v, NULL, seed, show_progress, NULL, error)
                          : NULL;
  bonsai_model_unref (model);
  if (!px)
    return FALSE;

  g_autofree char *name = bn_gimp_layer_name (v->prompt, FALSE);
  g_autofree char *record = bn_gimp_record (v, "generate", px->width, px->height, *seed);
  if (into_image)
    {
      gimp_image_undo_group_start (image);
      *out_layer = new_layer (image, type, px, name, record);
      gimp_image_insert_layer (image, *out_layer, NULL, 0);
      gimp_image_undo_group_end (image);
      *out_image = image;
    }
  else
    {
      *out_image = gimp_image_new (px->width, px->height, GIMP_RGB);
      gimp_image_undo_disable (*out_image);
      *out_layer = new_layer (*out_image, type, px, name, record);
      gimp_image_insert_layer (*out_image, *out_layer, NULL, 0);
      gimp_image_undo_enable (*out_image);
      if (run_mode == GIMP_RUN_INTERACTIVE)
        gimp_display_new (*out_image);
    }
  bonsai_image_free (px);
  gimp_progress_end ();
  if (run_mode != GIMP_RUN_NONINTERACTIVE)
    gimp_displays_flush ();
  return TRUE;
}

/* ---- edit ---------------------------------------------------------------------- */

/* The layer an edit starts from: the one selected drawable, or the layer
 * of a selected mask. */
static GimpLayer *
edit_layer (GimpDrawable **drawables, GError **error)
{
  if (!drawables || !drawables[0] || drawables[1])
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("Select one layer to edit."));
      return NULL;
    }
  if (GIMP_IS_LAYER_MASK (drawables[0]))
    return gimp_layer_from_mask (GIMP_LAYER_MASK (drawables[0]));
  if (GIMP_IS_LAYER (drawables[0]))
    return GIMP_LAYER (drawables[0]);
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
               _("Select a layer to edit: a channel or path cannot be edited."));
  return NULL;
}

static gboolean
edit (GimpImage *image, GimpDrawable **drawables, const BnGimpValues *v,
      GimpLayer **out_layer, gint *seed, GError **error)
{
  GimpImageType type = GIMP_RGBA_IMAGE;
  if (!bn_gimp_values_check (v, TRUE, error))
    return FALSE;
  if (!image)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("There is no image to edit."));
      return FALSE;
    }
  GimpLayer *layer = edit_layer (drawables, error);
  if (!layer || !layer_type (image, &type, error))
    return FALSE;
  GimpDrawable *drawable = GIMP_DRAWABLE (layer);

  gint ox = 0, oy = 0, x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  gboolean selected = FALSE;
  gimp_drawable_get_offsets (drawable, &ox, &oy);
  gimp_selection_bounds (image, &selected, &x1, &y1, &x2, &y2);
  BnGimpRect sel = { x1 - ox, y1 - oy, x2 - x1, y2 - y1 }, region;

  gimp_progress_init (_("Bonsai Image"));
  BonsaiModel *model = bn_gimp_model_open (v, error);
  if (!model)
    return FALSE;
  if (!bn_gimp_edit_region (gimp_drawable_get_width (drawable),
                            gimp_drawable_get_height (drawable), selected ? &sel : NULL,
                            v->margin, bonsai_model_size_multiple (model), &region, error))
    {
      bonsai_model_unref (model);
      return FALSE;
    }

  /* The reference: the region's pixels as they are. */
  GError *local = NULL;
  BonsaiImage *ref = bonsai_image_new (region.width, region.height, BONSAI_PIXEL_RGBA8, &local);
  BonsaiImage *px = NULL;
  if (ref)
    {
      GeglBuffer *buffer = gimp_drawable_get_buffer (drawable);
      gegl_buffer_get (buffer, GEGL_RECTANGLE (region.x, region.y, region.width, region.height),
                       1.0, babl_format ("R'G'B'A u8"), ref->pixels, (gint) ref->stride,
                       GEGL_ABYSS_NONE);
      g_object_unref (buffer);
      px = bn_gimp_generate (model, v, ref, seed, show_progress, NULL, &local);
    }
  bonsai_image_free (ref);
  bonsai_model_unref (model);
  if (!px)
    {
      g_propagate_error (error, local);
      return FALSE;
    }

  /* The mask: the selection over the region, feathered. */
  g_autofree guint8 *mask = NULL;
  if (selected)
    {
      mask = g_malloc ((gsize) region.width * region.height);
      GimpSelection *selection = gimp_image_get_selection (image);
      GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (selection));
      gegl_buffer_get (buffer, GEGL_RECTANGLE (ox + region.x, oy + region.y, region.width,
                                               region.height),
                       1.0, babl_format ("Y u8"), mask, region.width, GEGL_ABYSS_NONE);
      g_object_unref (buffer);
      bn_gimp_feather (mask, region.width, region.height, v->feather);
    }

  g_autofree char *name = bn_gimp_layer_name (v->prompt, TRUE);
  g_autofree char *record = bn_gimp_record (v, "edit", px->width, px->height, *seed);
  gimp_image_undo_group_start (image);
  *out_layer = new_layer (image, type, px, name, record);
  GimpItem *parent = gimp_item_get_parent (GIMP_ITEM (layer));
  gimp_image_insert_layer (image, *out_layer, parent ? GIMP_LAYER (parent) : NULL,
                           gimp_image_get_item_position (image, GIMP_ITEM (layer)));
  /* A reference larger than the engine takes was shrunk: scale back. */
  if (px->width != region.width || px->height != region.height)
    gimp_layer_scale (*out_layer, region.width, region.height, FALSE);
  gimp_layer_set_offsets (*out_layer, ox + region.x, oy + region.y);
  if (mask)
    {
      GimpLayerMask *layer_mask = gimp_layer_create_mask (*out_layer, GIMP_ADD_MASK_WHITE);
      gimp_layer_add_mask (*out_layer, layer_mask);
      GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (layer_mask));
      gegl_buffer_set (buffer, GEGL_RECTANGLE (0, 0, region.width, region.height), 0,
                       babl_format ("Y u8"), mask, region.width);
      g_object_unref (buffer);
      gimp_drawable_update (GIMP_DRAWABLE (layer_mask), 0, 0, region.width, region.height);
    }
  gimp_image_undo_group_end (image);
  bonsai_image_free (px);
  gimp_progress_end ();
  return TRUE;
}

/* ---- run ------------------------------------------------------------------------- */

/* Shows the dialog when interactive; FALSE when the user cancelled. */
static gboolean
ask (GimpProcedure *procedure, GimpRunMode run_mode, GimpProcedureConfig *config,
     const BnGimp3DialogOptions *opts)
{
  if (run_mode != GIMP_RUN_INTERACTIVE)
    return TRUE;
  gimp_ui_init (PLUG_IN_BINARY);
  return bn_gimp3_dialog (procedure, config, opts);
}

static GimpValueArray *
run_generate (GimpProcedure *procedure, GimpRunMode run_mode, GimpImage *image,
              GimpDrawable **drawables, GimpProcedureConfig *config, gpointer data)
{
  gegl_init (NULL, NULL);
  /* From the menu without an image the result can only be a new image;
   * a script asking for a layer without one gets an error. */
  if (!image && run_mode != GIMP_RUN_NONINTERACTIVE)
    g_object_set (config, "output", BN_GIMP_OUTPUT_NEW_IMAGE, NULL);
  BnGimp3DialogOptions opts = { FALSE, image != NULL, FALSE };
  if (!ask (procedure, run_mode, config, &opts))
    return gimp_procedure_new_return_values (procedure, GIMP_PDB_CANCEL, NULL);

  BnGimpValues v;
  bn_gimp_values_init (&v);
  values_from_config (config, FALSE, &v);
  GimpImage *out_image = NULL;
  GimpLayer *out_layer = NULL;
  gint seed = -1;
  GError *error = NULL;
  gboolean ok = generate (run_mode, image, &v, &out_image, &out_layer, &seed, &error);
  bn_gimp_values_clear (&v);
  if (!ok)
    return gimp_procedure_new_return_values (procedure, GIMP_PDB_EXECUTION_ERROR, error);
  GimpValueArray *values = gimp_procedure_new_return_values (procedure, GIMP_PDB_SUCCESS, NULL);
  GIMP_VALUES_SET_IMAGE (values, 1, out_image);
  GIMP_VALUES_SET_LAYER (values, 2, out_layer);
  GIMP_VALUES_SET_INT (values, 3, seed);
  return values;
}

static GimpValueArray *
run_edit (GimpProcedure *procedure, GimpRunMode run_mode, GimpImage *image,
          GimpDrawable **drawables, GimpProcedureConfig *config, gpointer data)
{
  gegl_init (NULL, NULL);
  gboolean selected = FALSE;
  gint x1, y1, x2, y2;
  if (image)
    gimp_selection_bounds (image, &selected, &x1, &y1, &x2, &y2);
  BnGimp3DialogOptions opts = { TRUE, image != NULL, selected };
  if (!ask (procedure, run_mode, config, &opts))
    return gimp_procedure_new_return_values (procedure, GIMP_PDB_CANCEL, NULL);

  BnGimpValues v;
  bn_gimp_values_init (&v);
  values_from_config (config, TRUE, &v);
  GimpLayer *out_layer = NULL;
  gint seed = -1;
  GError *error = NULL;
  gboolean ok = edit (image, drawables, &v, &out_layer, &seed, &error);
  bn_gimp_values_clear (&v);
  if (!ok)
    return gimp_procedure_new_return_values (procedure, GIMP_PDB_EXECUTION_ERROR, error);
  GimpValueArray *values = gimp_procedure_new_return_values (procedure, GIMP_PDB_SUCCESS, NULL);
  GIMP_VALUES_SET_LAYER (values, 1, out_layer);
  GIMP_VALUES_SET_INT (values, 2, seed);
  return values;
}

/* ---- registration ------------------------------------------------------------------ */

/* The arguments both procedures share, in the order of GIMP 2.10's. */
static void
add_request_arguments (GimpProcedure *p, gboolean edit)
{
  gimp_procedure_add_string_argument (p, "prompt", _("_Prompt"),
                                      edit ? _("The change to make") : _("What to draw"), "",
                                      G_PARAM_READWRITE);
  if (!edit)
    {
      gimp_procedure_add_int_argument (p, "width", _("_Width"),
                                       _("Width in pixels, a multiple of 16"), 0,
                                       BONSAI_MAX_SIDE, BN_GIMP_DEFAULT_SIZE, G_PARAM_READWRITE);
      gimp_procedure_add_int_argument (p, "height", _("_Height"),
                                       _("Height in pixels, a multiple of 16"), 0,
                                       BONSAI_MAX_SIDE, BN_GIMP_DEFAULT_SIZE, G_PARAM_READWRITE);
    }
  gimp_procedure_add_int_argument (p, "steps", _("S_teps"),
                                   _("Denoising steps (4 is the model's default)"), 1,
                                   BONSAI_MAX_STEPS, BN_GIMP_DEFAULT_STEPS, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (p, "seed", _("S_eed"),
                                   _("Seed of the noise, -1 for a random one"), -1, G_MAXINT, -1,
                                   G_PARAM_READWRITE);
  /* The real model when installed, else the bundled Bonsai Shapes model. */
  g_autofree char *model = bonsai_model_default_name ();
  gimp_procedure_add_string_argument (p, "model", _("_Model"),
                                      _("Model: short name (ternary, binary) or folder"),
                                      model, G_PARAM_READWRITE);
}

static GList *
bonsai_query_procedures (GimpPlugIn *plug_in)
{
  GList *names = g_list_append (NULL, g_strdup (BN_GIMP_PROC_GENERATE));
  return g_list_append (names, g_strdup (BN_GIMP_PROC_EDIT));
}

static GimpProcedure *
bonsai_create_procedure (GimpPlugIn *plug_in, const gchar *name)
{
  GimpProcedure *p = NULL;
  if (strcmp (name, BN_GIMP_PROC_GENERATE) == 0)
    {
      p = gimp_image_procedure_new (plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_generate,
                                    NULL, NULL);
      gimp_procedure_set_image_types (p, "*");
      gimp_procedure_set_sensitivity_mask (p, GIMP_PROCEDURE_SENSITIVE_ALWAYS);
      gimp_procedure_set_menu_label (p, _("_Bonsai Image…"));
      gimp_procedure_add_menu_path (p, "<Image>/File/Create");
      gimp_procedure_add_menu_path (p, "<Image>/Filters/Render");
      gimp_procedure_set_documentation (
          p, _("Generate a picture from a text prompt with Bonsai Image"),
          "Draws what the prompt describes, as a new image or as a new layer on top of the "
          "image. The request is stored on the layer as the parasite \"" BN_GIMP_PARASITE "\".",
          name);
      add_request_arguments (p, FALSE);
      gimp_procedure_add_int_argument (p, "output", _("Result"),
                                       _("0: a new image, 1: a new layer on top of the image"),
                                       BN_GIMP_OUTPUT_NEW_IMAGE, BN_GIMP_OUTPUT_NEW_LAYER,
                                       BN_GIMP_OUTPUT_NEW_IMAGE, G_PARAM_READWRITE);
      bn_gimp3_add_dialog_arguments (p);
      gimp_procedure_add_image_return_value (p, "new-image", _("Image"),
                                             _("The image holding the new layer"), FALSE,
                                             G_PARAM_READWRITE);
    }
  else if (strcmp (name, BN_GIMP_PROC_EDIT) == 0)
    {
      p = gimp_image_procedure_new (plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_edit, NULL,
                                    NULL);
      gimp_procedure_set_image_types (p, "RGB*, GRAY*");
      gimp_procedure_set_sensitivity_mask (p, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
      gimp_procedure_set_menu_label (p, _("Bonsai Image _Edit…"));
      gimp_procedure_add_menu_path (p, "<Image>/Filters/Render");
      gimp_procedure_set_documentation (
          p, _("Change part of a layer as a text prompt asks, with Bonsai Image"),
          "Reads the layer, or the selection's bounds plus a margin, and puts the result in a "
          "new layer over it; with a selection, the feathered selection is the new layer's "
          "mask.",
          name);
      add_request_arguments (p, TRUE);
      gimp_procedure_add_int_argument (p, "margin", _("Context _margin"),
                                       _("Context around the selection, in pixels"), 0,
                                       BN_GIMP_MAX_MARGIN, BN_GIMP_DEFAULT_MARGIN,
                                       G_PARAM_READWRITE);
      gimp_procedure_add_int_argument (p, "feather", _("_Feather edges"),
                                       _("Feather radius of the selection mask, in pixels"), 0,
                                       BN_GIMP_MAX_FEATHER, BN_GIMP_DEFAULT_FEATHER,
                                       G_PARAM_READWRITE);
    }
  else
    return NULL;
  gimp_procedure_set_attribution (p, "Bonsai Image authors", "Bonsai Image authors", "2026");
  gimp_procedure_add_layer_return_value (p, "new-layer", _("Layer"), _("The new layer"), FALSE,
                                         G_PARAM_READWRITE);
  gimp_procedure_add_int_return_value (p, "seed-used", _("Seed used"), _("The seed used"), 0,
                                       G_MAXINT, 0, G_PARAM_READWRITE);
  return p;
}

static void
bonsai_plug_in_class_init (BonsaiPlugInClass *klass)
{
  GimpPlugInClass *plug_in_class = GIMP_PLUG_IN_CLASS (klass);
  plug_in_class->query_procedures = bonsai_query_procedures;
  plug_in_class->create_procedure = bonsai_create_procedure;
}

static void
bonsai_plug_in_init (BonsaiPlugIn *self)
{
}
