/* rng.h — reproducible noise from a counter-based generator (internal).
 *
 * Every number is a pure function of (seed, element index), so any backend,
 * thread count or split into calls draws the same values.  The algorithm,
 * exactly (a CUDA port that follows it gets the same bits):
 *
 * Generator: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", SC 2011; Random123), unchanged:
 *   M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85.
 *   A round maps counter (c0, c1, c2, c3) under key (k0, k1) to
 *     (hi(M1·c2) ^ c1 ^ k0,  lo(M1·c2),  hi(M0·c0) ^ c3 ^ k1,  lo(M0·c0))
 *   where hi/lo are the upper/lower 32 bits of the 64-bit product.  Ten
 *   rounds; between consecutive rounds (nine times) k0 += W0, k1 += W1
 *   (mod 2³²).  The result is the counter after the tenth round.
 *
 * Stream: seed s (64 bits) is the key (k0, k1) = (s mod 2³², s >> 32).
 *   Block b (64 bits) is the result for counter (b mod 2³², b >> 32, 0, 0),
 *   four words x0 x1 x2 x3.  Element i comes from block b = i / 4.
 *
 * Uniform (bn_rng_uniform): element 4b + j = (x_j >> 8) · 2⁻²⁴ — exact in
 *   f32, in [0, 1).
 *
 * Normal (bn_rng_normal): Box–Muller, elements 4b and 4b+1 from the pair
 *   (x0, x1), elements 4b+2 and 4b+3 from (x2, x3).  For a pair (x, y):
 *     u = (x + 0.5) · 2⁻³²,  v = (y + 0.5) · 2⁻³²      (exact doubles in (0, 1))
 *     r = sqrt(−2 · ln u)
 *     first  = (float) (r · cos 2πv),  second = (float) (r · sin 2πv)
 *   ln, cos and sin come from no maths library (their last bits differ
 *   between CPUs and GPUs); they are evaluated in IEEE double, every +, −,
 *   ·, / and sqrt rounded to nearest and none fused (CUDA: __dadd_rn,
 *   __dmul_rn, __ddiv_rn, __dsqrt_rn, or nvcc -fmad=false), in exactly
 *   this order:
 *     ln u:  frexp(u) = (m, e) with m in [½, 1); if m < SQRT_HALF then
 *            m = 2m, e = e − 1.  t = (m − 1) / (m + 1), t2 = t · t.
 *            p = L[11]; for k = 10 … 0: p = p · t2 + L[k].
 *            ln u = e · LN2 + (2 · t) · p.
 *     2πv:   q = floor(4v + 0.5), g = 4v − q, a = g · HALF_PI
 *            (|a| <= π/4), a2 = a · a.
 *            sn = S[8]; for k = 7 … 0: sn = sn · a2 + S[k];  sn = a · sn.
 *            cs = C[9]; for k = 8 … 0: cs = cs · a2 + C[k].
 *            (cos, sin) of 2πv by q mod 4: 0: (cs, sn), 1: (−sn, cs),
 *            2: (−cs, −sn), 3: (sn, −cs).
 *   Constants (doubles): L[k] = 1.0 / (2k + 1); S[k] = ±1.0 / (2k + 1)!,
 *   C[k] = ±1.0 / (2k)!, sign (−1)^k, each the quotient of the IEEE
 *   division 1.0 / n! (n <= 18, so n! < 2⁵³ is exact);
 *   SQRT_HALF = 0x1.6a09e667f3bcdp-1, LN2 = 0x1.62e42fefa39efp-1,
 *   HALF_PI = 0x1.921fb54442d18p+0.
 *
 * The initial latents of an image are elements 0 … C·h·w − 1 of the seed's
 * stream, in the C order of [C, H/16, W/16].
 */
#ifndef BN_RNG_H
#define BN_RNG_H

#include <glib.h>
#include <stdint.h>

/* One Philox4x32-10 block: out = philox(counter, key). */
void bn_philox4x32_10 (const uint32_t counter[4], const uint32_t key[2],
                       uint32_t out[4]);

/* out[k] = uniform element (first + k) of stream `seed`, k < n. */
void bn_rng_uniform (guint64 seed, guint64 first, float *out, int64_t n);
/* out[k] = standard normal element (first + k) of stream `seed`, k < n. */
void bn_rng_normal (guint64 seed, guint64 first, float *out, int64_t n);

#endif
