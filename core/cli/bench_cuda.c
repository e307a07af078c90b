/* bench_cuda.c — `bonsai-image bench kernels --backend cuda`: the CUDA
 * module's linears on the transformer's shapes, next to cuBLAS bf16 on the
 * same shapes in the same run, and its attention at the same token counts.
 *
 * Every row times the backend's linear as the transformer calls it (fp32
 * activations in, rounded to bf16 on the device, fp32 out): ternary (Q2,
 * g128, bf16 scales), binary (Q1) and a dense bf16 weight, which the module
 * hands to cuBLAS — so "×cuBLAS" compares like with like.  TFLOP/s counts
 * 2·M·N·K per linear and 4·S²·head_dim·heads per attention (S = M image
 * tokens + 512 text tokens, as klein at that size).  Weights are random
 * (timing does not depend on the values).  `bench kernels` without
 * --backend cuda is cmd_bench.c's CPU benchmark. */
#include "cli.h"

#include "backend.h"

#include <stdio.h>
#include <string.h>

/* (K, N) as in cmd_bench.c: attention projections, fused QKV/MLP-in,
 * single-stream in, MLP-out, single-stream out. */
static const struct {
  int64_t k, n;
} shapes[] = {
  { 3072, 3072 }, { 3072, 18432 }, { 3072, 27648 }, { 9216, 3072 }, { 12288, 3072 },
};

#define KLEIN_HEADS 24
#define KLEIN_TEXT_TOKENS 512

gboolean
bn_bench_cuda_requested (int argc, char **argv)
{
  if (argc < 3 || strcmp (argv[0], "bench") || strcmp (argv[1], "kernels"))
    return FALSE;
  for (int i = 2; i < argc; i++)
    if (!strcmp (argv[i], "--backend=cuda")
        || (!strcmp (argv[i], "--backend") && i + 1 < argc
            && !strcmp (argv[i + 1], "cuda")))
      return TRUE;
  return FALSE;
}

/* A weight of `dtype` ([n, k]; packed: g128 bf16 scales) with random codes
 * or values, resident on the device. */
static BnBackendWeight *
make_weight (BnBackend *be, BnDType dtype, int64_t n, int64_t k,
             GError **error)
{
  BnTensor t = { 0 };
  int64_t shape[2] = { n, k };
  gboolean ok = bn_dtype_is_packed (dtype)
                  ? bn_tensor_init_packed (&t, dtype, n, k, 128, BN_DTYPE_BF16, error)
                  : bn_tensor_init (&t, dtype, 2, shape, error);
  if (!ok)
    return NULL;
  guint64 state = 0x9e3779b97f4a7c15ull;
  if (bn_dtype_is_packed (dtype))
    {
      uint32_t *words = t.data; /* codes: any bits */
      for (size_t i = 0; i < bn_tensor_nbytes (&t) / 4; i++)
        {
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          words[i] = (uint32_t) (state >> 32);
        }
      for (int64_t r = 0; r < n; r++)
        for (int64_t g = 0; g < k / 128; g++)
          bn_packed_set_group (&t, r, g, 0.02f, dtype == BN_DTYPE_Q1 ? -0.01f : -0.02f);
    }
  else
    {
      uint16_t *v = t.data; /* bf16 in ±0.02 */
      for (int64_t i = 0; i < n * k; i++)
        {
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          v[i] = bn_f32_to_bf16 ((float) (state >> 40) / 8388608.0f * 0.04f - 0.02f);
        }
    }
  BnBackendWeight *w = be->ops->weight_new (be->impl, &t, error);
  bn_tensor_clear (&t);
  return w;
}

/* Seconds per call of `iters` linears after two warm-up calls. */
static gboolean
time_linear (BnBackend *be, const BnBackendWeight *w, const float *x,
             int64_t m, int64_t k, float *y, int64_t n, int iters,
             double *seconds, GError **error)
{
  for (int i = 0; i < 2; i++)
    if (!be->ops->linear (be->impl, w, x, m, k, NULL, y, n, error))
      return FALSE;
  if (!be->ops->sync (be->impl, error))
    return FALSE;
  gint64 t0 = g_get_monotonic_time ();
  for (int i = 0; i < iters; i++)
    if (!be->ops->linear (be->impl, w, x, m, k, NULL, y, n, error))
      return FALSE;
  if (!be->ops->sync (be->impl, error))
    return FALSE;
  *seconds = (double) (g_get_monotonic_time () - t0) / 1e6 / iters;
  return TRUE;
}

