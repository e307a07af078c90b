/* image_io.h — conversions between BonsaiImage and the float layouts the
 * networks use (internal).  PNG files are read and written by the public
 * bonsai_image_load_png / bonsai_image_save_png (image_io.c). */
#ifndef BN_IMAGE_IO_H
#define BN_IMAGE_IO_H

#include "bonsai/bonsai.h"

#include <stdint.h>

/* The largest side a PNG may have to be read (a larger one is refused before
 * any pixel is decoded, so a hostile header cannot allocate gigabytes). */
#define BN_PNG_MAX_SIDE 16384

/* Whether `image` is usable: pixels, a positive size, a known format and a
 * stride that holds a row.  FALSE with INVALID_INPUT otherwise. */
gboolean bn_image_check (const BonsaiImage *image, GError **error);

/* Packed 8-bit RGB copy [height][width][3] of any BonsaiImage: alpha is
 * dropped (as PIL's convert("RGB") does) and floats are clamped to [0, 1] and
 * rounded.  Returns a new buffer (g_free), or NULL with OUT_OF_MEMORY. */
uint8_t *bn_image_to_rgb8 (const BonsaiImage *image, GError **error);

/* A new image of `format` from planar floats chw[3][height][width] in the
 * VAE's range [-1, 1]: v = clamp(x / 2 + 0.5, 0, 1); RGBA8 rounds v·255 to
 * nearest, ties to even (as diffusers' postprocess does).  NULL with error. */
BonsaiImage *bn_image_from_chw (const float *chw, int width, int height,
                                BonsaiPixelFormat format, GError **error);

#endif
