/* kernels.h — launchers of the CUDA kernels, callable from the module's C
 * code.  Each queues its work on `stream` and returns the launch status
 * (cudaGetLastError after the launch); a fault inside a kernel surfaces at
 * the next synchronisation.  Pointers are device pointers. */
#ifndef BN_CUDA_KERNELS_H
#define BN_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of activations copied for the tensor cores. */
enum { BNC_F32 = 0, BNC_F16 = 1, BNC_BF16 = 2 };

/* dst[m, k] (contiguous, element type `type`) = src[m, k] (row stride ld),
 * rounded to nearest. */
cudaError_t bnc_convert_rows (cudaStream_t stream, const float *src,
                              int64_t ld, int64_t m, int64_t k, int type,
                              void *dst);
/* y[i, j] += bias[j] over m × n. */
cudaError_t bnc_add_bias (cudaStream_t stream, float *y, int64_t ldy,
                          int64_t m, int64_t n, const float *bias);

/* y[m, n] = xb[m, k]·Wᵀ (+ bias) for an MLX pack of `bits` (1, 2, 4) bits:
 * codes uint32 [n, k·bits/32], scales and biases [n, k/group] of
 * scale_type (BNC_*).  xb is bf16, contiguous.  k must be a multiple of 32
 * and group a multiple of 32. */
cudaError_t bnc_linear_packed (cudaStream_t stream, const uint16_t *xb,
                               int64_t m, int64_t k, const uint32_t *codes,
                               const void *scales, const void *biases,
                               int scale_type, int bits, int group,
                               int64_t n, const float *bias, float *y,
                               int64_t ldy);

/* Tiled attention (head_dim 32, 64 or 128) with an online softmax; see
 * backend.h. */
typedef struct {
  int64_t n_q, n_kv;
  int n_heads, n_kv_heads, head_dim;
  const float *q, *k, *v;
  int64_t ldq, ldk, ldv;
  float *out;
  int64_t ldo;
  float scale;
  int causal;
  const uint8_t *key_mask;
} BncAttention;
cudaError_t bnc_attention (cudaStream_t stream, const BncAttention *a);

cudaError_t bnc_rmsnorm (cudaStream_t stream, float *x, int64_t rows,
                         int heads, int64_t n, int64_t ld,
                         const float *weight, float eps);
/* h[r, i] += gate[i]·y[r, i]. */
cudaError_t bnc_gate_add (cudaStream_t stream, float *h, int64_t ldh,
                          const float *y, int64_t ldy, const float *gate,
                          int64_t rows, int64_t n);
cudaError_t bnc_layernorm (cudaStream_t stream, const float *x, float *y,
                           int64_t rows, int64_t n, int64_t ld, float eps,
                           const float *scale, const float *shift);
cudaError_t bnc_swiglu (cudaStream_t stream, const float *gate, int64_t ldg,
                        const float *up, int64_t ldu, float *out, int64_t ldo,
                        int64_t rows, int64_t n);
cudaError_t bnc_rope (cudaStream_t stream, float *x, int64_t n_tok,
                      int64_t ld, int n_heads, int head_dim,
                      const float *cos_t, const float *sin_t, int half);
cudaError_t bnc_group_norm_fold (cudaStream_t stream, const float *x,
                                 int64_t n, int64_t c, int groups,
                                 const float *gamma, const float *beta,
                                 float eps, float *scale, float *shift);
/* im2col rows for output pixels [p0, p0 + rows) of a 3×3 convolution of
 * x[h·w, ci] in `mode` (BnConvMode), optionally through swish(x·pre_scale +
 * pre_shift): cols[rows, ci·9] of element type `type`. */
cudaError_t bnc_im2col3x3 (cudaStream_t stream, const float *x, int64_t h,
                           int64_t w, int64_t ci, int mode, int64_t p0,
                           int64_t rows, const float *pre_scale,
                           const float *pre_shift, int type, void *cols);

#ifdef __cplusplus
}
#endif

#endif
