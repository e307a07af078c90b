/* bench_pipeline.c — `bonsai-image bench pipeline`: seconds per denoising
 * step, decode time and peak resident memory of whole generations with a
 * full-size synthetic klein-4B (the release's MLX binary or ternary
 * transformer and a VAE of the real shapes, random weights; see
 * synthetic_model.h), written once into the cache or --dir.
 *
 * Prompt features are random [512, 7680] arrays, so the text encoder is not
 * part of the run (`bench text-encoder` measures it).  Each size runs in a
 * child process, so that its peak RSS (the kernel's maximum resident set of
 * the child, ru_maxrss) is that of one generation — model opening, mapped
 * weights touched, activations, decode — and not that of writing the model
 * or of another size.
 *
 * With several --precision values each size runs once per precision, same
 * seed, and every image after the first is compared with the first: PSNR
 * over the float RGB pixels in [0, 1] (the child leaves them in a
 * temporary file). */
#include "cli.h"

#include "synthetic_model.h"

#include "bonsai/bonsai.h"

#include <glib/gstdio.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEED 2024          /* of the synthetic weights */
#define TEXT_TOKENS 512
#define MAX_TIMED_STEPS 64 /* steps whose times are kept one by one */

/* What a child measures and sends back through a pipe. */
typedef struct {
  gboolean ok;
  char message[256];
  double open_s;
  int steps;
  double step_s[MAX_TIMED_STEPS];
  int tiles;
  double decode_s;
  double mean_pixel;
} Result;

typedef struct {
  Result *r;
  gint64 last;          /* the previous event */
  gint64 denoise_end;   /* the last step's end */
} Clock;

static gboolean
on_progress (BonsaiStage stage, int done, int total, gpointer data)
{
  Clock *c = data;
  gint64 now = g_get_monotonic_time ();
  if (stage == BONSAI_STAGE_DENOISE)
    {
      if (done <= MAX_TIMED_STEPS)
        c->r->step_s[done - 1] = (now - c->last) / 1e6;
      c->r->steps = done;
      c->denoise_end = now;
    }
  else if (stage == BONSAI_STAGE_DECODE)
    c->r->tiles = total;
  c->last = now;
  return TRUE;
}

/* One generation of size × size, measured into r. */
static void
generate_once (const char *dir, int size, int steps, int threads,
               BonsaiPrecision precision, const char *pixels_path, Result *r)
{
  GError *error = NULL;
  BonsaiTensor *feats = NULL;
  BonsaiImage *img = NULL;
  gint64 t0 = g_get_monotonic_time ();
  BonsaiModel *model = bonsai_model_open (dir, &error);
  if (model)
    {
      r->open_s = (g_get_monotonic_time () - t0) / 1e6;
      const gint64 shape[2] = { TEXT_TOKENS, 7680 };
      feats = bonsai_tensor_new (2, shape, &error);
    }
  if (feats)
    {
      /* Values of the order of Qwen3's hidden states. */
      guint32 s = 12345;
      for (gint64 i = 0; i < feats->shape[0] * feats->shape[1]; i++)
        {
          s = s * 1664525u + 1013904223u;
          feats->data[i] = (float) (s >> 8) / (float) (1 << 23) - 1.0f;
        }
      BonsaiRequest req;
      bonsai_request_init (&req);
      req.features = feats;
      req.width = req.height = size;
      req.steps = steps;
      req.seed = 1;
      req.threads = threads;
      req.precision = precision;
      req.format = BONSAI_PIXEL_RGB_F32;
      Clock clock = { r, g_get_monotonic_time (), 0 };
      r->ok = bonsai_generate (model, &req, on_progress, &clock, &img, &error);
      r->decode_s = (g_get_monotonic_time () - clock.denoise_end) / 1e6;
    }
  if (img)
    {
      double sum = 0;
      const float *p = img->pixels;
      for (size_t i = 0; i < (size_t) size * size * 3; i++)
        sum += p[i];
      r->mean_pixel = sum / ((double) size * size * 3);
      if (!g_file_set_contents (pixels_path, img->pixels,
                                (gssize) ((size_t) size * size * 3 * sizeof (float)), &error))
        r->ok = FALSE;
    }
  if (error)
    g_strlcpy (r->message, error->message, sizeof r->message);
  g_clear_error (&error);
  bonsai_image_free (img);
  bonsai_tensor_free (feats);
  bonsai_model_unref (model);
}

