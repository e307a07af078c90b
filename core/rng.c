/* rng.c — Philox4x32-10 and the uniform and normal streams documented in
 * rng.h.  The transcendental functions are spelled out with basic IEEE
 * operations so that the bits do not depend on a maths library; the
 * project builds in ISO C mode, where GCC fuses nothing into FMAs. */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void
bn_philox4x32_10 (const uint32_t counter[4], const uint32_t key[2],
                  uint32_t out[4])
{
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++)
    {
      if (round > 0)
        {
          k0 += PHILOX_W0;
          k1 += PHILOX_W1;
        }
      uint64_t p0 = (uint64_t) PHILOX_M0 * c0;
      uint64_t p1 = (uint64_t) PHILOX_M1 * c2;
      c0 = (uint32_t) (p1 >> 32) ^ c1 ^ k0;
      c1 = (uint32_t) p1;
      c2 = (uint32_t) (p0 >> 32) ^ c3 ^ k1;
      c3 = (uint32_t) p0;
    }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

static void
block (guint64 seed, guint64 b, uint32_t x[4])
{
  const uint32_t key[2] = { (uint32_t) seed, (uint32_t) (seed >> 32) };
  const uint32_t counter[4] = { (uint32_t) b, (uint32_t) (b >> 32), 0, 0 };
  bn_philox4x32_10 (counter, key, x);
}

void
bn_rng_uniform (guint64 seed, guint64 first, float *out, int64_t n)
{
  uint32_t x[4];
  for (int64_t k = 0; k < n; k++)
    {
      guint64 i = first + (guint64) k;
      if (k == 0 || i % 4 == 0)
        block (seed, i / 4, x);
      out[k] = (float) (x[i % 4] >> 8) * 0x1p-24f;
    }
}

/* The constants of rng.h, built by the same IEEE divisions a port makes. */
typedef struct {
  double l[12], s[9], c[10];
} Coeffs;

static void
coeffs_init (Coeffs *k)
{
  for (int i = 0; i < 12; i++)
    k->l[i] = 1.0 / (double) (2 * i + 1);
  double fact = 1.0; /* n!, exact for n <= 18 */
  for (int n = 0; n <= 18; n++)
    {
      if (n > 0)
        fact *= n;
      double inv = ((n / 2) % 2 ? -1.0 : 1.0) / fact;
      if (n % 2)
        k->s[n / 2] = inv;
      else
        k->c[n / 2] = inv;
    }
}

static double
ln_open01 (const Coeffs *k, double u)
{
  int e;
  double m = frexp (u, &e);
  if (m < 0x1.6a09e667f3bcdp-1)
    {
      m = 2.0 * m;
      e = e - 1;
    }
  double t = (m - 1.0) / (m + 1.0);
  double t2 = t * t;
  double p = k->l[11];
  for (int i = 10; i >= 0; i--)
    p = p * t2 + k->l[i];
  return (double) e * 0x1.62e42fefa39efp-1 + (2.0 * t) * p;
}

/* cos and sin of 2πv. */
static void
sincos_turn (const Coeffs *k, double v, double *cos_out, double *sin_out)
{
  double q = floor (4.0 * v + 0.5);
  double g = 4.0 * v - q;
  double a = g * 0x1.921fb54442d18p+0;
  double a2 = a * a;
  double sn = k->s[8];
  for (int i = 7; i >= 0; i--)
    sn = sn * a2 + k->s[i];
  sn = a * sn;
  double cs = k->c[9];
  for (int i = 8; i >= 0; i--)
    cs = cs * a2 + k->c[i];
  switch ((int) q % 4)
    {
    case 0:
      *cos_out = cs, *sin_out = sn;
      break;
    case 1:
      *cos_out = -sn, *sin_out = cs;
      break;
    case 2:
      *cos_out = -cs, *sin_out = -sn;
      break;
    default:
      *cos_out = sn, *sin_out = -cs;
      break;
    }
}

static void
box_muller (const Coeffs *k, uint32_t x, uint32_t y, float z[2])
{
  double u = ((double) x + 0.5) * 0x1p-32;
  double v = ((double) y + 0.5) * 0x1p-32;
  double r = sqrt (-2.0 * ln_open01 (k, u));
  double c, s;
  sincos_turn (k, v, &c, &s);
  z[0] = (float) (r * c);
  z[1] = (float) (r * s);
}

void
bn_rng_normal (guint64 seed, guint64 first, float *out, int64_t n)
{
  Coeffs k;
  coeffs_init (&k);
  uint32_t x[4];
  float z[4];
  for (int64_t j = 0; j < n; j++)
    {
      guint64 i = first + (guint64) j;
      if (j == 0 || i % 4 == 0)
        {
          block (seed, i / 4, x);
          box_muller (&k, x[0], x[1], z);
          box_muller (&k, x[2], x[3], z + 2);
        }
      out[j] = z[i % 4];
    }
}
