/* linear_lowp_avx2.c — the int8 micro-kernel for CPUs without AVX-512 VNNI:
 * 4 rows × 16 columns, 8 ymm int32 accumulators.  VPMADDUBSW multiplies
 * code bytes (unsigned, ≤ 2) by activation bytes (signed) into pairs that
 * cannot saturate (2·2·127 < 32767), VPMADDWD adds the pairs into int32.
 * Built with -mavx2 -mfma; reached only after CPUID. */
#include "linear_lowp.h"

#include <immintrin.h>

#define MR 4
#define NR 16

static inline __m256i
bcast4 (const int8_t *p)
{
  int32_t v;
  __builtin_memcpy (&v, p, 4);
  return _mm256_set1_epi32 (v);
}

static inline __m256i
dot4 (__m256i acc, __m256i w, __m256i x, __m256i ones)
{
  return _mm256_add_epi32 (acc, _mm256_madd_epi16 (_mm256_maddubs_epi16 (w, x), ones));
}

static void
tile_4x16 (const void *xpv, const uint32_t *wq, const float *s,
           const float *b, int kc, int group, const float *a,
           const float *sum, int64_t lda, float *y, int64_t ldy, int mr,
           int nn, gboolean accumulate)
{
  const int8_t *xp = xpv;
  const __m256i ones = _mm256_set1_epi16 (1);
  float f[MR][NR] __attribute__ ((aligned (32)));
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++)
      f[i][j] = accumulate && i < mr && j < nn ? y[i * ldy + j] : 0.0f;
  for (int g = 0, k0 = 0; k0 < kc; g++, k0 += group)
    {
      __m256i acc[MR][2];
#pragma GCC unroll 4
      for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_si256 ();
      for (int k = k0; k < k0 + group; k += 4)
        {
          const __m256i w0 = _mm256_load_si256 ((const __m256i *) (wq + (k / 4) * NR));
          const __m256i w1 = _mm256_load_si256 ((const __m256i *) (wq + (k / 4) * NR + 8));
#pragma GCC unroll 4
          for (int i = 0; i < MR; i++)
            {
              const __m256i xi = bcast4 (xp + i * BN_LOWP_KC + k);
              acc[i][0] = dot4 (acc[i][0], w0, xi, ones);
              acc[i][1] = dot4 (acc[i][1], w1, xi, ones);
            }
        }
      const __m256 s0 = _mm256_load_ps (s + g * NR), s1 = _mm256_load_ps (s + g * NR + 8);
      const __m256 b0 = _mm256_load_ps (b + g * NR), b1 = _mm256_load_ps (b + g * NR + 8);
#pragma GCC unroll 4
      for (int i = 0; i < MR; i++)
        {
          /* Rows past mr have no scales to read; their sums are dropped. */
          const __m256 ai = _mm256_set1_ps (i < mr ? a[i * lda + g] : 0.0f);
          const __m256 si = _mm256_set1_ps (i < mr ? sum[i * lda + g] : 0.0f);
          __m256 f0 = _mm256_fmadd_ps (_mm256_cvtepi32_ps (acc[i][0]), _mm256_mul_ps (s0, ai), _mm256_load_ps (f[i]));
          __m256 f1 = _mm256_fmadd_ps (_mm256_cvtepi32_ps (acc[i][1]), _mm256_mul_ps (s1, ai), _mm256_load_ps (f[i] + 8));
          _mm256_store_ps (f[i], _mm256_fmadd_ps (b0, si, f0));
          _mm256_store_ps (f[i] + 8, _mm256_fmadd_ps (b1, si, f1));
        }
    }
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nn; j++)
      y[i * ldy + j] = f[i][j];
}

#define DOT_CHAINS 12

static int
dot_loop (int64_t iters)
{
  __m256i acc[DOT_CHAINS];
  const __m256i u = _mm256_set1_epi8 (1), v = _mm256_set1_epi8 (-1);
  const __m256i ones = _mm256_set1_epi16 (1);
#pragma GCC unroll 12
  for (int i = 0; i < DOT_CHAINS; i++)
    acc[i] = _mm256_set1_epi32 (i);
  for (int64_t t = 0; t < iters; t++)
#pragma GCC unroll 12
    for (int i = 0; i < DOT_CHAINS; i++)
      acc[i] = dot4 (acc[i], u, v, ones);
  __m256i total = _mm256_setzero_si256 ();
#pragma GCC unroll 12
  for (int i = 0; i < DOT_CHAINS; i++)
    total = _mm256_add_epi32 (total, acc[i]);
  __m128i t = _mm_add_epi32 (_mm256_castsi256_si128 (total), _mm256_extracti128_si256 (total, 1));
  t = _mm_add_epi32 (t, _mm_shuffle_epi32 (t, 0x4e));
  t = _mm_add_epi32 (t, _mm_shuffle_epi32 (t, 0xb1));
  return _mm_cvtsi128_si32 (t);
}

const BnLowpPath bn_lowp_path_avx2_int8 = {
  .name = "int8 avx2",
  .mr = MR,
  .kc = BN_LOWP_KC,
  .panel = BN_LOWP_PANEL,
  .x_bytes = 1,
  .k_per_word = 4,
  .nr = NR,
  .act = BN_ACT_INT8,
  .decode = bn_lowp_decode_codes,
  .tile = tile_4x16,
  .dot_loop = dot_loop,
  .ops_per_iter = DOT_CHAINS * 32 * 2,
};
