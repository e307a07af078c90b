/* main.c — `bonsai-image`: dispatches to one subcommand per file. */
#include "cli.h"

#include "bonsai/bonsai.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} commands[] = {
  { "generate", bn_cmd_generate, "[-m MODEL] -p PROMPT [-W W -H H --steps N --seed S] -o OUT.png" },
  { "edit", bn_cmd_edit, "[-m MODEL] -i IN.png [-i REF.png] -p PROMPT -o OUT.png" },
  { "models", bn_cmd_models, "[--verify]  installed models (where, size, checked) and downloadable ones" },
  { "download", bn_cmd_download, "[NAME]  fetch a model into the Hugging Face cache (resumable)" },
  { "info", bn_cmd_info, "FILE|DIR  list tensors, dtypes, low-bit layers and sizes" },
  { "bench", bn_cmd_bench, "kernels|pipeline  measure throughput and memory" },
  { "tokenize", bn_cmd_tokenize, "TEXT  print the Qwen3 token ids of TEXT" },
  { "encode-prompt", bn_cmd_encode_prompt, "-m DIR (TEXT | --prompts FILE) -o FILE  text features" },
  { "check-refs", bn_cmd_check_refs, "DIR  compare the engine with reference vectors" },
  { "eval", bn_cmd_eval, "shapes [-m MODEL ...] [--seeds N]  score models on the Bonsai Shapes mini-GenEval" },
  { "synthetic", bn_cmd_synthetic, "DIR  write a random-weight model in a release layout" },
  { "export-release", bn_cmd_export_release, "--text-encoder DIR --bits 1|2|16 CHECKPOINT DIR  release of trained weights" },
  { "add-tokenizer", bn_cmd_add_tokenizer, "--tokenizer FILE [--from SRC] DIR  add the tokenizer files to a release folder" },
};

int
bn_cli_fail (GError *error)
{
  fprintf (stderr, "bonsai-image: %s\n", error ? error->message : "failed");
  g_clear_error (&error);
  return 1;
}

static void
usage (FILE *out)
{
  fprintf (out, "Usage: bonsai-image COMMAND [OPTIONS]\n\nCommands:\n");
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nbonsai-image COMMAND --help describes each command.\n");
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  if (argc < 2)
    {
      usage (stderr);
      return 2;
    }
  if (!strcmp (argv[1], "--help") || !strcmp (argv[1], "-h") || !strcmp (argv[1], "help"))
    {
      usage (stdout);
      return 0;
    }
  if (!strcmp (argv[1], "--version"))
    {
      printf ("bonsai-image %s (CPU kernels: %s)\n", bonsai_version (), bonsai_cpu_isa ());
      return 0;
    }
  if (g_getenv ("BONSAI_VERBOSE"))
    bonsai_log_set_verbose (TRUE);
  /* The CUDA kernel benchmark lives beside the CPU one rather than in
   * cmd_bench.c, which measures the CPU. */
  if (bn_bench_cuda_requested (argc - 1, argv + 1))
    return bn_bench_kernels_cuda (argc - 2, argv + 2);
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    if (!strcmp (argv[1], commands[i].name))
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "bonsai-image: unknown command '%s'\n\n", argv[1]);
  usage (stderr);
  return 2;
}
