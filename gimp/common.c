/* common.c — what both GIMP front-ends share (see common.h). */
#include "common.h"

#include <json-glib/json-glib.h>

#include <string.h>

/* ---- values ------------------------------------------------------------------ */

void
bn_gimp_values_init (BnGimpValues *v)
{
  memset (v, 0, sizeof *v);
  v->prompt = g_strdup ("");
  v->width = BN_GIMP_DEFAULT_SIZE;
  v->height = BN_GIMP_DEFAULT_SIZE;
  v->steps = BN_GIMP_DEFAULT_STEPS;
  v->seed = -1;
  /* The real model when installed, else the bundled Bonsai Shapes model,
   * so that a first run offline still draws a picture. */
  v->model = bonsai_model_default_name ();
  v->output = BN_GIMP_OUTPUT_NEW_IMAGE;
  v->margin = BN_GIMP_DEFAULT_MARGIN;
  v->feather = BN_GIMP_DEFAULT_FEATHER;
}

void
bn_gimp_values_clear (BnGimpValues *v)
{
  g_clear_pointer (&v->prompt, g_free);
  g_clear_pointer (&v->model, g_free);
}

void
bn_gimp_values_set_strings (BnGimpValues *v, const char *prompt,
                            const char *model)
{
  char *p = g_strdup (prompt ? prompt : "");
  char *m = g_strdup (model ? model : "");
  bn_gimp_values_clear (v);
  v->prompt = p;
  v->model = m;
}

char *
bn_gimp_values_to_json (const BnGimpValues *v)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompt");
  json_builder_add_string_value (b, v->prompt ? v->prompt : "");
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, v->width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, v->height);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, v->steps);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, v->seed);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, v->model ? v->model : "");
  json_builder_set_member_name (b, "output");
  json_builder_add_int_value (b, v->output);
  json_builder_set_member_name (b, "margin");
  json_builder_add_int_value (b, v->margin);
  json_builder_set_member_name (b, "feather");
  json_builder_add_int_value (b, v->feather);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

/* Integer member `name` of `o` in [lo, hi] into *out; otherwise unchanged. */
static void
read_int (JsonObject *o, const char *name, gint64 lo, gint64 hi, gint64 *out)
{
  JsonNode *n = json_object_get_member (o, name);
  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_INT64)
    {
      gint64 x = json_node_get_int (n);
      if (x >= lo && x <= hi)
        *out = x;
    }
}

static void
read_int32 (JsonObject *o, const char *name, int lo, int hi, int *out)
{
  gint64 x = *out;
  read_int (o, name, lo, hi, &x);
  *out = (int) x;
}

gboolean
bn_gimp_values_from_json (BnGimpValues *v, const char *json, gssize length)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json || !json_parser_load_from_data (parser, json, length, NULL))
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    return FALSE;
  JsonObject *o = json_node_get_object (root);
  const char *prompt = v->prompt, *model = v->model;
  JsonNode *n = json_object_get_member (o, "prompt");
  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    prompt = json_node_get_string (n);
  n = json_object_get_member (o, "model");
  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    model = json_node_get_string (n);
  bn_gimp_values_set_strings (v, prompt, model);
  read_int32 (o, "width", 0, BONSAI_MAX_SIDE, &v->width);
  read_int32 (o, "height", 0, BONSAI_MAX_SIDE, &v->height);
  read_int32 (o, "steps", 1, BONSAI_MAX_STEPS, &v->steps);
  read_int (o, "seed", -1, G_MAXINT, &v->seed);
  int output = v->output;
  read_int32 (o, "output", BN_GIMP_OUTPUT_NEW_IMAGE, BN_GIMP_OUTPUT_NEW_LAYER, &output);
  v->output = output;
  read_int32 (o, "margin", 0, BN_GIMP_MAX_MARGIN, &v->margin);
  read_int32 (o, "feather", 0, BN_GIMP_MAX_FEATHER, &v->feather);
  return TRUE;
}

static gboolean
blank (const char *s)
{
  for (; s && *s; s = g_utf8_next_char (s))
    if (!g_unichar_isspace (g_utf8_get_char (s)))
      return FALSE;
  return TRUE;
}

