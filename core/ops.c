/* ops.c — normalisation, activations and RoPE on fp32 rows.
 *
 * Row statistics are accumulated in double in index order, so a row's
 * result depends on nothing but the row.  The activations use a polynomial
 * exp written in plain C that the compiler vectorises; every step is an
 * individually rounded IEEE operation (the project builds in ISO C mode,
 * so nothing is contracted into FMAs), which makes the AVX2 clone
 * bit-identical to the baseline one. */
#include "ops.h"

#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

void
bn_rmsnorm_rows (float *x, int64_t rows, int64_t n, int64_t ld,
                 const float *weight, float eps)
{
  for (int64_t r = 0; r < rows; r++)
    {
      float *row = x + r * ld;
      double ss = 0.0;
      for (int64_t i = 0; i < n; i++)
        ss += (double) row[i] * row[i];
      /* As PyTorch: x · rsqrt(mean + eps), then · weight, in f32. */
      float inv = (float) (1.0 / sqrt (ss / (double) n + eps));
      if (weight)
        for (int64_t i = 0; i < n; i++)
          row[i] = (row[i] * inv) * weight[i];
      else
        for (int64_t i = 0; i < n; i++)
          row[i] *= inv;
    }
}

void
bn_layernorm_rows (const float *x, float *y, int64_t rows, int64_t n,
                   int64_t ld, float eps)
{
  for (int64_t r = 0; r < rows; r++)
    {
      const float *in = x + r * ld;
      float *out = y + r * ld;
      double sum = 0.0;
      for (int64_t i = 0; i < n; i++)
        sum += in[i];
      double mean = sum / (double) n;
      /* Two passes: the variance of the centred values does not cancel. */
      double ss = 0.0;
      for (int64_t i = 0; i < n; i++)
        {
          double d = in[i] - mean;
          ss += d * d;
        }
      /* Centred in double: rounding the mean to f32 first would cost
       * digits when |mean| ≫ std. */
      double inv = 1.0 / sqrt (ss / (double) n + eps);
      for (int64_t i = 0; i < n; i++)
        out[i] = (float) ((in[i] - mean) * inv);
    }
}

/* e^x for x in [-87, 88] to about 2 ulp: x = n·ln2 + r with ln2 split in
 * two (Cody–Waite), e^r by a degree-6 polynomial, 2^n put in the exponent.
 * Below that range it is 0, above it +inf, which saturates sigmoid as the
 * true values do.  Written once for 8 lanes with GCC vector extensions (lowered
 * to whatever the function's target has) and once for a scalar tail that
 * performs the same operations, so every element gets the same bits. */
typedef float v8f __attribute__ ((vector_size (32)));
typedef int32_t v8i __attribute__ ((vector_size (32)));

#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
#define EXP_MAGIC 12582912.0f /* 1.5·2²³: x + magic − magic rounds to int */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693145751953125f
#define EXP_LN2_LO 1.428606765330187e-06f

#define EXP_POLY(p, r)                                                    \
  do                                                                      \
    {                                                                     \
      p = r * (1.0f / 720.0f) + 1.0f / 120.0f;                            \
      p = p * r + 1.0f / 24.0f;                                           \
      p = p * r + 1.0f / 6.0f;                                            \
      p = p * r + 0.5f;                                                   \
      p = p * r + 1.0f;                                                   \
      p = p * r + 1.0f;                                                   \
    }                                                                     \
  while (0)

static inline __attribute__ ((always_inline)) float
exp_scalar (float x)
{
  if (x < EXP_LO)
    return 0.0f;
  if (x > EXP_HI)
    return INFINITY;
  float n = (x * EXP_LOG2E + EXP_MAGIC) - EXP_MAGIC;
  float r = x - n * EXP_LN2_HI;
  r = r - n * EXP_LN2_LO;
  float p;
  EXP_POLY (p, r);
  int32_t bits = ((int32_t) n + 127) << 23;
  float scale;
  memcpy (&scale, &bits, sizeof scale);
  return p * scale;
}

/* In place, through a pointer: vector arguments would trip GCC's note
 * about the AVX calling convention in the baseline clone. */
static inline __attribute__ ((always_inline)) void
exp_v8 (v8f *v)
{
  const v8f lo = { EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO, EXP_LO };
  const v8f hi = { EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI, EXP_HI };
  v8f x = *v;
  v8i below = x < lo, above = x > hi;
  x = (v8f) (((v8i) x & ~below) | ((v8i) lo & below));
  x = (v8f) (((v8i) x & ~above) | ((v8i) hi & above));
  v8f n = (x * EXP_LOG2E + EXP_MAGIC) - EXP_MAGIC;
  v8f r = x - n * EXP_LN2_HI;
  r = r - n * EXP_LN2_LO;
  v8f p;
  EXP_POLY (p, r);
  v8i bits = (__builtin_convertvector (n, v8i) + 127) << 23;
  const v8i inf = { 0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000,
                    0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000 };
  *v = (v8f) ((((v8i) (p * (v8f) bits) & ~above) | (inf & above)) & ~below);
}

