/* test-kernels-lowp.c — the low-precision activation paths (bf16, int8,
 * and lut for binary weights).
 *
 * Three checks, each against something other than the path itself:
 *  - each oracle, bn_linear_lowp_ref, against the exact oracle
 *    bn_linear_ref within the rounding bound worked out per output:
 *    int8: |Δy| ≤ Σ_g a[m,g]/2 · Σ_k |s·q| (each x moves by at most half a
 *    step a = max|x|/127; the bias term uses the exact sum, so only s·q
 *    sees it), lut that plus s·a·2 per quad (its sums of 4 are rounded to
 *    4 steps); bf16: |Δy| ≤ 2⁻⁸ · Σ_k |w·x| (the weights here are exact in
 *    bf16, as the release's are);
 *  - the SIMD paths against their oracle: the same rounding of x, so only
 *    the order of float sums differs (tolerance 1e-5 · max(1, max |ref|),
 *    as in test-kernels.c), bit-identical on 1, 2 and 3 threads, padding
 *    of y untouched, no x past K read (NaN there);
 *  - with x integers in [−127, 127] and ±127 in every group, neither bf16
 *    nor int8 rounds x, so their SIMD paths must match the exact oracle.
 * Weights that the paths do not take (Q4, dense) go to the exact path,
 * bit for bit; lut gives ternary weights to the bf16 path, bit for bit.
 */
#include "kernels/linear_lowp.h"

#include <math.h>
#include <string.h>

#define TOL 1e-5

static void
make_weights (BnTensor *w, BnDType dtype, int group, int64_t n, int64_t k)
{
  GError *error = NULL;
  if (dtype == BN_DTYPE_BF16)
    {
      const int64_t shape[2] = { n, k };
      g_assert_true (bn_tensor_init (w, dtype, 2, shape, &error));
      g_assert_no_error (error);
      for (int64_t i = 0; i < n * k; i++)
        ((uint16_t *) w->data)[i] = bn_f32_to_bf16 ((float) g_test_rand_double_range (-0.2, 0.2));
      return;
    }
  g_assert_true (bn_tensor_init_packed (w, dtype, n, k, group, BN_DTYPE_BF16, &error));
  g_assert_no_error (error);
  w->ternary = dtype == BN_DTYPE_Q2;
  const int levels = dtype == BN_DTYPE_Q1 ? 2 : dtype == BN_DTYPE_Q2 ? 3 : 16;
  for (int64_t r = 0; r < n; r++)
    {
      for (int64_t g = 0; g < k / group; g++)
        {
          float s = (float) g_test_rand_double_range (0.02, 0.2);
          bn_packed_set_group (w, r, g, s, dtype == BN_DTYPE_Q1 ? -s / 2 : -s * (levels - 1) / 2);
        }
      for (int64_t c = 0; c < k; c++)
        bn_packed_set_code (w, r, c, (unsigned) g_test_rand_int_range (0, levels));
    }
}

static double
max_abs (const float *v, int64_t m, int64_t n, int64_t ld)
{
  double s = 1.0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++)
      s = fmax (s, fabs (v[i * ld + j]));
  return s;
}

