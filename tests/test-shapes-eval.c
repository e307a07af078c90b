/* test-shapes-eval.c — the mini-GenEval scorer (core/shapes_eval.c) on
 * pictures the Shapes world renders itself (tests/data/shapes, written by
 * data/train/render_fixtures.py): every verdict right, clean or degraded,
 * and every single shape classified at radii 9..20; also touching objects,
 * relations and refused prompt files. */
#include "shapes_eval.h"
#include "safetensors.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>

static BnShapesWorld world;

static char *
fixture (const char *name)
{
  return g_test_build_filename (G_TEST_DIST, "data", "shapes", name, NULL);
}

static BnShapesScene *
segment_file (const char *name)
{
  g_autofree char *path = fixture (name);
  GError *error = NULL;
  BonsaiImage *img = bonsai_image_load_png (path, &error);
  g_assert_no_error (error);
  BnShapesScene *scene = NULL;
  g_assert_true (bn_shapes_segment (&world, img, &scene, &error));
  g_assert_no_error (error);
  bonsai_image_free (img);
  return scene;
}

static JsonArray *
expected_array (JsonNode *root, const char *member)
{
  return json_object_get_array_member (json_node_get_object (root), member);
}

static void
test_verdicts (void)
{
  g_autofree char *path = fixture ("expected.json");
  GError *error = NULL;
  g_autoptr (GPtrArray) prompts = bn_shapes_prompts_load (&world, path, &error);
  g_assert_no_error (error);
  g_autoptr (JsonNode) root = bn_json_load_file (path, &error);
  g_assert_no_error (error);
  JsonArray *images = expected_array (root, "images");
  guint wrong = 0, n = json_array_get_length (images), negatives = 0;
  for (guint i = 0; i < n; i++)
    {
      JsonObject *e = json_array_get_object_element (images, i);
      const BnShapesPrompt *p = prompts->pdata[json_object_get_int_member (e, "prompt")];
      gboolean want = json_object_get_boolean_member (e, "correct");
      g_autoptr (BnShapesScene) scene = segment_file (json_object_get_string_member (e, "file"));
      negatives += !want;
      if (bn_shapes_score (p, scene, BN_SHAPES_RULE_EXACT) != want)
        {
          g_autofree char *found = bn_shapes_scene_describe (&world, scene);
          g_test_message ("%s (%s) for \"%s\": judged %s; found %s",
                          json_object_get_string_member (e, "file"),
                          json_object_get_string_member (e, "case"), p->prompt,
                          want ? "wrong" : "right", found);
          for (int k = 0; k < scene->n_objects; k++)
            g_test_message ("  area %d fill %.3f solidity %.3f aspect %.2f",
                            scene->objects[k].area, scene->objects[k].fill,
                            scene->objects[k].solidity, scene->objects[k].aspect);
          wrong++;
        }
    }
  g_test_message ("%u of %u verdicts right (%u negatives)", n - wrong, n, negatives);
  g_assert_cmpuint (n, >=, 90);
  g_assert_cmpuint (negatives, >=, 60);
  g_assert_cmpuint (wrong, ==, 0);
}

