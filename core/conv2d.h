/* conv2d.h — 2-D convolutions and group normalisation on fp32 activations
 * stored pixel-major (internal).
 *
 * An activation of c channels over h×w pixels is a row-major [h·w, c]
 * matrix ("HWC"): pixel (y, x) is row y·w + x.  In that layout a 1×1
 * convolution is one bn_linear, and a 3×3 one is a bn_linear on im2col rows:
 * the weight [co, ci, 3, 3] as shipped is already the [co, ci·9] matrix
 * whose column c·9 + ky·3 + kx meets input channel c at tap (ky, kx).
 *
 * bn_conv3x3 builds im2col rows for a chunk of a few hundred output pixels
 * at a time, so its workspace stays a few MB per thread whatever the image
 * size.  A group norm followed by swish is applied on the fly to the input
 * rows a chunk reads (each thread keeps a small ring of normalised rows), so
 * the normalised activation is never stored whole.  Chunks are a function of
 * the shapes only, and each is computed by one thread with one bn_linear
 * call, so results do not depend on the thread count.
 */
#ifndef BN_CONV2D_H
#define BN_CONV2D_H

#include "kernels/kernels.h"
#include "tensor.h"
#include "threadpool.h"

typedef enum {
  BN_CONV_SAME,  /* stride 1, zero padding 1: h × w → h × w */
  BN_CONV_UP2,   /* nearest ×2 upsampling first: h × w → 2h × 2w */
  BN_CONV_DOWN2, /* zero pad right and bottom by 1, stride 2, no other
                    padding: h × w → h/2 × w/2 (h, w >= 2) */
} BnConvMode;

typedef struct {
  BnConvMode mode;
  const BnTensor *weight; /* [co, ci·9], f32, f16 or bf16 */
  const float *bias;      /* [co], or NULL */
  /* NULL, or the input is first mapped to swish(x·pre_scale[c] +
   * pre_shift[c]) — a group norm folded by bn_group_norm_fold.  Zero
   * padding is applied after it, as the layers it stands for do. */
  const float *pre_scale;
  const float *pre_shift;
  gboolean accumulate; /* y += conv(x) rather than y = conv(x) */
  BnActPrecision act;  /* of the linear on im2col rows (bn_linear_lowp) */
} BnConv3x3;

/* Output extent of `mode` along an axis of `n` input pixels; 0 when the
 * input is too small (DOWN2 needs n >= 2). */
int64_t bn_conv_out_size (BnConvMode mode, int64_t n);

/* Bytes of workspace bn_conv3x3 allocates for a ci → co convolution of an
 * h × w input, with or without a pre-activation, on a pool of n_threads
 * threads (all threads together). */
size_t bn_conv3x3_workspace (BnConvMode mode, gboolean pre, int64_t ci,
                             int64_t co, int64_t h, int64_t w, int n_threads);

/* y[ho·wo, co] = conv(x[h·w, ci]) (ci = weight columns / 9).  x and y must
 * not overlap.  Fails only with BONSAI_ERROR_OUT_OF_MEMORY when the
 * workspace cannot be allocated.  pool may be NULL. */
gboolean bn_conv3x3 (BnThreadPool *pool, const BnConv3x3 *conv,
                     const float *x, int64_t h, int64_t w, float *y,
                     GError **error);

/* y[n, co] = x[n, ci]·Wᵀ + bias for w [co, ci] (a 1×1 convolution or a
 * linear layer).  bias may be NULL. */
void bn_conv1x1 (BnThreadPool *pool, const BnTensor *w, const float *bias,
                 const float *x, int64_t n, float *y);

/* Group norm of x[n, c] (c divisible by groups), folded with its affine
 * weight gamma and bias beta (either may be NULL: 1 and 0) into per-channel
 * scale and shift: norm(x)[p, c] = x[p, c]·scale[c] + shift[c].  Statistics
 * are accumulated in double over fixed pixel blocks and combined in order.
 * Fails only with BONSAI_ERROR_OUT_OF_MEMORY. */
gboolean bn_group_norm_fold (BnThreadPool *pool, const float *x, int64_t n,
                             int64_t c, int groups, const float *gamma,
                             const float *beta, float eps, float *scale,
                             float *shift, GError **error);

/* y[p, c] = x[p, c]·scale[c] + shift[c] over n pixels; x and y may alias. */
void bn_channel_affine (BnThreadPool *pool, const float *x, float *y,
                        int64_t n, int64_t c, const float *scale,
                        const float *shift);

#endif
