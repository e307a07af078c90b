/* linear_lowp_bf16.c — the BF16 path on AVX-512 BF16: a 12 × 32
 * micro-kernel of 24 fp32 zmm accumulators fed by VDPBF16PS (two k per
 * lane: a pair of weights times a broadcast pair of activations), and a
 * SIMD decoder that turns code words (or dense bf16 rows) into bf16 weight
 * pairs.  On Zen 4
 * VDPBF16PS retires one zmm per cycle, 32 multiply-adds, as many as
 * VPDPBUSD does in int8 (one every two cycles, 64), without int8's
 * per-group rescaling.  Built with -mavx512bf16; reached only after
 * CPUID. */
#include "linear_lowp.h"
#include "linear_tile.h"
#include "linear_avx512_transpose.h"

#define MR 12
#define NR 32

static void
tile_12x32 (const void *xpv, const uint32_t *wq, const float *s,
            const float *b, int kc, int group, const float *a,
            const float *sum, int64_t lda, float *y, int64_t ldy, int mr,
            int nn, gboolean accumulate)
{
  (void) s, (void) b, (void) group, (void) a, (void) sum, (void) lda;
  const uint16_t *xp = xpv;
  const __mmask16 m0 = bn_lanes16 (nn), m1 = bn_lanes16 (nn - 16);
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; i++)
    {
      acc[i][0] = acc[i][1] = _mm512_setzero_ps ();
      if (accumulate && i < mr)
        {
          acc[i][0] = _mm512_maskz_loadu_ps (m0, y + i * ldy);
          acc[i][1] = _mm512_maskz_loadu_ps (m1, y + i * ldy + 16);
        }
    }
  for (int k = 0; k < kc; k += 2)
    {
      const __m512bh w0 = (__m512bh) _mm512_load_si512 (wq + (k / 2) * NR);
      const __m512bh w1 = (__m512bh) _mm512_load_si512 (wq + (k / 2) * NR + 16);
#pragma GCC unroll 12
      for (int i = 0; i < MR; i++)
        {
          int32_t pair;
          __builtin_memcpy (&pair, xp + i * BN_LOWP_KC + k, 4);
          const __m512bh xi = (__m512bh) _mm512_set1_epi32 (pair);
          acc[i][0] = _mm512_dpbf16_ps (acc[i][0], w0, xi);
          acc[i][1] = _mm512_dpbf16_ps (acc[i][1], w1, xi);
        }
    }
#pragma GCC unroll 12
  for (int i = 0; i < MR; i++)
    if (i < mr)
      {
        _mm512_mask_storeu_ps (y + i * ldy, m0, acc[i][0]);
        _mm512_mask_storeu_ps (y + i * ldy + 16, m1, acc[i][1]);
      }
}

/* Dense bf16 rows: a dword of row n is the pair (k, k+1) already, so a
 * 16 × 16 dword transpose of 16 rows gives 16 pairs of 16 columns. */
static void
decode_dense (const BnTensor *w, int64_t n0, int nn, int64_t k0, int kc,
              uint32_t *dst)
{
  const int64_t per_row = w->shape[1] / 2;
  const uint32_t *base = (const uint32_t *) w->data + n0 * per_row + k0 / 2;
  const int pairs = kc / 2;
  for (int h = 0; h < NR; h += 16)
    for (int p = 0; p < pairs; p += 16)
      {
        const __mmask16 m = bn_lanes16 (pairs - p);
        __m512 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
          r[j] = h + j < nn ? _mm512_castsi512_ps (_mm512_maskz_loadu_epi32 (m, base + (h + j) * per_row + p))
                            : _mm512_setzero_ps ();
        bn_transpose16 (r);
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
          if (c < pairs - p)
            _mm512_store_ps ((float *) dst + (p + c) * NR + h, r[c]);
      }
}

/* Columns n0 .. n0+nn-1 as bf16 pairs: lane j of a code-word vector holds
 * column n0+j's word, so each shift-and-mask gives one k for 16 columns;
 * s·q + b in fp32 (exact for the release's packs), two k rounded to bf16
 * together, then interleaved so each dword holds (k, k+1) of one column. */
