/* cmd_add_tokenizer.c — `bonsai-image add-tokenizer`: the tokenizer files
 * of a release folder (tokenizer/ and the MLX text encoder's copy), derived
 * from one tokenizer.json by the synthetic writer's code.  The bundled
 * models are committed without them (the tokenizer comes from its npm
 * package at set-up); the build assembles each with --from. */
#include "cli.h"

#include "synthetic_files.h"

#include "bonsai/bonsai.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

/* Removes `path` and everything under it; a missing path is no error. */
static gboolean
remove_tree (const char *path, GError **error)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      g_autoptr (GDir) d = g_dir_open (path, 0, error);
      if (!d)
        return FALSE;
      const char *n;
      while ((n = g_dir_read_name (d)))
        {
          g_autofree char *p = g_build_filename (path, n, NULL);
          if (!remove_tree (p, error))
            return FALSE;
        }
      if (g_rmdir (path) == 0)
        return TRUE;
    }
  else if (g_remove (path) == 0 || errno == ENOENT)
    return TRUE;
  int e = errno;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot remove %s: %s", path,
               g_strerror (e));
  return FALSE;
}

/* A depfile name with its spaces escaped, as make and ninja read it. */
static void
append_dep (GString *deps, const char *path)
{
  g_string_append_c (deps, ' ');
  for (const char *p = path; *p; p++)
    {
      if (*p == ' ' || *p == '#')
        g_string_append_c (deps, '\\');
      else if (*p == '$')
        g_string_append_c (deps, '$');
      g_string_append_c (deps, *p);
    }
}

/* Copies the files under `src` into `dst` (created), following links and
 * leaving out hidden files (the store's checksum sidecar, editor files);
 * each file read is added to `deps`. */
static gboolean
copy_tree (const char *src, const char *dst, GString *deps, GError **error)
{
  g_autoptr (GDir) d = g_dir_open (src, 0, error);
  if (!d || !bn_synth_make_dir (dst, error))
    return FALSE;
  /* The folder too: a file added to it changes its time. */
  append_dep (deps, src);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *n;
  while ((n = g_dir_read_name (d)))
    if (n[0] != '.')
      g_ptr_array_add (names, g_strdup (n));
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *from = g_build_filename (src, names->pdata[i], NULL);
      g_autofree char *to = g_build_filename (dst, names->pdata[i], NULL);
      if (g_file_test (from, G_FILE_TEST_IS_DIR))
        {
          if (!copy_tree (from, to, deps, error))
            return FALSE;
          continue;
        }
      g_autofree char *data = NULL;
      gsize len;
      if (!g_file_get_contents (from, &data, &len, error)
          || !bn_synth_write_text (dst, names->pdata[i], data, (gssize) len, error))
        return FALSE;
      append_dep (deps, from);
    }
  return TRUE;
}

/* DIR as a copy of `from` with the tokenizer files added, made beside it and
 * renamed into place so that DIR is complete or absent. */
static gboolean
assemble (const char *from, const char *tokenizer, const char *dir,
          GString *deps, GError **error)
{
  if (!g_file_test (from, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "release folder %s does not exist", from);
      return FALSE;
    }
  g_autofree char *partial = g_strconcat (dir, ".partial", NULL);
  if (!remove_tree (partial, error) || !copy_tree (from, partial, deps, error)
      || !bn_synth_write_tokenizer (partial, tokenizer, error)
      || !remove_tree (dir, error))
    return FALSE;
  if (g_rename (partial, dir) != 0)
    {
      int e = errno;
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot rename %s to %s: %s",
                   partial, dir, g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

int
bn_cmd_add_tokenizer (int argc, char **argv)
{
  g_autofree char *tokenizer = NULL, *from = NULL, *depfile = NULL;
  GOptionEntry entries[] = {
    { "tokenizer", 0, 0, G_OPTION_ARG_FILENAME, &tokenizer,
      "The tokenizer.json the other files are derived from", "FILE" },
    { "from", 0, 0, G_OPTION_ARG_FILENAME, &from,
      "Make DIR anew as a copy of this release folder, then add the files", "SRC" },
    { "depfile", 0, 0, G_OPTION_ARG_FILENAME, &depfile,
      "With --from: write the files read, as a make depfile (for the build)", "FILE" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("DIR - add the tokenizer files to a release folder");
  g_option_context_set_summary (ctx,
      "Writes tokenizer/ (tokenizer.json, vocab.json, merges.txt, added_tokens.json,\n"
      "special_tokens_map.json, tokenizer_config.json, chat_template.jinja) and, when\n"
      "DIR has text_encoder-mlx-4bit/, its copy of them, as the release has them.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "bonsai-image add-tokenizer: %s\n", error->message);
      g_error_free (error);
      return 2;
    }
  if (argc != 2 || !tokenizer || (depfile && !from))
    {
      fprintf (stderr, "Usage: bonsai-image add-tokenizer --tokenizer FILE "
                       "[--from SRC [--depfile FILE]] DIR\n");
      return 2;
    }
  const char *dir = argv[1];
  g_autoptr (GString) deps = g_string_new (NULL);
  append_dep (deps, tokenizer);
  gboolean ok = from ? assemble (from, tokenizer, dir, deps, &error)
                     : bn_synth_write_tokenizer (dir, tokenizer, &error);
  if (ok && depfile)
    {
      g_autoptr (GString) text = g_string_new (NULL);
      append_dep (text, dir);
      g_string_erase (text, 0, 1);
      g_string_append_printf (text, ":%s\n", deps->str);
      ok = g_file_set_contents (depfile, text->str, (gssize) text->len, &error);
    }
  return ok ? 0 : bn_cli_fail (error);
}
