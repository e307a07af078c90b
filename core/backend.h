/* backend.h — compute backends loaded at run time (internal).
 *
 * The CPU kernels are built into libbonsai.  Other backends are shared
 * modules (plugins/cuda builds libbonsai-cuda) that export one function,
 * BN_BACKEND_INIT_SYMBOL, filling a table of operations.  The table is a
 * small, ggml-like device interface: memory, weight upload, and the
 * operators the transformer, the text encoder and the VAE are made of.
 *
 * Conventions shared by every operation:
 *   - activations are fp32, row-major, in device memory the backend
 *     allocated (`alloc`); pointers in arguments are device pointers unless
 *     a comment says "host";
 *   - work is queued in order on the backend's one stream; `sync` waits for
 *     it, and reports an error raised by any operation queued before;
 *   - every fallible operation returns FALSE with a GError in the domain the
 *     module was initialised with (BONSAI_ERROR, code BONSAI_ERROR_BACKEND,
 *     or OUT_OF_MEMORY for allocations), naming the operation and the
 *     device's message.
 * A module sees only this header and the headers it includes: libbonsai's
 * functions are hidden, so a module may use their types and static inline
 * helpers but calls none of them.
 */
#ifndef BN_BACKEND_H
#define BN_BACKEND_H

#include "tensor.h"

#include <bonsai/bonsai.h>
#include <glib.h>
#include <stdint.h>

/* Raised when the table or the conventions change; a module built for
 * another version is refused at load. */
#define BN_BACKEND_ABI 1
#define BN_BACKEND_INIT_SYMBOL "bn_backend_module_init"

typedef struct BnBackendImpl BnBackendImpl;     /* a module's device state */
typedef struct BnBackendWeight BnBackendWeight; /* a resident linear weight */

/* Attention on device pointers; fields as BnAttention in ops.h (rows hold
 * all heads of one token, grouped-query heads, optional causal mask and
 * key mask [n_kv] with 0 = hidden).  head_dim 32, 64 or 128. */
typedef struct {
  int64_t n_q, n_kv;
  int n_heads, n_kv_heads, head_dim;
  const float *q;
  int64_t ldq;
  const float *k;
  int64_t ldk;
  const float *v;
  int64_t ldv;
  float *out;
  int64_t ldo;
  float scale;
  int causal;
  const uint8_t *key_mask;
} BnBackendAttention;

/* A 3×3 convolution on HWC activations, as BnConv3x3 in conv2d.h, with a
 * resident weight [co, ci·9] and device bias / pre_scale / pre_shift. */
typedef struct {
  int mode; /* BnConvMode: 0 SAME, 1 UP2, 2 DOWN2 */
  const BnBackendWeight *weight;
  const float *bias;
  const float *pre_scale;
  const float *pre_shift;
  gboolean accumulate;
} BnBackendConv3x3;

