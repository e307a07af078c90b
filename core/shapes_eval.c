/* shapes_eval.c — segmentation of a Bonsai Shapes picture into objects,
 * their shapes from geometry, and the GenEval verdict on one prompt. */
#include "shapes_eval.h"

#include "image_io.h"

#include <math.h>
#include <string.h>

/* A pixel is a blend p = bg + a·(colour − bg) off by some residual; it
 * belongs to the colour when a passes this (closer to the colour than to
 * the background: anti-aliased edges split at half coverage). */
#define MIN_ALPHA 0.5
/* Above this coverage a pixel is an object's core; edge pixels next to a
 * core take its colour, so that an edge blend that happens to look like a
 * neighbouring palette colour (red fading into white reads as pink) does
 * not make a ring of another colour. */
#define CORE_ALPHA 0.75
/* Largest distance (levels) from a colour's blend line: generated colours
 * are off by some tens of levels. */
#define MAX_RESIDUAL 70.0
/* Regions smaller than this at 128² (scaled with the area) are specks. */
#define SPECK_AREA_128 12
/* A region longer than this for its width is two or more touching objects:
 * a single shape of the world is at most 1.16 (the triangle). */
#define MERGED_ASPECT 1.45

/* ---- background -------------------------------------------------------- */

/* The commonest colour of the border (5 bits a channel), averaged over the
 * border pixels near it so that grain does not bias it. */
static void
border_colour (const guint8 *rgb, int w, int h, guint8 out[3])
{
  g_autofree guint *hist = g_new0 (guint, 1 << 15);
  int n = 0;
  g_autofree int *idx = g_new (int, 2 * (w + h));
  for (int x = 0; x < w; x++)
    {
      idx[n++] = x;
      idx[n++] = (h - 1) * w + x;
    }
  for (int y = 1; y < h - 1; y++)
    {
      idx[n++] = y * w;
      idx[n++] = y * w + w - 1;
    }
  guint best = 0, best_n = 0;
  for (int i = 0; i < n; i++)
    {
      const guint8 *p = rgb + 3 * idx[i];
      guint bin = (guint) (p[0] >> 3) << 10 | (guint) (p[1] >> 3) << 5 | (p[2] >> 3);
      if (++hist[bin] > best_n)
        best_n = hist[bin], best = bin;
    }
  double centre[3] = { ((best >> 10) << 3) + 4, (((best >> 5) & 31) << 3) + 4,
                       ((best & 31) << 3) + 4 };
  double sum[3] = { 0 };
  int count = 0;
  for (int i = 0; i < n; i++)
    {
      const guint8 *p = rgb + 3 * idx[i];
      double d2 = 0;
      for (int k = 0; k < 3; k++)
        d2 += (p[k] - centre[k]) * (p[k] - centre[k]);
      if (d2 < 24.0 * 24.0)
        {
          for (int k = 0; k < 3; k++)
            sum[k] += p[k];
          count++;
        }
    }
  for (int k = 0; k < 3; k++)
    out[k] = (guint8) lround (count ? sum[k] / count : centre[k]);
}

/* ---- pixel labels -------------------------------------------------------- */

/* Labels each pixel: -1 background, else the palette colour, with its
 * coverage in alpha. */
static void
label_pixels (const BnShapesWorld *world, const guint8 *rgb, int npix,
              const guint8 bg[3], int *label, float *alpha)
{
  double v[BN_SHAPES_MAX_COLOURS][3], vv[BN_SHAPES_MAX_COLOURS];
  for (int c = 0; c < world->n_colours; c++)
    {
      vv[c] = 0;
      for (int k = 0; k < 3; k++)
        {
          v[c][k] = world->colours[c][k] - bg[k];
          vv[c] += v[c][k] * v[c][k];
        }
    }
  for (int i = 0; i < npix; i++)
    {
      double d[3] = { rgb[3 * i] - bg[0], rgb[3 * i + 1] - bg[1], rgb[3 * i + 2] - bg[2] };
      int best = -1;
      double best_r = MAX_RESIDUAL, best_a = 0;
      for (int c = 0; c < world->n_colours; c++)
        {
          if (vv[c] < 1)
            continue;  /* a colour equal to the background cannot be seen */
          double a = (d[0] * v[c][0] + d[1] * v[c][1] + d[2] * v[c][2]) / vv[c];
          a = CLAMP (a, 0.0, 1.0);
          double r2 = 0;
          for (int k = 0; k < 3; k++)
            r2 += (d[k] - a * v[c][k]) * (d[k] - a * v[c][k]);
          if (r2 < best_r * best_r)
            best = c, best_r = sqrt (r2), best_a = a;
        }
      /* The coverage test comes after the choice of colour: a faint edge
       * of one colour can lie further along another colour's line. */
      label[i] = best_a >= MIN_ALPHA ? best : -1;
      alpha[i] = (float) best_a;
    }
}

