/* cmd_eval.c — `bonsai-image eval shapes`: the mini-GenEval of Bonsai
 * Shapes (issue 10).  Each model draws every held-out prompt with seeds
 * 0..N-1; each picture is segmented and judged (core/shapes_eval.c); the
 * table gives per category the fraction correct of each model and its
 * retention of the first model's score.  Ctrl-C stops cleanly. */
#include "cli.h"
#include "eval_shapes.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The bundled variants: the first is the unquantized reference. */
static const char *const default_models[] = { "shapes-bf16", "shapes", "shapes-binary", NULL };

/* Set by SIGINT/SIGTERM and read by the engine through request.cancel. */
static gint interrupted;

static void
on_signal (int sig)
{
  g_atomic_int_set (&interrupted, 1);
}

/* The first Ctrl-C cancels cleanly; a second one (SA_RESETHAND) kills. */
static void
catch_interrupts (void)
{
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
}

typedef struct {
  char **models;
  int seeds, steps, size, threads;
  char *prompts, *world, *out;
  char *precision;               /* as given; NULL is "auto" */
  BonsaiPrecision precision_id;  /* parsed from it */
} Args;

/* A model name as a folder name under --out ("org/name" and paths). */
static char *
folder_name (const char *model)
{
  char *s = g_strdup (model);
  g_strdelimit (s, "/\\: ", '_');
  return s;
}

/* Draws and judges every prompt × seed with one model. */
static gboolean
eval_model (const Args *a, const BnShapesWorld *world, BnEvalRun *run,
            BnEvalModel *result, GError **error)
{
  BonsaiModel *model = bonsai_model_open (result->name, error);
  if (!model)
    return FALSE;
  g_autofree char *dir = NULL;
  if (a->out)
    {
      g_autofree char *leaf = folder_name (result->name);
      dir = g_build_filename (a->out, leaf, NULL);
      if (g_mkdir_with_parents (dir, 0755) != 0)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot create %s: %s",
                       dir, g_strerror (errno));
          bonsai_model_unref (model);
          return FALSE;
        }
    }
  gboolean tty = isatty (STDERR_FILENO);
  gint64 start = g_get_monotonic_time ();
  guint total = run->prompts->len * a->seeds, done = 0, correct = 0;
  gboolean ok = TRUE;
  /* Prompts outside, seeds inside: the prompt cache then encodes each
   * prompt once. */
  for (guint p = 0; ok && p < run->prompts->len; p++)
    for (int s = 0; ok && s < a->seeds; s++)
      {
        const BnShapesPrompt *prompt = run->prompts->pdata[p];
        BonsaiRequest req;
        bonsai_request_init (&req);
        req.prompt = prompt->prompt;
        req.width = req.height = a->size;
        req.steps = a->steps;
        req.seed = (guint64) s;
        req.threads = a->threads;
        req.precision = a->precision_id;
        req.cancel = &interrupted;
        BonsaiImage *image = NULL;
        BnShapesScene *scene = NULL;
        ok = bonsai_generate (model, &req, NULL, NULL, &image, error)
             && bn_shapes_segment (world, image, &scene, error);
        if (ok)
          {
            BnEvalImage im = { .prompt = p, .seed = s,
                               .correct = bn_shapes_score (prompt, scene,
                                                           BN_SHAPES_RULE_EXACT),
                               .geneval = bn_shapes_score (prompt, scene,
                                                           BN_SHAPES_RULE_GENEVAL),
                               .found = bn_shapes_scene_describe (world, scene) };
            if (dir)
              {
                g_autofree char *name = g_strdup_printf ("%02u-seed%d.png", p, s);
                im.file = g_build_filename (dir, name, NULL);
                ok = bonsai_image_save_png (image, im.file, error);
              }
            correct += im.correct;
            g_array_append_val (result->images, im);
          }
        bn_shapes_scene_free (scene);
        bonsai_image_free (image);
        done++;
        double secs = (g_get_monotonic_time () - start) / 1e6;
        /* On a terminal one line redrawn; in a log a line every 10 %. */
        if (tty)
          fprintf (stderr, "\r%s: %u/%u pictures, %u correct, %.1f s ", result->name, done,
                   total, correct, secs);
        else if (done == total || done % MAX (1u, total / 10) == 0)
          fprintf (stderr, "%s: %u/%u pictures, %u correct, %.1f s\n", result->name, done,
                   total, correct, secs);
      }
  if (tty)
    fputc ('\n', stderr);
  result->seconds = (g_get_monotonic_time () - start) / 1e6;
  if (!ok)
    g_prefix_error (error, "%s: ", result->name);
  bonsai_model_unref (model);
  return ok;
}

/* The reports under --out: results.json and results.md. */
static gboolean
write_reports (const BnEvalRun *run, const char *out, GError **error)
{
  g_autofree char *json = g_build_filename (out, "results.json", NULL);
  g_autofree char *md = g_build_filename (out, "results.md", NULL);
  if (!bn_eval_write_json (run, json, error))
    return FALSE;
  FILE *f = fopen (md, "w");
  if (!f)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot write %s: %s", md,
                   g_strerror (errno));
      return FALSE;
    }
  bn_eval_print_table (run, f, TRUE);
  if (fclose (f) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot write %s: %s", md,
                   g_strerror (errno));
      return FALSE;
    }
  fprintf (stderr, "wrote %s and %s\n", json, md);
  return TRUE;
}

