/* test-sampler.c — the noise generator (Philox known answers, values of the
 * documented algorithm, statistics, independence from how draws are split)
 * and the klein schedule against diffusers' reference schedules. */
#include "rng.h"
#include "safetensors.h"
#include "sampler.h"

#include "bonsai/bonsai.h"

#include <float.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Philox and the streams ---------------------------------------------- */

static void
test_philox_kat (void)
{
  /* Random123's kat_vectors, "philox4x32 10" lines: counter, key, result. */
  static const uint32_t kat[3][10] = {
    { 0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 },
    { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
      0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd },
    { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
      0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 },
  };
  for (int i = 0; i < 3; i++)
    {
      uint32_t out[4];
      bn_philox4x32_10 (kat[i], kat[i] + 4, out);
      for (int j = 0; j < 4; j++)
        g_assert_cmphex (out[j], ==, kat[i][6 + j]);
    }
}

/* Values of the algorithm in rng.h as transcribed independently in Python
 * (IEEE doubles, same operation order), for seed 0x0123456789abcdef; the
 * last index exercises the high word of the block counter. */
static void
test_known_values (void)
{
  static const struct {
    guint64 index;
    float normal, uniform;
  } want[] = {
    { 0, 0x1.c2d7dap-4f, 0x1.70a044p-1f },
    { 1, -0x1.9b2fd8p-1f, 0x1.8b1960p-1f },
    { 2, -0x1.1c9b68p+1f, 0x1.4a7a00p-4f },
    { 3, 0x1.341f68p-2f, 0x1.ea13fcp-2f },
    { 4, -0x1.862f60p-2f, 0x1.5b9428p-1f },
    { 5, 0x1.9637d6p-1f, 0x1.48f834p-2f },
    { 1000, 0x1.dfc076p-1f, 0x1.406a0ap-1f },
    { ((guint64) 1 << 33) + 3, -0x1.484dc0p+0f, 0x1.67cad6p-1f },
  };
  const guint64 seed = G_GUINT64_CONSTANT (0x0123456789abcdef);
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      float z, u;
      bn_rng_normal (seed, want[i].index, &z, 1);
      bn_rng_uniform (seed, want[i].index, &u, 1);
      g_assert_cmpfloat (z, ==, want[i].normal);
      g_assert_cmpfloat (u, ==, want[i].uniform);
    }
}

static void
test_split_calls (void)
{
  const int64_t n = 1003;
  const guint64 seed = 7;
  float *whole_z = g_new (float, n), *whole_u = g_new (float, n);
  float *part_z = g_new (float, n), *part_u = g_new (float, n);
  bn_rng_normal (seed, 0, whole_z, n);
  bn_rng_uniform (seed, 0, whole_u, n);
  /* Pieces of every length 1 … 9 starting at every phase within a block. */
  int64_t at = 0;
  for (int len = 1; at < n; len = len % 9 + 1)
    {
      int64_t take = MIN (len, n - at);
      bn_rng_normal (seed, at, part_z + at, take);
      bn_rng_uniform (seed, at, part_u + at, take);
      at += take;
    }
  g_assert_cmpmem (part_z, n * sizeof (float), whole_z, n * sizeof (float));
  g_assert_cmpmem (part_u, n * sizeof (float), whole_u, n * sizeof (float));
  /* Another seed gives another stream. */
  bn_rng_normal (seed + 1, 0, part_z, n);
  int same = 0;
  for (int64_t i = 0; i < n; i++)
    same += part_z[i] == whole_z[i];
  g_assert_cmpint (same, <, 3);
  g_free (whole_z);
  g_free (whole_u);
  g_free (part_z);
  g_free (part_u);
}

