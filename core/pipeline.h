/* pipeline.h — the generate/edit pipeline behind the public API (internal).
 *
 * A BonsaiModel holds the transformer and the VAE (mapped) and where the
 * text encoder and tokenizer are; the text encoder is opened only while a
 * prompt is encoded.  The pipeline (pipeline.c) follows
 * flux2_klein_spec.md §1 and §6; reference images are prepared in
 * pipeline_refs.c.  Sizes are generic in the VAE's scale, so the small
 * reference models (refs/flux2-mini: scale 4, multiple 8) run the same code
 * as klein (scale 8, multiple 16).
 */
#ifndef BN_PIPELINE_H
#define BN_PIPELINE_H

#include "bonsai/bonsai.h"
#include "flux2_dit.h"
#include "flux2_dit_device.h"
#include "flux2_vae.h"

/* The kernels' activation precision for a request's: AUTO resolves to
 * what this CPU runs best (BF16 with AVX-512 BF16, else EXACT). */
BnActPrecision bn_act_precision_of (BonsaiPrecision precision);

struct BonsaiModel {
  gint refs;           /* changed through cache.c when it may reach 0 */
  char *cache_key;     /* its key in the model cache, or NULL */
  BnFlux2Dit *dit;
  BnVae *vae;
  char *text_encoder;  /* folder, or NULL: prompts cannot be encoded */
  char *tokenizer;     /* tokenizer.json, or NULL */
  int scale;           /* image pixels per VAE latent pixel */
  int patch[2];        /* latent pixels per token (2 × 2) */
  int multiple;        /* image sizes are multiples of this: scale · patch */
  /* The transformer resident on the CUDA backend, made on first use. */
  GMutex device_lock;
  BnFlux2DitDevice *dit_device;
};

/* A model from loaded parts, which it takes (freed on failure too); the
 * strings are copied.  Checks that the transformer's token width is the
 * VAE's patchified latent width.  Used by bonsai_model_open and by
 * check-refs, whose weights are not in a release folder. */
BonsaiModel *bn_model_new (BnFlux2Dit *dit, BnVae *vae,
                           const char *text_encoder, const char *tokenizer,
                           GError **error);

/* The transformer on the backend that generation runs on: *out is NULL
 * for the CPU, else the weights resident on the device (uploaded on the
 * first call, kept with the model).  FALSE with the backend's error when
 * CUDA was chosen and cannot be used. */
gboolean bn_model_dit_device (BonsaiModel *model, BnFlux2DitDevice **out,
                              GError **error);

/* Tells the kernel the transformer's mapped pages may leave memory (they
 * are read back from the file when next used); called before VAE work. */
void bn_model_drop_transformer_pages (BonsaiModel *model);

/* Packed latents [C, h, w] (bonsai_sample's layout) → VAE latents
 * [C / (ph·pw), h·ph, w·pw]: batch-norm de-normalised and unpatchified.
 * Returns a new tensor, or NULL with INVALID_INPUT (wrong shape) or
 * OUT_OF_MEMORY. */
BonsaiTensor *bn_pipeline_unpack_latents (const BonsaiModel *model,
                                          const BonsaiTensor *packed,
                                          GError **error);

/* One reference image made ready for the transformer: tokens [n, C] and
 * their position ids [n, 4] = (10 + 10·index, row, column, 0). */
typedef struct {
  int width, height;   /* after the area cap and the crop */
  int64_t n;
  float *tokens;
  int64_t *ids;
} BnRefTokens;

/* Checks `image` as reference number `index` (0-based) as diffusers'
 * Flux2KleinPipeline does — no side under 64, no aspect ratio over 8 — and
 * gives the size it will have once prepared.  FALSE with INVALID_INPUT
 * naming the reference. */
gboolean bn_ref_check (const BonsaiModel *model, const BonsaiImage *image,
                       int index, int *width, int *height, GError **error);

/* Prepares `image` as reference number `index`: checks it (bn_ref_check);
 * shrinks an image of more than 1024² pixels to about 1024² with PIL's
 * Lanczos; center-crops to multiples of model->multiple; maps u8 to [-1, 1];
 * VAE-encodes (mean); patchifies; batch-norm normalises.  FALSE with
 * INVALID_INPUT naming the reference, OUT_OF_MEMORY or CANCELLED. */
gboolean bn_ref_tokens_prepare (BonsaiModel *model, const BonsaiImage *image,
                                int index, BnThreadPool *pool,
                                const gint *cancel, BnRefTokens *out,
                                GError **error);
void bn_ref_tokens_clear (BnRefTokens *ref);

#endif
