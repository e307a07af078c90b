/* test-ops.c — every operator of core/ops.h against a naive double-precision
 * oracle written here, attention on every ISA this CPU runs and for several
 * thread counts (which must give identical bits). */
#include "ops.h"
#include "kernels/kernels.h"

#include <glib.h>
#include <math.h>
#include <string.h>

/* Uniform floats in [lo, hi) from GLib's seeded generator. */
static float *
random_floats (GRand *rng, int64_t n, double lo, double hi)
{
  float *x = g_new (float, MAX (n, 1));
  for (int64_t i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (rng, lo, hi);
  return x;
}

static void
assert_close (const float *got, const double *want, int64_t n, double rel,
              double abs_floor)
{
  double max_ref = 0.0;
  for (int64_t i = 0; i < n; i++)
    max_ref = MAX (max_ref, fabs (want[i]));
  double tol = rel * MAX (max_ref, abs_floor);
  for (int64_t i = 0; i < n; i++)
    if (!(fabs (got[i] - want[i]) <= tol))
      g_error ("element %" G_GINT64_FORMAT ": got %.9g, want %.9g (tol %.3g)",
               i, got[i], want[i], tol);
}

/* ---- norms and activations ---------------------------------------------- */

static void
test_rmsnorm (void)
{
  GRand *rng = g_rand_new_with_seed (1);
  const int64_t rows = 5, n = 67, ld = 70;
  float *x = random_floats (rng, rows * ld, -3, 3);
  float *w = random_floats (rng, n, 0.5, 1.5);
  for (int with_weight = 0; with_weight < 2; with_weight++)
    {
      float *y = g_memdup2 (x, rows * ld * sizeof *x);
      double *want = g_new (double, rows * ld);
      for (int64_t r = 0; r < rows; r++)
        {
          double ss = 0;
          for (int64_t i = 0; i < n; i++)
            ss += (double) x[r * ld + i] * x[r * ld + i];
          double inv = 1.0 / sqrt (ss / n + 1e-6);
          for (int64_t i = 0; i < ld; i++)
            want[r * ld + i] = i < n ? x[r * ld + i] * inv * (with_weight ? w[i] : 1.0)
                                     : x[r * ld + i];
        }
      bn_rmsnorm_rows (y, rows, n, ld, with_weight ? w : NULL, 1e-6f);
      assert_close (y, want, rows * ld, 1e-6, 1.0);
      /* Padding between rows is left alone. */
      for (int64_t r = 0; r < rows; r++)
        g_assert_cmpmem (y + r * ld + n, (ld - n) * sizeof *y,
                         x + r * ld + n, (ld - n) * sizeof *x);
      g_free (y);
      g_free (want);
    }
  g_free (x);
  g_free (w);
  g_rand_free (rng);
}

static void
test_layernorm (void)
{
  GRand *rng = g_rand_new_with_seed (2);
  const int64_t rows = 4, n = 130, ld = 131;
  /* A large offset: a one-pass variance would cancel badly. */
  float *x = random_floats (rng, rows * ld, 999, 1001);
  double *want = g_new (double, rows * ld);
  for (int64_t r = 0; r < rows; r++)
    {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < n; i++)
        mean += x[r * ld + i];
      mean /= n;
      for (int64_t i = 0; i < n; i++)
        var += (x[r * ld + i] - mean) * (x[r * ld + i] - mean);
      var /= n;
      for (int64_t i = 0; i < n; i++)
        want[r * ld + i] = (x[r * ld + i] - mean) / sqrt (var + 1e-6);
    }
  float *y = g_new0 (float, rows * ld);
  bn_layernorm_rows (x, y, rows, n, ld, 1e-6f);
  for (int64_t r = 0; r < rows; r++)
    assert_close (y + r * ld, want + r * ld, n, 2e-5, 1.0);
  /* In place gives the same bits. */
  bn_layernorm_rows (x, x, rows, n, ld, 1e-6f);
  for (int64_t r = 0; r < rows; r++)
    g_assert_cmpmem (x + r * ld, n * sizeof *x, y + r * ld, n * sizeof *y);
  g_free (x);
  g_free (y);
  g_free (want);
  g_rand_free (rng);
}

