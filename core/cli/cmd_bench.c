/* cmd_bench.c — `bonsai-image bench`: dispatches to its sub-commands, and
 * holds `bench kernels`, the throughput of the linear kernels on the
 * transformer's real shapes.
 *
 * `bench kernels` times y = x·Wᵀ for dense f32, dense bf16, binary (Q1, g128,
 * bf16 scales, biases −s/2) and ternary (Q2, g128, biases −s) weights — the
 * low-bit ones also with bf16 and int8 activations, binary also by table
 * lookup (int8 activations, sums of 4 rounded) — and prints GFLOP/s
 * (2·M·N·K flops), the fraction of a measured peak (a register-only loop of
 * the row's own instructions on the same threads, so it tracks the real
 * clock) and the ratio to dense f32 on the same shape in the same run. */
#include "cli.h"

#include "bonsai/bonsai.h"
#include "kernels/linear_lowp.h"
#include "kernels/linear_tile.h"

#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  BnDType dtype;
  BnActPrecision act;
  int weights;  /* the row whose weights it uses */
} KernelFormat;

static const KernelFormat formats[] = {
  { "f32", BN_DTYPE_F32, BN_ACT_EXACT, 0 },
  { "bf16", BN_DTYPE_BF16, BN_ACT_EXACT, 1 },
  { "binary", BN_DTYPE_Q1, BN_ACT_EXACT, 2 },
  { "bin-xbf16", BN_DTYPE_Q1, BN_ACT_BF16, 2 },
  { "bin-xi8", BN_DTYPE_Q1, BN_ACT_INT8, 2 },
  { "bin-lut", BN_DTYPE_Q1, BN_ACT_LUT, 2 },
  { "ternary", BN_DTYPE_Q2, BN_ACT_EXACT, 6 },
  { "ter-xbf16", BN_DTYPE_Q2, BN_ACT_BF16, 6 },
  { "ter-xi8", BN_DTYPE_Q2, BN_ACT_INT8, 6 },
};

/* (K, N) of the DiT's linears: attention projections, the fused
 * double-stream QKV/MLP-in and single-stream in, the MLP-out and the
 * single-stream out. */
static const struct {
  int64_t k, n;
} shapes[] = {
  { 3072, 3072 }, { 3072, 18432 }, { 3072, 27648 }, { 9216, 3072 }, { 12288, 3072 },
};

/* Cheap reproducible numbers for filling large buffers (the values do not
 * change the timing, only denormals or NaN would). */
static inline guint32
next_random (guint64 *state)
{
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (guint32) (*state >> 33);
}

static inline float
random_unit (guint64 *state)
{
  return (float) next_random (state) / 2147483648.0f - 1.0f;
}

static gboolean
make_weights (BnTensor *w, BnDType dtype, int64_t n, int64_t k, GError **error)
{
  guint64 rng = 0x5eed ^ (guint64) (n * 131 + k);
  if (!bn_dtype_is_packed (dtype))
    {
      const int64_t shape[2] = { n, k };
      if (!bn_tensor_init (w, dtype, 2, shape, error))
        return FALSE;
      for (int64_t i = 0; i < n * k; i++)
        if (dtype == BN_DTYPE_F32)
          ((float *) w->data)[i] = random_unit (&rng);
        else
          ((guint16 *) w->data)[i] = bn_f32_to_bf16 (random_unit (&rng));
      return TRUE;
    }
  if (!bn_tensor_init_packed (w, dtype, n, k, 128, BN_DTYPE_BF16, error))
    return FALSE;
  /* The release's conventions: binary q ∈ {0,1}, b = −s/2; ternary
   * q ∈ {0,1,2}, b = −s. */
  const gboolean ternary = dtype == BN_DTYPE_Q2;
  w->ternary = ternary;
  const int64_t words = n * k * bn_dtype_bits (dtype) / 32;
  guint32 *codes = w->data;
  for (int64_t i = 0; i < words; i++)
    {
      guint32 v = next_random (&rng) ^ (next_random (&rng) << 16);
      /* Turn each ternary code 3 into 2 (clear its low bit). */
      codes[i] = ternary ? v & ~(v & (v >> 1) & 0x55555555u) : v;
    }
  for (int64_t r = 0; r < n; r++)
    for (int64_t g = 0; g < k / 128; g++)
      {
        float s = 0.01f + 0.04f * (random_unit (&rng) + 1.0f) / 2.0f;
        bn_packed_set_group (w, r, g, s, ternary ? -s : -s / 2.0f);
      }
  return TRUE;
}

