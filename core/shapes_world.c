/* shapes_world.c — the Bonsai Shapes world and the eval prompts, read from
 * their JSON files (data/shapes/), and where those files are. */
#include "shapes_eval.h"

#include "safetensors.h"
#include "store.h"

#include <json-glib/json-glib.h>
#include <string.h>

static const char *const shape_names[BN_SHAPE_N] = {
  [BN_SHAPE_CIRCLE] = "circle",
  [BN_SHAPE_SQUARE] = "square",
  [BN_SHAPE_TRIANGLE] = "triangle",
  [BN_SHAPE_STAR] = "star",
};

static const char *const relation_names[] = {
  [BN_RELATION_NONE] = "none",
  [BN_RELATION_LEFT_OF] = "left of",
  [BN_RELATION_RIGHT_OF] = "right of",
  [BN_RELATION_ABOVE] = "above",
  [BN_RELATION_BELOW] = "below",
};

const char *
bn_shape_name (BnShape shape)
{
  return shape >= 0 && shape < BN_SHAPE_N ? shape_names[shape] : "?";
}

gboolean
bn_shape_from_name (const char *name, BnShape *out)
{
  for (int s = 0; s < BN_SHAPE_N; s++)
    if (name && !strcmp (name, shape_names[s]))
      {
        *out = s;
        return TRUE;
      }
  return FALSE;
}

const char *
bn_shapes_relation_name (BnShapesRelation relation)
{
  return relation <= BN_RELATION_BELOW ? relation_names[relation] : "?";
}

/* The root object of a JSON file (checked as configs are), or NULL with an
 * error naming the file; *node holds it (json_node_unref). */
static JsonObject *
load_root (const char *path, JsonNode **node, GError **error)
{
  *node = bn_json_load_file (path, error);
  if (!*node)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT (*node))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: not a JSON object", path);
      return NULL;
    }
  return json_node_get_object (*node);
}

/* A member that must be a string; NULL when absent or of another type. */
static const char *
get_string (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

gboolean
bn_shapes_world_load (const char *path, BnShapesWorld *out, GError **error)
{
  memset (out, 0, sizeof *out);
  g_autoptr (JsonNode) node = NULL;
  JsonObject *root = load_root (path, &node, error);
  if (!root)
    return FALSE;
  JsonNode *cn = json_object_get_member (root, "colours");
  if (!cn || !JSON_NODE_HOLDS_OBJECT (cn))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s has no \"colours\" object", path);
      return FALSE;
    }
  JsonObject *colours = json_node_get_object (cn);
  g_autoptr (GList) names = json_object_get_members (colours);
  for (GList *l = names; l; l = l->next)
    {
      JsonNode *v = json_object_get_member (colours, l->data);
      JsonArray *rgb = JSON_NODE_HOLDS_ARRAY (v) ? json_node_get_array (v) : NULL;
      if (!rgb || json_array_get_length (rgb) != 3 || out->n_colours == BN_SHAPES_MAX_COLOURS)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: colour \"%s\" is not [r, g, b] (or there are more "
                       "than %d colours)", path, (char *) l->data, BN_SHAPES_MAX_COLOURS);
          bn_shapes_world_clear (out);
          return FALSE;
        }
      int c = out->n_colours++;
      out->colour_names[c] = g_strdup (l->data);
      for (int k = 0; k < 3; k++)
        out->colours[c][k] = json_array_get_double_element (rgb, k);
    }
  if (!out->n_colours)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT, "%s: no colours", path);
      return FALSE;
    }
  return TRUE;
}

void
bn_shapes_world_clear (BnShapesWorld *world)
{
  for (int c = 0; c < world->n_colours; c++)
    g_free (world->colour_names[c]);
  memset (world, 0, sizeof *world);
}

int
bn_shapes_world_colour (const BnShapesWorld *world, const char *name)
{
  for (int c = 0; name && c < world->n_colours; c++)
    if (!strcmp (name, world->colour_names[c]))
      return c;
  return -1;
}

static void
prompt_free (gpointer data)
{
  BnShapesPrompt *p = data;
  g_free (p->category);
  g_free (p->prompt);
  g_free (p);
}

