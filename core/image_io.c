/* image_io.c — BonsaiImage, PNG reading and writing with libpng, and the
 * conversions between images and the networks' float layouts. */
#include "image_io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

/* [0, 1] with NaN as 0: what an 8-bit pixel can hold. */
static float
clamp_unit (float v)
{
  return isnan (v) ? 0.0f : fminf (fmaxf (v, 0.0f), 1.0f);
}

/* Nearest, ties to even, as numpy's round in diffusers' postprocess. */
static uint8_t
unit_to_u8 (float v)
{
  return (uint8_t) nearbyintf (clamp_unit (v) * 255.0f);
}

static size_t
bytes_per_pixel (BonsaiPixelFormat format)
{
  return format == BONSAI_PIXEL_RGB_F32 ? 3 * sizeof (float) : 4;
}

BonsaiImage *
bonsai_image_new (int width, int height, BonsaiPixelFormat format,
                  GError **error)
{
  if (width <= 0 || height <= 0 || width > BN_PNG_MAX_SIDE
      || height > BN_PNG_MAX_SIDE)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "image size %d×%d is not between 1 and %d on each side",
                   width, height, BN_PNG_MAX_SIDE);
      return NULL;
    }
  if (format != BONSAI_PIXEL_RGBA8 && format != BONSAI_PIXEL_RGB_F32)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "unknown pixel format %d", (int) format);
      return NULL;
    }
  size_t stride = (size_t) width * bytes_per_pixel (format);
  void *pixels = g_try_malloc0 (stride * (size_t) height);
  if (!pixels)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for a %d×%d image", width, height);
      return NULL;
    }
  if (format == BONSAI_PIXEL_RGBA8)
    for (size_t i = 3; i < stride * (size_t) height; i += 4)
      ((uint8_t *) pixels)[i] = 255;
  BonsaiImage *image = g_new0 (BonsaiImage, 1);
  image->width = width;
  image->height = height;
  image->format = format;
  image->stride = stride;
  image->pixels = pixels;
  return image;
}

void
bonsai_image_free (BonsaiImage *image)
{
  if (!image)
    return;
  g_free (image->pixels);
  g_free (image);
}

/* ---- PNG --------------------------------------------------------------- */

/* libpng reports errors by longjmp.  Everything the protected code changes
 * lives in this heap block, reached through a pointer that never changes, so
 * nothing is left indeterminate after the jump. */
typedef struct {
  char message[256];
  FILE *file;
  png_structp png;
  png_infop info;
  BonsaiImage *image; /* read: the result */
  png_bytep *rows;    /* read: row pointers into image */
  uint8_t *row;       /* write: one converted row */
} PngState;

static void
png_error_fn (png_structp png, png_const_charp msg)
{
  PngState *st = png_get_error_ptr (png);
  g_strlcpy (st->message, msg, sizeof st->message);
  png_longjmp (png, 1);
}

static void
png_warning_fn (png_structp png, png_const_charp msg)
{
  g_debug ("libpng: %s", msg);
}

static gboolean
read_png_rows (PngState *st, const char *path, GError **error)
{
  png_read_info (st->png, st->info);
  png_uint_32 width = png_get_image_width (st->png, st->info);
  png_uint_32 height = png_get_image_height (st->png, st->info);
  int color = png_get_color_type (st->png, st->info);
  int depth = png_get_bit_depth (st->png, st->info);

  /* Normalise every colour type and depth to 8-bit RGBA. */
  if (color == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb (st->png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
    png_set_expand_gray_1_2_4_to_8 (st->png);
  if (png_get_valid (st->png, st->info, PNG_INFO_tRNS))
    png_set_tRNS_to_alpha (st->png);
  if (depth == 16)
    png_set_scale_16 (st->png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
    png_set_gray_to_rgb (st->png);
  png_set_filler (st->png, 0xff, PNG_FILLER_AFTER);
  png_set_interlace_handling (st->png);
  png_read_update_info (st->png, st->info);
  if (png_get_rowbytes (st->png, st->info) != (size_t) width * 4)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: unsupported PNG layout", path);
      return FALSE;
    }

  st->image = bonsai_image_new ((int) width, (int) height, BONSAI_PIXEL_RGBA8,
                                error);
  if (!st->image)
    return FALSE;
  st->rows = g_try_new (png_bytep, height);
  if (!st->rows)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "%s: no memory for row pointers", path);
      return FALSE;
    }
  for (png_uint_32 y = 0; y < height; y++)
    st->rows[y] = (png_bytep) st->image->pixels
                  + (size_t) y * st->image->stride;
  png_read_image (st->png, st->rows);
  png_read_end (st->png, NULL);
  return TRUE;
}

