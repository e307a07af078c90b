/* linear_lowp_vnni.c — the int8 micro-kernel on AVX-512 VNNI: 12 rows × 32
 * columns, 24 zmm int32 accumulators fed by VPDPBUSD (weight code bytes,
 * unsigned, times 4 broadcast activation bytes, signed), folded into float
 * per weight group.  Built with -mavx512vnni; reached only after CPUID. */
#include "linear_lowp.h"
#include "linear_tile.h"

#include <immintrin.h>

#define MR 12
#define NR 32

static inline __m512i
bcast4 (const int8_t *p)
{
  int32_t v;
  __builtin_memcpy (&v, p, 4);
  return _mm512_set1_epi32 (v);
}

static void
tile_12x32 (const void *xpv, const uint32_t *wq, const float *s,
            const float *b, int kc, int group, const float *a,
            const float *sum, int64_t lda, float *y, int64_t ldy, int mr,
            int nn, gboolean accumulate)
{
  const int8_t *xp = xpv;
  const __mmask16 m0 = bn_lanes16 (nn), m1 = bn_lanes16 (nn - 16);
  /* The float sums live in L1, not in registers: the 24 int32
   * accumulators need most of the 32. */
  float f[MR][NR] __attribute__ ((aligned (64)));
#pragma GCC unroll 12
  for (int i = 0; i < MR; i++)
    {
      _mm512_store_ps (f[i], accumulate && i < mr ? _mm512_maskz_loadu_ps (m0, y + i * ldy) : _mm512_setzero_ps ());
      _mm512_store_ps (f[i] + 16, accumulate && i < mr ? _mm512_maskz_loadu_ps (m1, y + i * ldy + 16) : _mm512_setzero_ps ());
    }
  for (int g = 0, k0 = 0; k0 < kc; g++, k0 += group)
    {
      __m512i acc[MR][2];
#pragma GCC unroll 12
      for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_si512 ();
      for (int k = k0; k < k0 + group; k += 4)
        {
          const __m512i w0 = _mm512_load_si512 (wq + (k / 4) * NR);
          const __m512i w1 = _mm512_load_si512 (wq + (k / 4) * NR + 16);
#pragma GCC unroll 12
          for (int i = 0; i < MR; i++)
            {
              const __m512i xi = bcast4 (xp + i * BN_LOWP_KC + k);
              acc[i][0] = _mm512_dpbusd_epi32 (acc[i][0], w0, xi);
              acc[i][1] = _mm512_dpbusd_epi32 (acc[i][1], w1, xi);
            }
        }
      const __m512 s0 = _mm512_load_ps (s + g * NR), s1 = _mm512_load_ps (s + g * NR + 16);
      const __m512 b0 = _mm512_load_ps (b + g * NR), b1 = _mm512_load_ps (b + g * NR + 16);
#pragma GCC unroll 12
      for (int i = 0; i < MR; i++)
        {
          /* Rows past mr have no scales to read; their sums are dropped. */
          const __m512 ai = _mm512_set1_ps (i < mr ? a[i * lda + g] : 0.0f);
          const __m512 si = _mm512_set1_ps (i < mr ? sum[i * lda + g] : 0.0f);
          __m512 f0 = _mm512_fmadd_ps (_mm512_cvtepi32_ps (acc[i][0]), _mm512_mul_ps (s0, ai), _mm512_load_ps (f[i]));
          __m512 f1 = _mm512_fmadd_ps (_mm512_cvtepi32_ps (acc[i][1]), _mm512_mul_ps (s1, ai), _mm512_load_ps (f[i] + 16));
          _mm512_store_ps (f[i], _mm512_fmadd_ps (b0, si, f0));
          _mm512_store_ps (f[i] + 16, _mm512_fmadd_ps (b1, si, f1));
        }
    }
#pragma GCC unroll 12
  for (int i = 0; i < MR; i++)
    if (i < mr)
      {
        _mm512_mask_storeu_ps (y + i * ldy, m0, _mm512_load_ps (f[i]));
        _mm512_mask_storeu_ps (y + i * ldy + 16, m1, _mm512_load_ps (f[i] + 16));
      }
}

#define DOT_CHAINS 24

static int
dot_loop (int64_t iters)
{
  __m512i acc[DOT_CHAINS];
  const __m512i u = _mm512_set1_epi8 (1), v = _mm512_set1_epi8 (-1);
#pragma GCC unroll 24
  for (int i = 0; i < DOT_CHAINS; i++)
    acc[i] = _mm512_set1_epi32 (i);
  for (int64_t t = 0; t < iters; t++)
#pragma GCC unroll 24
    for (int i = 0; i < DOT_CHAINS; i++)
      acc[i] = _mm512_dpbusd_epi32 (acc[i], u, v);
  __m512i total = _mm512_setzero_si512 ();
#pragma GCC unroll 24
  for (int i = 0; i < DOT_CHAINS; i++)
    total = _mm512_add_epi32 (total, acc[i]);
  return _mm512_reduce_add_epi32 (total);
}

const BnLowpPath bn_lowp_path_vnni_int8 = {
  .name = "int8 avx512-vnni",
  .mr = MR,
  .kc = BN_LOWP_KC,
  .panel = BN_LOWP_PANEL,
  .x_bytes = 1,
  .k_per_word = 4,
  .nr = NR,
  .act = BN_ACT_INT8,
  .decode = bn_lowp_decode_codes,
  .tile = tile_12x32,
  .dot_loop = dot_loop,
  .ops_per_iter = DOT_CHAINS * 64 * 2,
};
