/* flux2_vae.h — the FLUX.2 VAE (diffusers AutoencoderKLFlux2) and the latent
 * helpers around it (internal).
 *
 * The decoder turns latents [latent_channels, h, w] into an image
 * [out_channels, h·s, w·s] with s = 2^(levels − 1) (8 for klein); the
 * encoder gives the mean of the latent distribution of an image (the only
 * part editing needs).  Both take and return channel-major (CHW) fp32
 * arrays, raw: no clamp, no patchify, no batch norm.  Weights stay views
 * into the mapped file (f32, f16 or bf16; convolutions run as bn_linear on
 * im2col rows, see conv2d.h); only biases, norms and the batch-norm
 * statistics are copied to f32.
 *
 * Large latents are decoded (and large images encoded) in overlapping tiles
 * that are blended linearly, which bounds memory; the mid-block attention
 * and the group norms then see one tile rather than the whole image, so a
 * tiled result differs slightly from an untiled one.
 */
#ifndef BN_FLUX2_VAE_H
#define BN_FLUX2_VAE_H

#include "threadpool.h"
#include "kernels/kernels.h"

#include <stddef.h>
#include <stdint.h>

#define BN_VAE_MAX_LEVELS 8

typedef struct {
  int in_channels;
  int out_channels;
  int n_levels; /* entries of block_out_channels */
  int block_out_channels[BN_VAE_MAX_LEVELS];
  int layers_per_block; /* resnets per encoder level; the decoder has one more */
  int latent_channels;
  int norm_num_groups;
  gboolean mid_block_add_attention;
  gboolean use_quant_conv;
  gboolean use_post_quant_conv;
  double batch_norm_eps;
  int patch_size[2]; /* (ph, pw) of the 2-D patchify before the batch norm */
} BnVaeConfig;

/* diffusers' defaults, which are FLUX.2's VAE: channels 128, 256, 512, 512,
 * 2 resnets per level, 32 latent channels, 32 groups, 2×2 patches. */
void bn_vae_config_default (BnVaeConfig *cfg);
/* Parses a diffusers AutoencoderKLFlux2 config (config.json, or the
 * "config" entry of the weights' metadata).  Absent keys keep diffusers'
 * defaults; unknown keys are ignored.  Errors (BONSAI_ERROR_FORMAT) name
 * `origin` and the key. */
gboolean bn_vae_config_parse (const char *json, const char *origin,
                              BnVaeConfig *cfg, GError **error);
/* Image pixels per latent pixel along each axis. */
int bn_vae_scale (const BnVaeConfig *cfg);
/* The encoder's output size for an h × w image; FALSE when the image is too
 * small for its downsamplers. */
gboolean bn_vae_encoded_size (const BnVaeConfig *cfg, int64_t h, int64_t w,
                              int64_t *ho, int64_t *wo);

typedef struct BnVae BnVae;

/* Opens the VAE at `path`: a .safetensors file (or index), or a diffusers
 * vae/ folder holding diffusion_pytorch_model.safetensors.  The config comes
 * from `config_path` if not NULL, else from the weights' `__metadata__`
 * "config" entry, else from config.json in the weights' folder.  Every
 * tensor's name, shape and dtype is checked; errors name the file and the
 * tensor.  Returns a new VAE owned by the caller (free with bn_vae_free),
 * which keeps the file mapped. */
BnVae *bn_vae_open (const char *path, const char *config_path,
                    GError **error);
void bn_vae_free (BnVae *vae);
/* Owned by the VAE. */
const BnVaeConfig *bn_vae_get_config (const BnVae *vae);

typedef void (*BnVaeProgress) (int done, int total, gpointer user_data);

/* How a decode or encode runs.  Start from BN_VAE_OPTIONS_INIT. */
typedef struct {
  BnThreadPool *pool; /* NULL: the calling thread only */
  /* NULL, or a flag that another thread (or the progress callback) sets to
   * nonzero with g_atomic_int_set; the work then stops between layers or
   * tiles with BONSAI_ERROR_CANCELLED. */
  const gint *cancel;
  /* NULL, or called after each tile (an untiled call is one). */
  BnVaeProgress progress;
  gpointer progress_data;
  /* Work in tiles of at most tile × tile latent pixels when the latent is
   * larger than that along either axis; 0: never tile.  Neighbouring tiles
   * share at least `overlap` latent pixels (0 <= overlap < tile).  Tiles
   * are equal and spread evenly, the fewest that satisfy both. */
  int tile;
  int overlap;
  /* Activations of the bf16 convolutions: BN_ACT_BF16 rounds them to bf16
   * where the CPU has it (weights stay exact); EXACT keeps fp32. */
  BnActPrecision act;
  /* Set by the call: the most bytes of activations, convolution workspace
   * and attention packing (2·n·c floats) it held at once; small arrays
   * (per channel, per row) are not counted. */
  size_t peak_bytes;
} BnVaeOptions;

#define BN_VAE_OPTIONS_INIT { NULL, NULL, NULL, NULL, 64, 16, BN_ACT_EXACT, 0 }

/* Decodes z [latent_channels, h, w] into image [out_channels, h·s, w·s]
 * (s = bn_vae_scale).  opt may be NULL (defaults). */
gboolean bn_vae_decode (const BnVae *vae, const float *z, int64_t h,
                        int64_t w, float *image, BnVaeOptions *opt,
                        GError **error);
/* The encoder's mean for image [in_channels, h, w], into
 * mean [latent_channels, ho, wo] (bn_vae_encoded_size).  Tiled like a
 * decode of the ho × wo latent when h and w are multiples of s (else
 * whole).  opt may be NULL. */
gboolean bn_vae_encode_mean (const BnVae *vae, const float *image, int64_t h,
                             int64_t w, float *mean, BnVaeOptions *opt,
                             GError **error);

/* The peak_bytes that bn_vae_decode reports for an h × w latent on
 * n_threads threads with these tiling settings — computed from the buffer
 * plan, without weights, e.g. to choose a tile size; 0 for settings that
 * bn_vae_decode refuses. */
size_t bn_vae_decode_peak_bytes (const BnVaeConfig *cfg, int64_t h, int64_t w,
                                 int n_threads, int tile, int overlap);

/* ---- latents around the VAE (spec §4.5) --------------------------------- */

/* z [c, h, w] → out [c·ph·pw, h/ph, w/pw] with
 * out[(ch·ph + py)·pw + px, i, j] = z[ch, i·ph + py, j·pw + px]
 * (2×2: channel c·4 + py·2 + px).  h and w are multiples of ph and pw. */
void bn_latent_patchify (const float *z, int64_t c, int64_t h, int64_t w,
                         int ph, int pw, float *out);
/* The inverse: zp [c·ph·pw, h/ph, w/pw] → z [c, h, w]. */
void bn_latent_unpatchify (const float *zp, int64_t c, int64_t h, int64_t w,
                           int ph, int pw, float *z);
/* [c, n] ↔ [n, c] (latent channels-first ↔ tokens, n = h·w in raster
 * order). */
void bn_latent_to_tokens (const float *z, int64_t c, int64_t n, float *tok);
void bn_latent_from_tokens (const float *tok, int64_t c, int64_t n, float *z);
/* The VAE's batch norm on patchified latents zp [c·ph·pw, n], in place:
 * normalise (z − mean) / sqrt(var + eps), de-normalise its inverse. */
void bn_vae_bn_normalize (const BnVae *vae, float *zp, int64_t n);
void bn_vae_bn_denormalize (const BnVae *vae, float *zp, int64_t n);

#endif
