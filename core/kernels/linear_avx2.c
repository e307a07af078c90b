/* linear_avx2.c — the AVX2/FMA path: a 6 × 16 micro-kernel (12 ymm
 * accumulators, two weight vectors, one broadcast activation: all 16
 * registers) and SIMD decoders that write 16 columns of W per k.  Built with
 * -mavx2 -mfma -mf16c and only reached after CPUID says the machine has them. */
#include "linear_tile.h"

#include <immintrin.h>
#include <string.h>

#define MR 6
#define NR 16

/* All-ones in the first n of 8 lanes, for maskload/maskstore. */
static inline __m256i
lanes (int n)
{
  return _mm256_cmpgt_epi32 (_mm256_set1_epi32 (n), _mm256_setr_epi32 (0, 1, 2, 3, 4, 5, 6, 7));
}

static void
tile_6x16 (const float *xp, const float *wp, int kc, float *y, int64_t ldy,
           int mr, int nn, gboolean accumulate)
{
  const __m256i m0 = lanes (nn), m1 = lanes (nn - 8);
  __m256 acc[MR][2];
  /* Constant row indices throughout, so the accumulators stay in registers. */
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
    {
      acc[i][0] = acc[i][1] = _mm256_setzero_ps ();
      /* Masked moves are slow on some CPUs: only the last panel needs them. */
      if (accumulate && i < mr && nn == NR)
        {
          acc[i][0] = _mm256_loadu_ps (y + i * ldy);
          acc[i][1] = _mm256_loadu_ps (y + i * ldy + 8);
        }
      else if (accumulate && i < mr)
        {
          acc[i][0] = _mm256_maskload_ps (y + i * ldy, m0);
          acc[i][1] = _mm256_maskload_ps (y + i * ldy + 8, m1);
        }
    }
  for (int k = 0; k < kc; k++)
    {
      const __m256 w0 = _mm256_load_ps (wp + k * NR);
      const __m256 w1 = _mm256_load_ps (wp + k * NR + 8);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++)
        {
          const __m256 xi = _mm256_broadcast_ss (xp + i * BN_LINEAR_KC + k);
          acc[i][0] = _mm256_fmadd_ps (xi, w0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps (xi, w1, acc[i][1]);
        }
    }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
    if (i < mr && nn == NR)
      {
        _mm256_storeu_ps (y + i * ldy, acc[i][0]);
        _mm256_storeu_ps (y + i * ldy + 8, acc[i][1]);
      }
    else if (i < mr)
      {
        _mm256_maskstore_ps (y + i * ldy, m0, acc[i][0]);
        _mm256_maskstore_ps (y + i * ldy + 8, m1, acc[i][1]);
      }
}

/* Up to 8 consecutive values of a dense row as f32, zero past n. */
static inline __m256
load_row8 (BnDType dtype, const void *src, int n)
{
  if (dtype == BN_DTYPE_F32)
    return _mm256_maskload_ps (src, lanes (n));
  __m128i h;
  if (n >= 8)
    h = _mm_loadu_si128 (src);
  else
    {
      /* AVX2 has no masked 16-bit load. */
      uint16_t tail[8] = { 0 };
      memcpy (tail, src, (size_t) n * sizeof *tail);
      h = _mm_loadu_si128 ((const __m128i *) tail);
    }
  if (dtype == BN_DTYPE_F16)
    return _mm256_cvtph_ps (h);
  return _mm256_castsi256_ps (_mm256_slli_epi32 (_mm256_cvtepu16_epi32 (h), 16));
}

/* r[i] lane j ↔ r[j] lane i.  Interleaving pairs, then quads, gives each
 * 128-bit half 4 rows of one column; swapping halves completes it. */
static inline void
transpose8 (__m256 r[8])
{
  __m256 t[8];
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2)
    {
      t[i] = _mm256_unpacklo_ps (r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps (r[i], r[i + 1]);
    }
  /* u[4g + c], half L: rows 4g .. 4g+3 of column 4L + c. */
#pragma GCC unroll 2
  for (int g = 0; g < 8; g += 4)
    {
      r[g] = _mm256_shuffle_ps (t[g], t[g + 2], 0x44);
      r[g + 1] = _mm256_shuffle_ps (t[g], t[g + 2], 0xee);
      r[g + 2] = _mm256_shuffle_ps (t[g + 1], t[g + 3], 0x44);
      r[g + 3] = _mm256_shuffle_ps (t[g + 1], t[g + 3], 0xee);
    }
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++)
    {
      t[c] = _mm256_permute2f128_ps (r[c], r[4 + c], 0x20);
      t[4 + c] = _mm256_permute2f128_ps (r[c], r[4 + c], 0x31);
    }
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++)
    r[i] = t[i];
}