static gboolean
bench_shape (BnBackend *be, int64_t k, int64_t n, const int64_t *ms, int n_m,
             int iters, GError **error)
{
  static const BnDType dtypes[] = { BN_DTYPE_Q2, BN_DTYPE_Q1, BN_DTYPE_BF16 };
  BnBackendWeight *w[3] = { NULL };
  int64_t m_max = ms[0];
  for (int i = 1; i < n_m; i++)
    m_max = MAX (m_max, ms[i]);
  float *x = be->ops->alloc (be->impl, (size_t) (m_max * k) * 4, error);
  float *y = x ? be->ops->alloc (be->impl, (size_t) (m_max * n) * 4, error) : NULL;
  gboolean ok = y != NULL;
  if (ok)
    {
      /* Activations of ordinary size: a copy of host values once. */
      float *hx = g_new (float, m_max * k);
      for (int64_t i = 0; i < m_max * k; i++)
        hx[i] = (float) ((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
      ok = be->ops->upload (be->impl, x, hx, (size_t) (m_max * k) * 4, error);
      g_free (hx);
    }
  for (int d = 0; ok && d < 3; d++)
    ok = (w[d] = make_weight (be, dtypes[d], n, k, error)) != NULL;
  for (int i = 0; ok && i < n_m; i++)
    {
      double s[3];
      for (int d = 0; ok && d < 3; d++)
        ok = time_linear (be, w[d], x, ms[i], k, y, n, iters, &s[d], error);
      if (!ok)
        break;
      double flop = 2.0 * (double) ms[i] * (double) n * (double) k;
      printf ("%6" G_GINT64_FORMAT " %6" G_GINT64_FORMAT " %6" G_GINT64_FORMAT
              "   %8.1f %8.1f %8.1f   %6.2f× %6.2f×\n", ms[i], n, k,
              flop / s[0] / 1e12, flop / s[1] / 1e12, flop / s[2] / 1e12,
              s[2] / s[0], s[2] / s[1]);
    }
  for (int d = 0; d < 3; d++)
    if (w[d])
      be->ops->weight_free (be->impl, w[d]);
  be->ops->free_ (be->impl, x);
  be->ops->free_ (be->impl, y);
  return ok;
}

/* Joint attention over s tokens, klein's heads, q|k|v side by side. */
static gboolean
bench_attention (BnBackend *be, int64_t s, int iters, GError **error)
{
  const int64_t d = KLEIN_HEADS * 128;
  float *qkv = be->ops->alloc (be->impl, (size_t) (s * 3 * d) * 4, error);
  float *out = qkv ? be->ops->alloc (be->impl, (size_t) (s * d) * 4, error) : NULL;
  gboolean ok = out != NULL;
  if (ok)
    {
      float *h = g_new (float, s * 3 * d);
      for (int64_t i = 0; i < s * 3 * d; i++)
        h[i] = (float) ((i * 2654435761u) % 2001) / 2000.0f - 0.5f;
      ok = be->ops->upload (be->impl, qkv, h, (size_t) (s * 3 * d) * 4, error);
      g_free (h);
    }
  BnBackendAttention a = { s, s, KLEIN_HEADS, KLEIN_HEADS, 128, qkv, 3 * d,
                           qkv + d, 3 * d, qkv + 2 * d, 3 * d, out, d,
                           0.08838834764f, 0, NULL };
  gint64 t0 = 0;
  for (int i = 0; ok && i < iters + 2; i++)
    {
      if (i == 2)
        {
          ok = be->ops->sync (be->impl, error);
          t0 = g_get_monotonic_time ();
        }
      ok = ok && be->ops->attention (be->impl, &a, error);
    }
  ok = ok && be->ops->sync (be->impl, error);
  if (ok)
    {
      double sec = (double) (g_get_monotonic_time () - t0) / 1e6 / iters;
      double flop = 4.0 * (double) s * (double) s * 128.0 * KLEIN_HEADS;
      printf ("attention S=%" G_GINT64_FORMAT " (%d heads of 128): %.2f ms, %.1f TFLOP/s\n",
              s, KLEIN_HEADS, sec * 1e3, flop / sec / 1e12);
    }
  be->ops->free_ (be->impl, qkv);
  be->ops->free_ (be->impl, out);
  return ok;
}

int
bn_bench_kernels_cuda (int argc, char **argv)
{
  char *backend = NULL;
  gboolean quick = FALSE;
  int iters = 20;
  GOptionEntry entries[] = {
    { "backend", 0, 0, G_OPTION_ARG_STRING, &backend, "cuda (this benchmark)", "NAME" },
    { "quick", 0, 0, G_OPTION_ARG_NONE, &quick, "M = 96 only, 2 iterations", NULL },
    { "iterations", 0, 0, G_OPTION_ARG_INT, &iters, "Timed calls per row (default 20)", "N" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("--backend cuda - the CUDA kernels against cuBLAS bf16");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  gboolean parsed = g_option_context_parse (ctx, &argc, &argv, &error);
  g_option_context_free (ctx);
  g_free (backend);
  if (!parsed || iters < 1)
    {
      fprintf (stderr, "bonsai-image bench kernels: %s\n",
               error ? error->message : "--iterations must be at least 1");
      g_clear_error (&error);
      return 2;
    }
  BnBackend *be;
  if (!bn_backend_get (BONSAI_BACKEND_CUDA, &be, &error))
    return bn_cli_fail (error);
  static const int64_t full_m[] = { 1536, 4608 }, quick_m[] = { 96 };
  const int64_t *ms = quick ? quick_m : full_m;
  int n_m = quick ? 1 : 2;
  if (quick)
    iters = 2;
  printf ("CUDA kernels on %s; TFLOP/s (2·M·N·K), ×cuBLAS = cuBLAS bf16 time / ours\n",
          be->ops->device_name (be->impl));
  printf ("%6s %6s %6s   %8s %8s %8s   %7s %7s\n", "M", "N", "K", "ternary",
          "binary", "cuBLAS", "ter", "bin");
  gboolean ok = TRUE;
  for (size_t s = 0; ok && s < G_N_ELEMENTS (shapes); s++)
    ok = bench_shape (be, shapes[s].k, shapes[s].n, ms, n_m, iters, &error);
  for (int i = 0; ok && i < n_m; i++)
    ok = bench_attention (be, ms[i] + KLEIN_TEXT_TOKENS, iters, &error);
  size_t free_b = 0, total_b = 0;
  ok = ok && be->ops->memory (be->impl, &free_b, &total_b, &error);
  if (!ok)
    return bn_cli_fail (error);
  printf ("device memory: peak %.2f GB allocated by the module, %.1f of %.1f GB free now\n",
          be->ops->peak_bytes (be->impl) / 1e9, free_b / 1e9, total_b / 1e9);
  return 0;
}
