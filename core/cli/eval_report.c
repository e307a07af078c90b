/* eval_report.c — the reports of `bonsai-image eval shapes`: the score
 * table (aligned or markdown) and the JSON of every verdict. */
#include "eval_shapes.h"

#include <json-glib/json-glib.h>
#include <string.h>

static void
image_clear (gpointer data)
{
  BnEvalImage *im = data;
  g_free (im->found);
  g_free (im->file);
}

BnEvalModel *
bn_eval_model_new (const char *name)
{
  BnEvalModel *m = g_new0 (BnEvalModel, 1);
  m->name = g_strdup (name);
  m->images = g_array_new (FALSE, TRUE, sizeof (BnEvalImage));
  g_array_set_clear_func (m->images, image_clear);
  return m;
}

void
bn_eval_model_free (gpointer model)
{
  BnEvalModel *m = model;
  g_free (m->name);
  g_array_unref (m->images);
  g_free (m);
}

/* The categories in the order the prompts first name them. */
static GPtrArray *
categories (const BnEvalRun *run)
{
  GPtrArray *cats = g_ptr_array_new ();
  for (guint i = 0; i < run->prompts->len; i++)
    {
      const BnShapesPrompt *p = run->prompts->pdata[i];
      gboolean seen = FALSE;
      for (guint k = 0; k < cats->len && !seen; k++)
        seen = !strcmp (cats->pdata[k], p->category);
      if (!seen)
        g_ptr_array_add (cats, p->category);
    }
  return cats;
}

/* Correct by `rule` and all pictures of `model` in `category` (NULL: all). */
static void
tally (const BnEvalRun *run, const BnEvalModel *model, const char *category,
       BnShapesRule rule, int *correct, int *total)
{
  *correct = *total = 0;
  for (guint i = 0; i < model->images->len; i++)
    {
      const BnEvalImage *im = &g_array_index (model->images, BnEvalImage, i);
      const BnShapesPrompt *p = run->prompts->pdata[im->prompt];
      if (category && strcmp (category, p->category))
        continue;
      *total += 1;
      *correct += rule == BN_SHAPES_RULE_EXACT ? im->correct : im->geneval;
    }
}

static double
score (const BnEvalRun *run, const BnEvalModel *model, const char *category,
       BnShapesRule rule)
{
  int c, t;
  tally (run, model, category, rule, &c, &t);
  return t ? (double) c / t : 0;
}

static void
print_row (const BnEvalRun *run, FILE *out, gboolean markdown, const char *label,
           const char *category, BnShapesRule rule, int width)
{
  const BnEvalModel *first = run->models->pdata[0];
  int c, t;
  tally (run, first, category, rule, &c, &t);
  if (markdown)
    fprintf (out, "| %s | %d |", label, t);
  else
    fprintf (out, "%-10s %6d", label, t);
  double ref = score (run, first, category, rule);
  for (guint m = 0; m < run->models->len; m++)
    {
      double s = score (run, run->models->pdata[m], category, rule);
      /* Retention only means something against a non-zero reference. */
      g_autofree char *cell = m == 0 ? g_strdup_printf ("%.3f", s)
                              : ref > 0 ? g_strdup_printf ("%.3f (%.0f%%)", s, 100 * s / ref)
                              : g_strdup_printf ("%.3f (-)", s);
      if (markdown)
        fprintf (out, " %s |", cell);
      else
        fprintf (out, "  %-*s", m + 1 < run->models->len ? width : 0, cell);
    }
  fputc ('\n', out);
}

