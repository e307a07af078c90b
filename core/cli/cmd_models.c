/* cmd_models.c — `bonsai-image models` (what is installed, where, its size
 * and whether its checksums were verified; what can be downloaded) and
 * `bonsai-image download [NAME]` (a progress bar on a terminal; Ctrl-C
 * keeps the partial file, which the next run resumes). */
#include "cli.h"

#include "store.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Set by SIGINT/SIGTERM; the one piece of process state a signal handler
 * may touch.  The engine polls it through its cancel pointer. */
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

/* ---- models ------------------------------------------------------------------ */

/* g_format_size with a plain space (it puts U+00A0 between number and unit,
 * which a terminal in the C locale shows as garbage). */
static char *
format_size (guint64 bytes)
{
  g_autofree char *s = g_format_size (bytes);
  g_auto (GStrv) parts = g_strsplit (s, "\u00a0", -1);
  return g_strjoinv (" ", parts);
}

static char *
check_summary (const BnStoreEntry *e)
{
  if (e->n_missing)
    return g_strdup_printf ("INCOMPLETE (%u files missing)", e->n_missing);
  if (e->n_bad)
    return g_strdup_printf ("FAILED: %s differs", e->bad_file);
  if (e->n_unchecked)
    return g_strdup_printf ("not verified (%u of %u files checked)", e->n_ok,
                            e->n_ok + e->n_unchecked);
  if (e->n_ok)
    return g_strdup_printf ("verified (%u file%s)", e->n_ok, e->n_ok == 1 ? "" : "s");
  return g_strdup ("no checksums known");
}

/* Bytes of a manifest model, and whether every file's size is known. */
static gint64
model_size (const BnStoreModel *m, gboolean *exact)
{
  gint64 total = 0;
  *exact = m->complete;
  for (guint i = 0; i < m->files->len; i++)
    {
      const BnStoreFile *f = m->files->pdata[i];
      total += MAX (f->size, 0);
      *exact = *exact && f->size >= 0;
    }
  return total;
}

int
bn_cmd_models (int argc, char **argv)
{
  gboolean verify = FALSE;
  GOptionEntry entries[] = {
    { "verify", 0, 0, G_OPTION_ARG_NONE, &verify,
      "Hash the files not checked yet (remembered for later listings)", NULL },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- list installed and downloadable models");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
    "Models are looked for in the folders of BONSAI_MODELS, among the bundled\n"
    "models (Bonsai Shapes) and in the Hugging Face cache (HF_HUB_CACHE,\n"
    "HF_HOME/hub or ~/.cache/huggingface/hub).\n"
    "Exits with status 1 when an installed model misses files or fails its\n"
    "checksums.");
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return bn_cli_fail (error);
  if (argc > 1)
    {
      fprintf (stderr, "bonsai-image models: unexpected argument '%s'\n", argv[1]);
      return 2;
    }
  g_autoptr (BnManifest) manifest = bn_manifest_load_default (&error);
  if (!manifest)
    return bn_cli_fail (error);
  catch_interrupts ();
  g_autoptr (GPtrArray) installed = bn_store_list (manifest, verify, &interrupted, &error);
  if (!installed)
    return bn_cli_fail (error);

  printf ("Installed models:\n");
  if (installed->len == 0)
    printf ("  none (see `bonsai-image download`)\n");
  int bad = 0;
  for (guint i = 0; i < installed->len; i++)
    {
      const BnStoreEntry *e = installed->pdata[i];
      g_autofree char *size = format_size (e->size);
      g_autofree char *check = check_summary (e);
      bad += e->n_bad > 0 || e->n_missing > 0;
      printf ("  %-18s %-9s %10s  %s\n", e->name, e->layout ? e->layout : "-", size, check);
      printf ("  %-18s %s: %s\n", "", e->where, e->dir);
    }

  printf ("\nAvailable for download (bonsai-image download NAME):\n");
  for (guint i = 0; i < manifest->models->len; i++)
    {
      const BnStoreModel *m = manifest->models->pdata[i];
      gboolean exact;
      gint64 bytes = model_size (m, &exact);
      g_autofree char *size = bytes || exact ? format_size (bytes) : g_strdup ("?");
      gboolean is_default = !g_strcmp0 (m->name, manifest->default_name);
      printf ("  %-18s %s%9s  %s%s\n", m->name, exact ? " " : ">", size, m->repo,
              is_default ? "  (default)" : "");
      if (m->description)
        printf ("  %-18s %s\n", "", m->description);
    }
  printf ("\nManifest: %s\n", manifest->path);
  return bad ? 1 : 0;
}