static void
test_statistics (void)
{
  const int64_t n = 1 << 20;
  float *z = g_new (float, n);
  bn_rng_normal (12345, 0, z, n);
  double sum = 0, sum2 = 0, lag = 0;
  int64_t tail = 0;
  for (int64_t i = 0; i < n; i++)
    {
      g_assert_true (isfinite (z[i]));
      sum += z[i];
      sum2 += (double) z[i] * z[i];
      tail += fabsf (z[i]) > 3.0f;
      if (i > 0)
        lag += (double) z[i] * z[i - 1];
    }
  double mean = sum / n, var = sum2 / n - mean * mean;
  /* Bounds of about five standard errors. */
  g_assert_cmpfloat (fabs (mean), <, 5.0 / sqrt (n));
  g_assert_cmpfloat (fabs (var - 1.0), <, 5.0 * sqrt (2.0 / n));
  g_assert_cmpfloat (fabs (lag / (n - 1)), <, 5.0 / sqrt (n));
  /* P(|z| > 3) = 0.0026998 for a standard normal. */
  double p = 0.0026998;
  g_assert_cmpfloat (fabs ((double) tail / n - p), <, 5.0 * sqrt (p * (1 - p) / n));

  float *u = z;
  bn_rng_uniform (12345, 0, u, n);
  sum = sum2 = 0;
  for (int64_t i = 0; i < n; i++)
    {
      g_assert_cmpfloat (u[i], >=, 0.0f);
      g_assert_cmpfloat (u[i], <, 1.0f);
      sum += u[i];
      sum2 += (double) u[i] * u[i];
    }
  mean = sum / n;
  var = sum2 / n - mean * mean;
  g_assert_cmpfloat (fabs (mean - 0.5), <, 5.0 * sqrt (1.0 / 12 / n));
  g_assert_cmpfloat (fabs (var - 1.0 / 12), <, 5.0 * sqrt (1.0 / 180 / n));
  g_free (z);
}

/* ---- schedule ------------------------------------------------------------ */

static void
test_mu (void)
{
  /* The spec's table (flux2_klein_spec.md §5.1), 4 steps, 5 decimals;
   * 6144 tokens takes the branch above 4300. */
  static const struct {
    int64_t n;
    double mu;
  } table[] = { { 1024, 2.03069 }, { 2304, 2.13923 }, { 4096, 2.29118 },
                { 4080, 2.28982 }, { 6144, 1.49666 } };
  for (guint i = 0; i < G_N_ELEMENTS (table); i++)
    g_assert_cmpfloat_with_epsilon (bn_sampler_mu (table[i].n, 4), table[i].mu, 5e-6);
  /* Above 4300 tokens mu does not depend on the step count. */
  g_assert_cmpfloat (bn_sampler_mu (5000, 4), ==, bn_sampler_mu (5000, 28));
  g_assert_cmpfloat (bn_sampler_mu (4300, 4), !=, bn_sampler_mu (4300, 28));
}

static BnSafetensors *
open_pipeline_refs (void)
{
  const char *refs = g_getenv ("BONSAI_REFS");
  if (!refs)
    return NULL;
  g_autofree char *path = g_build_filename (refs, "flux2-mini", "pipeline_io.safetensors", NULL);
  GError *error = NULL;
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  return st;
}

/* Calls fn for every reference schedule with its N, S and values;
 * `sigmas_stepsS` are the pipeline's own runs at N = 72. */
typedef void (*ScheduleFn) (const char *name, int64_t n, int steps,
                            const float *ref, gpointer data);

static int
for_each_schedule (BnSafetensors *st, ScheduleFn fn, gpointer data)
{
  int count = 0;
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      gint64 n;
      int steps;
      char tail;
      if (sscanf (t->name, "schedule_N%" G_GINT64_FORMAT "_steps%d%c", &n, &steps, &tail) == 2)
        ;
      else if (sscanf (t->name, "sigmas_steps%d%c", &steps, &tail) == 1)
        n = 72;
      else
        continue;
      g_assert_cmpint (t->dtype, ==, BN_DTYPE_F32);
      g_assert_cmpint (t->ndim, ==, 1);
      g_assert_cmpint (t->shape[0], ==, steps + 1);
      /* A tensor's bytes need not be aligned for float in the mapping. */
      float *ref = g_new (float, steps + 1);
      memcpy (ref, t->data, (steps + 1) * sizeof *ref);
      fn (t->name, n, steps, ref, data);
      g_free (ref);
      count++;
    }
  return count;
}

static void
check_schedule (const char *name, int64_t n, int steps, const float *ref,
                gpointer data)
{
  float *sig = g_new (float, steps + 1);
  GError *error = NULL;
  g_assert_true (bn_sampler_sigmas (n, steps, sig, &error));
  g_assert_no_error (error);
  for (int i = 0; i <= steps; i++)
    {
      /* Required: 1e-6.  The replication of diffusers' float arithmetic is
       * exact, so anything but equality is a regression. */
      if (sig[i] != ref[i])
        g_error ("%s[%d]: got %.9g, want %.9g (diff %.3g)", name, i, sig[i],
                 ref[i], fabs (sig[i] - ref[i]));
    }
  g_assert_cmpfloat (sig[0], ==, 1.0f);
  g_assert_cmpfloat (sig[steps], ==, 0.0f);
  g_free (sig);
}

