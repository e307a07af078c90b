/* synthetic_model.h — models with the file layout, tensor names and shapes of
 * the Bonsai Image release but random weights (internal).
 *
 * bn_synthetic_model_write writes the image path only
 * (research/bonsai_release.md §1.2–1.3) under a folder:
 *   transformer-packed-mflux/diffusion_pytorch_model.safetensors
 *       every low-bit linear as an MLX pack (uint32 codes LSB first, bf16
 *       scales and biases per 128 inputs; binary biases = −scale/2, ternary
 *       biases = −scale and codes 0..2), every other tensor dense bf16
 *   transformer-packed-mflux/config.json, quantization_config.json
 *   vae/diffusion_pytorch_model.safetensors, vae/config.json
 *       an AutoencoderKLFlux2 in diffusers names, bf16
 *   synthetic.json   written last: says the folder is complete and for what
 * Full size, this is the klein-4B transformer (1.43 GB ternary, 0.97 GB
 * binary) and the real VAE; benchmarks time and measure it.  Tests write
 * small ones of the same layout.  Weights are scaled like trained ones
 * (≈ 1/√K) so that activations stay finite through every layer.
 *
 * bn_synthetic_release_write writes a whole release folder as one of the
 * Hugging Face repositories lays it out (§1.1), every file and config key
 * included (synthetic_files.c writes the JSON and text files):
 *   MLX       transformer-packed-mflux/ as above, text_encoder-mlx-4bit/
 *             (Qwen3 as an MLX 4-bit pack in groups of 64, embedding
 *             included, with its own copy of the tokenizer files)
 *   unpacked  transformer/ (the same weights, dense bf16), text_encoder/
 *             (bf16 in two shards behind an index)
 * and in both: vae/, tokenizer/, scheduler/, model_index.json,
 * manifest.json, README.md, LICENSE (and NOTICE.md for MLX).
 *
 * bn_release_export writes a release folder from trained float weights by
 * the same code, so a trained model's files are laid out, named and packed
 * exactly like a synthetic one's.  The packs follow one rule, which the
 * quantization-aware training (data/train/) uses too: for each weight row
 * and each group of 128 consecutive inputs, a = mean |w| over the group
 * (summed in double, then to f32), rounded to bf16 (nearest, ties to even).
 *   binary   w_q = a·(w >= 0 ? +1 : −1);  MLX 1-bit: code = (w >= 0),
 *            scale = 2a, bias = −a
 *   ternary  q = clamp(round_half_even(w / a), −1, 1) (a = 0: q = 0, w / a
 *            in f32), w_q = a·q;  MLX 2-bit: code = q + 1, scale = a,
 *            bias = −a
 * Every other tensor is stored as bf16 (nearest, ties to even).
 */
#ifndef BN_SYNTHETIC_MODEL_H
#define BN_SYNTHETIC_MODEL_H

#include "flux2_dit.h"

#define BN_SYNTH_MAX_LEVELS 6

typedef struct {
  BnFlux2Config dit;
  int bits;                 /* low-bit linears: 1 (binary) or 2 (ternary) */
  /* VAE */
  int vae_levels;
  int vae_channels[BN_SYNTH_MAX_LEVELS]; /* block_out_channels */
  int vae_layers_per_block;              /* encoder; the decoder has one more */
  int vae_latent_channels;               /* dit.in_channels = 4 × this */
  int vae_groups;                        /* GroupNorm groups */
  /* Qwen3 text encoder (release folders only); its features, the states
   * after layers 9, 18 and 27, are dit.context_dim = 3 × te_hidden wide. */
  int te_hidden;
  int te_layers;          /* at least 27 */
  int te_heads, te_kv_heads, te_head_dim;
  int te_intermediate;
  int te_vocab;
  int te_group;           /* the MLX 4-bit pack's group: 32, 64 or 128 */
} BnSynthSpec;

typedef enum {
  BN_SYNTH_LAYOUT_MLX,       /* prism-ml/bonsai-image-*-mlx-* */
  BN_SYNTH_LAYOUT_UNPACKED,  /* prism-ml/bonsai-image-*-unpacked */
} BnSynthLayout;

/* The real shapes: klein-4B's transformer and FLUX.2's VAE. */
void bn_synth_spec_klein4b (BnSynthSpec *spec, int bits);
/* A small model of the same layout (2 heads of 64, one block of each kind,
 * a 3-level VAE with 8 latent channels, a 28-layer text encoder 64 wide
 * with the real vocabulary), for tests. */
void bn_synth_spec_tiny (BnSynthSpec *spec, int bits);
/* "Bonsai Shapes" (issue 10), the small model trained in data/train/: the
 * tiny transformer with 2 double and 4 single blocks, a 4-level VAE
 * {16, 32, 64, 64}, and a 28-layer text encoder 32 wide (2 heads of 16, one
 * key/value head, MLP 96; the real vocabulary), so context_dim is 96. */
void bn_synth_spec_shapes (BnSynthSpec *spec, int bits);

/* Writes the model into `dir` (created if needed), each file atomically.
 * The weights depend only on `spec` and `seed`.  FALSE with error (IO,
 * OUT_OF_MEMORY, INVALID_INPUT for an impossible spec). */
gboolean bn_synthetic_model_write (const char *dir, const BnSynthSpec *spec,
                                   guint64 seed, GError **error);

/* Writes a release folder of `layout` into `dir` (created if needed), each
 * file atomically.  `tokenizer_json` is the tokenizer.json to ship (the
 * real one: the text encoder's vocabulary must hold its ids); the other
 * tokenizer files are derived from it.  FALSE with error as above, or
 * NOT_FOUND / FORMAT for an unreadable tokenizer.json. */
gboolean bn_synthetic_release_write (const char *dir, const BnSynthSpec *spec,
                                     BnSynthLayout layout,
                                     const char *tokenizer_json, guint64 seed,
                                     GError **error);

/* Writes the release folder `dir` of a trained checkpoint folder `ckpt`:
 * transformer.safetensors + transformer_config.json and vae.safetensors +
 * vae_config.json (float tensors in diffusers names; the VAE's
 * bn.num_batches_tracked is ignored, any other tensor the layout lacks is
 * an error).  `bits` 1 or 2: transformer-packed-mflux/ with every block
 * linear packed by the rule above; 16: transformer/ dense bf16, the float
 * weights unquantized.  VAE as bf16 in vae/.  text_encoder-mlx-4bit/ (or
 * text_encoder/), tokenizer/ and scheduler/ are copied byte for byte from
 * the release folder `text_release`; the top-level files are written as
 * for its layout.  FALSE with NOT_FOUND, FORMAT (naming the file and
 * tensor; non-finite values too), INVALID_INPUT (shapes the layout cannot
 * hold: packed widths must be multiples of 128) or IO. */
gboolean bn_release_export (const char *ckpt, const char *text_release,
                            int bits, const char *dir, GError **error);

/* Whether `dir` holds a complete model written for `spec` and `seed`. */
gboolean bn_synthetic_model_ready (const char *dir, const BnSynthSpec *spec,
                                   guint64 seed);

#endif