static void
test_single_shapes (void)
{
  g_autofree char *path = fixture ("expected.json");
  GError *error = NULL;
  g_autoptr (JsonNode) root = bn_json_load_file (path, &error);
  g_assert_no_error (error);
  JsonArray *singles = expected_array (root, "singles");
  guint wrong = 0, n = json_array_get_length (singles);
  /* The range of each feature per shape, to show the classifier's margins. */
  double lo[BN_SHAPE_N][2], hi[BN_SHAPE_N][2];
  for (int s = 0; s < BN_SHAPE_N; s++)
    lo[s][0] = lo[s][1] = 2, hi[s][0] = hi[s][1] = 0;
  for (guint i = 0; i < n; i++)
    {
      JsonObject *e = json_array_get_object_element (singles, i);
      const char *file = json_object_get_string_member (e, "file");
      g_autoptr (BnShapesScene) scene = segment_file (file);
      BnShape want;
      g_assert_true (bn_shape_from_name (json_object_get_string_member (e, "shape"), &want));
      int colour = bn_shapes_world_colour (&world, json_object_get_string_member (e, "colour"));
      const BnShapesObject *o = scene->objects;
      for (int k = 0; k < scene->n_objects; k++)
        {
          lo[want][0] = MIN (lo[want][0], o[k].fill), hi[want][0] = MAX (hi[want][0], o[k].fill);
          lo[want][1] = MIN (lo[want][1], o[k].solidity);
          hi[want][1] = MAX (hi[want][1], o[k].solidity);
        }
      if (scene->n_objects != 1 || o->shape != want || o->colour != colour || o->count != 1)
        {
          g_autofree char *found = bn_shapes_scene_describe (&world, scene);
          g_test_message ("%s: found %s", file, found);
          for (int k = 0; k < scene->n_objects; k++)
            g_test_message ("  area %d fill %.3f solidity %.3f aspect %.2f", o[k].area,
                            o[k].fill, o[k].solidity, o[k].aspect);
          wrong++;
        }
    }
  for (int s = 0; s < BN_SHAPE_N; s++)
    g_test_message ("%-8s fill %.3f..%.3f  solidity %.3f..%.3f", bn_shape_name (s),
                    lo[s][0], hi[s][0], lo[s][1], hi[s][1]);
  g_assert_cmpuint (n, ==, 48);
  g_assert_cmpuint (wrong, ==, 0);
}

/* A filled disc of `rgb` centred at (cx, cy), anti-aliased by 4×4
 * supersampling. */
static void
disc (BonsaiImage *img, double cx, double cy, double r, const double rgb[3])
{
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++)
      {
        int in = 0;
        for (int s = 0; s < 16; s++)
          in += hypot (x + (s % 4 + 0.5) / 4 - cx, y + (s / 4 + 0.5) / 4 - cy) < r;
        guint8 *p = (guint8 *) img->pixels + y * img->stride + 4 * x;
        for (int k = 0; k < 3; k++)
          p[k] = (guint8) lround ((p[k] * (16 - in) + rgb[k] * in) / 16);
      }
}

static BonsaiImage *
blank (int side, guint8 level)
{
  GError *error = NULL;
  BonsaiImage *img = bonsai_image_new (side, side, BONSAI_PIXEL_RGBA8, &error);
  g_assert_no_error (error);
  for (int i = 0; i < side * side; i++)
    memset ((guint8 *) img->pixels + 4 * i, level, 3);
  return img;
}

/* Two touching red circles count as two when a third one shows the size
 * of one; the scene then satisfies "three red circles". */
static void
test_merged (void)
{
  int red = bn_shapes_world_colour (&world, "red");
  BonsaiImage *img = blank (128, 245);
  disc (img, 30, 40, 12, world.colours[red]);
  disc (img, 54, 40, 12, world.colours[red]);
  disc (img, 90, 100, 12, world.colours[red]);
  BnShapesScene *scene = NULL;
  GError *error = NULL;
  g_assert_true (bn_shapes_segment (&world, img, &scene, &error));
  g_assert_cmpint (scene->n_objects, ==, 2);
  BnShapesPrompt p = { .prompt = "three red circles", .n_groups = 1,
                       .groups = { { 3, red, BN_SHAPE_CIRCLE } } };
  g_assert_true (bn_shapes_score (&p, scene, BN_SHAPES_RULE_EXACT));
  /* GenEval's rule ignores only what is not asked: a count is still exact. */
  p.groups[0].count = 2;
  g_assert_false (bn_shapes_score (&p, scene, BN_SHAPES_RULE_GENEVAL));
  p.groups[0].count = 4;
  g_assert_false (bn_shapes_score (&p, scene, BN_SHAPES_RULE_GENEVAL));
  g_autofree char *text = bn_shapes_scene_describe (&world, scene);
  g_assert_nonnull (strstr (text, "2 merged red circles"));
  bn_shapes_scene_free (scene);
  bonsai_image_free (img);
}

