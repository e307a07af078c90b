/* cmd_generate.c — `bonsai-image generate` (text to image) and
 * `bonsai-image edit` (one to four reference images and a prompt to an
 * image).  Both write a PNG that appears only when complete; a refused
 * request leaves no file. */
#include "cli.h"

#include "safetensors.h"

#include "bonsai/bonsai.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  char *model;
  char *prompt;
  char *features;
  char **inputs;
  char *output;
  char *backend;
  char *precision;
  int width, height, steps, threads;
  gint64 seed;
  gboolean quiet;
} Args;

static void
args_clear (Args *a)
{
  g_free (a->model);
  g_free (a->prompt);
  g_free (a->features);
  g_strfreev (a->inputs);
  g_free (a->output);
  g_free (a->backend);
  g_free (a->precision);
}

/* ---- progress bar ---------------------------------------------------------- */

static const char *const stage_names[] = {
  [BONSAI_STAGE_ENCODE_PROMPT] = "prompt",
  [BONSAI_STAGE_ENCODE_IMAGES] = "images",
  [BONSAI_STAGE_DENOISE] = "denoise",
  [BONSAI_STAGE_DECODE] = "decode",
};

typedef struct {
  gint64 start;
  gboolean open;  /* a bar line is drawn and not yet ended */
} Bar;

/* Redraws one line on stderr: stage, a bar, done/total and seconds. */
static gboolean
draw_bar (BonsaiStage stage, int done, int total, gpointer data)
{
  Bar *bar = data;
  enum { WIDTH = 24 };
  int filled = total > 0 ? (int) ((gint64) WIDTH * done / total) : WIDTH;
  char cells[WIDTH + 1];
  for (int i = 0; i < WIDTH; i++)
    cells[i] = i < filled ? '#' : '.';
  cells[WIDTH] = '\0';
  fprintf (stderr, "\r%-8s [%s] %d/%d  %.1f s ", stage_names[stage], cells, done,
           total, (g_get_monotonic_time () - bar->start) / 1e6);
  bar->open = !(stage == BONSAI_STAGE_DECODE && done == total);
  if (!bar->open)
    fputc ('\n', stderr);
  fflush (stderr);
  return TRUE;
}

/* ---- inputs ---------------------------------------------------------------- */

/* Prompt features from a safetensors file (`encode-prompt` writes them as
 * "features"; reference sets call them "prompt_embeds"). */
static BonsaiTensor *
load_features (const char *path, GError **error)
{
  BnSafetensors *st = bn_safetensors_open (path, error);
  if (!st)
    return NULL;
  const char *name = bn_safetensors_find (st, "features") ? "features" : "prompt_embeds";
  BnTensor t;
  BonsaiTensor *out = NULL;
  if (bn_safetensors_view (st, name, 1u << BN_DTYPE_F32, 2, NULL, &t, error))
    {
      out = bonsai_tensor_new (2, t.shape, error);
      if (out)
        memcpy (out->data, t.data, bn_tensor_nbytes (&t));
    }
  bn_safetensors_free (st);
  return out;
}

static int
run (const Args *a, gboolean edit)
{
  GError *error = NULL;
  BonsaiTensor *features = NULL;
  BonsaiModel *model = NULL;
  BonsaiImage *image = NULL;
  char *output = NULL;
  BonsaiImage *refs[BONSAI_MAX_REFERENCES] = { NULL };
  int n_refs = a->inputs ? (int) g_strv_length (a->inputs) : 0;
  Bar bar = { g_get_monotonic_time (), FALSE };
  gboolean ok = FALSE;
  if (n_refs > BONSAI_MAX_REFERENCES)
    {
      fprintf (stderr, "bonsai-image: at most %d input images, not %d\n",
               BONSAI_MAX_REFERENCES, n_refs);
      return 2;
    }
  for (int k = 0; k < n_refs; k++)
    if (!(refs[k] = bonsai_image_load_png (a->inputs[k], &error)))
      goto out;
  if (a->features && !(features = load_features (a->features, &error)))
    goto out;
  if (!(model = bonsai_model_open (a->model, &error)))
    goto out;

  BonsaiRequest req;
  bonsai_request_init (&req);
  req.prompt = a->features ? NULL : a->prompt;
  req.features = features;
  req.width = a->width;
  req.height = a->height;
  req.steps = a->steps;
  req.threads = a->threads;
  if (a->precision && !bonsai_precision_from_string (a->precision, &req.precision))
    {
      g_set_error (&error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "--precision is " BN_CLI_PRECISIONS ", not '%s'", a->precision);
      goto out;
    }
  req.references = (const BonsaiImage *const *) refs;
  req.n_references = n_refs;
  /* A seed that can be told again: random unless given, and printed. */
  req.seed = a->seed >= 0 ? (guint64) a->seed : g_random_int ();
  output = a->output ? g_strdup (a->output)
                     : g_strdup_printf ("bonsai-%" G_GUINT64_FORMAT ".png", req.seed);
  if (!a->quiet)
    fprintf (stderr, "%s: seed %" G_GUINT64_FORMAT "\n", edit ? "edit" : "generate", req.seed);

  gboolean tty = !a->quiet && isatty (STDERR_FILENO);
  ok = bonsai_generate (model, &req, tty ? draw_bar : NULL, &bar, &image, &error)
       && bonsai_image_save_png (image, output, &error);
  if (ok && !a->quiet)
    printf ("%s (%d×%d, %d steps, seed %" G_GUINT64_FORMAT ", %.1f s)\n", output,
            image->width, image->height, req.steps, req.seed,
            (g_get_monotonic_time () - bar.start) / 1e6);

out:
  if (bar.open)
    fputc ('\n', stderr);
  bonsai_image_free (image);
  bonsai_model_unref (model);
  for (int k = 0; k < n_refs; k++)
    bonsai_image_free (refs[k]);
  bonsai_tensor_free (features);
  g_free (output);
  return ok ? 0 : bn_cli_fail (error);
}

