/* test-cache.c — the process-wide model cache and the prompt-feature cache:
 * the same files open once (pointer, counters, time and resident memory),
 * also from two threads at once; the last unref unloads; changed files load
 * afresh; a seed sweep encodes its prompt once; the LRU's rules.
 *
 * BONSAI_TEST_MODEL=FOLDER also measures opening that model twice (a real
 * release, say); the numbers are printed as TAP comments. */
#include "release-fixture.h"

#include "cache.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <utime.h>

/* Resident memory of this process in MB (Linux /proc). */
static double
rss_mb (void)
{
  long pages = 0, resident = 0;
  FILE *f = fopen ("/proc/self/statm", "r");
  if (f)
    {
      if (fscanf (f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
      fclose (f);
    }
  return resident * (double) sysconf (_SC_PAGESIZE) / 1e6;
}

static BonsaiCacheStats
stats (void)
{
  BonsaiCacheStats s;
  bonsai_cache_stats (&s);
  return s;
}

/* The tiny model (image path only) written under `name`. */
static char *
bare_model (const char *name)
{
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  char *dir = fixture_path (name);
  GError *error = NULL;
  g_assert_true (bn_synthetic_model_write (dir, &spec, 5, &error));
  g_assert_no_error (error);
  return dir;
}

static BonsaiModel *
open_ok (const char *dir)
{
  GError *error = NULL;
  BonsaiModel *m = bonsai_model_open (dir, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);
  return m;
}

/* ---- models --------------------------------------------------------------------- */

/* The second open of the same folder is the first model, loads nothing,
 * says so in the log, and costs next to no time or memory. */
static void
measure_open_twice (const char *dir)
{
  BonsaiCacheStats s0 = stats ();
  double r0 = rss_mb ();
  gint64 t0 = g_get_monotonic_time ();
  BonsaiModel *a = open_ok (dir);
  gint64 t1 = g_get_monotonic_time ();
  double r1 = rss_mb ();
  g_test_expect_message ("bonsai", G_LOG_LEVEL_INFO, "*already loaded*");
  BonsaiModel *b = open_ok (dir);
  g_test_assert_expected_messages ();
  gint64 t2 = g_get_monotonic_time ();
  double r2 = rss_mb ();
  BonsaiCacheStats s1 = stats ();
  g_test_message ("%s: first open %.3f ms, resident +%.1f MB; second open %.3f ms, "
                  "resident +%.1f MB", dir, (t1 - t0) / 1e3, r1 - r0, (t2 - t1) / 1e3,
                  r2 - r1);
  g_assert_true (a == b);
  g_assert_cmpuint (s1.model_opens, ==, s0.model_opens + 1);
  g_assert_cmpuint (s1.model_hits, ==, s0.model_hits + 1);
  g_assert_cmpuint (s1.models, ==, s0.models + 1);
  /* Generous: the second open only reads the folders' file list. */
  g_assert_cmpint (t2 - t1, <, MAX (t1 - t0, 2000));
  bonsai_model_unref (b);
  bonsai_model_unref (a);
  g_assert_cmpuint (stats ().models, ==, s0.models);
}

static void
test_open_twice (void)
{
  g_autofree char *dir = bare_model ("open-twice");
  measure_open_twice (dir);
  const char *real = g_getenv ("BONSAI_TEST_MODEL");
  if (real)
    measure_open_twice (real);
}

typedef struct {
  const char *dir;
  gint *ready;        /* threads waiting at the start line */
  int n;
  BonsaiModel *model;
} Opener;

static gpointer
open_in_thread (gpointer data)
{
  Opener *o = data;
  /* Every thread starts opening at the same moment. */
  g_atomic_int_inc (o->ready);
  while (g_atomic_int_get (o->ready) < o->n)
    g_thread_yield ();
  o->model = open_ok (o->dir);
  return NULL;
}

/* Threads opening one model at once get one object, loaded once: the
 * first loads, the others wait for it. */
static void
test_threads (void)
{
  enum { N = 4 };
  g_autofree char *dir = bare_model ("threads");
  BonsaiCacheStats s0 = stats ();
  gint ready = 0;
  Opener o[N];
  GThread *t[N];
  for (int i = 0; i < N; i++)
    {
      o[i] = (Opener) { .dir = dir, .ready = &ready, .n = N };
      t[i] = g_thread_new ("opener", open_in_thread, &o[i]);
    }
  for (int i = 0; i < N; i++)
    g_thread_join (t[i]);
  BonsaiCacheStats s1 = stats ();
  for (int i = 1; i < N; i++)
    g_assert_true (o[i].model == o[0].model);
  g_assert_cmpuint (s1.model_opens, ==, s0.model_opens + 1);
  g_assert_cmpuint (s1.model_hits, ==, s0.model_hits + N - 1);
  for (int i = 0; i < N; i++)
    bonsai_model_unref (o[i].model);
  g_assert_cmpuint (stats ().models, ==, s0.models);
}

/* References keep the model in the table; the last unref takes it out, so
 * the next open loads again.  A failed open leaves nothing behind. */
static void
test_unref (void)
{
  g_autofree char *dir = bare_model ("unref");
  BonsaiCacheStats s0 = stats ();
  BonsaiModel *m = open_ok (dir);
  g_assert_true (bonsai_model_ref (m) == m);
  bonsai_model_unref (m);
  BonsaiModel *again = open_ok (dir);
  g_assert_true (again == m);
  g_assert_cmpuint (stats ().models, ==, s0.models + 1);
  bonsai_model_unref (again);
  bonsai_model_unref (m);
  BonsaiCacheStats s1 = stats ();
  g_assert_cmpuint (s1.models, ==, s0.models);
  g_assert_cmpuint (s1.model_opens, ==, s0.model_opens + 1);
  m = open_ok (dir);
  g_assert_cmpuint (stats ().model_opens, ==, s0.model_opens + 2);
  bonsai_model_unref (m);
  bonsai_model_unref (NULL);

  /* The loading thread's reservation is released on failure: the next
   * open tries (and fails) again rather than waiting forever. */
  g_autofree char *vae = g_build_filename (dir, "vae", "diffusion_pytorch_model.safetensors", NULL);
  g_autofree char *away = g_strconcat (vae, ".away", NULL);
  g_assert_cmpint (g_rename (vae, away), ==, 0);
  for (int i = 0; i < 2; i++)
    {
      GError *error = NULL;
      g_assert_null (bonsai_model_open (dir, &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
      g_clear_error (&error);
    }
  g_assert_cmpint (g_rename (away, vae), ==, 0);
  g_assert_cmpuint (stats ().models, ==, s0.models);
}

/* A file replaced or touched is another model: it is loaded afresh while
 * the old one lives on for whoever holds it. */
static void
test_changed_files (void)
{
  g_autofree char *dir = bare_model ("changed");
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  BonsaiModel *old = open_ok (dir);
  g_autofree char *conf = g_build_filename (dir, "vae", "config.json", NULL);
  GStatBuf sb;
  g_assert_cmpint (g_stat (conf, &sb), ==, 0);
  struct utimbuf later = { sb.st_atime, sb.st_mtime + 10 };
  g_assert_cmpint (g_utime (conf, &later), ==, 0);
  BonsaiModel *touched = open_ok (dir);
  g_assert_true (touched != old);
  GError *error = NULL;
  g_assert_true (bn_synthetic_model_write (dir, &spec, 6, &error));
  g_assert_no_error (error);
  BonsaiModel *rewritten = open_ok (dir);
  g_assert_true (rewritten != touched && rewritten != old);
  g_assert_cmpint (bonsai_model_size_multiple (old), ==, 8);
  bonsai_model_unref (old);
  bonsai_model_unref (touched);
  bonsai_model_unref (rewritten);
}

/* ---- prompts --------------------------------------------------------------------- */

static BonsaiImage *
generate (BonsaiModel *model, const char *prompt, guint64 seed)
{
  BonsaiRequest req;
  bonsai_request_init (&req);
  req.prompt = prompt;
  req.width = req.height = 32;
  req.steps = 1;
  req.seed = seed;
  BonsaiImage *img = NULL;
  GError *error = NULL;
  g_assert_true (bonsai_generate (model, &req, NULL, NULL, &img, &error));
  g_assert_no_error (error);
  return img;
}

/* Four seeds of one prompt run the text encoder once, and each hit is
 * logged; the features kept are the encoder's (the first seed again gives
 * the first image, bit for bit); another prompt is encoded. */
static void
test_seed_sweep (void)
{
  g_autofree char *dir = fixture_release ("mlx", BN_SYNTH_LAYOUT_MLX, NULL);
  if (!dir)
    return;
  BonsaiModel *model = open_ok (dir);
  const char *prompt = "A bonsai tree in the rain";
  BonsaiCacheStats s0 = stats ();
  gint64 t0 = g_get_monotonic_time ();
  BonsaiImage *first = generate (model, prompt, 0);
  gint64 t1 = g_get_monotonic_time ();
  g_assert_cmpuint (stats ().prompt_encodes, ==, s0.prompt_encodes + 1);
  for (guint64 seed = 1; seed < 4; seed++)
    {
      g_test_expect_message ("bonsai", G_LOG_LEVEL_INFO, "*text encoder did not run*");
      bonsai_image_free (generate (model, prompt, seed));
      g_test_assert_expected_messages ();
    }
  gint64 t2 = g_get_monotonic_time ();
  BonsaiCacheStats s1 = stats ();
  g_test_message ("tiny model: first generation %.1f ms, the next three %.1f ms each",
                  (t1 - t0) / 1e3, (t2 - t1) / 3e3);
  g_assert_cmpuint (s1.prompt_encodes, ==, s0.prompt_encodes + 1);
  g_assert_cmpuint (s1.prompt_hits, ==, s0.prompt_hits + 3);

  BonsaiImage *again = generate (model, prompt, 0);
  g_assert_cmpmem (first->pixels, first->stride * first->height, again->pixels,
                   again->stride * again->height);
  bonsai_image_free (generate (model, "A bonsai tree in the snow", 0));
  g_assert_cmpuint (stats ().prompt_encodes, ==, s0.prompt_encodes + 2);

  bonsai_image_free (first);
  bonsai_image_free (again);
  bonsai_model_unref (model);
}

/* Features standing for what the encoder made of a prompt: [4, 2] of v. */
static BonsaiTensor *
features (float v)
{
  BonsaiTensor *t = bonsai_tensor_new (2, (const gint64[2]) { 4, 2 }, NULL);
  for (int i = 0; i < 8; i++)
    t->data[i] = v;
  return t;
}

static void
put (BonsaiModel *model, const char *prompt, int max_length, float v)
{
  BonsaiTensor *t = features (v);
  bn_cache_prompt_encoded (model, prompt, max_length, t);
  bonsai_tensor_free (t);
}

/* The value cached for (model, prompt, max_length), or NAN. */
static float
get (BonsaiModel *model, const char *prompt, int max_length)
{
  BonsaiTensor *t = bn_cache_prompt_lookup (model, prompt, max_length);
  float v = t ? t->data[7] : NAN;
  bonsai_tensor_free (t);
  return v;
}

/* The LRU's rules, on features stored through the encoder's entry point:
 * keys are (model, prompt, length); least recently used entries go first;
 * capacity 0 keeps nothing; a model's last unref drops its entries. */
static void
test_lru (void)
{
  g_autofree char *dir_a = bare_model ("lru-a");
  g_autofree char *dir_b = bare_model ("lru-b");
  BonsaiModel *a = open_ok (dir_a), *b = open_ok (dir_b);
  bonsai_cache_set_prompt_capacity (3);
  BonsaiCacheStats s0 = stats ();
  put (a, "one", 512, 1);
  put (a, "two", 512, 2);
  put (b, "one", 512, 3);
  g_assert_cmpfloat (get (a, "one", 512), ==, 1);   /* now the most recent */
  g_assert_cmpfloat (get (b, "one", 512), ==, 3);
  g_assert_true (isnan (get (a, "one", 256)));
  g_assert_true (isnan (get (a, "One", 512)));
  put (a, "three", 512, 4);                          /* evicts a/"two" */
  g_assert_true (isnan (get (a, "two", 512)));
  g_assert_cmpfloat (get (a, "one", 512), ==, 1);
  g_assert_cmpfloat (get (a, "three", 512), ==, 4);
  put (a, "three", 512, 5);                          /* already there: kept */
  g_assert_cmpfloat (get (a, "three", 512), ==, 4);
  BonsaiCacheStats s1 = stats ();
  g_assert_cmpuint (s1.prompts, ==, 3);
  g_assert_cmpuint (s1.prompt_encodes, ==, s0.prompt_encodes + 5);
  g_assert_cmpuint (s1.prompt_hits, ==, s0.prompt_hits + 5);

  bonsai_cache_set_prompt_capacity (1);              /* keeps a/"three" */
  g_assert_cmpuint (stats ().prompts, ==, 1);
  g_assert_cmpfloat (get (a, "three", 512), ==, 4);
  bonsai_cache_set_prompt_capacity (0);
  put (a, "four", 512, 6);
  g_assert_cmpuint (stats ().prompts, ==, 0);
  g_assert_true (isnan (get (a, "four", 512)));

  bonsai_cache_set_prompt_capacity (BN_CACHE_PROMPT_CAPACITY);
  put (a, "five", 512, 7);
  put (b, "five", 512, 8);
  bonsai_model_unref (a);
  g_assert_cmpuint (stats ().prompts, ==, 1);
  g_assert_cmpfloat (get (b, "five", 512), ==, 8);
  bonsai_model_unref (b);
  g_assert_cmpuint (stats ().prompts, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  fixture_init ("cache");
  g_test_add_func ("/cache/open-twice", test_open_twice);
  g_test_add_func ("/cache/threads", test_threads);
  g_test_add_func ("/cache/unref", test_unref);
  g_test_add_func ("/cache/changed-files", test_changed_files);
  g_test_add_func ("/cache/seed-sweep", test_seed_sweep);
  g_test_add_func ("/cache/lru", test_lru);
  int rc = g_test_run ();
  fixture_done ();
  return rc;
}