static double
silu_ref (double x)
{
  return x / (1.0 + exp (-x));
}

static void
check_silu (const float *in, int64_t n)
{
  float *x = g_memdup2 (in, n * sizeof *in);
  bn_silu (x, n);
  for (int64_t i = 0; i < n; i++)
    {
      double want = silu_ref (in[i]);
      if (!(fabs (x[i] - want) <= 1e-6 * fabs (want) + 1e-30))
        g_error ("silu(%.9g) = %.9g, want %.9g", in[i], x[i], want);
    }
  g_free (x);
}

static void
test_silu (void)
{
  GRand *rng = g_rand_new_with_seed (3);
  /* Odd length: the vector body and the scalar tail both run. */
  float *x = random_floats (rng, 1003, -20, 20);
  check_silu (x, 1003);
  /* Saturation: huge inputs give x and −0, not NaN; 17 values so that the
   * scalar tail sees them too. */
  const float edge[] = { -1e30f, -200, -90, -88.5f, -1e-20f, 0, 1e-20f, 88.5f,
                         200, 1e30f, -87.1f, 87.1f, -3e38f, 3e38f, -3, 3, -1e30f };
  check_silu (edge, G_N_ELEMENTS (edge));
  g_free (x);
  g_rand_free (rng);
}

static void
test_swiglu (void)
{
  GRand *rng = g_rand_new_with_seed (4);
  const int64_t n = 515;
  float *g = random_floats (rng, n, -12, 12);
  float *u = random_floats (rng, n, -3, 3);
  float *out = g_new (float, n);
  double *want = g_new (double, n);
  for (int64_t i = 0; i < n; i++)
    want[i] = silu_ref (g[i]) * u[i];
  bn_swiglu (g, u, out, n);
  for (int64_t i = 0; i < n; i++)
    g_assert_cmpfloat_with_epsilon (out[i], want[i], 1e-6 * MAX (fabs (want[i]), 1e-3));
  /* out may alias gate. */
  float *alias = g_memdup2 (g, n * sizeof *g);
  bn_swiglu (alias, u, alias, n);
  g_assert_cmpmem (alias, n * sizeof *alias, out, n * sizeof *out);
  g_free (g);
  g_free (u);
  g_free (out);
  g_free (want);
  g_free (alias);
  g_rand_free (rng);
}

/* ---- RoPE ---------------------------------------------------------------- */

static void
test_rope_tables (void)
{
  const int axes[] = { 4, 8, 6, 2 };
  const int half = (4 + 8 + 6 + 2) / 2;
  const int64_t n_tok = 5;
  const int64_t ids[] = { 0, 0, 0, 0, 0, 1, 2, 0, 10, 3, 7, 0, 0, 0, 0, 511, 20, 31, 1, 3 };
  float *c = g_new (float, n_tok * half), *s = g_new (float, n_tok * half);
  bn_rope_table_axes (ids, n_tok, axes, 4, 2000.0, c, s);
  for (int64_t t = 0; t < n_tok; t++)
    {
      int off = 0;
      for (int a = 0; a < 4; a++)
        {
          for (int j = 0; j < axes[a] / 2; j++)
            {
              double angle = ids[t * 4 + a] * pow (2000.0, -2.0 * j / axes[a]);
              g_assert_cmpfloat_with_epsilon (c[t * half + off + j], cos (angle), 1e-7);
              g_assert_cmpfloat_with_epsilon (s[t * half + off + j], sin (angle), 1e-7);
            }
          off += axes[a] / 2;
        }
    }
  g_free (c);
  g_free (s);

  const int hd = 16;
  c = g_new (float, 40 * hd / 2);
  s = g_new (float, 40 * hd / 2);
  bn_rope_table_linear (40, hd, 1e6, c, s);
  for (int t = 0; t < 40; t++)
    for (int j = 0; j < hd / 2; j++)
      {
        double angle = t * pow (1e6, -2.0 * j / hd);
        g_assert_cmpfloat_with_epsilon (c[t * hd / 2 + j], cos (angle), 1e-7);
        g_assert_cmpfloat_with_epsilon (s[t * hd / 2 + j], sin (angle), 1e-7);
      }
  g_free (c);
  g_free (s);
}