typedef struct {
  const BnLinearPath *path;
  const BnLowpPath *lowp;  /* or NULL: the FMA loop */
  int64_t iters;
  float sink;
} PeakJob;

static void
peak_chunk (void *ctx, int64_t begin, int64_t end, int thread_index)
{
  PeakJob *job = ctx;
  float v = job->lowp ? (float) job->lowp->dot_loop (job->iters) : job->path->fma_loop (job->iters);
  /* Kept (from one thread, without a race) so the work has a use. */
  if (thread_index == 0)
    job->sink = v;
}

/* G(FL)OP/s of the path's register-only FMA loop, or of a low-precision
 * path's dot-product loop, on every thread at once. */
static double
measure_peak (BnThreadPool *pool, const BnLinearPath *path, const BnLowpPath *lowp)
{
  const int threads = bn_thread_pool_size (pool);
  PeakJob job = { path, lowp, 20000000, 0.0f };
  const int per_iter = lowp ? lowp->ops_per_iter : path->flops_per_iter;
  double best = 0.0;
  for (int rep = 0; rep < 3; rep++)
    {
      gint64 t0 = g_get_monotonic_time ();
      bn_parallel_for (pool, threads, peak_chunk, &job);
      double s = (double) (g_get_monotonic_time () - t0) / 1e6;
      best = MAX (best, (double) threads * (double) job.iters * per_iter / s / 1e9);
    }
  return best;
}

/* Best seconds of at least three runs, more while the total stays under a
 * second (small shapes). */
static double
time_linear (BnThreadPool *pool, BnIsa isa, const BnTensor *w,
             BnActPrecision act, const float *x, int64_t m, float *y)
{
  double best = G_MAXDOUBLE, total = 0.0;
  for (int rep = 0; rep < 5 && (rep < 3 || total < 1.0); rep++)
    {
      gint64 t0 = g_get_monotonic_time ();
      bn_linear_lowp_isa (pool, isa, act, w, x, m, w->shape[1], y, w->shape[0]);
      double s = (double) (g_get_monotonic_time () - t0) / 1e6;
      best = MIN (best, s);
      total += s;
    }
  return best;
}

static gboolean
parse_isa (const char *name, BnIsa *isa, GError **error)
{
  for (int i = 0; i < BN_ISA_COUNT; i++)
    if (!strcmp (name, bn_isa_name ((BnIsa) i)))
      {
        if (!bn_cpu_supports ((BnIsa) i))
          {
            g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                         "this CPU cannot run the %s kernels", name);
            return FALSE;
          }
        *isa = (BnIsa) i;
        return TRUE;
      }
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
               "unknown instruction set '%s' (scalar, avx2 or avx512)", name);
  return FALSE;
}

