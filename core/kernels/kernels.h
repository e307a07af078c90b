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

#endif
