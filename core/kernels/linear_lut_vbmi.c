/* linear_lut_vbmi.c — binary weights by table lookup (T-MAC style) on
 * AVX-512 VBMI + VNNI: no multiplies in the inner loop.
 *
 * For each token and each 16 consecutive k, a 64-byte table holds, for the
 * 4 quads of k in it, the 16 subset sums of the quad's int8 activations,
 * divided by 4 and rounded to nearest even so that they fit a signed byte
 * without bias: T[16·g + c] = rne(Σ_{bit i of c} xq[4g + i] / 4).  A
 * binary weight quad is a 4-bit code c, so VPERMB(index = 16·g | c, T)
 * returns 64 partial sums of 4 products at once — 16 rows × 4 quads — and
 * VPDPBUSD with a vector of ones adds each row's 4 into its int32 lane: 256
 * multiply-adds for two instructions, where VPDPBUSD alone does 64 and
 * VDPBF16PS 32.  The price is the tables' rounding: each 4-term sum moves
 * by up to 2 int8 steps (an error variance 4× smaller than rounding x to 6
 * bits would give).
 *
 * Built with -mavx512vbmi -mavx512vnni; reached only after CPUID. */
#include "linear_lowp.h"
#include "linear_tile.h"

#include <immintrin.h>
#include <string.h>

#define MR 6
#define NR 32
/* K block: 256 keeps the 6 tokens' tables (6 KiB) in L1 while the panel's
 * indices stream past from L2. */
#define KC 256
/* Panel: 2048 columns × 256 k of indices is 128 KiB, in L2; wider panels
 * than the other paths' mean fewer passes over the tables (4 bytes per k
 * and token). */
#define PANEL 2048

/* 32-bit masks of the entries e of a 32-word half-table whose code e & 15
 * has bit i set. */
static const uint32_t bit_mask[4] = { 0xaaaaaaaau, 0xccccccccu, 0xf0f0f0f0u, 0xff00ff00u };

/* One row of x into its groups' 4a (a = max|x|/127) and Σx, and k/16
 * tables of 64 bytes.  The codes round x·(127/max|x|) to nearest even, as
 * the oracle's lrintf does; each entry is the sum S of the codes its bits
 * select (int16), then S/4 rounded to nearest even, (S + 1 + ⌊S/4⌋ mod 2)
 * >> 2, which fits a byte — hence the 4 in the scale.  (Rounding halves up
 * would add half a step to every quad, the same sign for every k.) */
static void
prepare_row (const float *x, int64_t k, int group, void *out, float *scale, float *sum)
{
  int8_t *tab = out;
  __m512i sel[2][4];
  for (int h = 0; h < 2; h++)
    for (int i = 0; i < 4; i++)
      {
        /* Entry e of half h belongs to quad g = 2h + e/16 and adds code
         * 4g + i where bit i of e is set. */
        int16_t b[32];
        for (int e = 0; e < 32; e++)
          b[e] = (int16_t) (4 * (2 * h + e / 16) + i);
        sel[h][i] = _mm512_loadu_si512 (b);
      }
  const __m512i one = _mm512_set1_epi16 (1);
  for (int64_t g0 = 0, gi = 0; g0 < k; g0 += group, gi++)
    {
      __m512 mx = _mm512_setzero_ps (), sm = _mm512_setzero_ps ();
      for (int t = 0; t < group; t += 16)
        {
          const __m512 v = _mm512_loadu_ps (x + g0 + t);
          mx = _mm512_max_ps (mx, _mm512_abs_ps (v));
          sm = _mm512_add_ps (sm, v);
        }
      const float amax = _mm512_reduce_max_ps (mx);
      const __m512 inv = _mm512_set1_ps (amax > 0.0f ? 127.0f / amax : 0.0f);
      scale[gi] = 4.0f * (amax / 127.0f);
      sum[gi] = _mm512_reduce_add_ps (sm);
      for (int t = 0; t < group; t += 16)
        {
          const __m512i q = _mm512_cvtps_epi32 (_mm512_mul_ps (_mm512_loadu_ps (x + g0 + t), inv));
          const __m512i words = _mm512_castsi256_si512 (_mm512_cvtepi32_epi16 (q));
          __m256i half[2];
          for (int h = 0; h < 2; h++)
            {
              __m512i e = _mm512_setzero_si512 ();
              for (int i = 0; i < 4; i++)
                e = _mm512_mask_add_epi16 (e, bit_mask[i], e, _mm512_permutexvar_epi16 (sel[h][i], words));
              const __m512i odd = _mm512_and_si512 (_mm512_srai_epi16 (e, 2), one);
              e = _mm512_add_epi16 (e, _mm512_add_epi16 (odd, one));
              half[h] = _mm512_cvtepi16_epi8 (_mm512_srai_epi16 (e, 2));
            }
          _mm512_storeu_si512 (tab + (g0 + t) * 4,
                               _mm512_inserti64x4 (_mm512_castsi256_si512 (half[0]), half[1], 1));
        }
    }
}