static void
test_rope_rotate (void)
{
  GRand *rng = g_rand_new_with_seed (5);
  const int heads = 3, hd = 12, half = hd / 2;
  const int64_t n_tok = 7, ld = heads * hd + 5;
  float *x = random_floats (rng, n_tok * ld, -2, 2);
  float *c = g_new (float, n_tok * half), *s = g_new (float, n_tok * half);
  bn_rope_table_linear (n_tok, hd, 10000.0, c, s);

  for (int interleaved = 0; interleaved < 2; interleaved++)
    {
      float *y = g_memdup2 (x, n_tok * ld * sizeof *x);
      double *want = g_new (double, n_tok * ld);
      for (int64_t i = 0; i < n_tok * ld; i++)
        want[i] = x[i];
      for (int64_t t = 0; t < n_tok; t++)
        for (int h = 0; h < heads; h++)
          for (int j = 0; j < half; j++)
            {
              int64_t base = t * ld + h * hd;
              int64_t i0 = base + (interleaved ? 2 * j : j);
              int64_t i1 = base + (interleaved ? 2 * j + 1 : j + half);
              double cs = c[t * half + j], sn = s[t * half + j];
              want[i0] = x[i0] * cs - x[i1] * sn;
              want[i1] = x[i1] * cs + x[i0] * sn;
            }
      if (interleaved)
        bn_rope_interleaved (y, n_tok, ld, heads, hd, c, s);
      else
        bn_rope_half (y, n_tok, ld, heads, hd, c, s);
      assert_close (y, want, n_tok * ld, 1e-6, 1.0);
      /* The row padding after the heads is untouched. */
      for (int64_t t = 0; t < n_tok; t++)
        g_assert_cmpmem (y + t * ld + heads * hd, 5 * sizeof *y,
                         x + t * ld + heads * hd, 5 * sizeof *x);
      g_free (y);
      g_free (want);
    }
  g_free (x);
  g_free (c);
  g_free (s);
  g_rand_free (rng);
}

/* ---- attention ----------------------------------------------------------- */

typedef struct {
  int64_t n_q, n_kv;
  int n_heads, n_kv_heads, head_dim;
  int causal;
  int mask; /* 0 none; 1 random padding incl. key 0; 2 a whole aligned
               block of 64 keys hidden */
  float scale; /* 0: 1/sqrt(head_dim) */
  double range; /* inputs uniform in [−range, range] */
  int pad; /* extra floats at the end of every row */
  double tol; /* relative to the largest output; 0: 1e-5 */
} AttnCase;

static void
attention_ref (const BnAttention *a, double *want)
{
  int group = a->n_heads / a->n_kv_heads, d = a->head_dim;
  double *sc = g_new (double, MAX (a->n_kv, 1));
  for (int h = 0; h < a->n_heads; h++)
    for (int64_t i = 0; i < a->n_q; i++)
      {
        const float *q = a->q + i * a->ldq + h * d;
        double *o = want + (i * a->n_heads + h) * d;
        double mx = -INFINITY;
        for (int64_t j = 0; j < a->n_kv; j++)
          {
            gboolean vis = (!a->causal || j <= i) && (!a->key_mask || a->key_mask[j]);
            sc[j] = -INFINITY;
            if (!vis)
              continue;
            const float *k = a->k + j * a->ldk + (h / group) * d;
            double dot = 0;
            for (int e = 0; e < d; e++)
              dot += (double) q[e] * k[e];
            sc[j] = dot * a->scale;
            mx = MAX (mx, sc[j]);
          }
        for (int e = 0; e < d; e++)
          o[e] = 0;
        if (mx == -INFINITY)
          continue;
        double sum = 0;
        for (int64_t j = 0; j < a->n_kv; j++)
          {
            if (sc[j] == -INFINITY)
              continue;
            double p = exp (sc[j] - mx);
            sum += p;
            const float *v = a->v + j * a->ldv + (h / group) * d;
            for (int e = 0; e < d; e++)
              o[e] += p * v[e];
          }
        for (int e = 0; e < d; e++)
          o[e] /= sum;
      }
  g_free (sc);
}