/* Edge pixels beside a core pixel take the core's colour (CORE_ALPHA). */
static void
adopt_core_colours (int w, int h, const float *alpha, int *label)
{
  g_autofree int *out = g_memdup2 (label, sizeof (int) * w * h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        int i = y * w + x;
        if (label[i] < 0 || alpha[i] >= CORE_ALPHA)
          continue;
        int votes[BN_SHAPES_MAX_COLOURS] = { 0 }, top = -1, top_n = 0;
        for (int dy = -1; dy <= 1; dy++)
          for (int dx = -1; dx <= 1; dx++)
            {
              int xx = x + dx, yy = y + dy;
              if (xx < 0 || yy < 0 || xx >= w || yy >= h)
                continue;
              int j = yy * w + xx;
              if (label[j] >= 0 && alpha[j] >= CORE_ALPHA && ++votes[label[j]] > top_n)
                top_n = votes[label[j]], top = label[j];
            }
        if (top >= 0)
          out[i] = top;
      }
  memcpy (label, out, sizeof (int) * w * h);
}

/* ---- geometry ----------------------------------------------------------- */

typedef struct {
  double x, y;
} Pt;

static double
cross (Pt o, Pt a, Pt b)
{
  return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);
}

/* Area and perimeter of the convex hull of pts, which arrive sorted by y
 * then x (rows scanned top to bottom; Andrew's monotone chain needs one
 * lexicographic order, and any works). */
static void
hull_measure (Pt *pts, int n, double *area, double *perimeter)
{
  g_autofree Pt *h = g_new (Pt, 2 * n + 1);
  int k = 0;
  for (int i = 0; i < n; i++)
    {
      while (k >= 2 && cross (h[k - 2], h[k - 1], pts[i]) <= 0)
        k--;
      h[k++] = pts[i];
    }
  for (int i = n - 2, t = k + 1; i >= 0; i--)
    {
      while (k >= t && cross (h[k - 2], h[k - 1], pts[i]) <= 0)
        k--;
      h[k++] = pts[i];
    }
  *area = *perimeter = 0;
  for (int i = 0; i + 1 < k; i++)
    {
      *area += h[i].x * h[i + 1].y - h[i + 1].x * h[i].y;
      *perimeter += hypot (h[i + 1].x - h[i].x, h[i + 1].y - h[i].y);
    }
  *area = fabs (*area) / 2;
}

static BnShape
classify (double fill, double solidity)
{
  if (solidity < 0.8)
    return BN_SHAPE_STAR;
  if (fill >= 0.84)
    return BN_SHAPE_SQUARE;
  if (fill >= 0.64)
    return BN_SHAPE_CIRCLE;
  return BN_SHAPE_TRIANGLE;
}

/* Measures the region of pixels equal to `id` in comp (bounding box x0..x1,
 * y0..y1). */