/* One entry of "prompts"; NULL with an error naming it. */
static BnShapesPrompt *
parse_prompt (const BnShapesWorld *world, JsonNode *node, const char *path,
              guint index, GError **error)
{
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  const char *text = o ? get_string (o, "prompt") : NULL;
  JsonNode *on = o ? json_object_get_member (o, "objects") : NULL;
  JsonArray *objs = on && JSON_NODE_HOLDS_ARRAY (on) ? json_node_get_array (on) : NULL;
  guint n = objs ? json_array_get_length (objs) : 0;
  if (!text || n < 1 || n > BN_SHAPES_MAX_GROUPS)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: prompt %u needs \"prompt\" and 1 to %d \"objects\"",
                   path, index, BN_SHAPES_MAX_GROUPS);
      return NULL;
    }
  g_autoptr (GPtrArray) holder = g_ptr_array_new_with_free_func (prompt_free);
  BnShapesPrompt *p = g_new0 (BnShapesPrompt, 1);
  g_ptr_array_add (holder, p);
  const char *cat = get_string (o, "category");
  p->category = g_strdup (cat ? cat : "all");
  p->prompt = g_strdup (text);
  p->n_groups = (int) n;
  for (guint i = 0; i < n; i++)
    {
      JsonNode *gn = json_array_get_element (objs, i);
      JsonObject *g = JSON_NODE_HOLDS_OBJECT (gn) ? json_node_get_object (gn) : NULL;
      JsonNode *count = g ? json_object_get_member (g, "count") : NULL;
      p->groups[i].colour = g ? bn_shapes_world_colour (world, get_string (g, "colour")) : -1;
      if (!count || !JSON_NODE_HOLDS_VALUE (count)
          || json_node_get_value_type (count) != G_TYPE_INT64
          || (p->groups[i].count = (int) json_node_get_int (count)) < 1
          || p->groups[i].colour < 0
          || !bn_shape_from_name (get_string (g, "shape"), &p->groups[i].shape))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: \"%s\": object %u needs a count of at least 1 and a "
                       "colour and shape of the world", path, text, i);
          return NULL;
        }
    }
  JsonNode *rn = json_object_get_member (o, "relation");
  p->relation = BN_RELATION_NONE;
  if (rn && !JSON_NODE_HOLDS_NULL (rn))
    {
      const char *rel = get_string (o, "relation");
      for (int r = BN_RELATION_LEFT_OF; rel && r <= BN_RELATION_BELOW; r++)
        if (!strcmp (rel, relation_names[r]))
          p->relation = r;
      if (p->relation == BN_RELATION_NONE || n != 2)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: \"%s\": a relation is left of, right of, above or "
                       "below, between two objects", path, text);
          return NULL;
        }
    }
  return g_ptr_array_steal_index (holder, 0);
}

GPtrArray *
bn_shapes_prompts_load (const BnShapesWorld *world, const char *path,
                        GError **error)
{
  g_autoptr (JsonNode) node = NULL;
  JsonObject *root = load_root (path, &node, error);
  if (!root)
    return NULL;
  JsonNode *pn = json_object_get_member (root, "prompts");
  if (!pn || !JSON_NODE_HOLDS_ARRAY (pn))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s has no \"prompts\" list", path);
      return NULL;
    }
  JsonArray *arr = json_node_get_array (pn);
  GPtrArray *out = g_ptr_array_new_with_free_func (prompt_free);
  for (guint i = 0; i < json_array_get_length (arr); i++)
    {
      BnShapesPrompt *p = parse_prompt (world, json_array_get_element (arr, i),
                                        path, i, error);
      if (!p)
        {
          g_ptr_array_unref (out);
          return NULL;
        }
      g_ptr_array_add (out, p);
    }
  return out;
}

char *
bn_shapes_data_file (const char *name)
{
  g_autofree char *rel = g_build_filename ("shapes", name, NULL);
  g_autoptr (GPtrArray) c = bn_data_candidates (rel, BN_SOURCE_DATADIR);
  for (guint i = 0; i < c->len; i++)
    if (g_file_test (c->pdata[i], G_FILE_TEST_IS_REGULAR))
      return g_strdup (c->pdata[i]);
  return NULL;
}
