/* test-kernels.c — the linear kernels against the scalar oracle.
 *
 * Agreement, over all M·N outputs of a case:
 *   max |y − ref|  ≤  1e-5 · max(1, max |ref|)
 * fp32 accumulation in any fixed order errs by about u·K·rms(x·w) (u =
 * 6e-8), while with x uniform in [−1, 1] (so the terms x·w are zero-mean)
 * max |ref| is a few sqrt(K)·rms(x·w): for K ≤ 1024 the ratio stays near
 * 1e-6.  That needs max |ref| to measure the size of the sums rather than
 * one value that happened to cancel, so every case has at least 16
 * outputs (a per-row bound fails on rows of one output).  A single wrong
 * weight (a code off by one moves a term by scale·|x| ≥ 1e-3) or a wrong x
 * element breaks the bound by orders of magnitude.
 *
 * Every path also gives bit-identical output on 1, 2 and 3 threads, leaves
 * the padding columns of strided y untouched, and reads no x past K (the
 * padding of strided x is NaN, which would poison any sum it entered).
 * Shapes come from g_test_rand_*; a failure names the shape and the seed
 * (printed by GTest) reproduces it.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#define TOL 1e-5

typedef struct {
  BnDType dtype;
  BnDType scale_dtype; /* packed only */
  int group;           /* packed only */
} Format;

/* Packed codes, one of the release's conventions per width:
 *   Q1 binary  : q ∈ {0, 1},     bias = −scale/2
 *   Q2 ternary : q ∈ {0, 1, 2},  bias = −scale
 *   Q4 affine  : q ∈ {0 … 15},   bias ≈ −7.5·scale (random in −8.5 … −6.5)
 * code < 0 draws codes at random, otherwise every code is `code`. */
static void
make_weights (BnTensor *w, const Format *f, int64_t n, int64_t k, int code)
{
  GError *error = NULL;
  if (!bn_dtype_is_packed (f->dtype))
    {
      int64_t shape[2] = { n, k };
      g_assert_true (bn_tensor_init (w, f->dtype, 2, shape, &error));
      g_assert_no_error (error);
      for (int64_t i = 0; i < n * k; i++)
        {
          float v = (float) g_test_rand_double_range (-1.0, 1.0);
          switch (f->dtype)
            {
            case BN_DTYPE_F32: ((float *) w->data)[i] = v; break;
            case BN_DTYPE_F16: ((uint16_t *) w->data)[i] = bn_f32_to_f16 (v); break;
            case BN_DTYPE_BF16: ((uint16_t *) w->data)[i] = bn_f32_to_bf16 (v); break;
            default: g_assert_not_reached ();
            }
        }
      return;
    }
  g_assert_true (bn_tensor_init_packed (w, f->dtype, n, k, f->group, f->scale_dtype, &error));
  g_assert_no_error (error);
  const int levels = f->dtype == BN_DTYPE_Q1 ? 2 : f->dtype == BN_DTYPE_Q2 ? 3 : 16;
  w->ternary = f->dtype == BN_DTYPE_Q2;
  for (int64_t r = 0; r < n; r++)
    {
      for (int64_t g = 0; g < k / f->group; g++)
        {
          float s = (float) g_test_rand_double_range (0.02, 0.2);
          float b = f->dtype == BN_DTYPE_Q1 ? -s / 2
                    : f->dtype == BN_DTYPE_Q2 ? -s
                    : -s * (float) g_test_rand_double_range (6.5, 8.5);
          bn_packed_set_group (w, r, g, s, b);
        }
      for (int64_t c = 0; c < k; c++)
        bn_packed_set_code (w, r, c, code >= 0 ? (unsigned) code
                                               : (unsigned) g_test_rand_int_range (0, levels));
    }
}

static char *
describe (const Format *f, int64_t m, int64_t n, int64_t k, int64_t ldx,
          int64_t ldy)
{
  if (bn_dtype_is_packed (f->dtype))
    return g_strdup_printf ("%s g%d %s scales, M=%" G_GINT64_FORMAT " N=%" G_GINT64_FORMAT
                            " K=%" G_GINT64_FORMAT " ldx=%" G_GINT64_FORMAT " ldy=%" G_GINT64_FORMAT,
                            bn_dtype_name (f->dtype), f->group, bn_dtype_name (f->scale_dtype),
                            m, n, k, ldx, ldy);
  return g_strdup_printf ("%s, M=%" G_GINT64_FORMAT " N=%" G_GINT64_FORMAT " K=%" G_GINT64_FORMAT
                          " ldx=%" G_GINT64_FORMAT " ldy=%" G_GINT64_FORMAT,
                          bn_dtype_name (f->dtype), m, n, k, ldx, ldy);
}

