/* pipeline_refs.c — reference images for editing: size checks, area cap,
 * crop, VAE encoding, patchify and normalisation (spec §6). */
#include "pipeline.h"

#include "image_io.h"
#include "resize.h"

#include <math.h>
#include <string.h>

/* diffusers' Flux2ImageProcessor.check_image_input and the area cap of
 * Flux2KleinPipeline. */
#define REF_MIN_SIDE 64
#define REF_MAX_ASPECT 8
#define REF_MAX_AREA (1024 * 1024)
/* Reference k sits at time position 10·(k + 1) (spec §2.4). */
#define REF_T_STEP 10

void
bn_ref_tokens_clear (BnRefTokens *ref)
{
  g_clear_pointer (&ref->tokens, g_free);
  g_clear_pointer (&ref->ids, g_free);
  ref->n = 0;
}

/* The size after the area cap, as diffusers' _resize_to_target_area. */
static void
capped_size (int w, int h, int *cw, int *ch)
{
  *cw = w;
  *ch = h;
  if ((int64_t) w * h > REF_MAX_AREA)
    {
      double s = sqrt ((double) REF_MAX_AREA / ((double) w * h));
      *cw = (int) (w * s);
      *ch = (int) (h * s);
    }
}

gboolean
bn_ref_check (const BonsaiModel *model, const BonsaiImage *image, int index,
              int *width, int *height, GError **error)
{
  GError *local = NULL;
  if (!image || !bn_image_check (image, &local))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "reference image %d is %s", index + 1,
                   image ? local->message : "missing");
      g_clear_error (&local);
      return FALSE;
    }
  int w = image->width, h = image->height;
  if (w < REF_MIN_SIDE || h < REF_MIN_SIDE)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "reference image %d is %d×%d: both sides must be at least %d "
                   "pixels", index + 1, w, h, REF_MIN_SIDE);
      return FALSE;
    }
  if (w > REF_MAX_ASPECT * h || h > REF_MAX_ASPECT * w)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "reference image %d is %d×%d: its aspect ratio is over %d:1",
                   index + 1, w, h, REF_MAX_ASPECT);
      return FALSE;
    }
  int cw, ch;
  capped_size (w, h, &cw, &ch);
  *width = cw / model->multiple * model->multiple;
  *height = ch / model->multiple * model->multiple;
  return TRUE;
}

/* rgb [h][w][3] u8, shrunk to about REF_MAX_AREA pixels when larger (as
 * diffusers' _resize_to_target_area, with PIL's Lanczos) and then cropped
 * around the centre to multiples of `multiple`, as planar floats in
 * [-1, 1]: chw[3][*oh][*ow]. */
static float *
to_vae_input (uint8_t *rgb, int w, int h, int multiple, int *ow, int *oh,
              GError **error)
{
  g_autofree uint8_t *small = NULL;
  int nw, nh;
  capped_size (w, h, &nw, &nh);
  if (nw != w || nh != h)
    {
      small = g_try_malloc ((size_t) nw * nh * 3);
      if (!small)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                       "no memory to resize a reference image");
          return NULL;
        }
      if (!bn_resize_lanczos_u8 (rgb, w, h, 3, small, nw, nh, error))
        return NULL;
      rgb = small;
      w = nw;
      h = nh;
    }
  int cw = w / multiple * multiple, ch = h / multiple * multiple;
  int left = (w - cw) / 2, top = (h - ch) / 2;
  size_t plane = (size_t) cw * ch;
  float *chw = g_try_new (float, plane * 3);
  if (!chw)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for a reference image");
      return NULL;
    }
  for (int y = 0; y < ch; y++)
    for (int x = 0; x < cw; x++)
      for (int c = 0; c < 3; c++)
        {
          /* float32 steps of diffusers' pil_to_numpy and normalize. */
          float v = (float) rgb[((size_t) (y + top) * w + x + left) * 3 + c] / 255.0f;
          chw[c * plane + (size_t) y * cw + x] = 2.0f * v - 1.0f;
        }
  *ow = cw;
  *oh = ch;
  return chw;
}

gboolean
bn_ref_tokens_prepare (BonsaiModel *model, const BonsaiImage *image, int index,
                       BnThreadPool *pool, const gint *cancel, BnRefTokens *out,
                       GError **error)
{
  memset (out, 0, sizeof *out);
  int w, h;
  if (!bn_ref_check (model, image, index, &w, &h, error))
    return FALSE;
  g_autofree uint8_t *rgb = bn_image_to_rgb8 (image, error);
  if (!rgb)
    return FALSE;
  g_autofree float *pixels = to_vae_input (rgb, image->width, image->height,
                                           model->multiple, &w, &h, error);
  if (!pixels)
    return FALSE;

  const BnVaeConfig *vc = bn_vae_get_config (model->vae);
  int64_t lh, lw;
  if (!bn_vae_encoded_size (vc, h, w, &lh, &lw))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "reference image %d is too small for the VAE", index + 1);
      return FALSE;
    }
  int ph = model->patch[0], pw = model->patch[1];
  int64_t c = vc->latent_channels, gh = lh / ph, gw = lw / pw, n = gh * gw;
  int64_t width = c * ph * pw;
  g_autofree float *mean = g_try_new (float, c * lh * lw);
  g_autofree float *packed = g_try_new (float, c * lh * lw);
  out->tokens = g_try_new (float, n * width);
  out->ids = g_try_new (int64_t, n * 4);
  if (!mean || !packed || !out->tokens || !out->ids)
    {
      bn_ref_tokens_clear (out);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory to encode reference image %d", index + 1);
      return FALSE;
    }
  BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
  opt.pool = pool;
  opt.cancel = cancel;
  if (!bn_vae_encode_mean (model->vae, pixels, h, w, mean, &opt, error))
    {
      bn_ref_tokens_clear (out);
      return FALSE;
    }
  bn_latent_patchify (mean, c, lh, lw, ph, pw, packed);
  bn_vae_bn_normalize (model->vae, packed, n);
  bn_latent_to_tokens (packed, width, n, out->tokens);
  for (int64_t r = 0; r < gh; r++)
    for (int64_t col = 0; col < gw; col++)
      {
        int64_t *id = out->ids + (r * gw + col) * 4;
        id[0] = REF_T_STEP * (index + 1);
        id[1] = r;
        id[2] = col;
        id[3] = 0;
      }
  out->n = n;
  out->width = w;
  out->height = h;
  return TRUE;
}