void
bn_eval_print_table (const BnEvalRun *run, FILE *out, gboolean markdown)
{
  g_autoptr (GPtrArray) cats = categories (run);
  int width = 14;
  for (guint m = 0; m < run->models->len; m++)
    width = MAX (width, (int) strlen (((BnEvalModel *) run->models->pdata[m])->name));
  fprintf (out, "Bonsai Shapes mini-GenEval: %u prompts × %d seeds, %d steps, %d×%d, "
                "precision %s; the fraction correct\n(in brackets: retained of %s's)\n",
           run->prompts->len, run->seeds, run->steps, run->size,
           run->size, run->precision, ((BnEvalModel *) run->models->pdata[0])->name);
  for (int rule = BN_SHAPES_RULE_EXACT; rule <= BN_SHAPES_RULE_GENEVAL; rule++)
    {
      fprintf (out, "\n%s\n\n", rule == BN_SHAPES_RULE_EXACT
                   ? "Exact: the objects asked for and nothing else"
                   : "GenEval's rule: objects of a colour and shape not asked for are ignored");
      if (markdown)
        {
          fprintf (out, "| category | images |");
          for (guint m = 0; m < run->models->len; m++)
            fprintf (out, " %s |", ((BnEvalModel *) run->models->pdata[m])->name);
          fprintf (out, "\n|---|---:|");
          for (guint m = 0; m < run->models->len; m++)
            fprintf (out, "---:|");
          fputc ('\n', out);
        }
      else
        {
          fprintf (out, "%-10s %6s", "category", "images");
          for (guint m = 0; m < run->models->len; m++)
            fprintf (out, "  %-*s", m + 1 < run->models->len ? width : 0,
                     ((BnEvalModel *) run->models->pdata[m])->name);
          fputc ('\n', out);
        }
      for (guint k = 0; k < cats->len; k++)
        print_row (run, out, markdown, cats->pdata[k], cats->pdata[k], rule, width);
      print_row (run, out, markdown, markdown ? "**overall**" : "overall", NULL, rule, width);
    }
}

gboolean
bn_eval_write_json (const BnEvalRun *run, const char *path, GError **error)
{
  g_autoptr (GPtrArray) cats = categories (run);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompts_file");
  json_builder_add_string_value (b, run->prompts_file);
  json_builder_set_member_name (b, "seeds");
  json_builder_add_int_value (b, run->seeds);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, run->steps);
  json_builder_set_member_name (b, "size");
  json_builder_add_int_value (b, run->size);
  json_builder_set_member_name (b, "precision");
  json_builder_add_string_value (b, run->precision);
  json_builder_set_member_name (b, "models");
  json_builder_begin_array (b);
  const BnEvalModel *first = run->models->pdata[0];
  for (guint m = 0; m < run->models->len; m++)
    {
      const BnEvalModel *model = run->models->pdata[m];
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, model->name);
      json_builder_set_member_name (b, "seconds");
      json_builder_add_double_value (b, model->seconds);
      for (int pass = 0; pass < 4; pass++)
        {
          /* Scores, then retention against the first model (null where
           * its score is 0); by the exact rule, then by GenEval's. */
          static const char *const names[] = { "score", "retention", "score_geneval",
                                               "retention_geneval" };
          BnShapesRule rule = pass < 2 ? BN_SHAPES_RULE_EXACT : BN_SHAPES_RULE_GENEVAL;
          json_builder_set_member_name (b, names[pass]);
          json_builder_begin_object (b);
          for (guint k = 0; k <= cats->len; k++)
            {
              const char *cat = k < cats->len ? cats->pdata[k] : NULL;
              double s = score (run, model, cat, rule), ref = score (run, first, cat, rule);
              json_builder_set_member_name (b, cat ? cat : "overall");
              if (pass % 2 == 0)
                json_builder_add_double_value (b, s);
              else if (ref > 0)
                json_builder_add_double_value (b, s / ref);
              else
                json_builder_add_null_value (b);
            }
          json_builder_end_object (b);
        }
      json_builder_set_member_name (b, "images");
      json_builder_begin_array (b);
      for (guint i = 0; i < model->images->len; i++)
        {
          const BnEvalImage *im = &g_array_index (model->images, BnEvalImage, i);
          const BnShapesPrompt *p = run->prompts->pdata[im->prompt];
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "prompt");
          json_builder_add_string_value (b, p->prompt);
          json_builder_set_member_name (b, "category");
          json_builder_add_string_value (b, p->category);
          json_builder_set_member_name (b, "seed");
          json_builder_add_int_value (b, im->seed);
          json_builder_set_member_name (b, "correct");
          json_builder_add_boolean_value (b, im->correct);
          json_builder_set_member_name (b, "geneval");
          json_builder_add_boolean_value (b, im->geneval);
          json_builder_set_member_name (b, "found");
          json_builder_add_string_value (b, im->found);
          if (im->file)
            {
              json_builder_set_member_name (b, "file");
              json_builder_add_string_value (b, im->file);
            }
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  gsize len;
  g_autofree char *text = json_generator_to_data (gen, &len);
  g_autoptr (GError) local = NULL;
  if (!g_file_set_contents (path, text, (gssize) len, &local))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  return TRUE;
}
