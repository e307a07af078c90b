/* plugin.c — the GIMP 2.10 plug-in: plug-in-bonsai-generate and
 * plug-in-bonsai-edit registered with PLUG_IN_INFO, their arguments turned
 * into BnGimpValues, and the generated pixels turned into a layer.
 *
 * GIMP ends the plug-in's process when the user cancels, so the picture is
 * made in memory first and the image is only touched at the end, in one
 * undo group: a cancelled or failed run leaves it exactly as it was.
 */
#include "gimp2.h"

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include <string.h>

#define PLUG_IN_BINARY "bonsai-image"

static void query (void);
static void run (const gchar *name, gint nparams, const GimpParam *param,
                 gint *nreturn_vals, GimpParam **return_vals);

const GimpPlugInInfo PLUG_IN_INFO = { NULL, NULL, query, run };

MAIN ()

/* Argument positions, the same in GIMP 3.0 (where drawable is a vector). */
enum { ARG_RUN_MODE, ARG_IMAGE, ARG_DRAWABLE, ARG_PROMPT };
enum { GEN_WIDTH = ARG_PROMPT + 1, GEN_HEIGHT, GEN_STEPS, GEN_SEED, GEN_MODEL, GEN_OUTPUT, GEN_N };
enum { EDIT_STEPS = ARG_PROMPT + 1, EDIT_SEED, EDIT_MODEL, EDIT_MARGIN, EDIT_FEATHER, EDIT_N };

static void
query (void)
{
  static const GimpParamDef gen_args[] = {
    { GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }" },
    { GIMP_PDB_IMAGE, "image", "The image to add a layer to (output 1), or -1" },
    { GIMP_PDB_DRAWABLE, "drawable", "Unused (-1)" },
    { GIMP_PDB_STRING, "prompt", "What to draw" },
    { GIMP_PDB_INT32, "width", "Width in pixels, a multiple of 16" },
    { GIMP_PDB_INT32, "height", "Height in pixels, a multiple of 16" },
    { GIMP_PDB_INT32, "steps", "Denoising steps (4 is the model's default)" },
    { GIMP_PDB_INT32, "seed", "Seed of the noise, -1 for a random one" },
    { GIMP_PDB_STRING, "model", "Model: short name (ternary, binary) or folder" },
    { GIMP_PDB_INT32, "output", "0: a new image, 1: a new layer on top of the image" },
  };
  static const GimpParamDef gen_returns[] = {
    { GIMP_PDB_IMAGE, "new-image", "The image holding the new layer" },
    { GIMP_PDB_LAYER, "new-layer", "The new layer" },
    { GIMP_PDB_INT32, "seed-used", "The seed used" },
  };
  static const GimpParamDef edit_args[] = {
    { GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }" },
    { GIMP_PDB_IMAGE, "image", "The image" },
    { GIMP_PDB_DRAWABLE, "drawable", "The layer to edit from" },
    { GIMP_PDB_STRING, "prompt", "The change to make" },
    { GIMP_PDB_INT32, "steps", "Denoising steps (4 is the model's default)" },
    { GIMP_PDB_INT32, "seed", "Seed of the noise, -1 for a random one" },
    { GIMP_PDB_STRING, "model", "Model: short name (ternary, binary) or folder" },
    { GIMP_PDB_INT32, "margin", "Context around the selection, in pixels" },
    { GIMP_PDB_INT32, "feather", "Feather radius of the selection mask, in pixels" },
  };
  static const GimpParamDef edit_returns[] = {
    { GIMP_PDB_LAYER, "new-layer", "The new layer" },
    { GIMP_PDB_INT32, "seed-used", "The seed used" },
  };
  G_STATIC_ASSERT (G_N_ELEMENTS (gen_args) == GEN_N);
  G_STATIC_ASSERT (G_N_ELEMENTS (edit_args) == EDIT_N);

  g_autofree char *locale = bn_gimp_i18n_init (gimp_get_progname ());
  gimp_plugin_domain_register (GETTEXT_PACKAGE, locale);

  gimp_install_procedure (BN_GIMP_PROC_GENERATE,
                          N_("Generate a picture from a text prompt with Bonsai Image"),
                          "Draws what the prompt describes, as a new image or as a new "
                          "layer on top of the image. The request is stored on the layer "
                          "as the parasite \"" BN_GIMP_PARASITE "\".",
                          "Bonsai Image authors", "Bonsai Image authors", "2026",
                          N_("_Bonsai Image…"), "",
                          GIMP_PLUGIN, G_N_ELEMENTS (gen_args), G_N_ELEMENTS (gen_returns),
                          gen_args, gen_returns);
  gimp_plugin_menu_register (BN_GIMP_PROC_GENERATE, "<Image>/File/Create");
  gimp_plugin_menu_register (BN_GIMP_PROC_GENERATE, "<Image>/Filters/Render");

  gimp_install_procedure (BN_GIMP_PROC_EDIT,
                          N_("Change part of a layer as a text prompt asks, with Bonsai Image"),
                          "Reads the layer, or the selection's bounds plus a margin, and "
                          "puts the result in a new layer over it; with a selection, the "
                          "feathered selection is the new layer's mask.",
                          "Bonsai Image authors", "Bonsai Image authors", "2026",
                          N_("Bonsai Image _Edit…"), "RGB*, GRAY*",
                          GIMP_PLUGIN, G_N_ELEMENTS (edit_args), G_N_ELEMENTS (edit_returns),
                          edit_args, edit_returns);
  gimp_plugin_menu_register (BN_GIMP_PROC_EDIT, "<Image>/Filters/Render");
}