static void
measure (const int *comp, int w, int id, int x0, int y0, int x1, int y1,
         BnShapesObject *o)
{
  int rows = y1 - y0 + 1;
  g_autofree Pt *pts = g_new (Pt, 2 * rows);
  int n = 0, area = 0;
  double sx = 0, sy = 0;
  for (int y = y0; y <= y1; y++)
    {
      int lo = -1, hi = -1;
      for (int x = x0; x <= x1; x++)
        if (comp[y * w + x] == id)
          {
            if (lo < 0)
              lo = x;
            hi = x;
            area++;
            sx += x;
            sy += y;
          }
      /* The hull's vertices are among each row's two ends. */
      if (lo >= 0)
        {
          pts[n++] = (Pt) { lo, y };
          if (hi != lo)
            pts[n++] = (Pt) { hi, y };
        }
    }
  double ha, hp;
  hull_measure (pts, n, &ha, &hp);
  int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  o->area = area;
  o->x = sx / area + 0.5;
  o->y = sy / area + 0.5;
  o->fill = (double) area / ((double) bw * bh);
  /* The hull of pixel centres lies half a pixel inside the shape: grow it by
   * a disc of diameter 1 (area + perimeter / 2 + π / 4). */
  o->solidity = MIN (1.0, area / (ha + hp / 2 + G_PI / 4));
  o->aspect = (double) MAX (bw, bh) / MIN (bw, bh);
  o->count = 1;
  o->shape = classify (o->fill, o->solidity);
}

/* ---- regions -------------------------------------------------------------- */

static int
compare_objects (gconstpointer pa, gconstpointer pb)
{
  const BnShapesObject *a = pa, *b = pb;
  if (a->colour != b->colour)
    return a->colour - b->colour;
  return (a->x > b->x) - (a->x < b->x);
}

/* A region judged to be several touching objects of one colour: how many
 * (from the area of the colour's single objects when there are some, else
 * from its elongation) and of which shape (the single ones', else from the
 * fill of one share of its bounding box). */
static void
split_merged (BnShapesObject *objs, int n)
{
  for (int i = 0; i < n; i++)
    {
      BnShapesObject *o = &objs[i];
      if (o->aspect < MERGED_ASPECT)
        continue;
      double areas = 0;
      int singles = 0, votes[BN_SHAPE_N] = { 0 };
      for (int j = 0; j < n; j++)
        if (j != i && objs[j].colour == o->colour && objs[j].aspect < MERGED_ASPECT)
          {
            areas += objs[j].area;
            votes[objs[j].shape]++;
            singles++;
          }
      if (singles)
        {
          o->count = MAX (2, (int) lround (o->area / (areas / singles)));
          int top = 0;
          for (int s = 1; s < BN_SHAPE_N; s++)
            if (votes[s] > votes[top])
              top = s;
          o->shape = top;
        }
      else
        {
          o->count = MAX (2, (int) lround (o->aspect));
          o->shape = classify (o->fill * o->count, o->solidity);
        }
    }
}

gboolean
bn_shapes_segment (const BnShapesWorld *world, const BonsaiImage *image,
                   BnShapesScene **out, GError **error)
{
  *out = NULL;
  if (!bn_image_check (image, error))
    return FALSE;
  g_autofree guint8 *rgb = bn_image_to_rgb8 (image, error);
  if (!rgb)
    return FALSE;
  int w = image->width, h = image->height, npix = w * h;
  BnShapesScene *scene = g_new0 (BnShapesScene, 1);
  border_colour (rgb, w, h, scene->background);

  g_autofree int *label = g_new (int, npix);
  g_autofree float *alpha = g_new (float, npix);
  label_pixels (world, rgb, npix, scene->background, label, alpha);
  adopt_core_colours (w, h, alpha, label);

  /* Regions of one colour, 8-connected, by flood fill from each unvisited
   * pixel. */
  g_autofree int *comp = g_new (int, npix);
  for (int i = 0; i < npix; i++)
    comp[i] = -1;
  g_autofree int *stack = g_new (int, npix);
  int min_area = MAX (4, (int) lround (SPECK_AREA_128 * (double) npix / (128.0 * 128.0)));
  GArray *objs = g_array_new (FALSE, TRUE, sizeof (BnShapesObject));
  int id = 0;
  for (int seed = 0; seed < npix; seed++)
    {
      if (label[seed] < 0 || comp[seed] >= 0)
        continue;
      int top = 0, area = 0, x0 = w, y0 = h, x1 = -1, y1 = -1;
      comp[seed] = id;
      stack[top++] = seed;
      while (top)
        {
          int i = stack[--top], x = i % w, y = i / w;
          area++;
          x0 = MIN (x0, x), x1 = MAX (x1, x), y0 = MIN (y0, y), y1 = MAX (y1, y);
          for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++)
              {
                int xx = x + dx, yy = y + dy;
                if (xx < 0 || yy < 0 || xx >= w || yy >= h)
                  continue;
                int j = yy * w + xx;
                if (comp[j] < 0 && label[j] == label[seed])
                  {
                    comp[j] = id;
                    stack[top++] = j;
                  }
              }
        }
      if (area >= min_area)
        {
          BnShapesObject o = { .colour = label[seed] };
          measure (comp, w, id, x0, y0, x1, y1, &o);
          g_array_append_val (objs, o);
        }
      id++;
    }
  split_merged ((BnShapesObject *) objs->data, (int) objs->len);
  g_array_sort (objs, compare_objects);
  scene->n_objects = (int) objs->len;
  scene->objects = (BnShapesObject *) g_array_free (objs, FALSE);
  *out = scene;
  return TRUE;
}

