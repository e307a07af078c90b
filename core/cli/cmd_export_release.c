/* cmd_export_release.c — `bonsai-image export-release`: a trained
 * checkpoint folder (the torch recipe's float weights and diffusers
 * configs) as a release folder the engine and MLX tools open like the
 * published ones; bn_release_export (synthetic_model.h) writes it and
 * states the quantization rule. */
#include "cli.h"

#include "synthetic_model.h"

#include <stdio.h>

int
bn_cmd_export_release (int argc, char **argv)
{
  g_autofree char *text_encoder = NULL;
  int bits = 0;
  GOptionEntry entries[] = {
    { "text-encoder", 0, 0, G_OPTION_ARG_FILENAME, &text_encoder,
      "A release folder whose text_encoder-mlx-4bit/ (or text_encoder/), "
      "tokenizer/ and scheduler/ are copied", "DIR" },
    { "bits", 0, 0, G_OPTION_ARG_INT, &bits,
      "1 (binary), 2 (ternary): MLX packs; 16: dense bf16, unquantized", "BITS" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("CHECKPOINT DIR");
  g_option_context_set_summary (ctx,
      "Writes the release folder DIR from CHECKPOINT, which holds "
      "transformer.safetensors, transformer_config.json, vae.safetensors and "
      "vae_config.json (float weights, diffusers names).");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "bonsai-image export-release: %s\n", error->message);
      g_error_free (error);
      return 2;
    }
  if (argc != 3 || !text_encoder || (bits != 1 && bits != 2 && bits != 16))
    {
      fprintf (stderr, "Usage: bonsai-image export-release --text-encoder DIR "
                       "--bits 1|2|16 CHECKPOINT DIR\n");
      return 2;
    }
  if (!bn_release_export (argv[1], text_encoder, bits, argv[2], &error))
    return bn_cli_fail (error);
  printf ("wrote the %s release of %s to %s\n",
          bits == 1 ? "binary" : bits == 2 ? "ternary" : "bf16", argv[1], argv[2]);
  return 0;
}