BonsaiImage *
bonsai_image_load_png (const char *path, GError **error)
{
  FILE *file = g_fopen (path, "rb");
  if (!file)
    {
      int e = errno;
      g_set_error (error, BONSAI_ERROR,
                   e == ENOENT ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO,
                   "cannot open %s: %s", path, g_strerror (e));
      return NULL;
    }
  uint8_t sig[8];
  if (fread (sig, 1, sizeof sig, file) != sizeof sig
      || png_sig_cmp (sig, 0, sizeof sig) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s is not a PNG file", path);
      fclose (file);
      return NULL;
    }

  PngState *const st = g_new0 (PngState, 1);
  st->file = file;
  st->png = png_create_read_struct (PNG_LIBPNG_VER_STRING, st, png_error_fn,
                                    png_warning_fn);
  if (st->png)
    st->info = png_create_info_struct (st->png);
  gboolean ok = FALSE;
  if (!st->png || !st->info)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                 "%s: cannot set up the PNG reader", path);
  else if (setjmp (png_jmpbuf (st->png)))
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                 "%s: damaged PNG: %s", path, st->message);
  else
    {
      png_set_user_limits (st->png, BN_PNG_MAX_SIDE, BN_PNG_MAX_SIDE);
      png_init_io (st->png, st->file);
      png_set_sig_bytes (st->png, sizeof sig);
      if (read_png_rows (st, path, error))
        ok = TRUE;
    }

  if (st->png)
    png_destroy_read_struct (&st->png, st->info ? &st->info : NULL, NULL);
  fclose (st->file);
  g_free (st->rows);
  BonsaiImage *image = st->image;
  g_free (st);
  if (!ok)
    {
      bonsai_image_free (image);
      return NULL;
    }
  return image;
}

static void
write_png_rows (PngState *st, const BonsaiImage *image, gboolean alpha)
{
  int channels = alpha ? 4 : 3;
  png_set_IHDR (st->png, st->info, (png_uint_32) image->width,
                (png_uint_32) image->height, 8,
                alpha ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB,
                PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                PNG_FILTER_TYPE_DEFAULT);
  png_write_info (st->png, st->info);
  for (int y = 0; y < image->height; y++)
    {
      const uint8_t *src = (const uint8_t *) image->pixels
                           + (size_t) y * image->stride;
      for (int x = 0; x < image->width; x++)
        {
          uint8_t *d = st->row + (size_t) x * channels;
          if (image->format == BONSAI_PIXEL_RGBA8)
            memcpy (d, src + (size_t) x * 4, channels);
          else
            for (int c = 0; c < 3; c++)
              d[c] = unit_to_u8 (((const float *) src)[(size_t) x * 3 + c]);
        }
      png_write_row (st->png, st->row);
    }
  png_write_end (st->png, st->info);
}

static gboolean
has_transparency (const BonsaiImage *image)
{
  if (image->format != BONSAI_PIXEL_RGBA8)
    return FALSE;
  for (int y = 0; y < image->height; y++)
    {
      const uint8_t *row = (const uint8_t *) image->pixels
                           + (size_t) y * image->stride;
      for (int x = 0; x < image->width; x++)
        if (row[(size_t) x * 4 + 3] != 255)
          return TRUE;
    }
  return FALSE;
}

gboolean
bn_image_check (const BonsaiImage *image, GError **error)
{
  if (!image || !image->pixels || image->width <= 0 || image->height <= 0
      || (image->format != BONSAI_PIXEL_RGBA8
          && image->format != BONSAI_PIXEL_RGB_F32)
      || image->stride < (size_t) image->width * bytes_per_pixel (image->format))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "not a valid image (size, format or stride)");
      return FALSE;
    }
  return TRUE;
}

