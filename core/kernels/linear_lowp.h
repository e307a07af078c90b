/* linear_lowp.h — linears with low-precision activations, for binary and
 * ternary weights (private to core/kernels; entry points in kernels.h).
 *
 * Two formats, each with exact integer or fp32 sums of what it rounds:
 *
 * BF16: x rounded to bf16 (round to nearest even), W decoded to bf16 values
 *   s·q + b — exact for the release's packs (binary b = −s/2: ±s/2;
 *   ternary b = −s: −s, 0, s) — or taken as they are from dense bf16, and
 *   VDPBF16PS products summed in fp32.
 *
 * INT8: x quantized per token and per weight group g (group_size
 *   consecutive k): a = max|x|/127, xq = round(x/a) in [−127, 127], and the
 *   exact float sum Σx of the group kept.  With w = s·q + b per group and q
 *   the unsigned code,
 *     y[m,n] = Σ_g ( s[n,g]·a[m,g]·Σ_k q[n,k]·xq[m,k]  +  b[n,g]·Σ_k x[m,k] )
 *   where the inner sum is exact int32 (VPDPBUSD, or VPMADDUBSW+VPMADDWD).
 *
 * LUT (binary W only): the INT8 quantization, but each quad's inner sum
 *   Σ_{k in quad} q·xq is rounded to a multiple of 4, halves to even
 *   (tables of byte entries, linear_lut_vbmi.c); those are summed exactly.
 *
 * The driver decodes a panel of W once per K block into dwords laid out
 * for 2- or 4-way dot products — dst[kq·nr + j] holds column j's values
 * for k = kpl·kq .. kpl·kq + kpl−1, lowest first (kpl = k_per_word: 2 for
 * bf16, 4 for int8) — and the micro-kernel multiplies them by kpl
 * activations broadcast to every lane.  (LUT's panel holds table indices,
 * 16 k per dword of each column, in the order its kernel reads them.)
 * Each output is accumulated in a fixed order whatever the thread count. */
#ifndef BN_LINEAR_LOWP_H
#define BN_LINEAR_LOWP_H

#include "kernels.h"

/* K block of the bf16 and int8 paths: a multiple of 128, so of every group
 * size. */
#define BN_LOWP_KC 1024
/* Their panel: 256 columns × 1024 k, 256 KiB (int8) or 512 KiB (bf16) of
 * decoded weights, which stays in a 1 MiB L2 while all the rows stream
 * past. */
#define BN_LOWP_PANEL 256
#define BN_LOWP_MR_MAX 12

/* The prepared activations of one call. */
typedef struct {
  const void *x;       /* [m, k]: int8 or bf16 */
  const float *scale;  /* INT8: [m, groups] a */
  const float *sum;    /* INT8: [m, groups] Σx */
  int64_t k, groups;
} BnLowpX;

/* Decodes columns n0 .. n0+nn-1 (nn ≤ nr), k0 .. k0+kc-1 of W into
 * dst[kc/kpl][nr] (zero past nn); INT8 paths also write the scales and
 * biases to s and b, [kc/group][nr] each. */
typedef void (*BnLowpDecodeFn) (const BnTensor *w, int64_t n0, int nn, int nr,
                                int64_t k0, int kc, uint32_t *dst, float *s,
                                float *b);

/* y[i, j] (+)= the block's sum for i < mr, j < nn.  xp: mr_max rows of kc
 * activations (row stride: the path's kc elements); wq: the decoded
 * micro-panel.  INT8 and LUT only: s, b as decoded; a, sum: row 0's first
 * group of this block, rows `lda` apart. */
typedef void (*BnLowpTileFn) (const void *xp, const uint32_t *wq,
                              const float *s, const float *b, int kc,
                              int group, const float *a, const float *sum,
                              int64_t lda, float *y, int64_t ldy, int mr,
                              int nn, gboolean accumulate);

typedef struct {
  const char *name;
  BnActPrecision act;  /* BN_ACT_BF16, BN_ACT_INT8 or BN_ACT_LUT */
  int mr, nr;
  int kc;              /* K block, a multiple of 128 */
  int x_bytes;         /* bytes of prepared activations per k */
  int k_per_word;      /* k per dword of a decoded panel column */
  int panel;           /* columns of W per panel (decoded once per K block) */
  /* LUT only: one row of x, k floats, into its x_bytes·k bytes of tables
   * and its groups' a and Σx (the codes as the oracle rounds them; Σx may
   * be summed in another order); NULL: the driver's own rounding. */
  void (*prepare_row) (const float *x, int64_t k, int group, void *out, float *scale,
                       float *sum);
  BnLowpDecodeFn decode;
  BnLowpTileFn tile;
  /* Register-only loop of `iters` rounds of independent dot products
   * (ops_per_iter operations each): the ceiling the kernels are measured
   * against. */
  int (*dot_loop) (int64_t iters);
  int ops_per_iter;
} BnLowpPath;

extern const BnLowpPath bn_lowp_path_avx2_int8;
extern const BnLowpPath bn_lowp_path_vnni_int8;
extern const BnLowpPath bn_lowp_path_avx512_bf16;
extern const BnLowpPath bn_lowp_path_vbmi_lut;

/* The path for `act` within `isa` on this CPU, or NULL. */
const BnLowpPath *bn_lowp_path (BnIsa isa, BnActPrecision act);

/* The portable INT8 decoder (codes into bytes), shared by the INT8 paths. */
void bn_lowp_decode_codes (const BnTensor *w, int64_t n0, int nn, int nr,
                           int64_t k0, int kc, uint32_t *dst, float *s,
                           float *b);

#endif
