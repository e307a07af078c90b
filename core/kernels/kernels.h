/* kernels.h — CPU compute kernels (internal).
 *
 * The linear layer computes y[M,N] = x[M,K] · W[N,K]ᵀ with fp32 activations
 * and fp32 accumulation, for W dense (f32, f16, bf16) or packed (Q1, Q2, Q4,
 * see tensor.h).  bn_linear_ref is the plain scalar oracle; the AVX2/FMA
 * and AVX-512 paths decode tiles of W once and reuse them across many rows
 * of x.  Each output element is accumulated in a fixed order that does not
 * depend on the thread count.
 */
#ifndef BN_KERNELS_H
#define BN_KERNELS_H

#include "../tensor.h"
#include "../threadpool.h"

typedef enum {
  BN_ISA_SCALAR,
  BN_ISA_AVX2,    /* AVX2 + FMA + F16C */
  BN_ISA_AVX512,  /* AVX-512 F/BW/DQ/VL */
  BN_ISA_COUNT
} BnIsa;

/* The best ISA this CPU supports, capped by BONSAI_CPU_ISA if set. */
BnIsa bn_cpu_isa (void);
/* Whether this CPU can run `isa`. */
gboolean bn_cpu_supports (BnIsa isa);
const char *bn_isa_name (BnIsa isa);
/* Whether the CPU has AVX-512 VNNI (8-bit dot products) and AVX-512 BF16,
 * which the low-precision paths use within BN_ISA_AVX512. */
gboolean bn_cpu_has_vnni (void);
gboolean bn_cpu_has_bf16 (void);
/* AVX-512 VBMI (byte permutes), which the LUT path needs with VNNI. */
gboolean bn_cpu_has_vbmi (void);

/* The oracle: double accumulation, one element at a time; single thread. */
void bn_linear_ref (const BnTensor *w, const float *x, int64_t m,
                    int64_t ldx, float *y, int64_t ldy);

/* y = x·Wᵀ on `isa` (which the CPU must support), parallel over N panels.
 * x: m rows of w->shape[1] floats, row stride ldx; y: m rows of w->shape[0]
 * floats, row stride ldy.  pool may be NULL. */
void bn_linear_isa (BnThreadPool *pool, BnIsa isa, const BnTensor *w,
                    const float *x, int64_t m, int64_t ldx, float *y,
                    int64_t ldy);
/* The same on bn_cpu_isa(). */
void bn_linear (BnThreadPool *pool, const BnTensor *w, const float *x,
                int64_t m, int64_t ldx, float *y, int64_t ldy);

/* Activation precision of a linear (linear_lowp.h).  EXACT is the fp32
 * path above; BF16 and INT8 round x (and only x) for speed.  Both apply to
 * binary and ternary W (Q1/Q2, K a multiple of 128, group size dividing
 * 128); BF16 also to dense bf16 W with an even K.  LUT applies to binary W
 * only (group size 32, 64 or 128) and treats every other W as BF16 does
 * (or exactly where BF16 is not available). */
typedef enum {
  BN_ACT_EXACT,
  BN_ACT_BF16,  /* x to bf16; needs AVX-512 BF16 */
  BN_ACT_INT8,  /* x to int8 per token and weight group; AVX2 or VNNI */
  BN_ACT_LUT,   /* as INT8, 4-term sums rounded to 4 steps, table lookups;
                   VBMI + VNNI */
} BnActPrecision;

/* Whether `act` would round x for `w` on `isa` here; if not, the calls
 * below are the exact path. */
gboolean bn_linear_lowp_applies (BnIsa isa, BnActPrecision act,
                                 const BnTensor *w);
/* y = x·Wᵀ with activations in `act` where that applies, else exactly;
 * same arguments as bn_linear_isa. */
void bn_linear_lowp_isa (BnThreadPool *pool, BnIsa isa, BnActPrecision act,
                         const BnTensor *w, const float *x, int64_t m,
                         int64_t ldx, float *y, int64_t ldy);
void bn_linear_lowp (BnThreadPool *pool, BnActPrecision act,
                     const BnTensor *w, const float *x, int64_t m,
                     int64_t ldx, float *y, int64_t ldy);
/* The oracle of `act` (BF16, INT8, or LUT for binary W) for W binary or
 * ternary: the same rounding of x (and for BF16 of the weight values), then
 * double sums; single thread. */
void bn_linear_lowp_ref (BnActPrecision act, const BnTensor *w,
                         const float *x, int64_t m, int64_t ldx, float *y,
                         int64_t ldy);
/* "exact", "bf16", "int8" or "lut", for messages (bonsai_precision_from_string
 * parses the public names). */
const char *bn_act_precision_name (BnActPrecision act);

#endif