/* Runs generate_once in a child; *peak_kb is the child's maximum RSS. */
static gboolean
measure (const char *dir, int size, int steps, int threads,
         BonsaiPrecision precision, const char *pixels_path, Result *r,
         long *peak_kb, GError **error)
{
  int fds[2];
  memset (r, 0, sizeof *r);
  if (pipe (fds) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "pipe: %s", g_strerror (errno));
      return FALSE;
    }
  fflush (NULL);
  pid_t pid = fork ();
  if (pid < 0)
    {
      int e = errno;
      close (fds[0]);
      close (fds[1]);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "fork: %s", g_strerror (e));
      return FALSE;
    }
  if (pid == 0)
    {
      close (fds[0]);
      generate_once (dir, size, steps, threads, precision, pixels_path, r);
      gboolean sent = write (fds[1], r, sizeof *r) == (ssize_t) sizeof *r;
      _exit (sent ? 0 : 1);
    }
  close (fds[1]);
  ssize_t got;
  do
    got = read (fds[0], r, sizeof *r);
  while (got < 0 && errno == EINTR);
  close (fds[0]);
  int status;
  struct rusage usage;
  while (wait4 (pid, &status, 0, &usage) < 0 && errno == EINTR)
    ;
  if (got != (ssize_t) sizeof *r || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND,
                   "the %d×%d run ended without a result (%s)", size, size,
                   WIFSIGNALED (status) ? g_strsignal (WTERMSIG (status)) : "exit");
      return FALSE;
    }
  *peak_kb = usage.ru_maxrss; /* Linux: kilobytes */
  return TRUE;
}

/* PSNR in dB of b against a, n floats in [0, 1]; INFINITY if equal. */
static double
psnr (const float *a, const float *b, size_t n)
{
  double se = 0.0;
  for (size_t i = 0; i < n; i++)
    se += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
  return se > 0.0 ? 10.0 * log10 ((double) n / se) : INFINITY;
}

static void
report (int size, const char *precision, const Result *r, long peak_kb)
{
  if (!r->ok)
    {
      printf ("  %4d×%-4d %-5s failed: %s\n", size, size, precision, r->message);
      return;
    }
  double sum = 0;
  int timed = MIN (r->steps, MAX_TIMED_STEPS);
  for (int i = 0; i < timed; i++)
    sum += r->step_s[i];
  printf ("  %4d×%-4d %-5s %.1f s/step (", size, size, precision, sum / timed);
  for (int i = 0; i < timed; i++)
    printf ("%s%.1f", i ? ", " : "", r->step_s[i]);
  printf ("), decode %.1f s in %d tile%s, open %.2f s, peak RSS %.0f MiB, mean pixel %.3f",
          r->decode_s, r->tiles, r->tiles == 1 ? "" : "s", r->open_s,
          peak_kb / 1024.0, r->mean_pixel);
}

