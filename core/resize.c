/* resize.c — PIL-compatible Lanczos resampling of 8-bit images. */
#include "resize.h"

#include "bonsai/bonsai.h"

#include <math.h>
#include <string.h>

/* Coefficients carry 22 fraction bits: 8 bits of pixel and 2 of headroom
 * for the negative lobes leave no overflow in 32-bit sums. */
#define PRECISION_BITS 22

static double
sinc (double x)
{
  if (x == 0.0)
    return 1.0;
  x *= G_PI;
  return sin (x) / x;
}

static double
lanczos3 (double x)
{
  return (x >= -3.0 && x < 3.0) ? sinc (x) * sinc (x / 3.0) : 0.0;
}

/* One axis: for each output index, the first input index it reads, how many
 * it reads, and their fixed-point weights (ksize slots each). */
typedef struct {
  int ksize;
  int *first;
  int *count;
  int32_t *weights;
} Taps;

static void
taps_clear (Taps *t)
{
  g_clear_pointer (&t->first, g_free);
  g_clear_pointer (&t->count, g_free);
  g_clear_pointer (&t->weights, g_free);
}

static gboolean
taps_init (Taps *t, int in_size, int out_size, GError **error)
{
  double scale = (double) in_size / out_size;
  /* Shrinking widens the filter so every input pixel contributes. */
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 3.0 * filterscale;
  t->ksize = (int) ceil (support) * 2 + 1;
  t->first = g_try_new (int, out_size);
  t->count = g_try_new (int, out_size);
  t->weights = g_try_new0 (int32_t, (size_t) out_size * t->ksize);
  double *w = g_try_new (double, t->ksize);
  if (!t->first || !t->count || !t->weights || !w)
    {
      g_free (w);
      taps_clear (t);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory to resize an image");
      return FALSE;
    }
  for (int o = 0; o < out_size; o++)
    {
      double center = (o + 0.5) * scale;
      int lo = (int) (center - support + 0.5);
      int hi = (int) (center + support + 0.5);
      lo = lo < 0 ? 0 : lo;
      hi = hi > in_size ? in_size : hi;
      double sum = 0.0;
      for (int i = 0; i < hi - lo; i++)
        {
          w[i] = lanczos3 ((i + lo - center + 0.5) / filterscale);
          sum += w[i];
        }
      int32_t *k = t->weights + (size_t) o * t->ksize;
      for (int i = 0; i < hi - lo; i++)
        {
          double v = sum != 0.0 ? w[i] / sum : w[i];
          /* Round half away from zero, as PIL does. */
          k[i] = (int32_t) (v < 0 ? -0.5 + v * (1 << PRECISION_BITS)
                                  : 0.5 + v * (1 << PRECISION_BITS));
        }
      t->first[o] = lo;
      t->count[o] = hi - lo;
    }
  g_free (w);
  return TRUE;
}

static uint8_t
clip8 (int32_t v)
{
  if (v >= (1 << PRECISION_BITS << 8))
    return 255;
  if (v <= 0)
    return 0;
  return (uint8_t) (v >> PRECISION_BITS);
}

/* Resamples `n` lines of `len` pixels each.  Pixel i of line j is at
 * src[j·line_step + i·pix_step] (in pixels); likewise for dst. */
static void
resample_axis (const Taps *t, const uint8_t *src, size_t src_line,
               size_t src_pix, uint8_t *dst, size_t dst_line, size_t dst_pix,
               int n_lines, int out_len, int channels)
{
  for (int j = 0; j < n_lines; j++)
    for (int o = 0; o < out_len; o++)
      {
        const int32_t *k = t->weights + (size_t) o * t->ksize;
        for (int c = 0; c < channels; c++)
          {
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < t->count[o]; i++)
              acc += src[((size_t) j * src_line
                          + (size_t) (t->first[o] + i) * src_pix) * channels + c]
                     * k[i];
            dst[((size_t) j * dst_line + (size_t) o * dst_pix) * channels + c]
                = clip8 (acc);
          }
      }
}

gboolean
bn_resize_lanczos_u8 (const uint8_t *src, int w, int h, int channels,
                      uint8_t *dst, int ow, int oh, GError **error)
{
  g_return_val_if_fail (w > 0 && h > 0 && ow > 0 && oh > 0, FALSE);
  Taps th = { 0 }, tv = { 0 };
  uint8_t *tmp = NULL;
  gboolean ok = FALSE;
  if (!taps_init (&th, w, ow, error) || !taps_init (&tv, h, oh, error))
    goto out;
  /* Horizontal pass first, into an 8-bit image of ow × h. */
  const uint8_t *mid = src;
  if (ow != w)
    {
      tmp = g_try_malloc ((size_t) ow * h * channels);
      if (!tmp)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                       "no memory to resize an image");
          goto out;
        }
      resample_axis (&th, src, w, 1, tmp, ow, 1, h, ow, channels);
      mid = tmp;
    }
  if (oh != h)
    resample_axis (&tv, mid, 1, ow, dst, 1, ow, ow, oh, channels);
  else
    memcpy (dst, mid, (size_t) ow * oh * channels);
  ok = TRUE;
out:
  taps_clear (&th);
  taps_clear (&tv);
  g_free (tmp);
  return ok;
}
