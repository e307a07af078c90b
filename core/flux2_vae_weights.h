/* flux2_vae_weights.h — the layers of a loaded BnVae, shared by the loader
 * (flux2_vae.c) and the forward passes (flux2_vae_run.c) (internal). */
#ifndef BN_FLUX2_VAE_WEIGHTS_H
#define BN_FLUX2_VAE_WEIGHTS_H

#include "flux2_vae.h"
#include "safetensors.h"

/* A convolution or linear layer: w is a view [co, ci·k·k] of the shipped
 * [co, ci, k, k] (or [co, ci]) weight; b [co] is f32 owned by the VAE. */
typedef struct {
  BnTensor w;
  const float *b;
} BnVaeConv;

typedef struct {
  const float *gamma, *beta; /* [c], f32 owned by the VAE */
} BnVaeNorm;

typedef struct {
  int64_t ci, co;
  BnVaeNorm norm1, norm2;
  BnVaeConv conv1, conv2;
  gboolean has_shortcut; /* ci != co: a 1×1 conv_shortcut */
  BnVaeConv shortcut;
} BnVaeResnet;

typedef struct {
  BnVaeNorm norm;
  BnVaeConv q, k, v, out;
} BnVaeAttention;

typedef struct {
  int n_resnets;
  BnVaeResnet *resnets; /* owned by the VAE */
  gboolean has_sampler; /* down- or upsampling conv at the end */
  BnVaeConv sampler;
} BnVaeLevel;

typedef struct {
  BnVaeConv conv_in;
  BnVaeLevel levels[BN_VAE_MAX_LEVELS]; /* diffusers' down_blocks / up_blocks */
  BnVaeResnet mid[2];
  gboolean has_attention;
  BnVaeAttention attention;
  BnVaeNorm norm_out;
  BnVaeConv conv_out;
} BnVaeCoder;

struct BnVae {
  BnVaeConfig cfg;
  BnSafetensors *st;
  BnVaeCoder enc, dec;
  /* The rows of the encoder's last layer (quant_conv, else conv_out) that
   * give the mean: the first latent_channels of 2·latent_channels. */
  BnVaeConv mean_out;
  BnVaeConv post_quant; /* valid when cfg.use_post_quant_conv */
  const float *bn_mean; /* [latent·ph·pw] */
  float *bn_std;        /* sqrt(var + eps) */
  GPtrArray *owned;        /* every f32 array above, and the resnet arrays */
};

#endif
