/* tensor.h — dense and packed tensors (internal).
 *
 * A BnTensor is a small struct that either owns its memory (made by
 * bn_tensor_new*, freed by bn_tensor_clear) or views memory owned by
 * something else, typically a memory-mapped safetensors file that must
 * outlive the view.
 *
 * Packed tensors (BN_DTYPE_Q1/Q2/Q4) are 2-D weights of logical shape
 * [N, K] (out, in), stored exactly as MLX stores them:
 *   codes  : uint32 [N, K·bits/32]; code k of a row is in word k/(32/bits)
 *            at bit offset bits·(k mod 32/bits), least-significant bit first
 *   scales : [N, K/group]  (bf16, f16 or f32)
 *   biases : [N, K/group]
 *   w[n,k] = scales[n,k/group] · q[n,k] + biases[n,k/group]
 * The release's ternary pack uses q ∈ {0,1,2} with biases = −scales and its
 * binary pack q ∈ {0,1} with biases = −scales/2.
 */
#ifndef BN_TENSOR_H
#define BN_TENSOR_H

#include "dtype.h"

#define BN_MAX_DIMS 8

typedef struct {
  BnDType dtype;
  int ndim;
  int64_t shape[BN_MAX_DIMS]; /* logical shape; packed: [N, K] */
  void *data;                 /* elements, or packed code words */
  /* Packed tensors only. */
  const void *scales;
  const void *biases;
  BnDType scale_dtype;  /* BF16, F16 or F32, for scales and biases */
  int group_size;       /* 32, 64 or 128 */
  gboolean ternary;     /* Q2 restricted to codes 0..2 (checked at load) */
  /* Memory freed by bn_tensor_clear; NULL for views. */
  void *owned;
} BnTensor;

int64_t bn_tensor_numel (const BnTensor *t);
/* Bytes of the element data (packed: the code words only). */
size_t bn_tensor_nbytes (const BnTensor *t);
/* Bytes including scales and biases of packed tensors. */
size_t bn_tensor_total_bytes (const BnTensor *t);

/* Allocates a zeroed dense tensor of a plain dtype.  Fails with
 * BONSAI_ERROR_OUT_OF_MEMORY or BONSAI_ERROR_INVALID_INPUT. */
gboolean bn_tensor_init (BnTensor *t, BnDType dtype, int ndim,
                         const int64_t *shape, GError **error);
/* Allocates a zeroed packed [n, k] tensor with scales/biases of scale_dtype.
 * k must be a multiple of group_size and of 32/bits. */
gboolean bn_tensor_init_packed (BnTensor *t, BnDType dtype, int64_t n,
                                int64_t k, int group_size,
                                BnDType scale_dtype, GError **error);
/* Frees owned memory and zeroes the struct; safe on views and zeroed structs. */
void bn_tensor_clear (BnTensor *t);

/* Packed code access (no bounds checks beyond g_return). */
unsigned bn_packed_get_code (const BnTensor *t, int64_t row, int64_t k);
void bn_packed_set_code (BnTensor *t, int64_t row, int64_t k, unsigned code);
float bn_packed_scale (const BnTensor *t, int64_t row, int64_t group);
float bn_packed_bias (const BnTensor *t, int64_t row, int64_t group);
/* Writes scale and bias of one group of an owned packed tensor. */
void bn_packed_set_group (BnTensor *t, int64_t row, int64_t group, float scale,
                          float bias);

/* Row `row` of a 2-D float or packed tensor, as f32 (k = shape[1] values). */
void bn_tensor_row_f32 (const BnTensor *t, int64_t row, float *out);

/* Checks that every code of a ternary tensor is 0, 1 or 2.  On failure sets
 * BONSAI_ERROR_FORMAT naming `name`, the row and the column. */
gboolean bn_packed_check_ternary (const BnTensor *t, const char *name,
                                  GError **error);

#endif