/* Columns n0 .. n0+nn-1 of a 1-bit pack into index bytes: for every 16 k,
 * two 64-byte vectors (columns 0-15, 16-31) with byte 4·j + g = 16·g | code
 * of column j's quad g; columns past nn index entry 0 and are not stored.
 * The group scales and biases go to s and b, [kc/group][nr] each. */
static void
decode_indices (const BnTensor *w, int64_t n0, int nn, int nr, int64_t k0, int kc,
                uint32_t *dst, float *s, float *b)
{
  const int group = w->group_size;
  const int64_t per_row = w->shape[1] / 32;
  uint8_t *out = (uint8_t *) dst;
  for (int kg = 0; kg < kc; kg += group)
    bn_linear_group_params (w, n0, nn, nr, (k0 + kg) / group, s + (kg / group) * nr,
                            b + (kg / group) * nr);
  for (int j = 0; j < nr; j++)
    {
      uint8_t *col = out + (j / 16) * 64 + (j % 16) * 4;
      if (j >= nn)
        {
          for (int c = 0; c < kc / 16; c++)
            memset (col + (size_t) c * 2 * 64, 0, 4);
          continue;
        }
      const uint32_t *codes = (const uint32_t *) w->data + (n0 + j) * per_row + k0 / 32;
      for (int wi = 0; wi < kc / 32; wi++)
        {
          uint32_t v = codes[wi];
          for (int half = 0; half < 2; half++)
            {
              uint8_t *p = col + (size_t) (2 * wi + half) * 2 * 64;
              for (int g = 0; g < 4; g++, v >>= 4)
                p[g] = (uint8_t) (16 * g | (v & 15u));
            }
        }
    }
}

/* MR tokens × NR columns.  xp: the tokens' tables, KC·4 bytes apart; wq:
 * the index panel.  Per weight group the int32 lookup sums are folded into
 * float with the group's s·a and b·Σx, as in the INT8 path. */