static int
run_eval (const Args *a)
{
  GError *error = NULL;
  BnShapesWorld world = { 0 };
  g_autofree char *world_path = a->world ? g_strdup (a->world) : bn_shapes_data_file ("world.json");
  g_autofree char *prompts_path = a->prompts ? g_strdup (a->prompts)
                                             : bn_shapes_data_file ("eval_prompts.json");
  if (!world_path || !prompts_path)
    {
      fprintf (stderr, "bonsai-image eval: data/shapes/%s not found (BONSAI_DATA_DIR names "
                       "the folder that holds shapes/)\n",
               world_path ? "eval_prompts.json" : "world.json");
      return 1;
    }
  if (!bn_shapes_world_load (world_path, &world, &error))
    return bn_cli_fail (error);
  BnEvalRun run = { .prompts_file = prompts_path, .seeds = a->seeds, .steps = a->steps,
                    .size = a->size, .precision = a->precision ? a->precision : "auto" };
  run.prompts = bn_shapes_prompts_load (&world, prompts_path, &error);
  run.models = g_ptr_array_new_with_free_func (bn_eval_model_free);
  gboolean ok = run.prompts != NULL;
  if (ok && !run.prompts->len)
    {
      g_set_error (&error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT, "%s lists no prompts",
                   prompts_path);
      ok = FALSE;
    }
  catch_interrupts ();
  const char *const *models = a->models ? (const char *const *) a->models : default_models;
  for (int m = 0; ok && models[m]; m++)
    {
      BnEvalModel *result = bn_eval_model_new (models[m]);
      g_ptr_array_add (run.models, result);
      ok = eval_model (a, &world, &run, result, &error);
    }
  int rc = 0;
  if (ok)
    {
      bn_eval_print_table (&run, stdout, FALSE);
      if (a->out)
        ok = write_reports (&run, a->out, &error);
    }
  if (!ok)
    rc = g_error_matches (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED)
         ? (bn_cli_fail (error), 130) : bn_cli_fail (error);
  if (run.prompts)
    g_ptr_array_unref (run.prompts);
  g_ptr_array_unref (run.models);
  bn_shapes_world_clear (&world);
  return rc;
}

int
bn_cmd_eval (int argc, char **argv)
{
  Args a = { .seeds = 4, .steps = 4, .size = 128 };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME_ARRAY, &a.models,
      "A model to score (name or folder); repeat to compare, the first being the "
      "reference of retention (default: shapes-bf16, shapes, shapes-binary)", "MODEL" },
    { "seeds", 0, 0, G_OPTION_ARG_INT, &a.seeds, "Seeds 0..N-1 for every prompt (default 4)", "N" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &a.steps, "Denoising steps (default 4)", "N" },
    { "size", 0, 0, G_OPTION_ARG_INT, &a.size, "Width and height (default 128)", "PX" },
    { "prompts", 0, 0, G_OPTION_ARG_FILENAME, &a.prompts,
      "Prompts to score (default data/shapes/eval_prompts.json)", "FILE" },
    { "world", 0, 0, G_OPTION_ARG_FILENAME, &a.world,
      "The world's palette (default data/shapes/world.json)", "FILE" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &a.out,
      "Write the pictures (DIR/MODEL/) and results.json and results.md here", "DIR" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &a.threads, "Threads (default: one per processor)", "N" },
    { "precision", 0, 0, G_OPTION_ARG_STRING, &a.precision,
      "Activations of the low-bit linears: " BN_CLI_PRECISIONS " (default auto; "
      "exact scores the weights alone)", "P" },
    { NULL },
  };
  g_set_prgname ("bonsai-image eval");
  GOptionContext *ctx = g_option_context_new ("shapes - score models on the Bonsai Shapes mini-GenEval");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx, "Example: bonsai-image eval shapes -m shapes-bf16 -m shapes --seeds 4");
  GError *error = NULL;
  int rc;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "bonsai-image eval: %s\n", error->message);
      g_clear_error (&error);
      rc = 2;
    }
  else if (argc != 2 || strcmp (argv[1], "shapes") || a.seeds < 1 || a.steps < 1
           || a.steps > BONSAI_MAX_STEPS || a.size < 16 || a.size > BONSAI_MAX_SIDE
           || a.threads < 0
           || (a.precision && !bonsai_precision_from_string (a.precision, &a.precision_id)))
    {
      g_autofree char *help = g_option_context_get_help (ctx, TRUE, NULL);
      fprintf (stderr, "bonsai-image eval: the one benchmark is 'shapes'; --seeds and "
                       "--steps are at least 1, --size 16..%d, --precision "
                       BN_CLI_PRECISIONS "\n\n%s",
               BONSAI_MAX_SIDE, help);
      rc = 2;
    }
  else
    rc = run_eval (&a);
  g_option_context_free (ctx);
  g_strfreev (a.models);
  g_free (a.prompts);
  g_free (a.world);
  g_free (a.out);
  g_free (a.precision);
  return rc;
}