/* Each oracle against the exact oracle, within the per-output bound. */
static void
test_oracle_bound (gconstpointer data)
{
  const BnActPrecision act = GPOINTER_TO_INT (data);
  for (int rep = 0; rep < 6; rep++)
    {
      const BnDType dtype = rep % 2 && act != BN_ACT_LUT ? BN_DTYPE_Q2 : BN_DTYPE_Q1;
      const int group = (int[]) { 32, 64, 128 }[rep / 2];
      const int64_t m = 5, n = 7, k = 256;
      BnTensor w;
      make_weights (&w, dtype, group, n, k);
      float x[5 * 256], y[5 * 7], ref[5 * 7];
      for (int i = 0; i < m * k; i++)
        x[i] = (float) g_test_rand_double_range (-1.0, 1.0) * (i % 97 == 0 ? 30.0f : 1.0f);
      bn_linear_ref (&w, x, m, k, ref, n);
      bn_linear_lowp_ref (act, &w, x, m, k, y, n);
      gboolean any_differs = FALSE;
      for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < n; c++)
          {
            double bound = 0.0;
            for (int64_t g = 0; g < k / group && act == BN_ACT_BF16; g++)
              for (int t = 0; t < group; t++)
                bound += ldexp (fabs ((bn_packed_scale (&w, c, g) * (double) bn_packed_get_code (&w, c, g * group + t)
                                       + bn_packed_bias (&w, c, g)) * x[i * k + g * group + t]), -8);
            for (int64_t g = 0; g < k / group && act != BN_ACT_BF16; g++)
              {
                float amax = 0.0f;
                for (int t = 0; t < group; t++)
                  amax = fmaxf (amax, fabsf (x[i * k + g * group + t]));
                double sq = 0.0;
                for (int t = 0; t < group; t++)
                  sq += fabs (bn_packed_scale (&w, c, g) * (double) bn_packed_get_code (&w, c, g * group + t));
                bound += amax / 127.0 / 2.0 * sq;
                if (act == BN_ACT_LUT)
                  bound += bn_packed_scale (&w, c, g) * amax / 127.0 * 2.0 * (group / 4);
              }
            double d = fabs ((double) y[i * n + c] - ref[i * n + c]);
            if (!(d <= bound * (1.0 + 1e-5) + 1e-6 * fabs (ref[i * n + c])))
              g_error ("%s %s g%d [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]: |lowp - exact| = %g > bound %g",
                       bn_act_precision_name (act), bn_dtype_name (dtype), group, i, c, d, bound);
            any_differs |= d > 0.0;
          }
      /* Random x does not round exactly: a path that skipped the rounding
       * would pass the bound, so the oracle must show it. */
      g_assert_true (any_differs);
      bn_tensor_clear (&w);
    }
}

/* `isa`'s `act` path against its oracle, or the exact one when x rounds
 * exactly, on 1, 2 and 3 threads. */
static void
check_case (BnIsa isa, BnActPrecision act, BnThreadPool *const pools[3], BnDType dtype, int group,
            int64_t m, int64_t n, int64_t k, int64_t ldx, int64_t ldy,
            gboolean exact_x)
{
  BnTensor w;
  make_weights (&w, dtype, group, n, k);
  char *what = g_strdup_printf ("%s %s %s g%d M=%" G_GINT64_FORMAT " N=%" G_GINT64_FORMAT
                                " K=%" G_GINT64_FORMAT "%s", bn_isa_name (isa), bn_act_precision_name (act),
                                bn_dtype_name (dtype), group, m, n, k, exact_x ? " exact x" : "");
  float *x = g_new (float, m * ldx);
  for (int64_t i = 0; i < m; i++)
    for (int64_t c = 0; c < ldx; c++)
      {
        float v = exact_x ? (float) g_test_rand_int_range (-127, 128)
                          : (float) g_test_rand_double_range (-1.0, 1.0);
        if (exact_x && c % (group > 0 ? group : 128) == 0)
          v = g_test_rand_bit () ? 127.0f : -127.0f;
        x[i * ldx + c] = c < k ? v : NAN;
      }
  const size_t ny = (size_t) (m * ldy);
  float *ref = g_new (float, ny);
  if (exact_x)
    bn_linear_ref (&w, x, m, ldx, ref, ldy);
  else
    bn_linear_lowp_ref (act, &w, x, m, ldx, ref, ldy);
  float *y[3];
  for (int t = 0; t < 3; t++)
    {
      y[t] = g_new (float, ny);
      for (size_t i = 0; i < ny; i++)
        y[t][i] = NAN;
      bn_linear_lowp_isa (pools[t], isa, act, &w, x, m, ldx, y[t], ldy);
    }
  const double scale = max_abs (ref, m, n, ldy);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < ldy; j++)
      {
        float v = y[0][i * ldy + j];
        if (j >= n)
          {
            if (!isnan (v))
              g_error ("%s: padding y[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] written", what, i, j);
            continue;
          }
        double d = fabs ((double) v - ref[i * ldy + j]);
        if (!(d <= TOL * scale))
          g_error ("%s: y[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] = %g, expected %g",
                   what, i, j, v, ref[i * ldy + j]);
      }
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
  BnActPrecision act;
} PathCase;