/* One shape: makes the four weight tensors and times each for every M. */
static gboolean
bench_shape (BnThreadPool *pool, BnIsa isa, int64_t k, int64_t n,
             const int64_t *ms, int n_m, const double *peaks, GError **error)
{
  BnTensor w[G_N_ELEMENTS (formats)] = { { 0 } };
  float *x = NULL, *y = NULL;
  gboolean ok = TRUE;
  for (size_t f = 0; f < G_N_ELEMENTS (formats) && ok; f++)
    if (formats[f].weights == (int) f)
      ok = make_weights (&w[f], formats[f].dtype, n, k, error);
  const int64_t m_max = ms[n_m - 1];
  if (ok)
    {
      x = g_try_new (float, (gsize) (m_max * k));
      y = g_try_new (float, (gsize) (m_max * n));
      if (!x || !y)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                       "out of memory for activations of %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT,
                       m_max, MAX (k, n));
          ok = FALSE;
        }
    }
  if (ok)
    {
      guint64 rng = 42;
      for (int64_t i = 0; i < m_max * k; i++)
        x[i] = random_unit (&rng);
      /* Touch y so page faults stay out of the timing. */
      memset (y, 0, (size_t) (m_max * n) * sizeof *y);
      for (int i = 0; i < n_m; i++)
        {
          double f32_rate = 0.0;
          for (size_t f = 0; f < G_N_ELEMENTS (formats); f++)
            {
              const BnActPrecision act = formats[f].act;
              const BnTensor *wf = &w[formats[f].weights];
              if (act != BN_ACT_EXACT && !bn_linear_lowp_applies (isa, act, wf))
                continue;
              double s = time_linear (pool, isa, wf, act, x, ms[i], y);
              double rate = 2.0 * (double) ms[i] * (double) n * (double) k / s / 1e9;
              if (f == 0)
                f32_rate = rate;
              printf ("| %5" G_GINT64_FORMAT " | %5" G_GINT64_FORMAT " | %5" G_GINT64_FORMAT
                      " | %-9s | %9.1f | %7.1f | %5.0f%% | %5.2f |\n",
                      ms[i], k, n, formats[f].name, s * 1e3, rate,
                      100.0 * rate / peaks[act],
                      rate / f32_rate);
              fflush (stdout);
            }
        }
    }
  g_free (x);
  g_free (y);
  for (size_t f = 0; f < G_N_ELEMENTS (formats); f++)
    if (formats[f].weights == (int) f)
      bn_tensor_clear (&w[f]);
  return ok;
}