/* Dense rows (f32, f16, bf16), 8 × 8 blocks at a time: load 8 values of 8
 * rows as f32, transpose, store 8 k of 8 columns. */
static void
decode_dense (const BnTensor *w, int64_t n0, int nn, int64_t k0, int kc,
              float *dst)
{
  const size_t esz = bn_dtype_size (w->dtype);
  const char *base = (const char *) w->data + (size_t) (n0 * w->shape[1] + k0) * esz;
  for (int h = 0; h < NR; h += 8)
    for (int k = 0; k < kc; k += 8)
      {
        __m256 r[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
          r[j] = h + j < nn
                   ? load_row8 (w->dtype, base + (size_t) ((h + j) * w->shape[1] + k) * esz, kc - k)
                   : _mm256_setzero_ps ();
        transpose8 (r);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
          if (c < kc - k)
            _mm256_store_ps (dst + (k + c) * NR + h, r[c]);
      }
}

/* Packed rows, 16 columns at a time: the j-th lane holds the code word of
 * column n0+j, so each shift-and-mask yields one k for all 16 columns. */
static void
decode_packed (const BnTensor *w, int64_t n0, int nn, int64_t k0, int kc,
               float *dst)
{
  const int bits = bn_dtype_bits (w->dtype), per_word = 32 / bits;
  const int group = w->group_size;
  const __m256i mask = _mm256_set1_epi32 ((1 << bits) - 1);
  float s[NR] __attribute__ ((aligned (32))), b[NR] __attribute__ ((aligned (32)));
  uint32_t words[NR] __attribute__ ((aligned (32)));
  for (int kg = 0; kg < kc; kg += group)
    {
      bn_linear_group_params (w, n0, nn, NR, (k0 + kg) / group, s, b);
      const __m256 s0 = _mm256_load_ps (s), s1 = _mm256_load_ps (s + 8);
      const __m256 b0 = _mm256_load_ps (b), b1 = _mm256_load_ps (b + 8);
      for (int kw = kg; kw < kg + group; kw += per_word)
        {
          bn_linear_code_words (w, n0, nn, NR, (k0 + kw) / per_word, words);
          __m256i v0 = _mm256_load_si256 ((const __m256i *) words);
          __m256i v1 = _mm256_load_si256 ((const __m256i *) (words + 8));
          float *out = dst + kw * NR;
          for (int c = 0; c < per_word; c++, out += NR)
            {
              const __m256 q0 = _mm256_cvtepi32_ps (_mm256_and_si256 (v0, mask));
              const __m256 q1 = _mm256_cvtepi32_ps (_mm256_and_si256 (v1, mask));
              _mm256_store_ps (out, _mm256_fmadd_ps (q0, s0, b0));
              _mm256_store_ps (out + 8, _mm256_fmadd_ps (q1, s1, b1));
              v0 = _mm256_srli_epi32 (v0, bits);
              v1 = _mm256_srli_epi32 (v1, bits);
            }
        }
    }
}

#define FMA_CHAINS 12

static float
fma_loop (int64_t iters)
{
  __m256 acc[FMA_CHAINS];
  const __m256 a = _mm256_set1_ps (0.999f), c = _mm256_set1_ps (1e-3f);
#pragma GCC unroll 12
  for (int i = 0; i < FMA_CHAINS; i++)
    acc[i] = _mm256_set1_ps ((float) i);
  for (int64_t t = 0; t < iters; t++)
#pragma GCC unroll 12
    for (int i = 0; i < FMA_CHAINS; i++)
      acc[i] = _mm256_fmadd_ps (acc[i], a, c);
  __m256 sum = _mm256_setzero_ps ();
#pragma GCC unroll 12
  for (int i = 0; i < FMA_CHAINS; i++)
    sum = _mm256_add_ps (sum, acc[i]);
  float lane[8];
  _mm256_storeu_ps (lane, sum);
  return lane[0] + lane[1] + lane[2] + lane[3] + lane[4] + lane[5] + lane[6] + lane[7];
}

const BnLinearPath bn_linear_path_avx2 = {
  .mr = MR,
  .nr = NR,
  .tile = tile_6x16,
  .decode = {
    [BN_DTYPE_F32] = decode_dense,
    [BN_DTYPE_F16] = decode_dense,
    [BN_DTYPE_BF16] = decode_dense,
    [BN_DTYPE_Q1] = decode_packed,
    [BN_DTYPE_Q2] = decode_packed,
    [BN_DTYPE_Q4] = decode_packed,
  },
  .fma_loop = fma_loop,
  .flops_per_iter = FMA_CHAINS * 8 * 2,
};
