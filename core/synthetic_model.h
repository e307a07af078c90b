/* synthetic_model.h — models with the file layout, tensor names and shapes of
 * the Bonsai Image release but random weights (internal).
 *
 * What is written (research/bonsai_release.md §1.2–1.3) under a folder:
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
} BnSynthSpec;

/* The real shapes: klein-4B's transformer and FLUX.2's VAE. */
void bn_synth_spec_klein4b (BnSynthSpec *spec, int bits);
/* A small model of the same layout (2 heads of 64, one block of each kind,
 * a 3-level VAE with 8 latent channels), for tests. */
void bn_synth_spec_tiny (BnSynthSpec *spec, int bits);

/* Writes the model into `dir` (created if needed), each file atomically.
 * The weights depend only on `spec` and `seed`.  FALSE with error (IO,
 * OUT_OF_MEMORY, INVALID_INPUT for an impossible spec). */
gboolean bn_synthetic_model_write (const char *dir, const BnSynthSpec *spec,
                                   guint64 seed, GError **error);

/* Whether `dir` holds a complete model written for `spec` and `seed`. */
gboolean bn_synthetic_model_ready (const char *dir, const BnSynthSpec *spec,
                                   guint64 seed);

#endif
