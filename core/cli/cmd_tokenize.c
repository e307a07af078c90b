/* cmd_tokenize.c — `bonsai-image tokenize`: the Qwen3 token ids of a text,
 * or of a prompt in the klein template, or the text of a list of ids. */
#include "cli.h"

#include "bonsai/bonsai.h"
#include "tokenizer.h"

#include <stdio.h>
#include <string.h>

static const char usage_text[] =
  "Usage: bonsai-image tokenize [--tokenizer FILE|DIR] [--template] TEXT\n"
  "       bonsai-image tokenize [--tokenizer FILE|DIR] --decode IDS\n"
  "Prints the token ids of TEXT on one line, comma-separated; with --template,\n"
  "those of TEXT in the klein chat template (unpadded).  --decode prints the\n"
  "text of IDS (separated by commas or spaces).\n"
  "The tokenizer is FILE (a tokenizer.json), or DIR/tokenizer.json, or\n"
  "DIR/tokenizer/tokenizer.json; without --tokenizer, $BONSAI_TOKENIZER is\n"
  "taken the same way.\n";

static int
usage_error (const char *fmt, const char *arg)
{
  fprintf (stderr, "bonsai-image: tokenize: ");
  fprintf (stderr, fmt, arg);
  fprintf (stderr, "\n\n%s", usage_text);
  return 2;
}

static gboolean
parse_ids (const char *text, GArray *ids, GError **error)
{
  g_auto (GStrv) parts = g_strsplit_set (text, ", \t\n", -1);
  for (size_t i = 0; parts[i]; i++)
    {
      if (!*parts[i])
        continue;
      gint64 v;
      if (!g_ascii_string_to_signed (parts[i], 10, 0, G_MAXINT32, &v, NULL))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                       "'%s' is not a token id", parts[i]);
          return FALSE;
        }
      int32_t id = (int32_t) v;
      g_array_append_val (ids, id);
    }
  return TRUE;
}

int
bn_cmd_tokenize (int argc, char **argv)
{
  const char *tokenizer = NULL, *text = NULL;
  gboolean template = FALSE, decode = FALSE;
  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];
      if (!strcmp (a, "--help") || !strcmp (a, "-h"))
        {
          fputs (usage_text, stdout);
          return 0;
        }
      else if (!strcmp (a, "--template"))
        template = TRUE;
      else if (!strcmp (a, "--decode"))
        decode = TRUE;
      else if (!strcmp (a, "--tokenizer") && i + 1 < argc)
        tokenizer = argv[++i];
      else if (g_str_has_prefix (a, "--tokenizer="))
        tokenizer = a + strlen ("--tokenizer=");
      else if (!strcmp (a, "--"))
        {
          if (i + 2 != argc || text)
            return usage_error ("%s", "give exactly one TEXT");
          text = argv[++i];
        }
      else if (a[0] == '-' && a[1])
        return usage_error ("unknown or incomplete option '%s'", a);
      else if (text)
        return usage_error ("%s", "give exactly one TEXT (quote it)");
      else
        text = a;
    }
  if (!text)
    return usage_error ("%s", "no TEXT given");
  if (template && decode)
    return usage_error ("%s", "--template and --decode do not go together");

  GError *error = NULL;
  g_autofree char *path = bn_tokenizer_locate (tokenizer, &error);
  if (!path)
    {
      fprintf (stderr, "bonsai-image: tokenize: %s (pass --tokenizer FILE|DIR or set "
                       "BONSAI_TOKENIZER)\n", error->message);
      g_error_free (error);
      return 1;
    }
  g_autoptr (BnTokenizer) tok = bn_tokenizer_load (path, &error);
  if (!tok)
    return bn_cli_fail (error);

  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  if (decode)
    {
      if (!parse_ids (text, ids, &error))
        return bn_cli_fail (error);
      g_autofree char *out = bn_tokenizer_decode (tok, (const int32_t *) (void *) ids->data,
                                                  ids->len, &error);
      if (!out)
        return bn_cli_fail (error);
      puts (out);
      return 0;
    }
  gboolean ok = template ? bn_tokenizer_klein_ids (tok, text, ids, &error)
                         : bn_tokenizer_encode (tok, text, -1, ids, &error);
  if (!ok)
    return bn_cli_fail (error);
  for (guint i = 0; i < ids->len; i++)
    printf ("%s%d", i ? "," : "", g_array_index (ids, int32_t, i));
  putchar ('\n');
  return 0;
}
