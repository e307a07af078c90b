/* linear_tile.h — what each instruction-set path gives the blocked GEMM
 * driver in linear.c (private to core/kernels).
 *
 * The driver walks W in panels of columns (rows of W) and blocks of
 * BN_LINEAR_KC along K.  For each block a path decodes micro-panels of nr
 * columns into fp32, laid out k-major (dst[k·nr + j] = W[n0+j, k0+k]), so
 * that its micro-kernel can load nr consecutive weights of one k as vectors
 * and multiply them by a broadcast activation.  Activations are copied into
 * mr rows of BN_LINEAR_KC floats (xp[i·BN_LINEAR_KC + k]), which keeps the
 * block of x in L1 whatever the caller's row stride.
 *
 * Every output element is accumulated in k order, one multiply-add at a
 * time (fused on the SIMD paths), starting from the value the previous K
 * block left in y; neither the panel nor the thread that computes it
 * changes that order.
 */
#ifndef BN_LINEAR_TILE_H
#define BN_LINEAR_TILE_H

#include "kernels.h"

/* K block: a multiple of every group size (32, 64, 128) so packed blocks
 * hold whole groups.  384 keeps mr rows of x (18 KiB at mr = 12) in L1 and
 * was the fastest of 256, 384 and 512 on Zen 4. */
#define BN_LINEAR_KC 384
/* Largest micro-tile of any path, for stack buffers. */
#define BN_LINEAR_MR_MAX 12
#define BN_LINEAR_NR_MAX 32

/* Decodes columns n0 .. n0+nn-1 (nn ≤ nr) of W for k0 .. k0+kc-1 into
 * dst[kc][nr] as above; columns nn .. nr-1 become 0.  dst is 64-byte
 * aligned. */
typedef void (*BnDecodeFn) (const BnTensor *w, int64_t n0, int nn, int64_t k0,
                            int kc, float *dst);

/* y[i, j] (+)= Σ_k xp[i·BN_LINEAR_KC + k] · wp[k·nr + j] for i < mr ≤ path
 * mr and j < nn ≤ nr; y is added to when accumulate, overwritten otherwise.
 * Rows mr .. path mr-1 of xp must be readable (the driver zeroes them). */
typedef void (*BnTileFn) (const float *xp, const float *wp, int kc, float *y,
                          int64_t ldy, int mr, int nn, gboolean accumulate);

typedef struct {
  int mr;           /* rows of x per micro-tile */
  int nr;           /* columns of W per micro-panel */
  BnTileFn tile;
  /* Indexed by BnDType, F32 .. Q4. */
  BnDecodeFn decode[BN_DTYPE_Q4 + 1];
  /* Runs `iters` rounds of independent register-only FMAs (flops_per_iter
   * flops each) and returns a value that depends on all of them: the
   * throughput ceiling the micro-kernel is measured against. */
  float (*fma_loop) (int64_t iters);
  int flops_per_iter;
} BnLinearPath;

extern const BnLinearPath bn_linear_path_scalar;
extern const BnLinearPath bn_linear_path_avx2;
extern const BnLinearPath bn_linear_path_avx512;

/* The path of `isa`, which the CPU must support. */
const BnLinearPath *bn_linear_path (BnIsa isa);

/* The mask of the first n of 16 lanes (none for n <= 0, all for n >= 16):
 * the AVX-512 paths' masked loads and stores of a partial micro-panel. */
static inline uint16_t
bn_lanes16 (int n)
{
  return n >= 16 ? (uint16_t) 0xffff : n <= 0 ? 0 : (uint16_t) ((1u << n) - 1u);
}

/* Scale and bias of group g of W for columns n0 .. n0+nn-1 into s[0..nr)
 * and b[0..nr), zero past nn so that padding columns decode to 0. */
static inline void
bn_linear_group_params (const BnTensor *w, int64_t n0, int nn, int nr,
                        int64_t g, float *s, float *b)
{
  for (int j = 0; j < nr; j++)
    {
      s[j] = j < nn ? bn_packed_scale (w, n0 + j, g) : 0.0f;
      b[j] = j < nn ? bn_packed_bias (w, n0 + j, g) : 0.0f;
    }
}

/* Code word wi of columns n0 .. n0+nn-1 into words[0..nr), zero past nn. */
static inline void
bn_linear_code_words (const BnTensor *w, int64_t n0, int nn, int nr,
                      int64_t wi, uint32_t *words)
{
  const int64_t per_row = w->shape[1] * bn_dtype_bits (w->dtype) / 32;
  const uint32_t *codes = (const uint32_t *) w->data + n0 * per_row + wi;
  for (int j = 0; j < nr; j++)
    words[j] = j < nn ? codes[j * per_row] : 0u;
}

#endif
