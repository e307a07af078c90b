/* cmd_check_refs.c — `bonsai-image check-refs [--backend NAME] DIR`: finds
 * every reference set under DIR (a folder holding qwen3_io, dit_io, vae_io
 * or pipeline_io .safetensors, as ../shared/refs/README.md describes), runs
 * the engine on it and prints per output tensor the max absolute and
 * relative error.  --backend cuda runs what generation runs on the GPU
 * there (the transformer), with the device's tolerances where they differ. */
#include "cli.h"

#include "bonsai/bonsai.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

gboolean
bn_refs_report (BnRefTally *tally, const char *set, const char *tensor,
                const float *got, const float *want, size_t n, double tol)
{
  double max_abs = 0, max_ref = 0;
  gboolean finite = TRUE;
  for (size_t i = 0; i < n; i++)
    {
      if (!isfinite (got[i]))
        finite = FALSE;
      max_abs = fmax (max_abs, fabs ((double) got[i] - want[i]));
      max_ref = fmax (max_ref, fabs ((double) want[i]));
    }
  double max_rel = max_abs / fmax (1.0, max_ref);
  gboolean pass = finite && max_rel <= tol;
  printf ("%-28s %-22s max_abs %.3e  max_rel %.3e  (tol %.0e)  %s\n", set,
          tensor, max_abs, max_rel, tol, pass ? "PASS" : "FAIL");
  if (pass)
    tally->passed++;
  else
    tally->failed++;
  return pass;
}

typedef gboolean (*Checker) (const char *dir, BnRefTally *tally, GError **error);

static const struct {
  const char *marker; /* the file that identifies a set */
  Checker check;
} kinds[] = {
  { "qwen3_io.safetensors", bn_refs_check_qwen3 },
  { "dit_io.safetensors", bn_refs_check_dit },
  { "vae_io.safetensors", bn_refs_check_vae },
  { "pipeline_io.safetensors", bn_refs_check_pipeline },
};

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Depth-first over `dir`, in name order so the report is stable. */
static void
walk (const char *dir, int depth, BnRefTally *tally, int *sets, int *broken)
{
  for (size_t i = 0; i < G_N_ELEMENTS (kinds); i++)
    {
      g_autofree char *marker = g_build_filename (dir, kinds[i].marker, NULL);
      if (!g_file_test (marker, G_FILE_TEST_IS_REGULAR))
        continue;
      GError *error = NULL;
      (*sets)++;
      if (!kinds[i].check (dir, tally, &error))
        {
          fprintf (stderr, "bonsai-image: %s: %s\n", dir, error->message);
          g_error_free (error);
          (*broken)++;
        }
    }
  if (depth >= 8)
    return;
  GDir *d = g_dir_open (dir, 0, NULL);
  if (!d)
    return;
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)))
    g_ptr_array_add (names, g_strdup (name));
  g_dir_close (d);
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *sub = g_build_filename (dir, names->pdata[i], NULL);
      if (g_file_test (sub, G_FILE_TEST_IS_DIR) && !g_file_test (sub, G_FILE_TEST_IS_SYMLINK))
        walk (sub, depth + 1, tally, sets, broken);
    }
  g_ptr_array_unref (names);
}

int
bn_cmd_check_refs (int argc, char **argv)
{
  BonsaiBackend backend = BONSAI_BACKEND_CPU;
  if (argc == 4 && !strcmp (argv[1], "--backend"))
    {
      if (!bonsai_backend_from_string (argv[2], &backend))
        {
          fprintf (stderr, "bonsai-image: check-refs: --backend is auto, cpu or cuda, not '%s'\n",
                   argv[2]);
          return 2;
        }
      argv += 2;
      argc -= 2;
    }
  if (argc != 2 || !strcmp (argv[1], "--help"))
    {
      fprintf (argc == 2 ? stdout : stderr,
               "Usage: bonsai-image check-refs [--backend auto|cpu|cuda] DIR\n"
               "Runs every reference set found under DIR and compares the "
               "engine's outputs with it (on the CPU unless --backend says).\n");
      return argc == 2 ? 0 : 2;
    }
  GError *error = NULL;
  if (!bonsai_backend_select (backend, &error))
    return bn_cli_fail (error);
  if (!g_file_test (argv[1], G_FILE_TEST_IS_DIR))
    {
      fprintf (stderr, "bonsai-image: check-refs: %s is not a folder\n", argv[1]);
      return 1;
    }
  BnRefTally tally = { 0, 0 };
  int sets = 0, broken = 0;
  walk (argv[1], 0, &tally, &sets, &broken);
  printf ("%d reference sets, %d tensors passed, %d failed, %d sets could not run\n",
          sets, tally.passed, tally.failed, broken);
  if (sets == 0)
    fprintf (stderr, "bonsai-image: check-refs: no reference set under %s\n", argv[1]);
  return (sets == 0 || tally.failed > 0 || broken > 0) ? 1 : 0;
}