/* --backend NAME: FALSE, with the exit status in *rc, when NAME is not a
 * backend or its device cannot be used ("no CUDA device"). */
static gboolean
select_backend (const char *name, int *rc)
{
  BonsaiBackend b;
  GError *error = NULL;
  if (!bonsai_backend_from_string (name, &b))
    {
      fprintf (stderr, "bonsai-image: --backend is auto, cpu or cuda, not '%s'\n", name);
      *rc = 2;
      return FALSE;
    }
  if (!bonsai_backend_select (b, &error))
    {
      *rc = bn_cli_fail (error);
      return FALSE;
    }
  return TRUE;
}

static int
command (int argc, char **argv, gboolean edit)
{
  Args a = { .width = BONSAI_SIZE_AUTO, .height = BONSAI_SIZE_AUTO, .steps = 4,
             .seed = -1 };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &a.model,
      "Model folder or installed model's name (default: the default model if "
      "installed, else the bundled 'shapes')", "MODEL" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &a.prompt, "What to draw", "TEXT" },
    { "features", 0, 0, G_OPTION_ARG_FILENAME, &a.features,
      "Prompt features from encode-prompt, in place of a prompt", "FILE" },
    { "input", 'i', 0, G_OPTION_ARG_FILENAME_ARRAY, &a.inputs,
      "Reference image (PNG); up to 4", "PNG" },
    { "width", 'W', 0, G_OPTION_ARG_INT, &a.width, "Image width (multiple of 16)", "W" },
    { "height", 'H', 0, G_OPTION_ARG_INT, &a.height, "Image height (multiple of 16)", "H" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &a.steps, "Denoising steps (default 4)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &a.seed, "Noise seed (default: random, printed)", "S" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &a.output, "Output PNG (default bonsai-SEED.png)", "FILE" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &a.threads, "Threads (default: one per processor)", "N" },
    { "backend", 0, 0, G_OPTION_ARG_STRING, &a.backend,
      "Where to compute: auto, cpu or cuda (default: $BONSAI_BACKEND, else auto)", "NAME" },
    { "precision", 0, 0, G_OPTION_ARG_STRING, &a.precision,
      "Activations of the low-bit linears: " BN_CLI_PRECISIONS " (default auto)", "P" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &a.quiet, "Print nothing but errors", NULL },
    { NULL },
  };
  if (edit)
    entries[3].description = "Image to edit (PNG); repeat for up to 4 references";
  else
    entries[3].flags = G_OPTION_FLAG_HIDDEN;
  g_set_prgname (edit ? "bonsai-image edit" : "bonsai-image generate");
  GOptionContext *ctx = g_option_context_new (
    edit ? "- change images as a prompt says" : "- draw an image from a prompt");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx, edit
    ? "Example: bonsai-image edit -m MODEL -i in.png -p 'make it winter' -o out.png"
    : "Example: bonsai-image generate -m MODEL -p 'a bonsai tree' -o out.png");
  GError *error = NULL;
  int rc;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "bonsai-image %s: %s\n", argv[0], error->message);
      g_clear_error (&error);
      rc = 2;
    }
  else if (argc > 1 || !a.prompt == !a.features || (edit && !a.inputs))
    {
      g_autofree char *help = g_option_context_get_help (ctx, TRUE, NULL);
      fprintf (stderr, "bonsai-image %s: needs %s-p PROMPT (or --features FILE)\n\n%s",
               argv[0], edit ? "-i IMAGE, " : "", help);
      rc = 2;
    }
  else if (!a.backend || select_backend (a.backend, &rc))
    rc = run (&a, edit);
  g_option_context_free (ctx);
  args_clear (&a);
  return rc;
}

int
bn_cmd_generate (int argc, char **argv)
{
  return command (argc, argv, FALSE);
}

int
bn_cmd_edit (int argc, char **argv)
{
  return command (argc, argv, TRUE);
}
