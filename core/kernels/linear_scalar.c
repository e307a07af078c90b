/* linear_scalar.c — the portable path for CPUs without AVX2: the same
 * blocking as the SIMD paths with a plain C micro-kernel (4 rows × 8
 * columns, which compilers keep in SSE registers). */
#include "linear_tile.h"

#define MR 4
#define NR 8

static void
tile_4x8 (const float *xp, const float *wp, int kc, float *y, int64_t ldy,
          int mr, int nn, gboolean accumulate)
{
  float acc[MR][NR] = { { 0 } };
  if (accumulate)
    for (int i = 0; i < mr; i++)
      for (int j = 0; j < nn; j++)
        acc[i][j] = y[i * ldy + j];
  for (int k = 0; k < kc; k++)
    for (int i = 0; i < MR; i++)
      {
        const float xi = xp[i * BN_LINEAR_KC + k];
        for (int j = 0; j < NR; j++)
          acc[i][j] += xi * wp[k * NR + j];
      }
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nn; j++)
      y[i * ldy + j] = acc[i][j];
}

/* f32, f16 and bf16 rows: convert, then store transposed. */
static void
decode_dense (const BnTensor *w, int64_t n0, int nn, int64_t k0, int kc,
              float *dst)
{
  const size_t esz = bn_dtype_size (w->dtype);
  float row[BN_LINEAR_KC];
  for (int j = 0; j < NR; j++)
    {
      if (j < nn)
        bn_convert_to_f32 (w->dtype,
                           (const char *) w->data + (size_t) ((n0 + j) * w->shape[1] + k0) * esz,
                           row, (size_t) kc);
      for (int k = 0; k < kc; k++)
        dst[k * NR + j] = j < nn ? row[k] : 0.0f;
    }
}

/* Q1, Q2 and Q4: scale · code + bias, one code at a time. */
static void
decode_packed (const BnTensor *w, int64_t n0, int nn, int64_t k0, int kc,
               float *dst)
{
  const int bits = bn_dtype_bits (w->dtype), per_word = 32 / bits;
  const int group = w->group_size;
  const uint32_t mask = (1u << bits) - 1u;
  float s[NR], b[NR];
  uint32_t words[NR];
  for (int kg = 0; kg < kc; kg += group)
    {
      bn_linear_group_params (w, n0, nn, NR, (k0 + kg) / group, s, b);
      for (int kw = kg; kw < kg + group; kw += per_word)
        {
          bn_linear_code_words (w, n0, nn, NR, (k0 + kw) / per_word, words);
          for (int c = 0; c < per_word; c++)
            for (int j = 0; j < NR; j++)
              dst[(kw + c) * NR + j]
                = s[j] * (float) ((words[j] >> (bits * c)) & mask) + b[j];
        }
    }
}

static float
fma_loop (int64_t iters)
{
  float acc[MR][NR] = { { 0 } };
  for (int64_t t = 0; t < iters; t++)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++)
        acc[i][j] = acc[i][j] * 0.999f + 1.0f;
  float sum = 0.0f;
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++)
      sum += acc[i][j];
  return sum;
}

const BnLinearPath bn_linear_path_scalar = {
  .mr = MR,
  .nr = NR,
  .tile = tile_4x8,
  .decode = {
    [BN_DTYPE_F32] = decode_dense,
    [BN_DTYPE_F16] = decode_dense,
    [BN_DTYPE_BF16] = decode_dense,
    [BN_DTYPE_Q1] = decode_packed,
    [BN_DTYPE_Q2] = decode_packed,
    [BN_DTYPE_Q4] = decode_packed,
  },
  .fma_loop = fma_loop,
  .flops_per_iter = 2 * MR * NR,
};