/* ---- last values --------------------------------------------------------------- */

static void
load_last_values (const char *proc, BnGimpValues *v)
{
  gint size = gimp_get_data_size (proc);
  if (size <= 0)
    return;
  g_autofree char *json = g_malloc0 ((gsize) size + 1);
  if (gimp_get_data (proc, json))
    bn_gimp_values_from_json (v, json, -1);
}

static void
save_last_values (const char *proc, const BnGimpValues *v)
{
  g_autofree char *json = bn_gimp_values_to_json (v);
  gimp_set_data (proc, json, (guint32) strlen (json) + 1);
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
layer_type (gint32 image, GimpImageType *type, GError **error)
{
  switch (gimp_image_base_type (image))
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
static gint32
new_layer (gint32 image, GimpImageType type, const BonsaiImage *px,
           const char *name, const char *record)
{
  gint32 layer = gimp_layer_new (image, name, px->width, px->height, type, 100.0,
                                 GIMP_LAYER_MODE_NORMAL);
  GeglBuffer *buffer = gimp_drawable_get_buffer (layer);
  gegl_buffer_set (buffer, GEGL_RECTANGLE (0, 0, px->width, px->height), 0,
                   babl_format ("R'G'B'A u8"), px->pixels, (gint) px->stride);
  g_object_unref (buffer);  /* flushes the tiles to GIMP */
  GimpParasite *parasite = gimp_parasite_new (BN_GIMP_PARASITE,
                                              GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                                              (guint32) strlen (record) + 1, record);
  gimp_item_attach_parasite (layer, parasite);
  gimp_parasite_free (parasite);
  return layer;
}

/* ---- generate ------------------------------------------------------------------- */

static gboolean
generate (GimpRunMode run_mode, gint32 image, const BnGimpValues *v,
          gint32 *out_image, gint32 *out_layer, gint *seed, GError **error)
{
  GimpImageType type = GIMP_RGBA_IMAGE;
  gboolean into_image = v->output == BN_GIMP_OUTPUT_NEW_LAYER;
  if (!bn_gimp_values_check (v, FALSE, error))
    return FALSE;
  if (into_image && !gimp_image_is_valid (image))
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
      gimp_image_insert_layer (image, *out_layer, 0, 0);
      gimp_image_undo_group_end (image);
      *out_image = image;
    }
  else
    {
      *out_image = gimp_image_new (px->width, px->height, GIMP_RGB);
      gimp_image_undo_disable (*out_image);
      *out_layer = new_layer (*out_image, type, px, name, record);
      gimp_image_insert_layer (*out_image, *out_layer, 0, 0);
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

/* The layer an edit starts from: the drawable, or the layer of a mask. */
static gint32
edit_layer (gint32 drawable, GError **error)
{
  if (gimp_item_is_layer_mask (drawable))
    return gimp_layer_from_mask (drawable);
  if (gimp_item_is_layer (drawable))
    return drawable;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
               _("Select a layer to edit: a channel or path cannot be edited."));
  return -1;
}

static gboolean
edit (gint32 image, gint32 drawable, const BnGimpValues *v, gint32 *out_layer,
      gint *seed, GError **error)
{
  GimpImageType type = GIMP_RGBA_IMAGE;
  if (!bn_gimp_values_check (v, TRUE, error))
    return FALSE;
  gint32 layer = gimp_image_is_valid (image) ? edit_layer (drawable, error) : -1;
  if (layer < 0)
    {
      if (error && !*error)
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                     _("There is no image to edit."));
      return FALSE;
    }
  if (!layer_type (image, &type, error))
    return FALSE;

  gint ox = 0, oy = 0, x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  gboolean selected = FALSE;
  gimp_drawable_offsets (layer, &ox, &oy);
  gimp_selection_bounds (image, &selected, &x1, &y1, &x2, &y2);
  BnGimpRect sel = { x1 - ox, y1 - oy, x2 - x1, y2 - y1 }, region;

  gimp_progress_init (_("Bonsai Image"));
  BonsaiModel *model = bn_gimp_model_open (v, error);
  if (!model)
    return FALSE;
  if (!bn_gimp_edit_region (gimp_drawable_width (layer), gimp_drawable_height (layer),
                            selected ? &sel : NULL, v->margin,
                            bonsai_model_size_multiple (model), &region, error))
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
      GeglBuffer *buffer = gimp_drawable_get_buffer (layer);
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
      GeglBuffer *buffer = gimp_drawable_get_buffer (gimp_image_get_selection (image));
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
  gimp_image_insert_layer (image, *out_layer, gimp_item_get_parent (layer),
                           gimp_image_get_item_position (image, layer));
  /* A reference larger than the engine takes was shrunk: scale back. */
  if (px->width != region.width || px->height != region.height)
    gimp_layer_scale (*out_layer, region.width, region.height, FALSE);
  gimp_layer_set_offsets (*out_layer, ox + region.x, oy + region.y);
  if (mask)
    {
      gint32 layer_mask = gimp_layer_create_mask (*out_layer, GIMP_ADD_MASK_WHITE);
      gimp_layer_add_mask (*out_layer, layer_mask);
      GeglBuffer *buffer = gimp_drawable_get_buffer (layer_mask);
      gegl_buffer_set (buffer, GEGL_RECTANGLE (0, 0, region.width, region.height), 0,
                       babl_format ("Y u8"), mask, region.width);
      g_object_unref (buffer);
      gimp_drawable_update (layer_mask, 0, 0, region.width, region.height);
    }
  gimp_image_undo_group_end (image);
  bonsai_image_free (px);
  gimp_progress_end ();
  return TRUE;
}

/* ---- run ------------------------------------------------------------------------- */

static void
run (const gchar *name, gint nparams, const GimpParam *param,
     gint *nreturn_vals, GimpParam **return_vals)
{
  /* libgimp 2.10 reads the return values after run() returns, so they
   * (and the error text) must outlive it: the process ends right after. */
  static GimpParam values[4];
  static char *message;
  gboolean is_edit = strcmp (name, BN_GIMP_PROC_EDIT) == 0;
  GimpRunMode run_mode = nparams > 0 ? (GimpRunMode) param[ARG_RUN_MODE].data.d_int32
                                     : GIMP_RUN_NONINTERACTIVE;
  GimpPDBStatusType status = GIMP_PDB_SUCCESS;
  GError *error = NULL;
  BnGimpValues v;
  gint32 image = nparams > ARG_IMAGE ? param[ARG_IMAGE].data.d_image : -1;
  gint32 drawable = nparams > ARG_DRAWABLE ? param[ARG_DRAWABLE].data.d_drawable : -1;
  gint32 out_image = -1, out_layer = -1;
  gint seed = -1;

  g_free (bn_gimp_i18n_init (gimp_get_progname ()));
  gegl_init (NULL, NULL);
  bn_gimp_values_init (&v);
  *nreturn_vals = 1;
  *return_vals = values;
  values[0].type = GIMP_PDB_STATUS;

  if (run_mode == GIMP_RUN_NONINTERACTIVE)
    {
      if (nparams != (is_edit ? EDIT_N : GEN_N))
        {
          g_set_error (&error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                       _("%s takes %d arguments, not %d."), name, is_edit ? EDIT_N : GEN_N,
                       nparams);
          status = GIMP_PDB_CALLING_ERROR;
        }
      else if (is_edit)
        {
          bn_gimp_values_set_strings (&v, param[ARG_PROMPT].data.d_string,
                                      param[EDIT_MODEL].data.d_string);
          v.steps = param[EDIT_STEPS].data.d_int32;
          v.seed = param[EDIT_SEED].data.d_int32;
          v.margin = param[EDIT_MARGIN].data.d_int32;
          v.feather = param[EDIT_FEATHER].data.d_int32;
        }
      else
        {
          bn_gimp_values_set_strings (&v, param[ARG_PROMPT].data.d_string,
                                      param[GEN_MODEL].data.d_string);
          v.width = param[GEN_WIDTH].data.d_int32;
          v.height = param[GEN_HEIGHT].data.d_int32;
          v.steps = param[GEN_STEPS].data.d_int32;
          v.seed = param[GEN_SEED].data.d_int32;
          v.output = (BnGimpOutput) param[GEN_OUTPUT].data.d_int32;
        }
    }
  else
    {
      load_last_values (name, &v);
      /* From the menu without an image the result can only be a new image;
       * a script asking for a layer without one gets an error. */
      if (!gimp_image_is_valid (image))
        v.output = BN_GIMP_OUTPUT_NEW_IMAGE;
      if (run_mode == GIMP_RUN_INTERACTIVE)
        {
          gboolean has_image = gimp_image_is_valid (image);
          gboolean selected = FALSE;
          gint x1, y1, x2, y2;
          if (has_image)
            gimp_selection_bounds (image, &selected, &x1, &y1, &x2, &y2);
          BnGimp2DialogOptions opts = { is_edit, has_image, selected };
          gimp_ui_init (PLUG_IN_BINARY, FALSE);
          if (!bn_gimp2_dialog (&v, &opts))
            status = GIMP_PDB_CANCEL;
        }
    }

  if (status == GIMP_PDB_SUCCESS
      && !(is_edit ? edit (image, drawable, &v, &out_layer, &seed, &error)
                   : generate (run_mode, image, &v, &out_image, &out_layer, &seed, &error)))
    status = GIMP_PDB_EXECUTION_ERROR;
  if (status == GIMP_PDB_SUCCESS && run_mode == GIMP_RUN_INTERACTIVE)
    save_last_values (name, &v);

  values[0].data.d_status = status;
  if (status == GIMP_PDB_SUCCESS && is_edit)
    {
      *nreturn_vals = 3;
      values[1].type = GIMP_PDB_LAYER;
      values[1].data.d_layer = out_layer;
      values[2].type = GIMP_PDB_INT32;
      values[2].data.d_int32 = seed;
    }
  else if (status == GIMP_PDB_SUCCESS)
    {
      *nreturn_vals = 4;
      values[1].type = GIMP_PDB_IMAGE;
      values[1].data.d_image = out_image;
      values[2].type = GIMP_PDB_LAYER;
      values[2].data.d_layer = out_layer;
      values[3].type = GIMP_PDB_INT32;
      values[3].data.d_int32 = seed;
    }
  else if (error)
    {
      /* GIMP shows (or Script-Fu reports) a string after an error status. */
      g_free (message);
      message = g_strdup (error->message);
      *nreturn_vals = 2;
      values[1].type = GIMP_PDB_STRING;
      values[1].data.d_string = message;
    }
  g_clear_error (&error);
  bn_gimp_values_clear (&v);
}
