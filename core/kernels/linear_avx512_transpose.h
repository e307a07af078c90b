/* linear_avx512_transpose.h — a 16 × 16 transpose of 32-bit lanes in
 * zmm registers, for the AVX-512 decoders (private to core/kernels;
 * include only from files built with -mavx512f). */
#ifndef BN_LINEAR_AVX512_TRANSPOSE_H
#define BN_LINEAR_AVX512_TRANSPOSE_H

#include <immintrin.h>

/* r[i] lane j ↔ r[j] lane i.  Interleaving pairs, then quads, gives each
 * 128-bit lane 4 rows of one column; two 128-bit lane shuffles then gather
 * the 4 lanes of each column. */
static inline void
bn_transpose16 (__m512 r[16])
{
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2)
    {
      t[i] = _mm512_unpacklo_ps (r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps (r[i], r[i + 1]);
    }
  /* u[4g + c], lane L: rows 4g .. 4g+3 of column 4L + c. */
#pragma GCC unroll 4
  for (int g = 0; g < 16; g += 4)
    {
      r[g] = _mm512_shuffle_ps (t[g], t[g + 2], 0x44);
      r[g + 1] = _mm512_shuffle_ps (t[g], t[g + 2], 0xee);
      r[g + 2] = _mm512_shuffle_ps (t[g + 1], t[g + 3], 0x44);
      r[g + 3] = _mm512_shuffle_ps (t[g + 1], t[g + 3], 0xee);
    }
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++)
    {
      t[c] = _mm512_shuffle_f32x4 (r[c], r[4 + c], 0x44);      /* L0 L1 of groups 0, 1 */
      t[4 + c] = _mm512_shuffle_f32x4 (r[c], r[4 + c], 0xee);  /* L2 L3 of groups 0, 1 */
      t[8 + c] = _mm512_shuffle_f32x4 (r[8 + c], r[12 + c], 0x44);
      t[12 + c] = _mm512_shuffle_f32x4 (r[8 + c], r[12 + c], 0xee);
    }
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++)
    {
      r[c] = _mm512_shuffle_f32x4 (t[c], t[8 + c], 0x88);
      r[4 + c] = _mm512_shuffle_f32x4 (t[c], t[8 + c], 0xdd);
      r[8 + c] = _mm512_shuffle_f32x4 (t[4 + c], t[12 + c], 0x88);
      r[12 + c] = _mm512_shuffle_f32x4 (t[4 + c], t[12 + c], 0xdd);
    }
}

#endif
