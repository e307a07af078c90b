/* attention.c — tiled scaled dot-product attention with an online softmax.
 *
 * Work is split into tasks of (query head, block of BQ query rows); a task
 * walks the key blocks of its KV head in order, so every output row is
 * computed by one task in one fixed order and the result does not depend on
 * the thread count.  Keys (transposed) and values are first packed into
 * contiguous blocks, a few KV heads at a time to bound memory.  Per key
 * block of BK keys a task forms the BQ×BK score tile as a small GEMM,
 * updates the running max/sum of each row in base 2 (the scale is folded
 * with log2 e into the queries), and accumulates P·V into a BQ×D tile.
 * The two GEMMs and the exponentials have AVX-512 and AVX2/FMA versions
 * chosen at run time; they differ from the portable one only by rounding
 * (FMA, polynomial exp2).  With a->bf16 on a CPU with AVX-512 BF16, q, k,
 * v and the probabilities enter the two GEMMs as bf16 pairs (VDPBF16PS:
 * half the instructions, fp32 sums), packed as k pairs over head_dim and
 * v pairs over keys. */
#include "ops.h"

#include "dtype.h"
#include "kernels/kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define BQ 64 /* query rows per task: score and output tiles stay in L2 */
#define BK 64 /* keys per block: one row of scores is four AVX-512 vectors */
#define PACK_BUDGET ((int64_t) 64 << 20) /* bytes of packed K and V per pass */

/* Key block visibility from the key mask. */
enum { KB_HIDDEN, KB_VISIBLE, KB_MIXED };

typedef struct {
  const BnAttention *a;
  BnIsa isa;
  int group;          /* query heads per KV head */
  int dp;             /* head_dim rounded up to 64: output tile stride */
  int64_t nqb, nkb;   /* query and key blocks */
  int kv0, n_kvp;     /* KV heads of this pass */
  gboolean bf16;      /* the bf16 GEMMs below, kt16 and vp16 */
  float *kt;          /* [n_kvp][nkb][head_dim][BK] */
  float *vp;          /* [n_kvp][nkb][BK][dp] */
  uint32_t *kt16;     /* [n_kvp][nkb][head_dim/2][BK] bf16 pairs (e, e+1) */
  uint32_t *vp16;     /* [n_kvp][nkb][BK/2][dp] bf16 pairs (key j, j+1) */
  const uint8_t *kb_state;
  float qscale;       /* scale · log2 e */
} Ctx;

/* ---- portable kernels ---------------------------------------------------- */

/* S[BQ][BK] = Qb[BQ][d] · Kt[d][BK] */
static void
score_tile_base (const float *qb, int d, const float *kt, float *s)
{
  for (int r = 0; r < BQ; r++)
    {
      float acc[BK] = { 0 };
      for (int e = 0; e < d; e++)
        {
          float q = qb[r * d + e];
          for (int j = 0; j < BK; j++)
            acc[j] += q * kt[e * BK + j];
        }
      memcpy (s + r * BK, acc, sizeof acc);
    }
}

/* Turns each score row into exp2(s − new max), updating m, l and giving
 * alpha = exp2(old max − new max); a row with no visible key so far keeps
 * m = −inf and gets p = 0, alpha = 1. */
static void
softmax_tile_base (float *s, float *m, float *l, float *alpha)
{
  for (int r = 0; r < BQ; r++)
    {
      float *row = s + r * BK;
      float mx = m[r];
      for (int j = 0; j < BK; j++)
        mx = row[j] > mx ? row[j] : mx;
      if (mx == -INFINITY)
        {
          memset (row, 0, BK * sizeof *row);
          alpha[r] = 1.0f;
          continue;
        }
      float sum = 0.0f;
      for (int j = 0; j < BK; j++)
        {
          row[j] = exp2f (row[j] - mx);
          sum += row[j];
        }
      alpha[r] = exp2f (m[r] - mx);
      l[r] = l[r] * alpha[r] + sum;
      m[r] = mx;
    }
}

/* Ob[r] = alpha[r]·Ob[r] + Σ_j P[r][j]·V[j] over the first nk keys;
 * V rows are dp floats apart. */
