/* eval_shapes.h — the results of `bonsai-image eval shapes` and their
 * reports (eval_report.c): the table on stdout, markdown and JSON. */
#ifndef BN_EVAL_SHAPES_H
#define BN_EVAL_SHAPES_H

#include "shapes_eval.h"

#include <stdio.h>

/* One generated picture and its verdict. */
typedef struct {
  guint prompt;      /* index into BnEvalRun.prompts */
  int seed;
  gboolean correct;  /* BN_SHAPES_RULE_EXACT */
  gboolean geneval;  /* BN_SHAPES_RULE_GENEVAL */
  char *found;       /* bn_shapes_scene_describe */
  char *file;        /* where it was written under --out, or NULL */
} BnEvalImage;

typedef struct {
  char *name;
  double seconds;  /* generation and scoring of all its pictures */
  GArray *images;  /* BnEvalImage, prompt by prompt, seeds within */
} BnEvalModel;

typedef struct {
  const char *prompts_file;
  GPtrArray *prompts;  /* BnShapesPrompt */
  GPtrArray *models;   /* BnEvalModel; the first is the reference of
                          retention */
  int seeds, steps, size;
  const char *precision;  /* the kernels' activation precision, by name */
} BnEvalRun;

BnEvalModel *bn_eval_model_new (const char *name);
void bn_eval_model_free (gpointer model);

/* Per category (in the prompts' order) and overall, each model's score
 * (fraction of pictures correct) and its retention (score / the first
 * model's), by the exact rule and then by GenEval's.  Markdown writes
 * GitHub tables instead of aligned columns. */
void bn_eval_print_table (const BnEvalRun *run, FILE *out, gboolean markdown);
/* The settings, the table's numbers and every picture's verdict. */
gboolean bn_eval_write_json (const BnEvalRun *run, const char *path,
                             GError **error);

#endif