static void
test_path (gconstpointer data)
{
  const PathCase *pc = data;
  const BnIsa isa = pc->isa;
  const BnActPrecision act = pc->act;
  if (!bn_cpu_supports (isa) || bn_lowp_path (isa, act) == NULL)
    {
      g_test_skip ("this CPU lacks the instructions");
      return;
    }
  BnThreadPool *pools[3];
  for (int t = 0; t < 3; t++)
    {
      GError *error = NULL;
      pools[t] = bn_thread_pool_new (t + 1, &error);
      g_assert_no_error (error);
    }
  static const BnDType types[] = { BN_DTYPE_Q1, BN_DTYPE_Q2 };
  static const int groups[] = { 32, 64, 128 };
  /* lut takes binary weights only (test_fallback: the rest), and rounds
   * its sums of 4 even when x is exact. */
  const size_t n_types = act == BN_ACT_LUT ? 1 : G_N_ELEMENTS (types);
  for (int e = 0; e < (act == BN_ACT_LUT ? 1 : 2); e++)
    for (size_t d = 0; d < n_types; d++)
      {
        for (size_t g = 0; g < G_N_ELEMENTS (groups); g++)
          {
            int64_t n = g_test_rand_int_range (3, 80);
            int64_t m = g_test_rand_int_range (6, 30);
            int64_t k = 128 * g_test_rand_int_range (1, 5);
            check_case (isa, act, pools, types[d], groups[g], m, n, k,
                        k + g_test_rand_int_range (0, 5), n + g_test_rand_int_range (0, 5), e);
          }
        /* Many row blocks, several K blocks and panels. */
        check_case (isa, act, pools, types[d], 128, 41, 300, 2304, 2304, 301, e);
        check_case (isa, act, pools, types[d], 128, 1, 600, 128, 128, 600, e);
      }
  /* Dense bf16: K any even number (the VAE's 3×3 convolutions have 9·ci),
   * including a last K block of a few pairs. */
  for (int e = 0; act == BN_ACT_BF16 && e < 2; e++)
    {
      int64_t k = 2 * g_test_rand_int_range (1, 300);
      check_case (isa, act, pools, BN_DTYPE_BF16, 0, g_test_rand_int_range (6, 30),
                  g_test_rand_int_range (3, 80), k, k + 1, 83, e);
      check_case (isa, act, pools, BN_DTYPE_BF16, 0, 29, 70, 1024 + 18, 1024 + 18, 70, e);
      check_case (isa, act, pools, BN_DTYPE_BF16, 0, 13, 33, 1152, 1153, 40, e);
    }
  for (int t = 0; t < 3; t++)
    bn_thread_pool_free (pools[t]);
}

/* Zero rows (max |x| = 0) give the bias term only, which is 0 for x = 0. */
static void
test_zero_rows (void)
{
  BnTensor w;
  make_weights (&w, BN_DTYPE_Q2, 128, 20, 256);
  float x[3 * 256] = { 0 }, y[3 * 20];
  for (int act = BN_ACT_BF16; act <= BN_ACT_LUT; act++)
    {
      bn_linear_lowp (NULL, (BnActPrecision) act, &w, x, 3, 256, y, 20);
      for (size_t i = 0; i < G_N_ELEMENTS (y); i++)
        g_assert_cmpfloat (y[i], ==, 0.0f);
    }
  bn_tensor_clear (&w);
}

/* Q4 and dense weights, and K not a multiple of 128, take the exact path;
 * lut gives ternary weights to the bf16 path. */
