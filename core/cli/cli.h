/* cli.h — the bonsai-image subcommands.  Each takes the arguments after its
 * name (argv[0] is the subcommand) and returns the process exit status. */
#ifndef BN_CLI_H
#define BN_CLI_H

#include <glib.h>

int bn_cmd_info (int argc, char **argv);
int bn_cmd_bench (int argc, char **argv);
int bn_cmd_tokenize (int argc, char **argv);
int bn_cmd_encode_prompt (int argc, char **argv);
int bn_cmd_check_refs (int argc, char **argv);
int bn_cmd_synthetic (int argc, char **argv);
int bn_cmd_export_release (int argc, char **argv);
int bn_cmd_add_tokenizer (int argc, char **argv);
int bn_cmd_generate (int argc, char **argv);
int bn_cmd_edit (int argc, char **argv);
int bn_cmd_models (int argc, char **argv);
int bn_cmd_download (int argc, char **argv);
int bn_cmd_eval (int argc, char **argv);

/* The names --precision takes (bonsai_precision_from_string), for the help
 * and refusals of every subcommand that has the option. */
#define BN_CLI_PRECISIONS "auto, exact, bf16, int8 or lut"

/* `bench` sub-commands other than kernels, each in its own file. */
int bn_bench_text_encoder (int argc, char **argv);
int bn_bench_pipeline (int argc, char **argv);
/* `bench kernels --backend cuda` (bench_cuda.c): whether argv (from the
 * command's name on) asks for it, and the benchmark, given the arguments
 * after `bench`. */
gboolean bn_bench_cuda_requested (int argc, char **argv);
int bn_bench_kernels_cuda (int argc, char **argv);

/* ---- check-refs ----------------------------------------------------------
 * One checker per kind of reference set (see ../shared/refs/README.md).  Each
 * runs the engine on the set in `dir`, reports every output tensor with
 * bn_refs_report, and returns FALSE with error only when the set cannot be
 * run at all (a missing or damaged file). */
typedef struct {
  int passed;
  int failed;
} BnRefTally;

gboolean bn_refs_check_qwen3 (const char *dir, BnRefTally *tally, GError **error);
gboolean bn_refs_check_dit (const char *dir, BnRefTally *tally, GError **error);
gboolean bn_refs_check_vae (const char *dir, BnRefTally *tally, GError **error);
gboolean bn_refs_check_pipeline (const char *dir, BnRefTally *tally, GError **error);

/* Compares n values and prints one line "set tensor max_abs max_rel PASS|FAIL"
 * (max_rel = max_abs / max(1, max|want|)); PASS when max_rel <= tol.
 * Counts the result in tally and returns whether it passed. */
gboolean bn_refs_report (BnRefTally *tally, const char *set, const char *tensor,
                         const float *got, const float *want, size_t n,
                         double tol);

/* Prints "bonsai-image: <message>" for a failed command and frees the error;
 * returns the exit status 1. */
int bn_cli_fail (GError *error);

#endif
