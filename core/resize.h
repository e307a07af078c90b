/* resize.h — Lanczos resampling of 8-bit images (internal).
 *
 * Reference images for editing are shrunk the way diffusers does it, with
 * PIL's Image.resize(…, LANCZOS); this is that algorithm (separable a = 3
 * Lanczos widened by the scale factor, horizontal pass first, 22-bit fixed
 * point coefficients, 8-bit intermediate), so that the pixels match PIL's
 * exactly.
 */
#ifndef BN_RESIZE_H
#define BN_RESIZE_H

#include <glib.h>
#include <stdint.h>

/* Resamples packed `channels`-byte pixels src[h][w] to dst[oh][ow] (both
 * tightly packed).  Fails only with OUT_OF_MEMORY. */
gboolean bn_resize_lanczos_u8 (const uint8_t *src, int w, int h, int channels,
                               uint8_t *dst, int ow, int oh, GError **error);

#endif
