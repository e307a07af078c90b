/* qwen3.h — the Qwen3 text encoder of FLUX.2 [klein] (internal).
 *
 * Runs the Qwen3 decoder stack over one tokenised prompt and returns the
 * residual stream after a list of layers, concatenated per token: for klein
 * 4B the states after layers 9, 18 and 27 of Qwen3-4B give [512, 7680].
 * Layers past the deepest requested one are neither loaded nor run, and the
 * final norm and the LM head are never used.
 *
 * Weights are read in place from memory-mapped safetensors: dense f32, f16
 * or bf16 (Hugging Face names), or an MLX affine pack in which every linear
 * and the embedding table are U32 codes with `.scales` and `.biases`; bits
 * and group size come from config.json's "quantization" entry.  Unless told
 * otherwise, each layer's pages are handed back to the kernel right after
 * the layer has run, so resident memory stays near one layer's weights.
 */
#ifndef BN_QWEN3_H
#define BN_QWEN3_H

#include "tensor.h"
#include "threadpool.h"

typedef struct {
  int hidden_size;
  int n_layers;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int intermediate_size;
  int vocab_size;
  double rope_theta;
  double rms_norm_eps;
  /* MLX "quantization" entry; bits = 0 when absent (dense weights). */
  int quant_bits;
  int quant_group_size;
} BnQwen3Config;

/* Parses a Hugging Face Qwen3 config.json held in memory.  `origin` names
 * the source in errors.  Fields HF defaults (num_key_value_heads, head_dim,
 * rope_theta, rms_norm_eps) may be absent; the sizes may not.  Fails with
 * BONSAI_ERROR_FORMAT naming the field. */
gboolean bn_qwen3_config_parse (const char *json, gssize len,
                                const char *origin, BnQwen3Config *cfg,
                                GError **error);

/* The text encoder folder of `dir`: `dir` itself when it holds a model
 * (config.json or qwen3_config.json), else its text_encoder-mlx-4bit/ or
 * text_encoder/ subfolder, as a release folder has.  Returns a new string
 * owned by the caller, or NULL with BONSAI_ERROR_NOT_FOUND. */
char *bn_qwen3_find_dir (const char *dir, GError **error);

typedef struct {
  /* Layers whose output states are returned, strictly increasing, each in
   * 0..n_layers (0 = the embedding output).  NULL: the config's
   * "out_layers" when it has one, else 9, 18, 27. */
  const int *out_layers;
  int n_out;
  /* TRUE keeps weight pages resident between layers (repeated encodes
   * without re-reading the file). */
  gboolean keep_pages;
} BnQwen3Options;

typedef struct BnQwen3 BnQwen3;

/* Opens a text encoder: a folder with config.json and model.safetensors
 * (or its sharded .index.json), the reference layout qwen3_config.json +
 * qwen3_weights.safetensors, or a .safetensors file whose `__metadata__`
 * "config" entry (or a config.json beside it) holds the config.  Every
 * tensor the requested layers need is checked against the config.  `opts`
 * may be NULL.  Returns a new model owned by the caller (bn_qwen3_free), or
 * NULL with an error naming the file, tensor or field. */
BnQwen3 *bn_qwen3_open (const char *path, const BnQwen3Options *opts,
                        GError **error);
/* Unmaps every weight file and frees the model; NULL is accepted. */
void bn_qwen3_free (BnQwen3 *m);

const BnQwen3Config *bn_qwen3_config (const BnQwen3 *m);
/* The output layer list (owned by the model) and its length. */
const int *bn_qwen3_out_layers (const BnQwen3 *m, int *n_out);
/* Features per token: n_out · hidden_size. */
int64_t bn_qwen3_feature_dim (const BnQwen3 *m);

/* Encodes n_tok token ids.  `mask` ([n_tok], 1 = token, 0 = padding) hides
 * padding keys; NULL means no padding.  Positions are 0..n_tok−1 whatever
 * the mask, and padded tokens get (well-defined) states too.  On success
 * `features` is a new f32 tensor [n_tok, feature_dim] owned by the caller
 * (bn_tensor_clear), slot j of each row holding the states after
 * out_layers[j].  `pool` may be NULL.  Fails with INVALID_INPUT for an
 * empty prompt or an id outside the vocabulary. */
gboolean bn_qwen3_encode (const BnQwen3 *m, BnThreadPool *pool,
                          const int32_t *ids, const uint8_t *mask,
                          int64_t n_tok, BnTensor *features, GError **error);

#endif
