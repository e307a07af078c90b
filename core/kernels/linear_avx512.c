/* linear_avx512.c — the AVX-512 path: a 12 × 32 micro-kernel (24 zmm
 * accumulators, two weight vectors, one broadcast activation) and SIMD
 * decoders that write 32 columns of W per k.  Built with -mavx512f/bw/dq/vl
 * and only reached after CPUID says the machine has them. */
#include "linear_tile.h"
#include "linear_avx512_transpose.h"

#include <immintrin.h>

#define MR 12
#define NR 32

static void
tile_12x32 (const float *xp, const float *wp, int kc, float *y, int64_t ldy,
            int mr, int nn, gboolean accumulate)
{
  const __mmask16 m0 = bn_lanes16 (nn), m1 = bn_lanes16 (nn - 16);
  __m512 acc[MR][2];
  /* Constant row indices throughout, so the accumulators stay in registers. */
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
  for (int k = 0; k < kc; k++)
    {
      const __m512 w0 = _mm512_load_ps (wp + k * NR);
      const __m512 w1 = _mm512_load_ps (wp + k * NR + 16);
#pragma GCC unroll 12
      for (int i = 0; i < MR; i++)
        {
          const __m512 xi = _mm512_set1_ps (xp[i * BN_LINEAR_KC + k]);
          acc[i][0] = _mm512_fmadd_ps (xi, w0, acc[i][0]);
          acc[i][1] = _mm512_fmadd_ps (xi, w1, acc[i][1]);
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

/* Up to 16 consecutive values of a dense row as f32, zero past n. */
static inline __m512
load_row16 (BnDType dtype, const void *src, int n)
{
  const __mmask16 m = bn_lanes16 (n);
  if (dtype == BN_DTYPE_F32)
    return _mm512_maskz_loadu_ps (m, src);
  const __m256i h = _mm256_maskz_loadu_epi16 (m, src);
  if (dtype == BN_DTYPE_F16)
    return _mm512_cvtph_ps (h);
  return _mm512_castsi512_ps (_mm512_slli_epi32 (_mm512_cvtepu16_epi32 (h), 16));
}

/* Dense rows (f32, f16, bf16), 16 × 16 blocks at a time: load 16 values
 * of 16 rows as f32, transpose, store 16 k of 16 columns. */
static void
decode_dense (const BnTensor *w, int64_t n0, int nn, int64_t k0, int kc,
              float *dst)
{
  const size_t esz = bn_dtype_size (w->dtype);
  const char *base = (const char *) w->data + (size_t) (n0 * w->shape[1] + k0) * esz;
  for (int h = 0; h < NR; h += 16)
    for (int k = 0; k < kc; k += 16)
      {
        __m512 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
          r[j] = h + j < nn
                   ? load_row16 (w->dtype, base + (size_t) ((h + j) * w->shape[1] + k) * esz, kc - k)
                   : _mm512_setzero_ps ();
        bn_transpose16 (r);
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
          if (c < kc - k)
            _mm512_store_ps (dst + (k + c) * NR + h, r[c]);
      }
}

/* Packed rows, 32 columns at a time: the j-th lane holds the code word of
 * column n0+j, so each shift-and-mask yields one k for all 32 columns. */
static void
decode_packed (const BnTensor *w, int64_t n0, int nn, int64_t k0, int kc,
               float *dst)
{
  const int bits = bn_dtype_bits (w->dtype), per_word = 32 / bits;
  const int group = w->group_size;
  const __m512i mask = _mm512_set1_epi32 ((1 << bits) - 1);
  float s[NR] __attribute__ ((aligned (64))), b[NR] __attribute__ ((aligned (64)));
  uint32_t words[NR] __attribute__ ((aligned (64)));
  for (int kg = 0; kg < kc; kg += group)
    {
      bn_linear_group_params (w, n0, nn, NR, (k0 + kg) / group, s, b);
      const __m512 s0 = _mm512_load_ps (s), s1 = _mm512_load_ps (s + 16);
      const __m512 b0 = _mm512_load_ps (b), b1 = _mm512_load_ps (b + 16);
      for (int kw = kg; kw < kg + group; kw += per_word)
        {
          bn_linear_code_words (w, n0, nn, NR, (k0 + kw) / per_word, words);
          __m512i v0 = _mm512_load_si512 (words), v1 = _mm512_load_si512 (words + 16);
          float *out = dst + kw * NR;
          for (int c = 0; c < per_word; c++, out += NR)
            {
              const __m512 q0 = _mm512_cvtepi32_ps (_mm512_and_si512 (v0, mask));
              const __m512 q1 = _mm512_cvtepi32_ps (_mm512_and_si512 (v1, mask));
              _mm512_store_ps (out, _mm512_fmadd_ps (q0, s0, b0));
              _mm512_store_ps (out + 16, _mm512_fmadd_ps (q1, s1, b1));
              v0 = _mm512_srli_epi32 (v0, bits);
              v1 = _mm512_srli_epi32 (v1, bits);
            }
        }
    }
}

#define FMA_CHAINS 24

static float
fma_loop (int64_t iters)
{
  __m512 acc[FMA_CHAINS];
  const __m512 a = _mm512_set1_ps (0.999f), c = _mm512_set1_ps (1e-3f);
#pragma GCC unroll 24
  for (int i = 0; i < FMA_CHAINS; i++)
    acc[i] = _mm512_set1_ps ((float) i);
  for (int64_t t = 0; t < iters; t++)
#pragma GCC unroll 24
    for (int i = 0; i < FMA_CHAINS; i++)
      acc[i] = _mm512_fmadd_ps (acc[i], a, c);
  __m512 sum = _mm512_setzero_ps ();
#pragma GCC unroll 24
  for (int i = 0; i < FMA_CHAINS; i++)
    sum = _mm512_add_ps (sum, acc[i]);
  return _mm512_reduce_add_ps (sum);
}

const BnLinearPath bn_linear_path_avx512 = {
  .mr = MR,
  .nr = NR,
  .tile = tile_12x32,
  .decode = {
    [BN_DTYPE_F32] = decode_dense,
    [BN_DTYPE_F16] = decode_dense,
    [BN_DTYPE_BF16] = decode_dense,
    [BN_DTYPE_Q1] = decode_packed,
    [BN_DTYPE_Q2] = decode_packed,
    [BN_DTYPE_Q4] = decode_packed,
  },
  .fma_loop = fma_loop,
  .flops_per_iter = FMA_CHAINS * 16 * 2,
};