static void
assert_close (const float *y, const float *ref, int64_t m, int64_t n,
              int64_t ldy, const char *what)
{
  g_assert_cmpint (m * n, >=, 16);
  double err = 0.0, scale = 1.0;
  int64_t worst = 0;
  for (int64_t i = 0; i < m * ldy; i++)
    if (i % ldy < n)
      {
        /* fmax drops NaN, so a NaN difference must count as infinite. */
        double d = fabs ((double) y[i] - ref[i]);
        if (isnan (d) || d > err)
          {
            err = isnan (d) ? INFINITY : d;
            worst = i;
          }
        scale = fmax (scale, fabs (ref[i]));
      }
  if (!(err <= TOL * scale))
    g_error ("%s: max |y - ref| = %g at [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "], allowed %g",
             what, err, worst / ldy, worst % ldy, TOL * scale);
}

/* Runs `isa` on 1, 2 and 3 threads and checks it against the oracle. */
static void
check_case (BnIsa isa, BnThreadPool *const pools[3], const Format *f,
            int64_t m, int64_t n, int64_t k, int64_t ldx, int64_t ldy, int code)
{
  BnTensor w;
  make_weights (&w, f, n, k, code);
  char *what = describe (f, m, n, k, ldx, ldy);

  float *x = g_new (float, m * ldx);
  for (int64_t i = 0; i < m; i++)
    for (int64_t c = 0; c < ldx; c++)
      x[i * ldx + c] = c < k ? (float) g_test_rand_double_range (-1.0, 1.0) : NAN;

  const size_t ny = (size_t) (m * ldy);
  float *ref = g_new (float, ny);
  for (size_t i = 0; i < ny; i++)
    ref[i] = NAN;
  bn_linear_ref (&w, x, m, ldx, ref, ldy);

  float *y[3];
  for (int t = 0; t < 3; t++)
    {
      y[t] = g_new (float, ny);
      /* NaN everywhere: a first K block that adds to y instead of setting it
       * poisons the result, and the padding must keep these exact bits. */
      for (size_t i = 0; i < ny; i++)
        y[t][i] = NAN;
      bn_linear_isa (pools[t], isa, &w, x, m, ldx, y[t], ldy);
    }
  assert_close (y[0], ref, m, n, ldy, what);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = n; j < ldy; j++)
      if (!isnan (y[0][i * ldy + j]))
        g_error ("%s: padding y[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] was written",
                 what, i, j);
  for (int t = 1; t < 3; t++)
    if (memcmp (y[0], y[t], ny * sizeof (float)) != 0)
      g_error ("%s: %d threads differ from 1 thread", what, t + 1);

  for (int t = 0; t < 3; t++)
    g_free (y[t]);
  g_free (ref);
  g_free (x);
  g_free (what);
  bn_tensor_clear (&w);
}

typedef struct {
  BnIsa isa;
  BnThreadPool *pools[3];
} Run;

static gboolean
start_run (Run *run, BnIsa isa)
{
  if (!bn_cpu_supports (isa))
    {
      g_test_skip ("this CPU lacks the instruction set");
      return FALSE;
    }
  run->isa = isa;
  for (int t = 0; t < 3; t++)
    {
      GError *error = NULL;
      run->pools[t] = bn_thread_pool_new (t + 1, &error);
      g_assert_no_error (error);
    }
  return TRUE;
}

static void
end_run (Run *run)
{
  for (int t = 0; t < 3; t++)
    bn_thread_pool_free (run->pools[t]);
}

static const BnDType dense_types[] = { BN_DTYPE_F32, BN_DTYPE_F16, BN_DTYPE_BF16 };
static const BnDType packed_types[] = { BN_DTYPE_Q1, BN_DTYPE_Q2, BN_DTYPE_Q4 };
static const BnDType scale_types[] = { BN_DTYPE_BF16, BN_DTYPE_F16, BN_DTYPE_F32 };
static const int groups[] = { 32, 64, 128 };

/* Dense weights: K of any length (0, not a multiple of 8 or 16, exactly one
 * K block, and past one), odd N across several panels, M = 1 and M = 1537,
 * strided x and y. */
static void
test_dense (gconstpointer data)
{
  Run run;
  if (!start_run (&run, GPOINTER_TO_INT (data)))
    return;
  for (size_t d = 0; d < G_N_ELEMENTS (dense_types); d++)
    {
      const Format f = { .dtype = dense_types[d] };
      check_case (run.isa, run.pools, &f, 1, 37, 300, 300, 37, -1);
      check_case (run.isa, run.pools, &f, 29, 301, 517, 520, 333, -1);
      check_case (run.isa, run.pools, &f, 1537, 5, 41, 41, 5, -1);
      check_case (run.isa, run.pools, &f, 13, 64, 384, 384, 64, -1);
      check_case (run.isa, run.pools, &f, 3, 600, 100, 100, 600, -1);
      check_case (run.isa, run.pools, &f, 4, 9, 0, 1, 10, -1);
      for (int r = 0; r < 4; r++)
        {
          int64_t n = g_test_rand_int_range (1, 80);
          int64_t m = g_test_rand_int_range ((16 + n - 1) / n, 40);
          int64_t k = g_test_rand_int_range (1, 700);
          check_case (run.isa, run.pools, &f, m, n, k,
                      k + g_test_rand_int_range (0, 5), n + g_test_rand_int_range (0, 5), -1);
        }
    }
  end_run (&run);
}