static void
decode_bf16 (const BnTensor *w, int64_t n0, int nn, int nr, int64_t k0,
             int kc, uint32_t *dst, float *s_unused, float *b_unused)
{
  (void) s_unused, (void) b_unused, (void) nr;
  if (w->dtype == BN_DTYPE_BF16)
    {
      decode_dense (w, n0, nn, k0, kc, dst);
      return;
    }
  const int bits = bn_dtype_bits (w->dtype), per_word = 32 / bits;
  const int group = w->group_size;
  const __m512i mask = _mm512_set1_epi32 ((1 << bits) - 1);
  /* Words 0..15 from the low half, 16..31 from the high: pairs (j, 16+j). */
  const __m512i pairs = _mm512_set_epi16 (31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10,
                                          25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
                                          19, 3, 18, 2, 17, 1, 16, 0);
  float s[NR] __attribute__ ((aligned (64))), b[NR] __attribute__ ((aligned (64)));
  uint32_t words[NR] __attribute__ ((aligned (64)));
  for (int kg = 0; kg < kc; kg += group)
    {
      bn_linear_group_params (w, n0, nn, NR, (k0 + kg) / group, s, b);
      __m512 sv[2], bv[2];
      for (int h = 0; h < 2; h++)
        {
          sv[h] = _mm512_load_ps (s + 16 * h);
          bv[h] = _mm512_load_ps (b + 16 * h);
        }
      for (int kw = kg; kw < kg + group; kw += per_word)
        {
          bn_linear_code_words (w, n0, nn, NR, (k0 + kw) / per_word, words);
          for (int h = 0; h < 2; h++)
            {
              __m512i v = _mm512_load_si512 (words + 16 * h);
              uint32_t *out = dst + (kw / 2) * NR + 16 * h;
              for (int c = 0; c < per_word; c += 2, out += NR)
                {
                  const __m512 lo = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_and_si512 (v, mask)), sv[h], bv[h]);
                  v = _mm512_srli_epi32 (v, bits);
                  const __m512 hi = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_and_si512 (v, mask)), sv[h], bv[h]);
                  v = _mm512_srli_epi32 (v, bits);
                  const __m512i both = (__m512i) _mm512_cvtne2ps_pbh (hi, lo);
                  _mm512_store_si512 (out, _mm512_permutexvar_epi16 (pairs, both));
                }
            }
        }
    }
}

#define DOT_CHAINS 24

static int
dot_loop (int64_t iters)
{
  __m512 acc[DOT_CHAINS];
  const __m512bh u = (__m512bh) _mm512_set1_epi16 (0x3f80); /* 1.0 */
  const __m512bh v = (__m512bh) _mm512_set1_epi16 (0x3a83); /* ~0.001 */
#pragma GCC unroll 24
  for (int i = 0; i < DOT_CHAINS; i++)
    acc[i] = _mm512_set1_ps ((float) i);
  for (int64_t t = 0; t < iters; t++)
#pragma GCC unroll 24
    for (int i = 0; i < DOT_CHAINS; i++)
      acc[i] = _mm512_dpbf16_ps (acc[i], u, v);
  __m512 total = _mm512_setzero_ps ();
#pragma GCC unroll 24
  for (int i = 0; i < DOT_CHAINS; i++)
    total = _mm512_add_ps (total, acc[i]);
  return (int) _mm512_reduce_add_ps (total);
}

const BnLowpPath bn_lowp_path_avx512_bf16 = {
  .name = "bf16 avx512-bf16",
  .act = BN_ACT_BF16,
  .mr = MR,
  .kc = BN_LOWP_KC,
  .panel = BN_LOWP_PANEL,
  .x_bytes = 2,
  .k_per_word = 2,
  .nr = NR,
  .decode = decode_bf16,
  .tile = tile_12x32,
  .dot_loop = dot_loop,
  .ops_per_iter = DOT_CHAINS * 32 * 2,
};