static void
run_attention_case (const AttnCase *tc, guint32 seed)
{
  GRand *rng = g_rand_new_with_seed (seed);
  int d = tc->head_dim;
  int64_t ldq = (int64_t) tc->n_heads * d + tc->pad;
  int64_t ldkv = (int64_t) tc->n_kv_heads * d + tc->pad;
  int64_t ldo = (int64_t) tc->n_heads * d + tc->pad;
  float *q = random_floats (rng, tc->n_q * ldq, -tc->range, tc->range);
  float *k = random_floats (rng, tc->n_kv * ldkv, -tc->range, tc->range);
  float *v = random_floats (rng, tc->n_kv * ldkv, -1, 1);
  uint8_t *mask = NULL;
  if (tc->mask)
    {
      mask = g_new (uint8_t, tc->n_kv);
      for (int64_t j = 0; j < tc->n_kv; j++)
        mask[j] = tc->mask == 1 ? g_rand_int_range (rng, 0, 4) != 0 : (j < 64 || j >= 128);
      if (tc->mask == 1)
        mask[0] = 0;
    }
  BnAttention a = {
    .n_q = tc->n_q, .n_kv = tc->n_kv,
    .n_heads = tc->n_heads, .n_kv_heads = tc->n_kv_heads, .head_dim = d,
    .q = q, .ldq = ldq, .k = k, .ldk = ldkv, .v = v, .ldv = ldkv,
    .ldo = ldo,
    .scale = tc->scale > 0 ? tc->scale : 1.0f / sqrtf ((float) d),
    .causal = tc->causal, .key_mask = mask,
  };
  int64_t n_out = tc->n_q * tc->n_heads * d;
  double *want = g_new (double, n_out);
  attention_ref (&a, want);

  float *first = g_new (float, tc->n_q * ldo);
  float *out = g_new (float, tc->n_q * ldo);
  float *packed = g_new (float, MAX (n_out, 1));
  const int threads[] = { 0, 1, 2, 3 };
  for (int isa = 0; isa < BN_ISA_COUNT; isa++)
    {
      if (!bn_cpu_supports ((BnIsa) isa))
        continue;
      for (guint ti = 0; ti < G_N_ELEMENTS (threads); ti++)
        {
          BnThreadPool *pool = NULL;
          if (threads[ti] > 0)
            {
              GError *error = NULL;
              pool = bn_thread_pool_new (threads[ti], &error);
              g_assert_no_error (error);
            }
          /* A sentinel in the row padding shows it is not written. */
          for (int64_t i = 0; i < tc->n_q * ldo; i++)
            out[i] = 12345.0f;
          a.out = out;
          bn_attention_isa (pool, (BnIsa) isa, &a);
          bn_thread_pool_free (pool);

          for (int64_t i = 0; i < tc->n_q; i++)
            {
              memcpy (packed + i * tc->n_heads * d, out + i * ldo,
                      tc->n_heads * d * sizeof *out);
              for (int e = 0; e < tc->pad; e++)
                g_assert_cmpfloat (out[i * ldo + tc->n_heads * d + e], ==, 12345.0f);
            }
          if (ti == 0)
            {
              assert_close (packed, want, n_out, tc->tol > 0 ? tc->tol : 1e-5, 1e-30);
              memcpy (first, out, tc->n_q * ldo * sizeof *out);
            }
          else
            g_assert_cmpmem (out, tc->n_q * ldo * sizeof *out, first,
                             tc->n_q * ldo * sizeof *first);
        }
      /* A query that sees no key (the first, when key 0 is padding and the
       * mask is causal) gets exactly zero. */
      if (tc->causal && tc->mask == 1)
        for (int e = 0; e < tc->n_heads * d; e++)
          g_assert_cmpfloat (first[e], ==, 0.0f);
    }
  /* bf16 products: within bf16 rounding of the reference (q, k, v and the
   * probabilities each carry a relative error up to 2⁻⁸, the sums are
   * fp32), the same on 1 and 3 threads, and not the fp32 path's bits.
   * Only for logits of ordinary size (default scale, inputs in ±1): a
   * logit errs by about 2⁻⁸·Σ|q·k|, units at the large-logits case's 800. */
  if (bn_cpu_supports (BN_ISA_AVX512) && bn_cpu_has_bf16 () && d % 2 == 0
      && tc->scale == 0 && tc->range <= 1)
    {
      a.bf16 = TRUE;
      float *one = g_new (float, tc->n_q * ldo);
      /* The same bytes in the unwritten row padding of both. */
      for (int64_t i = 0; i < tc->n_q * ldo; i++)
        one[i] = out[i] = 12345.0f;
      for (int t = 1; t <= 3; t += 2)
        {
          GError *error = NULL;
          BnThreadPool *pool = bn_thread_pool_new (t, &error);
          g_assert_no_error (error);
          a.out = t == 1 ? one : out;
          bn_attention_isa (pool, BN_ISA_AVX512, &a);
          bn_thread_pool_free (pool);
        }
      g_assert_cmpmem (one, tc->n_q * ldo * sizeof *one, out, tc->n_q * ldo * sizeof *out);
      for (int64_t i = 0; i < tc->n_q; i++)
        memcpy (packed + i * tc->n_heads * d, out + i * ldo, tc->n_heads * d * sizeof *out);
      assert_close (packed, want, n_out, 3e-2, 1e-30);
      if (n_out > 0 && tc->n_kv > 0)
        {
          a.bf16 = FALSE;
          a.out = first;
          bn_attention_isa (NULL, BN_ISA_AVX512, &a);
          g_assert_true (memcmp (first, out, tc->n_q * ldo * sizeof *out) != 0);
        }
      g_free (one);
    }
  g_free (first);
  g_free (out);
  g_free (packed);
  g_free (want);
  g_free (q);
  g_free (k);
  g_free (v);
  g_free (mask);
  g_rand_free (rng);
}

