/* make-model.c — writes the small model the node tests run on: the engine's
 * tiny synthetic klein (synthetic_model.h) as an MLX release folder with the
 * real tokenizer, its VAE one level deeper so that image sizes are multiples
 * of 16, as with klein.
 * Usage: make-model DIR TOKENIZER_JSON */
#include "synthetic_model.h"

#include <stdio.h>

int
main (int argc, char **argv)
{
  if (argc != 3)
    {
      fprintf (stderr, "usage: %s DIR TOKENIZER_JSON\n", argv[0]);
      return 2;
    }
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  spec.vae_levels = 4;
  spec.vae_channels[3] = spec.vae_channels[2];
  GError *error = NULL;
  if (!bn_synthetic_release_write (argv[1], &spec, BN_SYNTH_LAYOUT_MLX, argv[2], 7, &error))
    {
      fprintf (stderr, "make-model: %s\n", error->message);
      g_error_free (error);
      return 1;
    }
  return 0;
}