static void
tile_6x32 (const void *xpv, const uint32_t *wq, const float *s, const float *b,
           int kc, int group, const float *a, const float *sum, int64_t lda,
           float *y, int64_t ldy, int mr, int nn, gboolean accumulate)
{
  const int8_t *xp = xpv;
  const uint8_t *wi = (const uint8_t *) wq;
  const __mmask16 m0 = bn_lanes16 (nn), m1 = bn_lanes16 (nn - 16);
  const __m512i ones = _mm512_set1_epi8 (1);
  __m512 f[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
    {
      f[i][0] = accumulate && i < mr ? _mm512_maskz_loadu_ps (m0, y + i * ldy) : _mm512_setzero_ps ();
      f[i][1] = accumulate && i < mr ? _mm512_maskz_loadu_ps (m1, y + i * ldy + 16) : _mm512_setzero_ps ();
    }
  for (int g = 0, k0 = 0; k0 < kc; g++, k0 += group)
    {
      __m512i acc[MR][2];
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_si512 ();
      for (int c = k0 / 16; c < (k0 + group) / 16; c++)
        {
          const __m512i w0 = _mm512_load_si512 (wi + (size_t) c * 128);
          const __m512i w1 = _mm512_load_si512 (wi + (size_t) c * 128 + 64);
#pragma GCC unroll 6
          for (int i = 0; i < MR; i++)
            {
              const __m512i t = _mm512_loadu_si512 (xp + (size_t) i * KC * 4 + (size_t) c * 64);
              acc[i][0] = _mm512_dpbusd_epi32 (acc[i][0], ones, _mm512_permutexvar_epi8 (w0, t));
              acc[i][1] = _mm512_dpbusd_epi32 (acc[i][1], ones, _mm512_permutexvar_epi8 (w1, t));
            }
        }
      const __m512 s0 = _mm512_loadu_ps (s + g * NR), s1 = _mm512_loadu_ps (s + g * NR + 16);
      const __m512 b0 = _mm512_loadu_ps (b + g * NR), b1 = _mm512_loadu_ps (b + g * NR + 16);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++)
        {
          const __m512 ai = _mm512_set1_ps (a[i * lda + g]), si = _mm512_set1_ps (sum[i * lda + g]);
          f[i][0] = _mm512_fmadd_ps (_mm512_cvtepi32_ps (acc[i][0]), _mm512_mul_ps (s0, ai), f[i][0]);
          f[i][1] = _mm512_fmadd_ps (_mm512_cvtepi32_ps (acc[i][1]), _mm512_mul_ps (s1, ai), f[i][1]);
          f[i][0] = _mm512_fmadd_ps (b0, si, f[i][0]);
          f[i][1] = _mm512_fmadd_ps (b1, si, f[i][1]);
        }
    }
  for (int i = 0; i < mr; i++)
    {
      _mm512_mask_storeu_ps (y + i * ldy, m0, f[i][0]);
      _mm512_mask_storeu_ps (y + i * ldy + 16, m1, f[i][1]);
    }
}

#define DOT_CHAINS 12

/* Pairs of VPERMB + VPDPBUSD: 256 multiply-adds' worth each. */
static int
dot_loop (int64_t iters)
{
  __m512i acc[DOT_CHAINS];
  const __m512i ones = _mm512_set1_epi8 (1);
  __m512i t = _mm512_set1_epi8 (3), idx = _mm512_set1_epi8 (5);
#pragma GCC unroll 12
  for (int i = 0; i < DOT_CHAINS; i++)
    acc[i] = _mm512_set1_epi32 (i);
  for (int64_t r = 0; r < iters; r++)
    {
#pragma GCC unroll 12
      for (int i = 0; i < DOT_CHAINS; i++)
        {
          acc[i] = _mm512_dpbusd_epi32 (acc[i], ones, _mm512_permutexvar_epi8 (idx, t));
          /* Opaque to the compiler, so every lookup is done, not one
           * shared by all the chains. */
          __asm__ volatile ("" : "+v" (idx));
        }
    }
  __m512i total = _mm512_setzero_si512 ();
#pragma GCC unroll 12
  for (int i = 0; i < DOT_CHAINS; i++)
    total = _mm512_add_epi32 (total, acc[i]);
  return _mm512_reduce_add_epi32 (total);
}

const BnLowpPath bn_lowp_path_vbmi_lut = {
  .name = "lut avx512-vbmi",
  .act = BN_ACT_LUT,
  .mr = MR,
  .nr = NR,
  .kc = KC,
  .x_bytes = 4,
  .k_per_word = 16,
  .panel = PANEL,
  .prepare_row = prepare_row,
  .decode = decode_indices,
  .tile = tile_6x32,
  .dot_loop = dot_loop,
  .ops_per_iter = DOT_CHAINS * 256 * 2,
};