static void
pv_tile_base (const float *p, int nk, const float *v, int d, int dp,
              const float *alpha, float *ob)
{
  for (int r = 0; r < BQ; r++)
    {
      float *o = ob + (int64_t) r * dp;
      for (int e = 0; e < d; e++)
        o[e] *= alpha[r];
      for (int j = 0; j < nk; j++)
        {
          float pj = p[r * BK + j];
          const float *vj = v + (int64_t) j * dp;
          for (int e = 0; e < d; e++)
            o[e] += pj * vj[e];
        }
    }
}

/* ---- AVX2 + FMA ---------------------------------------------------------- */

#define AVX2 __attribute__ ((target ("avx2,fma")))

/* 2^x for x <= 0 to about 1 ulp (degree-7 Taylor on [−½, ½]); exactly 0
 * below −126, so masked scores (−inf) contribute nothing. */
static inline AVX2 __m256
exp2_avx2 (__m256 x)
{
  __m256 live = _mm256_cmp_ps (x, _mm256_set1_ps (-126.0f), _CMP_GE_OQ);
  x = _mm256_max_ps (x, _mm256_set1_ps (-126.0f));
  __m256 n = _mm256_round_ps (x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 f = _mm256_sub_ps (x, n);
  __m256 p = _mm256_set1_ps (1.5252733804059840e-5f);
  p = _mm256_fmadd_ps (p, f, _mm256_set1_ps (1.5403530393381609e-4f));
  p = _mm256_fmadd_ps (p, f, _mm256_set1_ps (1.3333558146428443e-3f));
  p = _mm256_fmadd_ps (p, f, _mm256_set1_ps (9.6181291076284772e-3f));
  p = _mm256_fmadd_ps (p, f, _mm256_set1_ps (5.5504108664821580e-2f));
  p = _mm256_fmadd_ps (p, f, _mm256_set1_ps (2.4022650695910071e-1f));
  p = _mm256_fmadd_ps (p, f, _mm256_set1_ps (6.9314718055994531e-1f));
  p = _mm256_fmadd_ps (p, f, _mm256_set1_ps (1.0f));
  __m256i e = _mm256_slli_epi32 (
      _mm256_add_epi32 (_mm256_cvtps_epi32 (n), _mm256_set1_epi32 (127)), 23);
  return _mm256_and_ps (_mm256_mul_ps (p, _mm256_castsi256_ps (e)), live);
}

static inline AVX2 float
hsum_avx2 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

static inline AVX2 float
hmax_avx2 (__m256 v)
{
  __m128 s = _mm_max_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_max_ps (s, _mm_movehl_ps (s, s));
  s = _mm_max_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

/* Micro-tile: 4 rows × 16 keys, 8 accumulators. */
static AVX2 void
score_tile_avx2 (const float *qb, int d, const float *kt, float *s)
{
  for (int r = 0; r < BQ; r += 4)
    for (int c = 0; c < BK; c += 16)
      {
        __m256 a00 = _mm256_setzero_ps (), a01 = _mm256_setzero_ps ();
        __m256 a10 = _mm256_setzero_ps (), a11 = _mm256_setzero_ps ();
        __m256 a20 = _mm256_setzero_ps (), a21 = _mm256_setzero_ps ();
        __m256 a30 = _mm256_setzero_ps (), a31 = _mm256_setzero_ps ();
        const float *q0 = qb + r * d;
        for (int e = 0; e < d; e++)
          {
            __m256 k0 = _mm256_loadu_ps (kt + e * BK + c);
            __m256 k1 = _mm256_loadu_ps (kt + e * BK + c + 8);
            __m256 q = _mm256_broadcast_ss (q0 + e);
            a00 = _mm256_fmadd_ps (q, k0, a00);
            a01 = _mm256_fmadd_ps (q, k1, a01);
            q = _mm256_broadcast_ss (q0 + d + e);
            a10 = _mm256_fmadd_ps (q, k0, a10);
            a11 = _mm256_fmadd_ps (q, k1, a11);
            q = _mm256_broadcast_ss (q0 + 2 * d + e);
            a20 = _mm256_fmadd_ps (q, k0, a20);
            a21 = _mm256_fmadd_ps (q, k1, a21);
            q = _mm256_broadcast_ss (q0 + 3 * d + e);
            a30 = _mm256_fmadd_ps (q, k0, a30);
            a31 = _mm256_fmadd_ps (q, k1, a31);
          }
        float *o = s + r * BK + c;
        _mm256_storeu_ps (o, a00);
        _mm256_storeu_ps (o + 8, a01);
        _mm256_storeu_ps (o + BK, a10);
        _mm256_storeu_ps (o + BK + 8, a11);
        _mm256_storeu_ps (o + 2 * BK, a20);
        _mm256_storeu_ps (o + 2 * BK + 8, a21);
        _mm256_storeu_ps (o + 3 * BK, a30);
        _mm256_storeu_ps (o + 3 * BK + 8, a31);
      }
}

static AVX2 void
softmax_tile_avx2 (float *s, float *m, float *l, float *alpha)
{
  for (int r = 0; r < BQ; r++)
    {
      float *row = s + r * BK;
      __m256 mv = _mm256_set1_ps (m[r]);
      for (int j = 0; j < BK; j += 8)
        mv = _mm256_max_ps (mv, _mm256_loadu_ps (row + j));
      float mx = hmax_avx2 (mv);
      if (mx == -INFINITY)
        {
          memset (row, 0, BK * sizeof *row);
          alpha[r] = 1.0f;
          continue;
        }
      mv = _mm256_set1_ps (mx);
      __m256 sum = _mm256_setzero_ps ();
      for (int j = 0; j < BK; j += 8)
        {
          __m256 p = exp2_avx2 (_mm256_sub_ps (_mm256_loadu_ps (row + j), mv));
          _mm256_storeu_ps (row + j, p);
          sum = _mm256_add_ps (sum, p);
        }
      alpha[r] = _mm256_cvtss_f32 (exp2_avx2 (_mm256_set1_ps (m[r] - mx)));
      l[r] = l[r] * alpha[r] + hsum_avx2 (sum);
      m[r] = mx;
    }
}

/* Micro-tile: 4 rows × 16 output dims, 8 accumulators.  The packed
 * values are zero-padded to dp columns, so no load needs a mask. */
static AVX2 void
pv_tile_avx2 (const float *p, int nk, const float *v, int d, int dp,
              const float *alpha, float *ob)
{
  for (int c = 0; c < d; c += 16)
    for (int r = 0; r < BQ; r += 4)
      {
        float *o = ob + (int64_t) r * dp + c;
        __m256 a[4][2];
        for (int i = 0; i < 4; i++)
          {
            __m256 al = _mm256_set1_ps (alpha[r + i]);
            a[i][0] = _mm256_mul_ps (_mm256_loadu_ps (o + i * dp), al);
            a[i][1] = _mm256_mul_ps (_mm256_loadu_ps (o + i * dp + 8), al);
          }
        const float *pr = p + r * BK;
        for (int j = 0; j < nk; j++)
          {
            const float *vj = v + (int64_t) j * dp + c;
            __m256 v0 = _mm256_loadu_ps (vj), v1 = _mm256_loadu_ps (vj + 8);
            for (int i = 0; i < 4; i++)
              {
                __m256 pj = _mm256_broadcast_ss (pr + i * BK + j);
                a[i][0] = _mm256_fmadd_ps (pj, v0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps (pj, v1, a[i][1]);
              }
          }
        for (int i = 0; i < 4; i++)
          {
            _mm256_storeu_ps (o + i * dp, a[i][0]);
            _mm256_storeu_ps (o + i * dp + 8, a[i][1]);
          }
      }
}

/* ---- AVX-512 ------------------------------------------------------------- */

#define AVX512 __attribute__ ((target ("avx512f,avx512dq,avx512vl,avx2,fma")))

static inline AVX512 __m512
exp2_avx512 (__m512 x)
{
  __mmask16 live = _mm512_cmp_ps_mask (x, _mm512_set1_ps (-126.0f), _CMP_GE_OQ);
  x = _mm512_max_ps (x, _mm512_set1_ps (-126.0f));
  __m512 n = _mm512_roundscale_ps (x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_sub_ps (x, n);
  __m512 p = _mm512_set1_ps (1.5252733804059840e-5f);
  p = _mm512_fmadd_ps (p, f, _mm512_set1_ps (1.5403530393381609e-4f));
  p = _mm512_fmadd_ps (p, f, _mm512_set1_ps (1.3333558146428443e-3f));
  p = _mm512_fmadd_ps (p, f, _mm512_set1_ps (9.6181291076284772e-3f));
  p = _mm512_fmadd_ps (p, f, _mm512_set1_ps (5.5504108664821580e-2f));
  p = _mm512_fmadd_ps (p, f, _mm512_set1_ps (2.4022650695910071e-1f));
  p = _mm512_fmadd_ps (p, f, _mm512_set1_ps (6.9314718055994531e-1f));
  p = _mm512_fmadd_ps (p, f, _mm512_set1_ps (1.0f));
  return _mm512_maskz_scalef_ps (live, p, n);
}

/* Micro-tile: 4 rows × all 64 keys, 16 accumulators. */
static AVX512 void
score_tile_avx512 (const float *qb, int d, const float *kt, float *s)
{
  for (int r = 0; r < BQ; r += 4)
    {
      __m512 a[4][4];
      for (int i = 0; i < 4; i++)
        for (int c = 0; c < 4; c++)
          a[i][c] = _mm512_setzero_ps ();
      const float *q0 = qb + r * d;
      for (int e = 0; e < d; e++)
        {
          __m512 k[4];
          for (int c = 0; c < 4; c++)
            k[c] = _mm512_loadu_ps (kt + e * BK + 16 * c);
          for (int i = 0; i < 4; i++)
            {
              __m512 q = _mm512_set1_ps (q0[i * d + e]);
              for (int c = 0; c < 4; c++)
                a[i][c] = _mm512_fmadd_ps (q, k[c], a[i][c]);
            }
        }
      for (int i = 0; i < 4; i++)
        for (int c = 0; c < 4; c++)
          _mm512_storeu_ps (s + (r + i) * BK + 16 * c, a[i][c]);
    }
}

static AVX512 void
softmax_tile_avx512 (float *s, float *m, float *l, float *alpha)
{
  for (int r = 0; r < BQ; r++)
    {
      float *row = s + r * BK;
      __m512 x0 = _mm512_loadu_ps (row), x1 = _mm512_loadu_ps (row + 16);
      __m512 x2 = _mm512_loadu_ps (row + 32), x3 = _mm512_loadu_ps (row + 48);
      __m512 mv = _mm512_max_ps (_mm512_max_ps (x0, x1), _mm512_max_ps (x2, x3));
      float mx = _mm512_reduce_max_ps (mv);
      mx = m[r] > mx ? m[r] : mx;
      if (mx == -INFINITY)
        {
          memset (row, 0, BK * sizeof *row);
          alpha[r] = 1.0f;
          continue;
        }
      mv = _mm512_set1_ps (mx);
      x0 = exp2_avx512 (_mm512_sub_ps (x0, mv));
      x1 = exp2_avx512 (_mm512_sub_ps (x1, mv));
      x2 = exp2_avx512 (_mm512_sub_ps (x2, mv));
      x3 = exp2_avx512 (_mm512_sub_ps (x3, mv));
      _mm512_storeu_ps (row, x0);
      _mm512_storeu_ps (row + 16, x1);
      _mm512_storeu_ps (row + 32, x2);
      _mm512_storeu_ps (row + 48, x3);
      float sum = _mm512_reduce_add_ps (
          _mm512_add_ps (_mm512_add_ps (x0, x1), _mm512_add_ps (x2, x3)));
      alpha[r] = _mm512_cvtss_f32 (exp2_avx512 (_mm512_set1_ps (m[r] - mx)));
      l[r] = l[r] * alpha[r] + sum;
      m[r] = mx;
    }
}

/* Micro-tile: 4 rows × 64 output dims, 16 accumulators; the packed values
 * are zero-padded to dp (a multiple of 64) columns. */
static AVX512 void
pv_tile_avx512 (const float *p, int nk, const float *v, int d, int dp,
                const float *alpha, float *ob)
{
  for (int c0 = 0; c0 < d; c0 += 64)
    for (int r = 0; r < BQ; r += 4)
      {
        float *o = ob + (int64_t) r * dp + c0;
        __m512 a[4][4];
        for (int i = 0; i < 4; i++)
          {
            __m512 al = _mm512_set1_ps (alpha[r + i]);
            for (int c = 0; c < 4; c++)
              a[i][c] = _mm512_mul_ps (_mm512_loadu_ps (o + i * dp + 16 * c), al);
          }
        const float *pr = p + r * BK;
        for (int j = 0; j < nk; j++)
          {
            const float *vj = v + (int64_t) j * dp + c0;
            __m512 vv[4];
            for (int c = 0; c < 4; c++)
              vv[c] = _mm512_loadu_ps (vj + 16 * c);
            for (int i = 0; i < 4; i++)
              {
                __m512 pj = _mm512_set1_ps (pr[i * BK + j]);
                for (int c = 0; c < 4; c++)
                  a[i][c] = _mm512_fmadd_ps (pj, vv[c], a[i][c]);
              }
          }
        for (int i = 0; i < 4; i++)
          for (int c = 0; c < 4; c++)
            _mm512_storeu_ps (o + i * dp + 16 * c, a[i][c]);
      }
}

/* ---- AVX-512 BF16 --------------------------------------------------------- */

#define AVX512BF16 __attribute__ ((target ("avx512f,avx512dq,avx512vl,avx512bw,avx512bf16,avx2,fma")))

static inline uint32_t
bf16_pair (float lo, float hi)
{
  return (uint32_t) bn_f32_to_bf16 (lo) | (uint32_t) bn_f32_to_bf16 (hi) << 16;
}

/* S = Qb · Kt with qb [BQ][d/2] and kt [d/2][BK] bf16 pairs. */
static AVX512BF16 void
score_tile_bf16 (const uint32_t *qb, int d, const uint32_t *kt, float *s)
{
  const int dh = d / 2;
  for (int r = 0; r < BQ; r += 4)
    {
      __m512 a[4][4];
      for (int i = 0; i < 4; i++)
        for (int c = 0; c < 4; c++)
          a[i][c] = _mm512_setzero_ps ();
      for (int e = 0; e < dh; e++)
        {
          __m512bh k[4];
          for (int c = 0; c < 4; c++)
            k[c] = (__m512bh) _mm512_loadu_si512 (kt + e * BK + 16 * c);
          for (int i = 0; i < 4; i++)
            {
              __m512bh q = (__m512bh) _mm512_set1_epi32 ((int) qb[(r + i) * dh + e]);
              for (int c = 0; c < 4; c++)
                a[i][c] = _mm512_dpbf16_ps (a[i][c], k[c], q);
            }
        }
      for (int i = 0; i < 4; i++)
        for (int c = 0; c < 4; c++)
          _mm512_storeu_ps (s + (r + i) * BK + 16 * c, a[i][c]);
    }
}

/* ob = alpha·ob + P·V with p [BQ][BK/2] and v [BK/2][dp] bf16 pairs; pairs
 * past nk hold zeros. */
static AVX512BF16 void
pv_tile_bf16 (const uint32_t *p, int nk, const uint32_t *v, int d, int dp,
              const float *alpha, float *ob)
{
  const int pairs = (nk + 1) / 2;
  for (int c0 = 0; c0 < d; c0 += 64)
    for (int r = 0; r < BQ; r += 4)
      {
        float *o = ob + (int64_t) r * dp + c0;
        __m512 a[4][4];
        for (int i = 0; i < 4; i++)
          {
            __m512 al = _mm512_set1_ps (alpha[r + i]);
            for (int c = 0; c < 4; c++)
              a[i][c] = _mm512_mul_ps (_mm512_loadu_ps (o + i * dp + 16 * c), al);
          }
        for (int j = 0; j < pairs; j++)
          {
            const uint32_t *vj = v + (int64_t) j * dp + c0;
            __m512bh vv[4];
            for (int c = 0; c < 4; c++)
              vv[c] = (__m512bh) _mm512_loadu_si512 (vj + 16 * c);
            for (int i = 0; i < 4; i++)
              {
                __m512bh pj = (__m512bh) _mm512_set1_epi32 ((int) p[(r + i) * (BK / 2) + j]);
                for (int c = 0; c < 4; c++)
                  a[i][c] = _mm512_dpbf16_ps (a[i][c], vv[c], pj);
              }
          }
        for (int i = 0; i < 4; i++)
          for (int c = 0; c < 4; c++)
            _mm512_storeu_ps (o + i * dp + 16 * c, a[i][c]);
      }
}

/* ---- driver -------------------------------------------------------------- */

static void
score_tile (BnIsa isa, const float *qb, int d, const float *kt, float *s)
{
  switch (isa)
    {
    case BN_ISA_AVX512:
      score_tile_avx512 (qb, d, kt, s);
      break;
    case BN_ISA_AVX2:
      score_tile_avx2 (qb, d, kt, s);
      break;
    default:
      score_tile_base (qb, d, kt, s);
      break;
    }
}

static void
softmax_tile (BnIsa isa, float *s, float *m, float *l, float *alpha)
{
  switch (isa)
    {
    case BN_ISA_AVX512:
      softmax_tile_avx512 (s, m, l, alpha);
      break;
    case BN_ISA_AVX2:
      softmax_tile_avx2 (s, m, l, alpha);
      break;
    default:
      softmax_tile_base (s, m, l, alpha);
      break;
    }
}

static void
pv_tile (BnIsa isa, const float *p, int nk, const float *v, int d, int dp,
         const float *alpha, float *ob)
{
  switch (isa)
    {
    case BN_ISA_AVX512:
      pv_tile_avx512 (p, nk, v, d, dp, alpha, ob);
      break;
    case BN_ISA_AVX2:
      pv_tile_avx2 (p, nk, v, d, dp, alpha, ob);
      break;
    default:
      pv_tile_base (p, nk, v, d, dp, alpha, ob);
      break;
    }
}

/* Task t packs block t % nkb of KV head kv0 + t / nkb: the keys
 * transposed and zero-padded to BK, the values as BK contiguous rows of dp
 * floats.  In the caller's layout consecutive value rows are a multiple of
 * 4 KiB apart for the usual widths (24 heads × 128 floats = 12 KiB) and
 * would all fall into the same L1 set. */
static void
pack_kv (void *data, int64_t begin, int64_t end, int thread_index)
{
  const Ctx *c = data;
  const BnAttention *a = c->a;
  int d = a->head_dim, dp = c->dp;
  for (int64_t t = begin; t < end; t++)
    {
      int64_t kb = t % c->nkb;
      if (c->kb_state[kb] == KB_HIDDEN)
        continue;
      int kvh = c->kv0 + (int) (t / c->nkb);
      int64_t j0 = kb * BK;
      int nk = (int) MIN (BK, a->n_kv - j0);
      if (c->bf16)
        {
          uint32_t *kt = c->kt16 + t * (d / 2) * BK;
          uint32_t *vp = c->vp16 + t * dp * (BK / 2);
          for (int j = 0; j < BK; j++)
            {
              const float *k = a->k + (j0 + j) * a->ldk + (int64_t) kvh * d;
              for (int e = 0; e < d; e += 2)
                kt[(e / 2) * BK + j] = j < nk ? bf16_pair (k[e], k[e + 1]) : 0u;
            }
          for (int j = 0; j < BK; j += 2)
            {
              const float *v0 = a->v + (j0 + j) * a->ldv + (int64_t) kvh * d;
              const float *v1 = v0 + a->ldv;
              for (int e = 0; e < dp; e++)
                vp[(j / 2) * dp + e] = e < d && j < nk
                                         ? bf16_pair (v0[e], j + 1 < nk ? v1[e] : 0.0f) : 0u;
            }
          continue;
        }
      float *kt = c->kt + t * d * BK;
      float *vp = c->vp + t * dp * BK;
      for (int j = 0; j < nk; j++)
        {
          const float *k = a->k + (j0 + j) * a->ldk + (int64_t) kvh * d;
          for (int e = 0; e < d; e++)
            kt[e * BK + j] = k[e];
          const float *v = a->v + (j0 + j) * a->ldv + (int64_t) kvh * d;
          memcpy (vp + (int64_t) j * dp, v, d * sizeof *v);
          memset (vp + (int64_t) j * dp + d, 0, (dp - d) * sizeof *v);
        }
      for (int e = 0; e < d; e++)
        for (int j = nk; j < BK; j++)
          kt[e * BK + j] = 0.0f;
    }
}

/* Hides the scores of padding keys, keys past n_kv and, when causal, keys
 * after each row's query. */
static void
mask_tile (const BnAttention *a, const uint8_t *kb_state, int64_t kb,
           int64_t i0, float *s)
{
  int64_t j0 = kb * BK;
  int nk = (int) MIN (BK, a->n_kv - j0);
  for (int r = 0; r < BQ; r++)
    {
      float *row = s + r * BK;
      int vis = nk;
      if (a->causal)
        vis = (int) CLAMP (i0 + r - j0 + 1, 0, nk);
      for (int j = vis; j < BK; j++)
        row[j] = -INFINITY;
      if (kb_state[kb] == KB_MIXED)
        for (int j = 0; j < vis; j++)
          if (!a->key_mask[j0 + j])
            row[j] = -INFINITY;
    }
}

/* Orders the query blocks of a head as 0, n−1, 1, n−2, …, so that the
 * contiguous chunks bn_parallel_for hands out get equal causal work. */
static int64_t
zigzag (int64_t t, int64_t n)
{
  return t % 2 == 0 ? t / 2 : n - 1 - t / 2;
}

static void
attend (void *data, int64_t begin, int64_t end, int thread_index)
{
  const Ctx *c = data;
  const BnAttention *a = c->a;
  int d = a->head_dim, dp = c->dp;
  float *qb = g_aligned_alloc (BQ * (gsize) d, sizeof (float), 64);
  float *ob = g_aligned_alloc (BQ * (gsize) dp, sizeof (float), 64);
  float *s = g_aligned_alloc (BQ * BK, sizeof (float), 64);
  /* bf16 pairs of the scaled queries and of the probabilities. */
  uint32_t *qb16 = c->bf16 ? g_new (uint32_t, BQ * (gsize) (d / 2)) : NULL;
  uint32_t *p16 = c->bf16 ? g_new (uint32_t, BQ * (BK / 2)) : NULL;
  float m[BQ], l[BQ], alpha[BQ];

  for (int64_t t = begin; t < end; t++)
    {
      int hl = (int) (t / c->nqb);
      int kvl = hl / c->group;
      int h = c->kv0 * c->group + hl;
      int64_t i0 = zigzag (t % c->nqb, c->nqb) * BQ;
      int rows = (int) MIN (BQ, a->n_q - i0);

      for (int r = 0; r < BQ; r++)
        {
          float *dst = qb + r * d;
          if (r < rows)
            {
              const float *src = a->q + (i0 + r) * a->ldq + (int64_t) h * d;
              for (int e = 0; e < d; e++)
                dst[e] = src[e] * c->qscale;
            }
          else
            memset (dst, 0, d * sizeof *dst);
          m[r] = -INFINITY;
          l[r] = 0.0f;
          for (int e = 0; c->bf16 && e < d; e += 2)
            qb16[r * (d / 2) + e / 2] = bf16_pair (dst[e], dst[e + 1]);
        }
      memset (ob, 0, BQ * (gsize) dp * sizeof *ob);

      int64_t kv_end = a->causal ? MIN (a->n_kv, i0 + rows) : a->n_kv;
      int64_t kb_end = (kv_end + BK - 1) / BK;
      for (int64_t kb = 0; kb < kb_end; kb++)
        {
          if (c->kb_state[kb] == KB_HIDDEN)
            continue;
          int64_t blk = (int64_t) kvl * c->nkb + kb;
          int nk = (int) MIN (BK, a->n_kv - kb * BK);
          if (c->bf16)
            score_tile_bf16 (qb16, d, c->kt16 + blk * (d / 2) * BK, s);
          else
            score_tile (c->isa, qb, d, c->kt + blk * d * BK, s);
          mask_tile (a, c->kb_state, kb, i0, s);
          softmax_tile (c->isa, s, m, l, alpha);
          if (c->bf16)
            {
              /* Hidden keys have probability 0, so odd nk pads with 0. */
              for (int i = 0; i < BQ * BK; i += 2)
                p16[i / 2] = bf16_pair (s[i], s[i + 1]);
              pv_tile_bf16 (p16, nk, c->vp16 + blk * dp * (BK / 2), d, dp, alpha, ob);
            }
          else
            pv_tile (c->isa, s, nk, c->vp + blk * dp * BK, d, dp, alpha, ob);
        }

      for (int r = 0; r < rows; r++)
        {
          float *dst = a->out + (i0 + r) * a->ldo + (int64_t) h * d;
          const float *o = ob + (int64_t) r * dp;
          if (l[r] > 0.0f)
            for (int e = 0; e < d; e++)
              dst[e] = o[e] / l[r];
          else
            memset (dst, 0, d * sizeof *dst);
        }
    }
  g_aligned_free (qb);
  g_aligned_free (ob);
  g_aligned_free (s);
  g_free (qb16);
  g_free (p16);
}

void
bn_attention_isa (BnThreadPool *pool, BnIsa isa, const BnAttention *a)
{
  g_return_if_fail (a->head_dim > 0 && a->n_kv_heads > 0
                    && a->n_heads % a->n_kv_heads == 0);
  if (a->n_q <= 0)
    return;
  int d = a->head_dim;
  Ctx c = {
    .a = a,
    .isa = isa,
    .group = a->n_heads / a->n_kv_heads,
    .dp = (d + 63) / 64 * 64,
    .nqb = (a->n_q + BQ - 1) / BQ,
    .nkb = (a->n_kv + BK - 1) / BK,
    .qscale = a->scale * (float) M_LOG2E,
    .bf16 = a->bf16 && isa >= BN_ISA_AVX512 && bn_cpu_has_bf16 () && d % 2 == 0,
  };
  uint8_t *kb_state = g_new (uint8_t, MAX (c.nkb, 1));
  for (int64_t kb = 0; kb < c.nkb; kb++)
    {
      int64_t j0 = kb * BK, j1 = MIN (a->n_kv, j0 + BK), seen = 0;
      for (int64_t j = j0; j < j1; j++)
        seen += !a->key_mask || a->key_mask[j];
      kb_state[kb] = seen == 0 ? KB_HIDDEN : seen == j1 - j0 ? KB_VISIBLE : KB_MIXED;
    }
  c.kb_state = kb_state;

  /* bf16 pairs take half the bytes of floats. */
  const int64_t esz = c.bf16 ? 2 : (int64_t) sizeof (float);
  int64_t kt_bytes = c.nkb * BK * d * esz;
  int64_t vp_bytes = c.nkb * BK * c.dp * esz;
  int per_pass = (int) CLAMP (PACK_BUDGET / MAX (kt_bytes + vp_bytes, 1), 1,
                              a->n_kv_heads);
  void *kt = g_aligned_alloc ((gsize) MAX (kt_bytes, 1) * per_pass, 1, 64);
  void *vp = g_aligned_alloc ((gsize) MAX (vp_bytes, 1) * per_pass, 1, 64);
  c.kt = kt;
  c.vp = vp;
  c.kt16 = kt;
  c.vp16 = vp;
  for (c.kv0 = 0; c.kv0 < a->n_kv_heads; c.kv0 += per_pass)
    {
      c.n_kvp = MIN (per_pass, a->n_kv_heads - c.kv0);
      bn_parallel_for (pool, c.n_kvp * c.nkb, pack_kv, &c);
      bn_parallel_for (pool, (int64_t) c.n_kvp * c.group * c.nqb, attend, &c);
    }
  g_aligned_free (c.kt);
  g_aligned_free (c.vp);
  g_free (kb_state);
}

void
bn_attention (BnThreadPool *pool, const BnAttention *a)
{
  bn_attention_isa (pool, bn_cpu_isa (), a);
}