static int
bench_kernels (int argc, char **argv)
{
  int threads = 0;
  gboolean quick = FALSE;
  int rows = 0;
  char *isa_name = NULL;
  const GOptionEntry entries[] = {
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Worker threads (default: one per processor)", "N" },
    { "quick", 0, 0, G_OPTION_ARG_NONE, &quick, "Small M only, for a fast smoke run", NULL },
    { "rows", 'M', 0, G_OPTION_ARG_INT, &rows,
      "Only this M (default 1536 and 4608; the transformer's chunks are 128)", "M" },
    { "isa", 0, 0, G_OPTION_ARG_STRING, &isa_name, "Kernels to run: scalar, avx2 or avx512 (default: the best this CPU has)", "ISA" },
    { NULL },
  };
  GOptionContext *context = g_option_context_new ("- throughput of the linear kernels");
  g_option_context_set_summary (context,
      "Times y = x·Wᵀ on the transformer's shapes for dense f32 and bf16, binary\n"
      "(1-bit, group 128) and ternary (2-bit, group 128) weights.");
  g_option_context_add_main_entries (context, entries, NULL);
  GError *error = NULL;
  /* A copy whose first word names the command in --help and errors. */
  char **args = g_new0 (char *, argc + 1);
  args[0] = g_strdup ("bonsai-image bench kernels");
  for (int i = 1; i < argc; i++)
    args[i] = g_strdup (argv[i]);
  gboolean parsed = g_option_context_parse_strv (context, &args, &error);
  g_option_context_free (context);
  const char *extra = parsed && args[1] ? args[1] : NULL;
  if (!parsed)
    fprintf (stderr, "bonsai-image: bench kernels: %s\n", error->message);
  else if (extra)
    fprintf (stderr, "bonsai-image: bench kernels: unexpected argument '%s'\n", extra);
  g_clear_error (&error);
  g_strfreev (args);
  if (!parsed || extra)
    {
      g_free (isa_name);
      return 2;
    }
  BnIsa isa = bn_cpu_isa ();
  if (isa_name && !parse_isa (isa_name, &isa, &error))
    {
      g_free (isa_name);
      return bn_cli_fail (error);
    }
  g_free (isa_name);
  if (threads < 0 || rows < 0 || rows > 65536)
    {
      fprintf (stderr, "bonsai-image: bench kernels: --threads must be 0 or more, --rows 1 to 65536\n");
      return 2;
    }
  BnThreadPool *pool = bn_thread_pool_new (threads, &error);
  if (!pool)
    return bn_cli_fail (error);

  static const int64_t full_m[] = { 1536, 4608 }, quick_m[] = { 96 };
  const int64_t one_m[] = { rows };
  const int64_t *ms = rows > 0 ? one_m : quick ? quick_m : full_m;
  const int n_m = rows > 0 ? 1 : quick ? (int) G_N_ELEMENTS (quick_m) : (int) G_N_ELEMENTS (full_m);
  const int n_threads = bn_thread_pool_size (pool);
  printf ("bench kernels: isa %s, %d thread%s; fp32 accumulation, fp32 activations\n"
          "except in the -xbf16 rows (bf16), -xi8 rows (int8 per token and group)\n"
          "and bin-lut (int8 per token and group, sums of 4 rounded to 4 steps, table lookups)\n",
          bn_isa_name (isa), n_threads, n_threads == 1 ? "" : "s");
  /* Each row's peak column is against its own instructions' ceiling. */
  double peaks[BN_ACT_LUT + 1];
  peaks[BN_ACT_EXACT] = measure_peak (pool, bn_linear_path (isa), NULL);
  printf ("peak of register-only loops: fp32 FMA %.1f GFLOP/s", peaks[BN_ACT_EXACT]);
  for (int a = BN_ACT_BF16; a <= BN_ACT_LUT; a++)
    {
      const BnLowpPath *lp = bn_lowp_path (isa, (BnActPrecision) a);
      peaks[a] = lp ? measure_peak (pool, NULL, lp) : 0.0;
      if (lp)
        printf (", %s %.1f GOP/s", lp->name, peaks[a]);
    }
  printf ("\n\n|     M |     K |     N | weights   |        ms | GFLOP/s |  peak | vs f32 |\n");
  printf ("|------:|------:|------:|:----------|----------:|--------:|------:|-------:|\n");
  gboolean ok = TRUE;
  for (size_t s = 0; s < G_N_ELEMENTS (shapes) && ok; s++)
    ok = bench_shape (pool, isa, shapes[s].k, shapes[s].n, ms, n_m, peaks, &error);
  bn_thread_pool_free (pool);
  return ok ? 0 : bn_cli_fail (error);
}

static void
usage (FILE *out)
{
  fprintf (out,
           "Usage: bonsai-image bench WHAT [OPTIONS]\n\n"
           "  kernels       throughput of the linear kernels on the transformer's shapes\n"
           "  text-encoder  time and memory of the text encoder\n"
           "  pipeline      time per step and peak memory of a whole generation\n\n"
           "bonsai-image bench WHAT --help describes each.\n");
}

int
bn_cmd_bench (int argc, char **argv)
{
  if (argc < 2)
    {
      usage (stderr);
      return 2;
    }
  if (!strcmp (argv[1], "--help") || !strcmp (argv[1], "-h"))
    {
      usage (stdout);
      return 0;
    }
  if (!strcmp (argv[1], "kernels"))
    return bench_kernels (argc - 1, argv + 1);
  if (!strcmp (argv[1], "text-encoder"))
    return bn_bench_text_encoder (argc - 1, argv + 1);
  if (!strcmp (argv[1], "pipeline"))
    return bn_bench_pipeline (argc - 1, argv + 1);
  fprintf (stderr, "bonsai-image: bench: unknown benchmark '%s'\n\n", argv[1]);
  usage (stderr);
  return 2;
}