typedef struct {
  int abi; /* BN_BACKEND_ABI */
  const char *name; /* "cuda"; static */

  /* Releases everything the module holds; `impl` is invalid afterwards. */
  void (*close) (BnBackendImpl *impl);
  /* The device's name (static while impl lives) and its memory in bytes. */
  const char *(*device_name) (BnBackendImpl *impl);
  gboolean (*memory) (BnBackendImpl *impl, size_t *free_bytes,
                      size_t *total_bytes, GError **error);
  /* Most bytes this backend had allocated at once since it opened. */
  size_t (*peak_bytes) (BnBackendImpl *impl);

  /* Device memory; free_ accepts NULL. */
  void *(*alloc) (BnBackendImpl *impl, size_t bytes, GError **error);
  void (*free_) (BnBackendImpl *impl, void *ptr);
  /* Copies between host and device memory (blocking). */
  gboolean (*upload) (BnBackendImpl *impl, void *dst, const void *host_src,
                      size_t bytes, GError **error);
  gboolean (*download) (BnBackendImpl *impl, void *host_dst, const void *src,
                        size_t bytes, GError **error);
  gboolean (*sync) (BnBackendImpl *impl, GError **error);

  /* Copies a linear weight [N, K] to the device: dense f32/f16/bf16, or an
   * MLX pack (Q1/Q2/Q4, any group size, bf16/f16/f32 scales and biases)
   * kept in that layout.  The tensor is only read during the call. */
  BnBackendWeight *(*weight_new) (BnBackendImpl *impl, const BnTensor *w,
                                  GError **error);
  void (*weight_free) (BnBackendImpl *impl, BnBackendWeight *w);
  /* y[m, N] = x[m, K]·Wᵀ (+ bias[N] when bias is not NULL), row strides
   * ldx and ldy.  Packed weights run on the tensor-core kernel, dense ones
   * on cuBLAS; activations are rounded to bf16 (f16 for f16 weights) and
   * products accumulated in fp32. */
  gboolean (*linear) (BnBackendImpl *impl, const BnBackendWeight *w,
                      const float *x, int64_t m, int64_t ldx, const float *bias,
                      float *y, int64_t ldy, GError **error);

  gboolean (*attention) (BnBackendImpl *impl, const BnBackendAttention *a,
                         GError **error);

  /* In place over `rows` rows (stride ld) of `heads` vectors of n values
   * each (vector j of row r at r·ld + j·n; heads 1 for plain rows):
   * v = v / sqrt(mean(v²) + eps) · weight[n] (weight may be NULL). */
  gboolean (*rmsnorm) (BnBackendImpl *impl, float *x, int64_t rows,
                       int heads, int64_t n, int64_t ld, const float *weight,
                       float eps, GError **error);
  /* y = (x − mean)/sqrt(var + eps) per row, then, when scale and shift are
   * not NULL, y·(1 + scale[i]) + shift[i] (the transformer's modulation).
   * x and y have row stride ld and may alias. */
  gboolean (*layernorm) (BnBackendImpl *impl, const float *x, float *y,
                         int64_t rows, int64_t n, int64_t ld, float eps,
                         const float *scale, const float *shift,
                         GError **error);
  /* h[r, i] += gate[i]·y[r, i] over rows × n (the transformer's gated
   * residual); row strides ldh and ldy. */
  gboolean (*gate_add) (BnBackendImpl *impl, float *h, int64_t ldh,
                        const float *y, int64_t ldy, const float *gate,
                        int64_t rows, int64_t n, GError **error);
  /* dst[r, 0..n) = src[r, 0..n) for rows rows (strides ldd, lds). */
  gboolean (*copy_rows) (BnBackendImpl *impl, float *dst, int64_t ldd,
                         const float *src, int64_t lds, int64_t rows,
                         int64_t n, GError **error);
  /* out[i] = silu(gate[i])·up[i] over rows × n values (row strides ldg, ldu,
   * ldo); out may alias gate or up. */
  gboolean (*swiglu) (BnBackendImpl *impl, const float *gate, int64_t ldg,
                      const float *up, int64_t ldu, float *out, int64_t ldo,
                      int64_t rows, int64_t n, GError **error);
  /* RoPE in place over n_tok rows (stride ld) of n_heads heads with tables
   * cos/sin [n_tok, head_dim/2] (ops.h builds them).  half FALSE: FLUX.2
   * adjacent pairs (x[2j], x[2j+1]); TRUE: Qwen3 rotate-half pairs. */
  gboolean (*rope) (BnBackendImpl *impl, float *x, int64_t n_tok, int64_t ld,
                    int n_heads, int head_dim, const float *cos_t,
                    const float *sin_t, gboolean half, GError **error);
  /* Group norm of x[n, c] folded with gamma/beta (either may be NULL) into
   * per-channel scale and shift [c], as bn_group_norm_fold. */
  gboolean (*group_norm_fold) (BnBackendImpl *impl, const float *x, int64_t n,
                               int64_t c, int groups, const float *gamma,
                               const float *beta, float eps, float *scale,
                               float *shift, GError **error);
  /* y[ho·wo, co] = conv(x[h·w, ci]), as bn_conv3x3. */
  gboolean (*conv3x3) (BnBackendImpl *impl, const BnBackendConv3x3 *conv,
                       const float *x, int64_t h, int64_t w, float *y,
                       GError **error);
} BnBackendOps;

/* What a module exports as BN_BACKEND_INIT_SYMBOL: checks `abi`, opens the
 * first device and fills *ops (static) and *impl.  Errors are set in
 * `domain` with code `code_backend` (no device, no driver: the message says
 * which).  A module keeps no state outside *impl. */
typedef gboolean (*BnBackendInitFunc) (int abi, GQuark domain,
                                       int code_backend, int code_oom,
                                       const BnBackendOps **ops,
                                       BnBackendImpl **impl, GError **error);

/* A loaded backend: the table and its state. */
typedef struct {
  const BnBackendOps *ops;
  BnBackendImpl *impl;
} BnBackend;

/* The backend that `kind` resolves to in this process, or NULL for the CPU.
 * The CUDA module is loaded and its device opened on the first call, then
 * kept for the life of the process (the returned pointer is borrowed).
 *   BONSAI_BACKEND_CPU:  NULL, TRUE.
 *   BONSAI_BACKEND_AUTO: CUDA when it opens; otherwise NULL and TRUE, after
 *                        logging once why the CPU is used.
 *   BONSAI_BACKEND_CUDA: CUDA, or NULL and FALSE with BONSAI_ERROR_BACKEND
 *                        saying why (no module, no driver, no device).
 * The module is searched in BONSAI_PLUGIN_PATH (folders separated by ':'),
 * this build's plugins/cuda, then the installed plugin folder. */
gboolean bn_backend_get (BonsaiBackend kind, BnBackend **out, GError **error);

/* The process-wide choice made by bonsai_backend_select() (default: the
 * BONSAI_BACKEND environment variable, else AUTO). */
BonsaiBackend bn_backend_selected (void);

/* The backend generation runs on: CUDA when it was chosen explicitly
 * (FALSE with its error when it cannot be used), otherwise NULL for the
 * CPU.  AUTO stays on the CPU until the CUDA path has passed its checks on
 * a device (issue 9: kernels and images against the CPU's). */
gboolean bn_backend_for_pipeline (BnBackend **out, GError **error);

#endif