static void
test_fallback (void)
{
  GError *error = NULL;
  BnTensor q4, q1;
  make_weights (&q4, BN_DTYPE_Q4, 64, 9, 192);
  make_weights (&q1, BN_DTYPE_Q1, 32, 9, 96);
  const BnIsa isa = bn_cpu_isa ();
  g_assert_false (bn_linear_lowp_applies (isa, BN_ACT_INT8, &q4));
  g_assert_false (bn_linear_lowp_applies (isa, BN_ACT_BF16, &q1));
  BnTensor d;
  int64_t shape[2] = { 9, 128 };
  g_assert_true (bn_tensor_init (&d, BN_DTYPE_F32, 2, shape, &error));
  g_assert_no_error (error);
  for (int i = 0; i < 9 * 128; i++)
    ((float *) d.data)[i] = (float) g_test_rand_double_range (-1.0, 1.0);
  g_assert_false (bn_linear_lowp_applies (isa, BN_ACT_INT8, &d));
  g_assert_false (bn_linear_lowp_applies (isa, BN_ACT_LUT, &d));
  g_assert_false (bn_linear_lowp_applies (isa, BN_ACT_LUT, &q4));
  const BnTensor *ws[] = { &q4, &q1, &d };
  for (size_t t = 0; t < G_N_ELEMENTS (ws); t++)
    {
      float x[4 * 192], a[4 * 9], b[4 * 9];
      for (size_t i = 0; i < G_N_ELEMENTS (x); i++)
        x[i] = (float) g_test_rand_double_range (-1.0, 1.0);
      bn_linear (NULL, ws[t], x, 4, 192, a, 9);
      for (int act = BN_ACT_BF16; act <= BN_ACT_LUT; act++)
        {
          bn_linear_lowp (NULL, (BnActPrecision) act, ws[t], x, 4, 192, b, 9);
          g_assert_cmpmem (a, sizeof a, b, sizeof b);
        }
    }
  BnTensor q2;
  make_weights (&q2, BN_DTYPE_Q2, 128, 9, 256);
  g_assert_false (bn_linear_lowp_applies (isa, BN_ACT_LUT, &q2));
  float x2[4 * 256], a2[4 * 9], b2[4 * 9];
  for (size_t i = 0; i < G_N_ELEMENTS (x2); i++)
    x2[i] = (float) g_test_rand_double_range (-1.0, 1.0);
  bn_linear_lowp (NULL, BN_ACT_BF16, &q2, x2, 4, 256, a2, 9);
  bn_linear_lowp (NULL, BN_ACT_LUT, &q2, x2, 4, 256, b2, 9);
  g_assert_cmpmem (a2, sizeof a2, b2, sizeof b2);
  bn_tensor_clear (&q2);
  bn_tensor_clear (&q4);
  bn_tensor_clear (&q1);
  bn_tensor_clear (&d);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  static const PathCase paths[] = {
    { BN_ISA_AVX2, BN_ACT_INT8 }, { BN_ISA_AVX512, BN_ACT_INT8 }, { BN_ISA_AVX512, BN_ACT_BF16 },
    { BN_ISA_AVX512, BN_ACT_LUT },
  };
  g_test_add_data_func ("/kernels/lowp/oracle-bound/bf16", GINT_TO_POINTER (BN_ACT_BF16), test_oracle_bound);
  g_test_add_data_func ("/kernels/lowp/oracle-bound/int8", GINT_TO_POINTER (BN_ACT_INT8), test_oracle_bound);
  g_test_add_data_func ("/kernels/lowp/oracle-bound/lut", GINT_TO_POINTER (BN_ACT_LUT), test_oracle_bound);
  g_test_add_func ("/kernels/lowp/zero-rows", test_zero_rows);
  g_test_add_func ("/kernels/lowp/fallback", test_fallback);
  for (size_t i = 0; i < G_N_ELEMENTS (paths); i++)
    {
      char *name = g_strdup_printf ("/kernels/lowp/%s/%s", bn_isa_name (paths[i].isa),
                                    bn_act_precision_name (paths[i].act));
      g_test_add_data_func (name, &paths[i], test_path);
      g_free (name);
    }
  return g_test_run ();
}