gboolean
bn_gimp_values_check (const BnGimpValues *v, gboolean edit, GError **error)
{
  if (v->prompt && !g_utf8_validate (v->prompt, -1, NULL))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("The prompt is not valid UTF-8 text."));
      return FALSE;
    }
  if (blank (v->prompt))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   edit ? _("The prompt is empty: describe the change you want.")
                        : _("The prompt is empty: describe the picture you want."));
      return FALSE;
    }
  if (blank (v->model))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("No model is given: name an installed model (such as “%s”) "
                     "or a model folder."), BN_GIMP_DEFAULT_MODEL);
      return FALSE;
    }
  if (v->steps < 1 || v->steps > BONSAI_MAX_STEPS)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("Steps must be between 1 and %d, not %d."), BONSAI_MAX_STEPS,
                   v->steps);
      return FALSE;
    }
  if (v->seed < -1 || v->seed > G_MAXINT)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("The seed must be -1 (a random one) or a number from 0 to %d, "
                     "not %lld."), G_MAXINT, (long long) v->seed);
      return FALSE;
    }
  if (!edit && v->output != BN_GIMP_OUTPUT_NEW_IMAGE && v->output != BN_GIMP_OUTPUT_NEW_LAYER)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("The output must be 0 (a new image) or 1 (a new layer), not %d."),
                   (int) v->output);
      return FALSE;
    }
  if (edit && (v->margin < 0 || v->margin > BN_GIMP_MAX_MARGIN))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("The margin must be between 0 and %d pixels, not %d."),
                   BN_GIMP_MAX_MARGIN, v->margin);
      return FALSE;
    }
  if (edit && (v->feather < 0 || v->feather > BN_GIMP_MAX_FEATHER))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("The feather radius must be between 0 and %d pixels, not %d."),
                   BN_GIMP_MAX_FEATHER, v->feather);
      return FALSE;
    }
  return TRUE;
}

static void
add_choice (GPtrArray *choices, const char *name)
{
  if (blank (name))
    return;
  for (guint i = 0; i < choices->len; i++)
    if (strcmp (choices->pdata[i], name) == 0)
      return;
  g_ptr_array_add (choices, g_strdup (name));
}

GPtrArray *
bn_gimp_model_choices (const char *current)
{
  GPtrArray *choices = g_ptr_array_new_with_free_func (g_free);
  add_choice (choices, current);
  /* An unreadable folder only shortens the list: the name can be typed. */
  g_autoptr (GPtrArray) installed = bonsai_models_installed (NULL);
  for (guint i = 0; installed && i < installed->len; i++)
    add_choice (choices, ((const BonsaiModelInfo *) installed->pdata[i])->name);
  /* The real model is offered (for Download) even when not installed. */
  add_choice (choices, BN_GIMP_DEFAULT_MODEL);
  return choices;
}

BonsaiModel *
bn_gimp_model_open (const BnGimpValues *v, GError **error)
{
  BonsaiModel *model = bonsai_model_open (v->model, error);
  if (!model)
    g_prefix_error (error, _("Cannot open the model “%s”: "), v->model);
  return model;
}

/* ---- generation ------------------------------------------------------------------ */

/* Shares of the progress bar: the prompt, the reference, the steps, the
 * decoder (roughly their share of the time on a CPU). */
#define SHARE_PROMPT 0.05
#define SHARE_IMAGES 0.10
#define SHARE_DECODE 0.10

typedef struct {
  BnGimpProgressFunc func;
  gpointer data;
  gboolean edit;
  int steps;
} Progress;

static gboolean
on_progress (BonsaiStage stage, int done, int total, gpointer data)
{
  Progress *p = data;
  double images = p->edit ? SHARE_IMAGES : 0.0;
  double denoise = 1.0 - SHARE_PROMPT - images - SHARE_DECODE;
  double part = total > 0 ? (double) done / total : 1.0;
  double f = 0.0;
  g_autofree char *text = NULL;
  /* The text names what runs next, so it changes as a stage ends. */
  switch (stage)
    {
    case BONSAI_STAGE_ENCODE_PROMPT:
      f = SHARE_PROMPT * part;
      if (done == total)
        text = p->edit ? g_strdup (_("Reading the image"))
                       : g_strdup_printf (_("Step %d of %d"), 1, p->steps);
      break;
    case BONSAI_STAGE_ENCODE_IMAGES:
      f = SHARE_PROMPT + images * part;
      if (done == total)
        text = g_strdup_printf (_("Step %d of %d"), 1, p->steps);
      break;
    case BONSAI_STAGE_DENOISE:
      f = SHARE_PROMPT + images + denoise * part;
      text = done < total ? g_strdup_printf (_("Step %d of %d"), done + 1, total)
                          : g_strdup (_("Decoding the image"));
      break;
    case BONSAI_STAGE_DECODE:
      f = 1.0 - SHARE_DECODE + SHARE_DECODE * part;
      break;
    }
  if (p->func)
    p->func (f, text, p->data);
  /* GIMP stops a plug-in by ending its process: nothing to cancel here. */
  return TRUE;
}