/* Relations by centroid, at another size than 128² (specks scale). */
static void
test_relations (void)
{
  int blue = bn_shapes_world_colour (&world, "blue");
  int yellow = bn_shapes_world_colour (&world, "yellow");
  BonsaiImage *img = blank (256, 15);
  disc (img, 60, 60, 30, world.colours[blue]);
  disc (img, 190, 200, 30, world.colours[yellow]);
  disc (img, 200, 20, 1.2, world.colours[yellow]);  /* a speck */
  BnShapesScene *scene = NULL;
  GError *error = NULL;
  g_assert_true (bn_shapes_segment (&world, img, &scene, &error));
  g_assert_cmpint (scene->n_objects, ==, 2);
  g_assert_cmpint (scene->background[0], ==, 15);
  BnShapesPrompt p = { .prompt = "a blue circle left of a yellow circle", .n_groups = 2,
                       .groups = { { 1, blue, BN_SHAPE_CIRCLE }, { 1, yellow, BN_SHAPE_CIRCLE } } };
  struct { BnShapesRelation r; gboolean ok; } cases[] = {
    { BN_RELATION_LEFT_OF, TRUE }, { BN_RELATION_ABOVE, TRUE },
    { BN_RELATION_RIGHT_OF, FALSE }, { BN_RELATION_BELOW, FALSE }, { BN_RELATION_NONE, TRUE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      p.relation = cases[i].r;
      g_assert_cmpint (bn_shapes_score (&p, scene, BN_SHAPES_RULE_EXACT), ==, cases[i].ok);
      g_assert_cmpint (bn_shapes_score (&p, scene, BN_SHAPES_RULE_GENEVAL), ==, cases[i].ok);
    }
  /* The right objects plus one not asked for: wrong, but for GenEval's
   * rule, which ignores it. */
  p.n_groups = 1;
  g_assert_false (bn_shapes_score (&p, scene, BN_SHAPES_RULE_EXACT));
  g_assert_true (bn_shapes_score (&p, scene, BN_SHAPES_RULE_GENEVAL));
  /* One object short: wrong by both. */
  p.n_groups = 2;
  p.groups[1].colour = blue;
  g_assert_false (bn_shapes_score (&p, scene, BN_SHAPES_RULE_EXACT));
  g_assert_false (bn_shapes_score (&p, scene, BN_SHAPES_RULE_GENEVAL));
  bn_shapes_scene_free (scene);
  bonsai_image_free (img);
}

static void
test_refusals (void)
{
  g_autofree char *dir = g_dir_make_tmp ("shapes-eval-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "p.json", NULL);
  const char *bad[] = {
    "{\"prompts\": [{\"prompt\": \"a teal circle\", \"objects\": "
    "[{\"count\": 1, \"colour\": \"teal\", \"shape\": \"circle\"}]}]}",
    "{\"prompts\": [{\"prompt\": \"a red blob\", \"objects\": "
    "[{\"count\": 1, \"colour\": \"red\", \"shape\": \"blob\"}]}]}",
    "{\"prompts\": [{\"prompt\": \"a red circle near\", \"relation\": \"near\", \"objects\": "
    "[{\"count\": 1, \"colour\": \"red\", \"shape\": \"circle\"},"
    " {\"count\": 1, \"colour\": \"red\", \"shape\": \"star\"}]}]}",
    "{\"prompts\": [{\"prompt\": \"zero red circles\", \"objects\": "
    "[{\"count\": 0, \"colour\": \"red\", \"shape\": \"circle\"}]}]}",
    "{\"no\": 1}",
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      GError *error = NULL;
      g_assert_true (g_file_set_contents (path, bad[i], -1, NULL));
      g_assert_null (bn_shapes_prompts_load (&world, path, &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
      g_assert_nonnull (strstr (error->message, path));
      g_clear_error (&error);
    }
  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "..", "data", "shapes",
                                                 "world.json", NULL);
  GError *error = NULL;
  if (!bn_shapes_world_load (path, &world, &error))
    g_error ("%s", error->message);
  g_test_add_func ("/shapes-eval/verdicts", test_verdicts);
  g_test_add_func ("/shapes-eval/single-shapes", test_single_shapes);
  g_test_add_func ("/shapes-eval/merged", test_merged);
  g_test_add_func ("/shapes-eval/relations", test_relations);
  g_test_add_func ("/shapes-eval/refusals", test_refusals);
  int rc = g_test_run ();
  bn_shapes_world_clear (&world);
  return rc;
}