static void
test_attention_causal_mask_gqa (void)
{
  /* Qwen3-like: causal, key padding, 4 query heads on 2 KV heads. */
  AttnCase tc = { .n_q = 150, .n_kv = 150, .n_heads = 4, .n_kv_heads = 2,
                  .head_dim = 16, .causal = 1, .mask = 1, .range = 1 };
  run_attention_case (&tc, 10);
  /* Causal with fewer queries than keys: query i still sees keys j <= i. */
  AttnCase tc2 = { .n_q = 40, .n_kv = 150, .n_heads = 6, .n_kv_heads = 2,
                   .head_dim = 32, .causal = 1, .mask = 1, .range = 1, .pad = 3 };
  run_attention_case (&tc2, 11);
}

static void
test_attention_no_mask (void)
{
  const int dims[] = { 16, 32, 128, 512 };
  for (guint i = 0; i < G_N_ELEMENTS (dims); i++)
    {
      AttnCase tc = { .n_q = dims[i] == 512 ? 65 : 70, .n_kv = 130, .n_heads = 2,
                      .n_kv_heads = 2, .head_dim = dims[i], .range = 1, .pad = 1 };
      run_attention_case (&tc, 20 + i);
    }
}

static void
test_attention_shapes (void)
{
  /* head_dim not a multiple of 16 or 64; n_q > n_kv; a single key. */
  AttnCase odd = { .n_q = 67, .n_kv = 66, .n_heads = 3, .n_kv_heads = 1,
                   .head_dim = 24, .range = 1 };
  run_attention_case (&odd, 30);
  AttnCase odd2 = { .n_q = 130, .n_kv = 5, .n_heads = 2, .n_kv_heads = 1,
                    .head_dim = 72, .range = 1, .pad = 2 };
  run_attention_case (&odd2, 31);
  AttnCase one = { .n_q = 3, .n_kv = 1, .n_heads = 1, .n_kv_heads = 1,
                   .head_dim = 8, .range = 1 };
  run_attention_case (&one, 32);
  /* A whole key block of padding is skipped. */
  AttnCase block = { .n_q = 64, .n_kv = 200, .n_heads = 2, .n_kv_heads = 1,
                     .head_dim = 32, .mask = 2, .range = 1 };
  run_attention_case (&block, 33);
}