BonsaiImage *
bn_gimp_generate (BonsaiModel *model, const BnGimpValues *v,
                  const BonsaiImage *reference, gint *seed,
                  BnGimpProgressFunc progress, gpointer user_data,
                  GError **error)
{
  if (!bn_gimp_values_check (v, reference != NULL, error))
    return NULL;
  BonsaiRequest req;
  bonsai_request_init (&req);
  req.prompt = v->prompt;
  req.steps = v->steps;
  req.format = BONSAI_PIXEL_RGBA8;
  if (reference)
    {
      /* The reference's own (processed) size: the front-end fits the
       * result onto the region it came from. */
      req.references = &reference;
      req.n_references = 1;
      req.width = BONSAI_SIZE_AUTO;
      req.height = BONSAI_SIZE_AUTO;
    }
  else
    {
      req.width = v->width;
      req.height = v->height;
    }
  gint used = v->seed >= 0 ? (gint) v->seed : g_random_int_range (0, G_MAXINT);
  req.seed = (guint64) used;
  Progress p = { progress, user_data, reference != NULL, v->steps };
  if (progress)
    progress (0.0, _("Reading the prompt"), user_data);
  BonsaiImage *out = NULL;
  if (!bonsai_generate (model, &req, on_progress, &p, &out, error))
    return NULL;
  *seed = used;
  return out;
}

char *
bn_gimp_record (const BnGimpValues *v, const char *mode, int width,
                int height, gint seed)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompt");
  json_builder_add_string_value (b, v->prompt);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, seed);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, v->steps);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, height);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, v->model);
  json_builder_set_member_name (b, "mode");
  json_builder_add_string_value (b, mode);
  json_builder_set_member_name (b, "engine");
  g_autofree char *engine = g_strdup_printf ("bonsai-image %s", bonsai_version ());
  json_builder_add_string_value (b, engine);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

#define LAYER_NAME_CHARS 40

char *
bn_gimp_layer_name (const char *prompt, gboolean edit)
{
  g_autofree char *flat = g_strdup (prompt ? prompt : "");
  g_strstrip (g_strdelimit (flat, "\t\r\n", ' '));
  glong n = g_utf8_strlen (flat, -1);
  g_autofree char *start = g_utf8_substring (flat, 0, MIN (n, LAYER_NAME_CHARS));
  /* TRANSLATORS: the name of a new layer; %s is the start of the prompt. */
  return g_strdup_printf (edit ? _("Bonsai edit: %s%s") : _("Bonsai: %s%s"), start,
                          n > LAYER_NAME_CHARS ? "…" : "");
}

/* ---- edits ------------------------------------------------------------------------ */

/* Widens [*a, *b) within [0, limit) to a length that is at least
 * BN_GIMP_MIN_EDIT_SIDE and a multiple of `multiple`, keeping [core_a,
 * core_b) inside.  When no such length fits, the whole extent is taken. */
static void
widen (int *a, int *b, int core_a, int core_b, int limit, int multiple)
{
  int len = *b - *a;
  int want = MAX (len, BN_GIMP_MIN_EDIT_SIDE);
  want = (want + multiple - 1) / multiple * multiple;
  if (want > limit)
    {
      int fits = limit / multiple * multiple;
      if (fits < BN_GIMP_MIN_EDIT_SIDE || fits < core_b - core_a)
        {
          *a = 0;
          *b = limit;
          return;
        }
      want = fits;
    }
  /* Centred on the old span, then moved to hold the core and stay in. */
  int start = *a - (want - len) / 2;
  start = MIN (start, core_a);
  start = MAX (start, core_b - want);
  start = CLAMP (start, 0, limit - want);
  *a = start;
  *b = start + want;
}