/* Writes the PNG stream into st->file; FALSE with error. */
static gboolean
png_write_file (PngState *st, const BonsaiImage *image, const char *path,
                GError **error)
{
  st->row = g_try_malloc ((size_t) image->width * 4);
  st->png = png_create_write_struct (PNG_LIBPNG_VER_STRING, st, png_error_fn,
                                     png_warning_fn);
  if (st->png)
    st->info = png_create_info_struct (st->png);
  gboolean ok = FALSE;
  if (!st->row || !st->png || !st->info)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                 "no memory to write %s", path);
  else if (setjmp (png_jmpbuf (st->png)))
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot write %s: %s",
                 path, st->message);
  else
    {
      png_init_io (st->png, st->file);
      write_png_rows (st, image, has_transparency (image));
      ok = TRUE;
    }
  if (st->png)
    png_destroy_write_struct (&st->png, st->info ? &st->info : NULL);
  g_free (st->row);
  return ok;
}

gboolean
bonsai_image_save_png (const BonsaiImage *image, const char *path,
                       GError **error)
{
  if (!bn_image_check (image, error))
    return FALSE;
  g_autofree char *tmp = g_strdup_printf ("%s.tmp-XXXXXX", path);
  /* 0666 before the umask, as any file the user saves. */
  int fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO,
                   "cannot create a file beside %s: %s", path, g_strerror (e));
      return FALSE;
    }
  FILE *file = fdopen (fd, "wb");
  if (!file)
    {
      int e = errno;
      close (fd);
      g_unlink (tmp);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot write %s: %s",
                   tmp, g_strerror (e));
      return FALSE;
    }
  PngState *const st = g_new0 (PngState, 1);
  st->file = file;
  gboolean ok = png_write_file (st, image, path, error);
  g_free (st);
  /* A full disk often shows only at flush, sync or close. */
  if (ok && (fflush (file) != 0 || fsync (fileno (file)) != 0))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot write %s: %s",
                   path, g_strerror (errno));
      ok = FALSE;
    }
  if (fclose (file) != 0 && ok)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot write %s: %s",
                   path, g_strerror (errno));
      ok = FALSE;
    }
  if (ok && g_rename (tmp, path) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO,
                   "cannot rename %s to %s: %s", tmp, path, g_strerror (errno));
      ok = FALSE;
    }
  if (!ok)
    g_unlink (tmp);
  return ok;
}

/* ---- conversions ------------------------------------------------------- */

uint8_t *
bn_image_to_rgb8 (const BonsaiImage *image, GError **error)
{
  if (!bn_image_check (image, error))
    return NULL;
  size_t n = (size_t) image->width * (size_t) image->height;
  uint8_t *out = g_try_malloc (n * 3);
  if (!out)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for a %d×%d image", image->width, image->height);
      return NULL;
    }
  for (int y = 0; y < image->height; y++)
    {
      const uint8_t *src = (const uint8_t *) image->pixels
                           + (size_t) y * image->stride;
      uint8_t *dst = out + (size_t) y * image->width * 3;
      for (int x = 0; x < image->width; x++)
        for (int c = 0; c < 3; c++)
          if (image->format == BONSAI_PIXEL_RGBA8)
            dst[x * 3 + c] = src[(size_t) x * 4 + c];
          else
            dst[x * 3 + c] = unit_to_u8 (((const float *) src)[(size_t) x * 3 + c]);
    }
  return out;
}

BonsaiImage *
bn_image_from_chw (const float *chw, int width, int height,
                   BonsaiPixelFormat format, GError **error)
{
  BonsaiImage *image = bonsai_image_new (width, height, format, error);
  if (!image)
    return NULL;
  size_t plane = (size_t) width * (size_t) height;
  for (int y = 0; y < height; y++)
    {
      uint8_t *row = (uint8_t *) image->pixels + (size_t) y * image->stride;
      for (int x = 0; x < width; x++)
        for (int c = 0; c < 3; c++)
          {
            float v = chw[c * plane + (size_t) y * width + x] * 0.5f + 0.5f;
            if (format == BONSAI_PIXEL_RGB_F32)
              ((float *) row)[(size_t) x * 3 + c] = clamp_unit (v);
            else
              row[(size_t) x * 4 + c] = unit_to_u8 (v);
          }
    }
  return image;
}
