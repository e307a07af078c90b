/* flux2_latent.c — layout changes of FLUX.2 latents between the VAE and the
 * transformer: 2-D patchify and token order (spec §4.5). */
#include "flux2_vae.h"

void
bn_latent_patchify (const float *z, int64_t c, int64_t h, int64_t w, int ph,
                    int pw, float *out)
{
  int64_t hp = h / ph, wp = w / pw;
  for (int64_t ch = 0; ch < c; ch++)
    for (int py = 0; py < ph; py++)
      for (int px = 0; px < pw; px++)
        {
          float *dst = out + ((ch * ph + py) * pw + px) * hp * wp;
          for (int64_t i = 0; i < hp; i++)
            for (int64_t j = 0; j < wp; j++)
              dst[i * wp + j] = z[(ch * h + i * ph + py) * w + j * pw + px];
        }
}

void
bn_latent_unpatchify (const float *zp, int64_t c, int64_t h, int64_t w,
                      int ph, int pw, float *z)
{
  int64_t hp = h / ph, wp = w / pw;
  for (int64_t ch = 0; ch < c; ch++)
    for (int py = 0; py < ph; py++)
      for (int px = 0; px < pw; px++)
        {
          const float *src = zp + ((ch * ph + py) * pw + px) * hp * wp;
          for (int64_t i = 0; i < hp; i++)
            for (int64_t j = 0; j < wp; j++)
              z[(ch * h + i * ph + py) * w + j * pw + px] = src[i * wp + j];
        }
}

void
bn_latent_to_tokens (const float *z, int64_t c, int64_t n, float *tok)
{
  for (int64_t i = 0; i < n; i++)
    for (int64_t ch = 0; ch < c; ch++)
      tok[i * c + ch] = z[ch * n + i];
}

void
bn_latent_from_tokens (const float *tok, int64_t c, int64_t n, float *z)
{
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t i = 0; i < n; i++)
      z[ch * n + i] = tok[i * c + ch];
}