static inline __attribute__ ((always_inline)) void
swiglu_body (const float *gate, const float *up, float *out, int64_t n)
{
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    {
      v8f g, u;
      memcpy (&g, gate + i, sizeof g);
      if (up)
        memcpy (&u, up + i, sizeof u);
      v8f e = -g;
      exp_v8 (&e);
      v8f y = g / (1.0f + e);
      if (up)
        y = y * u;
      memcpy (out + i, &y, sizeof y);
    }
  for (; i < n; i++)
    {
      float y = gate[i] / (1.0f + exp_scalar (-gate[i]));
      out[i] = up ? y * up[i] : y;
    }
}

/* up NULL: silu. */
static void
swiglu_base (const float *gate, const float *up, float *out, int64_t n)
{
  swiglu_body (gate, up, out, n);
}

static __attribute__ ((target ("avx2"))) void
swiglu_avx2 (const float *gate, const float *up, float *out, int64_t n)
{
  swiglu_body (gate, up, out, n);
}

static void
swiglu_dispatch (const float *gate, const float *up, float *out, int64_t n)
{
  if (bn_cpu_isa () >= BN_ISA_AVX2)
    swiglu_avx2 (gate, up, out, n);
  else
    swiglu_base (gate, up, out, n);
}

void
bn_silu (float *x, int64_t n)
{
  swiglu_dispatch (x, NULL, x, n);
}

void
bn_swiglu (const float *gate, const float *up, float *out, int64_t n)
{
  swiglu_dispatch (gate, up, out, n);
}

/* As diffusers: frequency 1 / theta^(2j/dim) and angle pos·freq in
 * double, cos and sin in double, then one rounding to f32. */
static void
rope_pairs (double pos, int dim, double theta, float *cos_t, float *sin_t)
{
  for (int j = 0; j < dim / 2; j++)
    {
      double freq = 1.0 / pow (theta, (double) (2 * j) / (double) dim);
      double angle = pos * freq;
      cos_t[j] = (float) cos (angle);
      sin_t[j] = (float) sin (angle);
    }
}

void
bn_rope_table_axes (const int64_t *ids, int64_t n_tok, const int *axes_dim,
                    int n_axes, double theta, float *cos_t, float *sin_t)
{
  int half = 0;
  for (int a = 0; a < n_axes; a++)
    half += axes_dim[a] / 2;
  for (int64_t t = 0; t < n_tok; t++)
    {
      int off = 0;
      for (int a = 0; a < n_axes; a++)
        {
          rope_pairs ((double) ids[t * n_axes + a], axes_dim[a], theta,
                      cos_t + t * half + off, sin_t + t * half + off);
          off += axes_dim[a] / 2;
        }
    }
}

void
bn_rope_table_linear (int64_t n_tok, int head_dim, double theta,
                      float *cos_t, float *sin_t)
{
  int half = head_dim / 2;
  for (int64_t t = 0; t < n_tok; t++)
    rope_pairs ((double) t, head_dim, theta, cos_t + t * half,
                sin_t + t * half);
}

void
bn_rope_interleaved (float *x, int64_t n_tok, int64_t ld, int n_heads,
                     int head_dim, const float *cos_t, const float *sin_t)
{
  int half = head_dim / 2;
  for (int64_t t = 0; t < n_tok; t++)
    {
      const float *c = cos_t + t * half, *s = sin_t + t * half;
      for (int h = 0; h < n_heads; h++)
        {
          float *p = x + t * ld + (int64_t) h * head_dim;
          for (int j = 0; j < half; j++)
            {
              float a = p[2 * j], b = p[2 * j + 1];
              p[2 * j] = a * c[j] - b * s[j];
              p[2 * j + 1] = b * c[j] + a * s[j];
            }
        }
    }
}

void
bn_rope_half (float *x, int64_t n_tok, int64_t ld, int n_heads, int head_dim,
              const float *cos_t, const float *sin_t)
{
  int half = head_dim / 2;
  for (int64_t t = 0; t < n_tok; t++)
    {
      const float *c = cos_t + t * half, *s = sin_t + t * half;
      for (int h = 0; h < n_heads; h++)
        {
          float *p = x + t * ld + (int64_t) h * head_dim;
          for (int j = 0; j < half; j++)
            {
              float a = p[j], b = p[j + half];
              p[j] = a * c[j] - b * s[j];
              p[j + half] = b * c[j] + a * s[j];
            }
        }
    }
}
