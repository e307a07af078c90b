/* ops.h — element-wise, normalisation, RoPE and attention operators on fp32
 * activations (internal).  Matrix products are in kernels/kernels.h.
 *
 * All functions are deterministic: results do not depend on the thread
 * count of the pool passed (which may be NULL).
 */
#ifndef BN_OPS_H
#define BN_OPS_H

#include "kernels/kernels.h"
#include "threadpool.h"

#include <stdint.h>

/* In place over `rows` rows of n values (row stride ld):
 * x = x / sqrt(mean(x²) + eps) · weight   (weight NULL: no scale). */
void bn_rmsnorm_rows (float *x, int64_t rows, int64_t n, int64_t ld,
                      const float *weight, float eps);
/* y = (x − mean) / sqrt(var + eps) per row, no affine; x and y may alias. */
void bn_layernorm_rows (const float *x, float *y, int64_t rows, int64_t n,
                        int64_t ld, float eps);
/* x = x · sigmoid(x) */
void bn_silu (float *x, int64_t n);
/* out[i] = silu(gate[i]) · up[i]; out may alias gate or up. */
void bn_swiglu (const float *gate, const float *up, float *out, int64_t n);

/* RoPE tables: cos/sin [n_tok, head_dim/2], computed in double precision
 * and rounded to f32 once.
 * FLUX.2: 4 axes; token t has integer position ids[t·4 + a] on axis a; axis a
 * covers axes_dim[a] head dims, pair j of the axis has frequency
 * theta^(−2j/axes_dim[a]).  Pairs are laid out axis after axis. */
void bn_rope_table_axes (const int64_t *ids, int64_t n_tok, const int *axes_dim,
                         int n_axes, double theta, float *cos_t, float *sin_t);
/* Qwen3: position p of token t = t; frequency of pair j = theta^(−2j/head_dim). */
void bn_rope_table_linear (int64_t n_tok, int head_dim, double theta,
                           float *cos_t, float *sin_t);
/* Rotates every head of n_tok rows of x (row stride ld, heads contiguous,
 * head h at h·head_dim) in place.
 * interleaved (FLUX.2): pair j = (x[2j], x[2j+1]);
 * half (Qwen3, rotate-half): pair j = (x[j], x[j + head_dim/2]). */
void bn_rope_interleaved (float *x, int64_t n_tok, int64_t ld, int n_heads,
                          int head_dim, const float *cos_t, const float *sin_t);
void bn_rope_half (float *x, int64_t n_tok, int64_t ld, int n_heads,
                   int head_dim, const float *cos_t, const float *sin_t);

/* Scaled dot-product attention, tiled with an online softmax so that no
 * n_q × n_kv score matrix is ever formed.  Query head h uses key/value head
 * h / (n_heads / n_kv_heads) (grouped-query attention).  Row i of q holds
 * all heads of token i (head h at i·ldq + h·head_dim); likewise k, v, out. */
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
  float scale;            /* usually 1/sqrt(head_dim) */
  int causal;             /* key j visible to query i only when j <= i */
  const uint8_t *key_mask; /* NULL, or [n_kv] with 0 = padding key (hidden) */
  /* Round q (after scaling), k, v and the probabilities to bf16 for the two
   * products (VDPBF16PS, fp32 sums; the softmax stays fp32), where the CPU
   * has AVX-512 BF16 and head_dim is even; else ignored. */
  gboolean bf16;
} BnAttention;

/* A query that sees no key at all gets an all-zero output row.
 * n_heads must be a multiple of n_kv_heads; any head_dim >= 1 works.
 * Uses the kernels of bn_cpu_isa(). */
void bn_attention (BnThreadPool *pool, const BnAttention *a);
/* The same on `isa` (which the CPU must support), for tests and benchmarks.
 * Results are bit-identical for every thread count on one ISA; ISAs differ
 * by rounding only (FMA, polynomial exp2). */
void bn_attention_isa (BnThreadPool *pool, BnIsa isa, const BnAttention *a);

#endif
