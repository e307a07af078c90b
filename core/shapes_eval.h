/* shapes_eval.h — the mini-GenEval of Bonsai Shapes (issue 10): what a
 * picture of flat shapes holds, found by segmentation and geometry, and
 * whether that is what its prompt asked for.
 *
 * The world (data/shapes/world.json) names the palette, the backgrounds
 * and the shapes; the prompts (data/shapes/eval_prompts.json) say for each
 * prompt its groups (count, colour, shape) and an optional relation, "the
 * first group is <relation> the second".  Scoring is GenEval's: a picture
 * is correct or not. */
#ifndef BN_SHAPES_EVAL_H
#define BN_SHAPES_EVAL_H

#include "bonsai/bonsai.h"

G_BEGIN_DECLS

typedef enum {
  BN_SHAPE_CIRCLE,
  BN_SHAPE_SQUARE,
  BN_SHAPE_TRIANGLE,
  BN_SHAPE_STAR,
  BN_SHAPE_N,
} BnShape;

typedef enum {
  BN_RELATION_NONE,
  BN_RELATION_LEFT_OF,
  BN_RELATION_RIGHT_OF,
  BN_RELATION_ABOVE,
  BN_RELATION_BELOW,
} BnShapesRelation;

#define BN_SHAPES_MAX_COLOURS 32
#define BN_SHAPES_MAX_GROUPS 4

/* The palette of world.json (colours only; backgrounds are measured from
 * each picture, so that any background is recognised). */
typedef struct {
  int n_colours;
  char *colour_names[BN_SHAPES_MAX_COLOURS];
  double colours[BN_SHAPES_MAX_COLOURS][3];  /* sRGB 0..255 */
} BnShapesWorld;

typedef struct {
  int count;
  int colour;  /* index into the world's palette */
  BnShape shape;
} BnShapesGroup;

typedef struct {
  char *category;
  char *prompt;
  BnShapesGroup groups[BN_SHAPES_MAX_GROUPS];
  int n_groups;
  BnShapesRelation relation;
} BnShapesPrompt;

/* One object found: a connected region of one palette colour. */
typedef struct {
  int colour;
  BnShape shape;
  /* Objects in this region: more than 1 when touching objects of one colour
   * merged into one region (judged by its area against the colour's other
   * regions and its elongation). */
  int count;
  int area;            /* pixels */
  double x, y;         /* centroid, pixels from the top left */
  double fill;         /* area / bounding box: square 1, circle .79,
                          triangle .5, star .43 */
  double solidity;     /* area / convex hull: star .62, the others 1 */
  double aspect;       /* longer / shorter side of the bounding box */
} BnShapesObject;

typedef struct {
  guint8 background[3];  /* the dominant colour of the border */
  int n_objects;
  BnShapesObject *objects;
} BnShapesScene;

/* Reads world.json.  FORMAT names what is wrong; IO when unreadable. */
gboolean bn_shapes_world_load (const char *path, BnShapesWorld *out,
                               GError **error);
void bn_shapes_world_clear (BnShapesWorld *world);
/* The palette index of `name`, or -1. */
int bn_shapes_world_colour (const BnShapesWorld *world, const char *name);

/* The "prompts" array of an eval_prompts.json-like file, as a GPtrArray of
 * BnShapesPrompt (freed with the array).  A colour, shape or relation the
 * world does not know is a FORMAT error naming the prompt. */
GPtrArray *bn_shapes_prompts_load (const BnShapesWorld *world,
                                   const char *path, GError **error);

/* Where the installed or source tree keeps data/shapes/NAME
 * (bn_data_candidates: only $BONSAI_DATA_DIR/shapes when that is set, as
 * for models.json); NULL when nowhere.
 * The caller frees it. */
char *bn_shapes_data_file (const char *name);

const char *bn_shape_name (BnShape shape);
gboolean bn_shape_from_name (const char *name, BnShape *out);
const char *bn_shapes_relation_name (BnShapesRelation relation);

/* Segments an image of any size and format (alpha ignored): background,
 * palette colour of each pixel, connected regions, their shapes.  *out is
 * the caller's (bn_shapes_scene_free).  INVALID_INPUT for a bad image. */
gboolean bn_shapes_segment (const BnShapesWorld *world,
                            const BonsaiImage *image, BnShapesScene **out,
                            GError **error);
void bn_shapes_scene_free (BnShapesScene *scene);

/* How strictly a picture is judged. */
typedef enum {
  BN_SHAPES_RULE_EXACT,    /* what the prompt asks and no other object */
  BN_SHAPES_RULE_GENEVAL,  /* objects of a colour and shape the prompt does
                              not name are ignored, as GenEval ignores the
                              classes its prompt does not name            */
} BnShapesRule;

/* Whether `scene` is what `prompt` asks for: for each group exactly `count`
 * objects of its colour and shape, the relation held by every pair of the
 * two groups' centroids, and under RULE_EXACT no other object. */
gboolean bn_shapes_score (const BnShapesPrompt *prompt,
                          const BnShapesScene *scene, BnShapesRule rule);
/* What was found, for messages: "red circle at (40, 60), 2 merged blue
 * squares at (90, 30)", the first 12 regions and how many more; "nothing"
 * for an empty scene.  The caller frees it. */
char *bn_shapes_scene_describe (const BnShapesWorld *world,
                                const BnShapesScene *scene);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BnShapesScene, bn_shapes_scene_free)

G_END_DECLS

#endif