void
bn_shapes_scene_free (BnShapesScene *scene)
{
  if (!scene)
    return;
  g_free (scene->objects);
  g_free (scene);
}

/* ---- verdict -------------------------------------------------------------- */

static gboolean
in_group (const BnShapesObject *o, const BnShapesGroup *g)
{
  return o->colour == g->colour && o->shape == g->shape;
}

/* Whether a is `relation` b, by centroid (image y grows downwards). */
static gboolean
holds (BnShapesRelation relation, const BnShapesObject *a, const BnShapesObject *b)
{
  switch (relation)
    {
    case BN_RELATION_LEFT_OF:
      return a->x < b->x;
    case BN_RELATION_RIGHT_OF:
      return a->x > b->x;
    case BN_RELATION_ABOVE:
      return a->y < b->y;
    case BN_RELATION_BELOW:
      return a->y > b->y;
    default:
      return TRUE;
    }
}

gboolean
bn_shapes_score (const BnShapesPrompt *prompt, const BnShapesScene *scene,
                 BnShapesRule rule)
{
  int wanted = 0, found = 0;
  for (int i = 0; i < scene->n_objects; i++)
    found += scene->objects[i].count;
  for (int g = 0; g < prompt->n_groups; g++)
    {
      const BnShapesGroup *grp = &prompt->groups[g];
      wanted += grp->count;
      /* Groups of the same colour and shape are counted together. */
      int want = 0, have = 0;
      for (int k = 0; k < prompt->n_groups; k++)
        if (prompt->groups[k].colour == grp->colour && prompt->groups[k].shape == grp->shape)
          want += prompt->groups[k].count;
      for (int i = 0; i < scene->n_objects; i++)
        if (in_group (&scene->objects[i], grp))
          have += scene->objects[i].count;
      if (have != want)
        return FALSE;
    }
  if (rule == BN_SHAPES_RULE_EXACT && found != wanted)
    return FALSE;
  if (prompt->relation == BN_RELATION_NONE || prompt->n_groups < 2)
    return TRUE;
  for (int i = 0; i < scene->n_objects; i++)
    for (int j = 0; j < scene->n_objects; j++)
      if (in_group (&scene->objects[i], &prompt->groups[0])
          && in_group (&scene->objects[j], &prompt->groups[1])
          && !holds (prompt->relation, &scene->objects[i], &scene->objects[j]))
        return FALSE;
  return TRUE;
}

char *
bn_shapes_scene_describe (const BnShapesWorld *world, const BnShapesScene *scene)
{
  if (!scene->n_objects)
    return g_strdup ("nothing");
  enum { SHOWN = 12 };  /* a noise picture has hundreds of regions */
  GString *s = g_string_new (NULL);
  for (int i = 0; i < MIN (scene->n_objects, SHOWN); i++)
    {
      const BnShapesObject *o = &scene->objects[i];
      if (i)
        g_string_append (s, ", ");
      if (o->count > 1)
        g_string_append_printf (s, "%d merged ", o->count);
      g_string_append_printf (s, "%s %s%s at (%.0f, %.0f)",
                              world->colour_names[o->colour], bn_shape_name (o->shape),
                              o->count > 1 ? "s" : "", o->x, o->y);
    }
  if (scene->n_objects > SHOWN)
    g_string_append_printf (s, " and %d regions more", scene->n_objects - SHOWN);
  return g_string_free (s, FALSE);
}