/* Packed weights: every width, scale type and group size, random shapes,
 * and M = 1537 and a many-panel, many-block shape for each width. */
static void
test_packed (gconstpointer data)
{
  Run run;
  if (!start_run (&run, GPOINTER_TO_INT (data)))
    return;
  for (size_t p = 0; p < G_N_ELEMENTS (packed_types); p++)
    {
      for (size_t s = 0; s < G_N_ELEMENTS (scale_types); s++)
        for (size_t g = 0; g < G_N_ELEMENTS (groups); g++)
          {
            const Format f = { packed_types[p], scale_types[s], groups[g] };
            int64_t n = 2 * g_test_rand_int_range (0, 35) + 1;
            int64_t m = g_test_rand_int_range ((16 + n - 1) / n, 30);
            int64_t k = groups[g] * g_test_rand_int_range (1, 1024 / groups[g] + 1);
            check_case (run.isa, run.pools, &f, m, n, k,
                        k + g_test_rand_int_range (0, 5), n + g_test_rand_int_range (0, 5), -1);
          }
      const Format f = { packed_types[p], BN_DTYPE_BF16, 128 };
      check_case (run.isa, run.pools, &f, 1537, 3, 128, 130, 4, -1);
      check_case (run.isa, run.pools, &f, 1, 259, 384, 384, 259, -1);
      check_case (run.isa, run.pools, &f, 25, 301, 640, 641, 301, -1);
      check_case (run.isa, run.pools, &f, 2, 555, 768, 768, 555, -1);
    }
  end_run (&run);
}

/* Every code at its extreme: binary all −1 or all +1 (codes 0 or 1,
 * bias −s/2); ternary all −1, 0 or +1 (codes 0, 1, 2, bias −s); 4-bit all
 * 0 or all 15. */
static void
test_edge_codes (gconstpointer data)
{
  Run run;
  if (!start_run (&run, GPOINTER_TO_INT (data)))
    return;
  static const struct { BnDType dtype; int code; } cases[] = {
    { BN_DTYPE_Q1, 0 }, { BN_DTYPE_Q1, 1 },
    { BN_DTYPE_Q2, 0 }, { BN_DTYPE_Q2, 1 }, { BN_DTYPE_Q2, 2 },
    { BN_DTYPE_Q4, 0 }, { BN_DTYPE_Q4, 15 },
  };
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    for (size_t s = 0; s < G_N_ELEMENTS (scale_types); s++)
      {
        const Format f = { cases[c].dtype, scale_types[s], 128 };
        check_case (run.isa, run.pools, &f, 17, 45, 384, 384, 45, cases[c].code);
      }
  /* Ternary zero is exact: s·1 + (−s) = 0 whatever the rounding. */
  const Format f = { BN_DTYPE_Q2, BN_DTYPE_BF16, 64 };
  BnTensor w;
  make_weights (&w, &f, 19, 192, 1);
  float x[3 * 192], y[3 * 19];
  for (size_t i = 0; i < G_N_ELEMENTS (x); i++)
    x[i] = (float) g_test_rand_double_range (-1.0, 1.0);
  bn_linear_isa (run.pools[1], run.isa, &w, x, 3, 192, y, 19);
  for (size_t i = 0; i < G_N_ELEMENTS (y); i++)
    g_assert_cmpfloat (y[i], ==, 0.0f);
  bn_tensor_clear (&w);
  end_run (&run);
}