/* ---- download ------------------------------------------------------------------ */

typedef struct {
  gboolean tty;
  gint64 started;      /* monotonic µs */
  gint64 last_draw;
  gint64 first_done;   /* bytes already there when this run started */
  char *file;          /* the file last reported */
} Bar;

static int
terminal_width (void)
{
  struct winsize ws;
  if (ioctl (STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
    return ws.ws_col;
  return 80;
}

static gboolean
on_progress (const char *file, gint64 done, gint64 total, gpointer user_data)
{
  Bar *bar = user_data;
  gint64 now = g_get_monotonic_time ();
  if (!bar->started)
    {
      bar->started = now;
      bar->first_done = done;
    }
  if (!bar->tty)
    {
      /* In a log: one line per file. */
      if (g_strcmp0 (bar->file, file))
        fprintf (stderr, "downloading %s\n", file);
    }
  else if (now - bar->last_draw >= 100000 || done == total)
    {
      bar->last_draw = now;
      double frac = total > 0 ? (double) done / (double) total : 0.0;
      double secs = (now - bar->started) / 1e6;
      g_autofree char *d = format_size (done);
      g_autofree char *t = format_size (total);
      g_autofree char *rate = format_size (secs > 0.5 ? (guint64) ((done - bar->first_done) / secs) : 0);
      enum { BAR = 24 };
      char cells[BAR + 1];
      for (int i = 0; i < BAR; i++)
        cells[i] = i < (int) (frac * BAR) ? '#' : ' ';
      cells[BAR] = '\0';
      g_autofree char *line = g_strdup_printf ("%3d%% [%s] %s / %s  %s/s  %s",
                                               (int) (frac * 100), cells, d, t, rate, file);
      int width = terminal_width () - 1;
      fprintf (stderr, "\r%-*.*s", width, width, line);
    }
  g_free (bar->file);
  bar->file = g_strdup (file);
  return TRUE;
}

int
bn_cmd_download (int argc, char **argv)
{
  gboolean quiet = FALSE;
  GOptionEntry entries[] = {
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress output", NULL },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("[NAME] - fetch a model into the Hugging Face cache");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
    "NAME is a short name from `bonsai-image models`, a Hugging Face repository\n"
    "ORG/NAME, or nothing for the default model.  HF_ENDPOINT, HF_TOKEN, HF_HOME,\n"
    "HF_HUB_CACHE and HF_HUB_OFFLINE are honoured.  An interrupted download\n"
    "resumes where it stopped.");
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return bn_cli_fail (error);
  if (argc > 2)
    {
      fprintf (stderr, "bonsai-image download: one model at a time\n");
      return 2;
    }
  const char *name = argc > 1 ? argv[1] : NULL;
  Bar bar = { .tty = isatty (STDERR_FILENO) };
  catch_interrupts ();
  g_autofree char *dir = NULL;
  gboolean ok = bonsai_model_download (name, quiet ? NULL : on_progress, &bar,
                                       &interrupted, &dir, &error);
  if (bar.tty && bar.file)
    fputc ('\n', stderr);
  g_free (bar.file);
  if (!ok)
    {
      gboolean cancelled = g_error_matches (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
      bn_cli_fail (error);
      if (cancelled)
        fprintf (stderr, "bonsai-image: run `bonsai-image download%s%s` again to resume\n",
                 name ? " " : "", name ? name : "");
      return cancelled ? 130 : 1;
    }
  printf ("%s\n", dir);
  return 0;
}