int
bn_bench_pipeline (int argc, char **argv)
{
  g_autofree char *dir = NULL;
  g_auto (GStrv) sizes = NULL;
  g_autofree char *precisions = NULL;
  int steps = 1, threads = 0, bits = 2;
  GOptionEntry entries[] = {
    { "size", 0, 0, G_OPTION_ARG_STRING_ARRAY, &sizes,
      "Square image side; repeat for several (default 512)", "N" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps, "Denoising steps per run (default 1)", "N" },
    { "bits", 0, 0, G_OPTION_ARG_INT, &bits, "1: binary pack, 2: ternary (default)", "B" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads,
      "Worker threads (default: one per processor)", "N" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir,
      "Folder of the synthetic model (default: the user cache)", "DIR" },
    { "precision", 0, 0, G_OPTION_ARG_STRING, &precisions,
      "Comma-separated: auto, exact, bf16, int8, lut; images after the first are "
      "compared with it (default auto)", "LIST" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("");
  g_option_context_set_summary (ctx,
      "Generates with a full-size synthetic klein-4B (MLX pack of the release, "
      "written once: 1.4 GB ternary, 1.0 GB binary, plus a 0.2 GB VAE) and "
      "reports seconds per step, decode time and the peak resident memory of "
      "each whole generation.  Prompt features are given, so the text encoder "
      "is not included.  A 512² step is about 10 TFLOP, a 1024² one 35.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return bn_cli_fail (error);
  if (argc > 1 || (bits != 1 && bits != 2) || steps < 1 || steps > BONSAI_MAX_STEPS)
    {
      fprintf (stderr, "bonsai-image: bench pipeline: bad arguments (see --help)\n");
      return 2;
    }
  g_auto (GStrv) prec_names = g_strsplit (precisions ? precisions : "auto", ",", -1);
  BonsaiPrecision prec[8];
  int n_prec = 0;
  for (char **p = prec_names; *p; p++)
    if (n_prec == (int) G_N_ELEMENTS (prec) || !bonsai_precision_from_string (*p, &prec[n_prec++]))
      {
        fprintf (stderr, "bonsai-image: bench pipeline: --precision takes up to 8 of "
                 "auto, exact, bf16, int8, lut (got '%s')\n", *p);
        return 2;
      }
  if (n_prec == 0)
    {
      fprintf (stderr, "bonsai-image: bench pipeline: --precision is empty\n");
      return 2;
    }
  GArray *sides = g_array_new (FALSE, FALSE, sizeof (int));
  for (char **s = sizes; s && *s; s++)
    {
      char *end;
      long v = strtol (*s, &end, 10);
      if (*end || v < 16 || v > BONSAI_MAX_SIDE || v % 16)
        {
          fprintf (stderr, "bonsai-image: bench pipeline: --size %s is not a "
                   "multiple of 16 from 16 to %d\n", *s, BONSAI_MAX_SIDE);
          g_array_unref (sides);
          return 2;
        }
      int side = (int) v;
      g_array_append_val (sides, side);
    }
  if (sides->len == 0)
    {
      int side = 512;
      g_array_append_val (sides, side);
    }

  const char *pack = bits == 1 ? "binary" : "ternary";
  if (!dir)
    dir = g_build_filename (g_get_user_cache_dir (), "bonsai-image", "synthetic",
                            bits == 1 ? "klein-4b-binary" : "klein-4b-ternary", NULL);
  BnSynthSpec spec;
  bn_synth_spec_klein4b (&spec, bits);
  if (!bn_synthetic_model_ready (dir, &spec, SEED))
    {
      printf ("writing a synthetic klein-4B (%s MLX pack) to %s ...\n", pack, dir);
      fflush (stdout);
      gint64 t = g_get_monotonic_time ();
      if (!bn_synthetic_model_write (dir, &spec, SEED, &error))
        {
          g_array_unref (sides);
          return bn_cli_fail (error);
        }
      printf ("  written in %.1f s\n", (g_get_monotonic_time () - t) / 1e6);
    }

  char who[32];
  if (threads > 0)
    g_snprintf (who, sizeof who, "%d", threads);
  else
    g_snprintf (who, sizeof who, "%ld (all)", sysconf (_SC_NPROCESSORS_ONLN));
  printf ("pipeline: synthetic klein-4B, %s MLX pack (g128, bf16 scales), VAE bf16\n"
          "  prompt features given: the text encoder is NOT included\n"
          "  %d step%s per size, %s threads, CPU kernels %s\n",
          pack, steps, steps == 1 ? "" : "s", who, bonsai_cpu_isa ());
  char *tmp_dir = g_dir_make_tmp ("bonsai-bench-XXXXXX", &error);
  if (!tmp_dir)
    {
      g_array_unref (sides);
      return bn_cli_fail (error);
    }
  int failed = 0;
  for (guint i = 0; i < sides->len; i++)
    {
      int side = g_array_index (sides, int, i);
      const size_t floats = (size_t) side * side * 3;
      gchar *first = NULL;
      for (int p = 0; p < n_prec; p++)
        {
          Result r;
          long peak_kb = 0;
          char *path = g_strdup_printf ("%s/%d-%d.f32", tmp_dir, side, p);
          if (!measure (dir, side, steps, threads, prec[p], path, &r, &peak_kb, &error))
            {
              printf ("  %4d×%-4d %-5s failed: %s\n", side, side, prec_names[p], error->message);
              g_clear_error (&error);
              failed++;
              g_free (path);
              continue;
            }
          report (side, prec_names[p], &r, peak_kb);
          gchar *pixels = NULL;
          gsize len = 0;
          if (r.ok && g_file_get_contents (path, &pixels, &len, NULL)
              && len == floats * sizeof (float))
            {
              if (!first)
                first = g_steal_pointer (&pixels);
              else
                printf (", PSNR vs %s %.1f dB", prec_names[0],
                        psnr ((const float *) first, (const float *) pixels, floats));
            }
          printf ("\n");
          g_free (pixels);
          g_unlink (path);
          g_free (path);
          failed += !r.ok;
          fflush (stdout);
        }
      g_free (first);
    }
  g_rmdir (tmp_dir);
  g_free (tmp_dir);
  g_array_unref (sides);
  return failed ? 1 : 0;
}
