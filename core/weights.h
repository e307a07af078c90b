/* weights.h — turning safetensors tensors into layer weights (internal).
 *
 * A linear layer `P` is either dense (`P.weight` f32/f16/bf16 [N, K]) or an
 * MLX pack (`P.weight` U32 [N, K·bits/32] with `P.scales` and `P.biases`
 * [N, K/group]); the `.scales` sibling tells them apart, as MLX loaders do.
 */
#ifndef BN_WEIGHTS_H
#define BN_WEIGHTS_H

#include "safetensors.h"

typedef struct {
  int bits;           /* 1, 2 or 4 */
  int group_size;     /* 32, 64 or 128 */
  gboolean ternary;   /* 2-bit codes restricted to {0,1,2} */
} BnQuantSpec;

/* Loads linear `prefix` of shape [n, k] as a view into `st`.  `quant` gives
 * bits and group size for packed layers (NULL: packed layers are refused).
 * Checks every shape and dtype, that k matches the packed width for `bits`,
 * and for ternary packs that no code is 3 (the error names the tensor).
 * `n` or `k` < 0 takes that extent from the file.  Dense weights keep their
 * dtype (f32/f16/bf16); packed scales and biases share one of those.
 * Errors: NOT_FOUND for a missing tensor, FORMAT for a wrong dtype or shape
 * or a packed layer without `quant`, INVALID_INPUT for an unsupported
 * `quant`. */
gboolean bn_weights_linear (const BnSafetensors *st, const char *prefix,
                            int64_t n, int64_t k, const BnQuantSpec *quant,
                            BnTensor *out, GError **error);

#endif