static void
test_attention_large_logits (void)
{
  /* Scores up to ~±800: a softmax without the running max would overflow,
   * and the running max changes often from block to block.  An f32 dot
   * product of size L is only good to about L·2⁻²⁴·√d, which becomes a
   * relative error of the weights, hence 1e-4 here (every ISA measures
   * 1.2e-5; a broken running max gives errors of order 1). */
  AttnCase tc = { .n_q = 80, .n_kv = 300, .n_heads = 2, .n_kv_heads = 2,
                  .head_dim = 32, .scale = 1.0f, .range = 5, .causal = 1,
                  .tol = 1e-4 };
  run_attention_case (&tc, 40);
}

static void
test_attention_no_keys (void)
{
  AttnCase tc = { .n_q = 5, .n_kv = 0, .n_heads = 2, .n_kv_heads = 1,
                  .head_dim = 16, .range = 1 };
  run_attention_case (&tc, 50);
}

/* Throughput of the 512² image case, run with -m perf: 1536 tokens, 24
 * heads of 128, 2 threads.  Some rows are checked against the oracle. */
static void
test_attention_perf (void)
{
  if (!g_test_perf ())
    {
      g_test_skip ("run with -m perf");
      return;
    }
  const int64_t n = 1536;
  const int heads = 24, d = 128;
  GRand *rng = g_rand_new_with_seed (60);
  int64_t ld = (int64_t) heads * d;
  float *q = random_floats (rng, n * ld, -1, 1);
  float *k = random_floats (rng, n * ld, -1, 1);
  float *v = random_floats (rng, n * ld, -1, 1);
  float *out = g_new (float, n * ld);
  BnAttention a = { .n_q = n, .n_kv = n, .n_heads = heads, .n_kv_heads = heads,
                    .head_dim = d, .q = q, .ldq = ld, .k = k, .ldk = ld, .v = v,
                    .ldv = ld, .out = out, .ldo = ld, .scale = 1.0f / sqrtf (d) };
  GError *error = NULL;
  BnThreadPool *pool = bn_thread_pool_new (2, &error);
  g_assert_no_error (error);
  double flop = 4.0 * n * n * d * heads;
  for (int isa = 0; isa < BN_ISA_COUNT; isa++)
    {
      if (!bn_cpu_supports ((BnIsa) isa))
        continue;
      double best = G_MAXDOUBLE;
      for (int rep = 0; rep < 3; rep++)
        {
          gint64 t0 = g_get_monotonic_time ();
          bn_attention_isa (pool, (BnIsa) isa, &a);
          best = MIN (best, (g_get_monotonic_time () - t0) * 1e-6);
        }
      g_test_message ("attention %s: n=%" G_GINT64_FORMAT " heads=%d d=%d, 2 threads: %.1f ms, %.1f GFLOP/s",
                      bn_isa_name ((BnIsa) isa), n, heads, d, best * 1e3, flop / best * 1e-9);
      /* Spot check: the first query block of head 0 and the last row. */
      BnAttention sub = a;
      sub.n_q = 1;
      sub.n_heads = sub.n_kv_heads = 1;
      double want[128];
      for (int64_t i = 0; i < n; i += n - 1)
        {
          sub.q = q + i * ld;
          attention_ref (&sub, want);
          assert_close (out + i * ld, want, d, 1e-5, 1e-30);
        }
    }
  bn_thread_pool_free (pool);
  g_free (q);
  g_free (k);
  g_free (v);
  g_free (out);
  g_rand_free (rng);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/rmsnorm", test_rmsnorm);
  g_test_add_func ("/ops/layernorm", test_layernorm);
  g_test_add_func ("/ops/silu", test_silu);
  g_test_add_func ("/ops/swiglu", test_swiglu);
  g_test_add_func ("/ops/rope/tables", test_rope_tables);
  g_test_add_func ("/ops/rope/rotate", test_rope_rotate);
  g_test_add_func ("/ops/attention/causal-mask-gqa", test_attention_causal_mask_gqa);
  g_test_add_func ("/ops/attention/no-mask", test_attention_no_mask);
  g_test_add_func ("/ops/attention/shapes", test_attention_shapes);
  g_test_add_func ("/ops/attention/large-logits", test_attention_large_logits);
  g_test_add_func ("/ops/attention/no-keys", test_attention_no_keys);
  g_test_add_func ("/ops/attention/perf", test_attention_perf);
  return g_test_run ();
}