gboolean
bn_gimp_edit_region (int layer_w, int layer_h, const BnGimpRect *selection,
                     int margin, int multiple, BnGimpRect *region,
                     GError **error)
{
  if (layer_w < BN_GIMP_MIN_EDIT_SIDE || layer_h < BN_GIMP_MIN_EDIT_SIDE)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   _("The layer is %d × %d pixels: editing needs at least %d "
                     "pixels on each side."), layer_w, layer_h, BN_GIMP_MIN_EDIT_SIDE);
      return FALSE;
    }
  multiple = MAX (multiple, 1);
  margin = MAX (margin, 0);
  int cx0 = 0, cy0 = 0, cx1 = layer_w, cy1 = layer_h;
  if (selection)
    {
      cx0 = MAX (selection->x, 0);
      cy0 = MAX (selection->y, 0);
      cx1 = MIN (selection->x + selection->width, layer_w);
      cy1 = MIN (selection->y + selection->height, layer_h);
      if (cx0 >= cx1 || cy0 >= cy1)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                       _("The selection lies outside the layer: select part of the "
                         "layer, or nothing to edit all of it."));
          return FALSE;
        }
    }
  int x0 = MAX (cx0 - margin, 0), x1 = MIN (cx1 + margin, layer_w);
  int y0 = MAX (cy0 - margin, 0), y1 = MIN (cy1 + margin, layer_h);
  widen (&x0, &x1, cx0, cx1, layer_w, multiple);
  widen (&y0, &y1, cy0, cy1, layer_h, multiple);
  *region = (BnGimpRect) { x0, y0, x1 - x0, y1 - y0 };
  return TRUE;
}

/* One box blur of half-width k along a line of n values `step` apart,
 * edges extended; `tmp` holds n values. */
static void
box_line (guint8 *line, int n, int step, int k, guint *tmp)
{
  for (int i = 0; i < n; i++)
    tmp[i] = line[(gsize) i * step];
  guint sum = 0;
  for (int j = -k; j <= k; j++)
    sum += tmp[CLAMP (j, 0, n - 1)];
  guint width = 2 * (guint) k + 1;
  for (int i = 0; i < n; i++)
    {
      line[(gsize) i * step] = (guint8) ((sum + width / 2) / width);
      sum += tmp[MIN (i + k + 1, n - 1)];
      sum -= tmp[MAX (i - k, 0)];
    }
}

void
bn_gimp_feather (guint8 *mask, int width, int height, int radius)
{
  if (radius <= 0 || width <= 0 || height <= 0)
    return;
  /* Three passes of half-width k reach 3k: the sum of three boxes is a
   * close, cheap approximation of a Gaussian. */
  int k = MAX (1, (radius + 2) / 3);
  g_autofree guint *tmp = g_new (guint, MAX (width, height));
  for (int pass = 0; pass < 3; pass++)
    {
      for (int y = 0; y < height; y++)
        box_line (mask + (gsize) y * width, width, 1, k, tmp);
      for (int x = 0; x < width; x++)
        box_line (mask + x, height, width, k, tmp);
    }
}

/* ---- sizes and translations ---------------------------------------------- */

static const BnGimpPreset presets[] = {
  { 1024, 1024, N_("Square") },
  { 512, 512, N_("Small square") },
  { 1024, 768, N_("Landscape 4:3") },
  { 768, 1024, N_("Portrait 3:4") },
  { 1216, 832, N_("Photo 3:2") },
  { 832, 1216, N_("Photo 2:3") },
  { 1360, 768, N_("Wide 16:9") },
  { 768, 1360, N_("Tall 9:16") },
};

const BnGimpPreset *
bn_gimp_presets (int *n)
{
  *n = G_N_ELEMENTS (presets);
  return presets;
}

char *
bn_gimp_i18n_init (const char *plug_in_path)
{
  g_autofree char *dir = g_path_get_dirname (plug_in_path);
  char *locale = g_build_filename (dir, "locale", NULL);
  bindtextdomain (GETTEXT_PACKAGE, locale);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  return locale;
}