static void
test_schedule_refs (void)
{
  BnSafetensors *st = open_pipeline_refs ();
  if (!st)
    {
      g_test_skip ("BONSAI_REFS is not set");
      return;
    }
  /* 7 sizes × 3 step counts, plus the pipeline's 4- and 2-step runs. */
  g_assert_cmpint (for_each_schedule (st, check_schedule, NULL), ==, 23);
  bn_safetensors_free (st);
}

static void
check_timestep (const char *name, int64_t n, int steps, const float *ref,
                gpointer data)
{
  int *differs = data;
  for (int i = 0; i <= steps; i++)
    {
      float t = bn_sampler_timestep (ref[i]);
      /* The transformer's 1000·t is diffusers' timestep 1000·sigma. */
      g_assert_cmpfloat (t * 1000.0f, ==, ref[i] * 1000.0f);
      g_assert_cmpfloat (fabsf (t - ref[i]), <=, FLT_EPSILON / 2);
      *differs += t != ref[i];
    }
}

static void
test_timestep (void)
{
  /* 512² at 4 steps: sigma 0x1.ea8a2ap-1 reaches the transformer as
   * 0x1.ea8a2cp-1 in diffusers (float32 σ·1000, then /1000). */
  g_assert_cmpfloat (bn_sampler_timestep (0x1.ea8a2ap-1f), ==, 0x1.ea8a2cp-1f);
  g_assert_cmpfloat (bn_sampler_timestep (1.0f), ==, 1.0f);
  g_assert_cmpfloat (bn_sampler_timestep (0.0f), ==, 0.0f);

  BnSafetensors *st = open_pipeline_refs ();
  if (!st)
    {
      g_test_skip ("BONSAI_REFS is not set");
      return;
    }
  int differs = 0;
  for_each_schedule (st, check_timestep, &differs);
  /* Some of the 309 reference sigmas do not survive the round trip. */
  g_assert_cmpint (differs, ==, 7);
  bn_safetensors_free (st);
}

static void
test_euler (void)
{
  GRand *rng = g_rand_new_with_seed (3);
  const int64_t n = 37;
  float *x = g_new (float, n), *v = g_new (float, n), *x0 = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    {
      x[i] = x0[i] = (float) g_rand_double_range (rng, -3, 3);
      v[i] = (float) g_rand_double_range (rng, -3, 3);
    }
  float sig[5];
  g_assert_true (bn_sampler_sigmas (1024, 4, sig, NULL));
  for (int s = 0; s < 4; s++)
    {
      float *before = g_memdup2 (x, n * sizeof *x);
      bn_sampler_euler_step (x, v, n, sig[s], sig[s + 1]);
      float dt = sig[s + 1] - sig[s];
      for (int64_t i = 0; i < n; i++)
        {
          /* As PyTorch: the product and the sum each rounded to f32. */
          float prod = dt * v[i];
          g_assert_cmpfloat (x[i], ==, before[i] + prod);
          g_assert_cmpfloat_with_epsilon (x[i], before[i] + ((double) sig[s + 1] - sig[s]) * v[i], 1e-6);
        }
      g_free (before);
    }
  /* A constant velocity is integrated exactly from sigma 1 to 0: x − v. */
  for (int64_t i = 0; i < n; i++)
    g_assert_cmpfloat_with_epsilon (x[i], (double) x0[i] - v[i], 1e-5);
  g_free (x);
  g_free (v);
  g_free (x0);
  g_rand_free (rng);
}

static void
test_errors (void)
{
  float sig[4];
  const struct {
    int64_t n;
    int steps;
  } bad[] = { { 1024, 0 }, { 1024, -3 }, { 0, 4 }, { 1024, BONSAI_MAX_STEPS + 1 } };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      GError *error = NULL;
      g_assert_false (bn_sampler_sigmas (bad[i].n, bad[i].steps, sig, &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
      g_error_free (error);
    }
  /* One step: sigma 1, then 0. */
  g_assert_true (bn_sampler_sigmas (1024, 1, sig, NULL));
  g_assert_cmpfloat (sig[0], ==, 1.0f);
  g_assert_cmpfloat (sig[1], ==, 0.0f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/rng/philox-kat", test_philox_kat);
  g_test_add_func ("/rng/known-values", test_known_values);
  g_test_add_func ("/rng/split-calls", test_split_calls);
  g_test_add_func ("/rng/statistics", test_statistics);
  g_test_add_func ("/sampler/mu", test_mu);
  g_test_add_func ("/sampler/schedule-refs", test_schedule_refs);
  g_test_add_func ("/sampler/timestep", test_timestep);
  g_test_add_func ("/sampler/euler", test_euler);
  g_test_add_func ("/sampler/errors", test_errors);
  return g_test_run ();
}