/* The oracle itself, on products worked out by hand. */
static void
test_oracle (void)
{
  GError *error = NULL;
  BnTensor w;
  int64_t shape[2] = { 2, 3 };
  g_assert_true (bn_tensor_init (&w, BN_DTYPE_BF16, 2, shape, &error));
  const float wv[6] = { 1, 2, 3, 4, 5, 6.5f };
  for (int i = 0; i < 6; i++)
    ((uint16_t *) w.data)[i] = bn_f32_to_bf16 (wv[i]);
  /* x has a stride of 4 and y of 3; the padding must not matter. */
  const float x[8] = { 1, 0, -1, 99, 0.5f, 0.5f, 0.5f, 99 };
  float y[6] = { 7, 7, 7, 7, 7, 7 };
  bn_linear_ref (&w, x, 2, 4, y, 3);
  const float want[6] = { -2, -2.5f, 7, 3, 7.75f, 7 };
  for (int i = 0; i < 6; i++)
    g_assert_cmpfloat (y[i], ==, want[i]);
  bn_tensor_clear (&w);

  /* Binary, one group of 32: codes alternate 0, 1 with s = 2, b = −1, so
   * w alternates −1, +1; with x_k = k each pair (2j, 2j+1) adds 1. */
  g_assert_true (bn_tensor_init_packed (&w, BN_DTYPE_Q1, 1, 32, 32, BN_DTYPE_F32, &error));
  bn_packed_set_group (&w, 0, 0, 2.0f, -1.0f);
  float xk[32];
  for (int k = 0; k < 32; k++)
    {
      bn_packed_set_code (&w, 0, k, (unsigned) (k & 1));
      xk[k] = (float) k;
    }
  g_assert_cmpuint (((const uint32_t *) w.data)[0], ==, 0xaaaaaaaau);
  bn_linear_ref (&w, xk, 1, 32, y, 1);
  g_assert_cmpfloat (y[0], ==, 16.0f);
  bn_tensor_clear (&w);

  /* Ternary, two groups of 32 with their own scales: all codes 2 (w = +s). */
  g_assert_true (bn_tensor_init_packed (&w, BN_DTYPE_Q2, 1, 64, 32, BN_DTYPE_BF16, &error));
  bn_packed_set_group (&w, 0, 0, 0.5f, -0.5f);
  bn_packed_set_group (&w, 0, 1, 0.25f, -0.25f);
  for (int k = 0; k < 64; k++)
    bn_packed_set_code (&w, 0, k, 2);
  float ones[64];
  for (int k = 0; k < 64; k++)
    ones[k] = 1.0f;
  bn_linear_ref (&w, ones, 1, 64, y, 1);
  g_assert_cmpfloat (y[0], ==, 32 * 0.5f + 32 * 0.25f);
  bn_tensor_clear (&w);
}

/* bn_linear runs the best path this CPU has. */
static void
test_dispatch (void)
{
  const Format f = { BN_DTYPE_Q2, BN_DTYPE_BF16, 128 };
  BnTensor w;
  make_weights (&w, &f, 33, 256, -1);
  float x[7 * 256], y[7 * 33], ref[7 * 33];
  for (size_t i = 0; i < G_N_ELEMENTS (x); i++)
    x[i] = (float) g_test_rand_double_range (-1.0, 1.0);
  bn_linear (NULL, &w, x, 7, 256, y, 33);
  bn_linear_ref (&w, x, 7, 256, ref, 33);
  assert_close (y, ref, 7, 33, 33, "bn_linear");
  bn_tensor_clear (&w);
}

/* Arguments that cannot describe a product are refused, not run. */
static void
test_bad_input (void)
{
  const Format f = { BN_DTYPE_F32 };
  BnTensor w;
  make_weights (&w, &f, 4, 8, -1);
  float x[16] = { 0 }, y[8] = { 0 };
  g_test_expect_message ("bonsai", G_LOG_LEVEL_CRITICAL, "*ldx*");
  bn_linear_isa (NULL, BN_ISA_SCALAR, &w, x, 2, 7, y, 4);
  g_test_assert_expected_messages ();
  g_test_expect_message ("bonsai", G_LOG_LEVEL_CRITICAL, "*ldy*");
  bn_linear_isa (NULL, BN_ISA_SCALAR, &w, x, 2, 8, y, 3);
  g_test_assert_expected_messages ();
  for (size_t i = 0; i < G_N_ELEMENTS (y); i++)
    g_assert_cmpfloat (y[i], ==, 0.0f);
  bn_tensor_clear (&w);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/kernels/linear/oracle", test_oracle);
  g_test_add_func ("/kernels/linear/dispatch", test_dispatch);
  g_test_add_func ("/kernels/linear/bad-input", test_bad_input);
  for (int isa = 0; isa < BN_ISA_COUNT; isa++)
    {
      const char *name = bn_isa_name ((BnIsa) isa);
      char *path = g_strdup_printf ("/kernels/linear/%s/dense", name);
      g_test_add_data_func (path, GINT_TO_POINTER (isa), test_dense);
      g_free (path);
      path = g_strdup_printf ("/kernels/linear/%s/packed", name);
      g_test_add_data_func (path, GINT_TO_POINTER (isa), test_packed);
      g_free (path);
      path = g_strdup_printf ("/kernels/linear/%s/edge-codes", name);
      g_test_add_data_func (path, GINT_TO_POINTER (isa), test_edge_codes);
      g_free (path);
    }
  return g_test_run ();
}
