/* test-cuda.c — every operation of the CUDA backend against the CPU oracle
 * (bn_linear_ref, ops.c, attention.c, conv2d.c) at small shapes, edges
 * included (rows, outputs and keys that are not multiples of the tiles,
 * strided rows, masked and fully hidden keys).  Exits 77 (skipped) when the
 * module or a GPU is missing, after printing why.
 *
 * Tolerances.  Linears and attention round activations (and decoded
 * weights) to bf16, relative error 2^-9 each; with random signs the error
 * of a sum of K terms stays near 2^-9 of its size, so
 *   max |y − ref| ≤ 1e-2 · max |ref|
 * holds with margin while one wrong code (a term off by scale·|x|), a wrong
 * group's scale, a swapped operand or a mask ignored breaks it.  Dense f32
 * weights go through cuBLAS in fp32 and get 1e-4.  Norms, RoPE, SwiGLU,
 * GroupNorm and im2col are fp32 (double sums) and get 1e-4 too.
 */
#include "backend.h"
#include "conv2d.h"
#include "flux2_dit_device.h"
#include "ops.h"
#include "synthetic_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static BnBackend *be;

static float *
rand_floats (int64_t n, double lo, double hi)
{
  float *v = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    v[i] = (float) g_test_rand_double_range (lo, hi);
  return v;
}

static void *
dev_copy (const void *host, size_t bytes)
{
  GError *error = NULL;
  void *d = be->ops->alloc (be->impl, bytes, &error);
  g_assert_no_error (error);
  g_assert_true (be->ops->upload (be->impl, d, host, bytes, &error));
  g_assert_no_error (error);
  return d;
}

static float *
host_copy (const void *dev, int64_t n)
{
  GError *error = NULL;
  float *h = g_new (float, n);
  g_assert_true (be->ops->sync (be->impl, &error));
  g_assert_no_error (error);
  g_assert_true (be->ops->download (be->impl, h, dev, (size_t) n * 4, &error));
  g_assert_no_error (error);
  return h;
}

/* max |got − ref| over rows × n (strides ld) against tol · max |ref|. */
static void
assert_close (const char *what, const float *got, const float *ref,
              int64_t rows, int64_t n, int64_t ld, double tol)
{
  double err = 0, big = 0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < n; i++)
      {
        double g = got[r * ld + i], f = ref[r * ld + i];
        g_assert_false (isnan (g));
        err = MAX (err, fabs (g - f));
        big = MAX (big, fabs (f));
      }
  g_test_message ("%s: max error %.3g of max %.3g", what, err, big);
  if (err > tol * MAX (big, 1e-6))
    g_error ("%s: max error %g exceeds %g · %g", what, err, tol, big);
}

/* ---- Linear ------------------------------------------------------------ */

static void
make_packed (BnTensor *w, BnDType dt, int64_t n, int64_t k, int group,
             BnDType sdt)
{
  GError *error = NULL;
  g_assert_true (bn_tensor_init_packed (w, dt, n, k, group, sdt, &error));
  g_assert_no_error (error);
  int bits = bn_dtype_bits (dt);
  unsigned top = dt == BN_DTYPE_Q2 ? 2 : (1u << bits) - 1; /* ternary Q2 */
  for (int64_t r = 0; r < n; r++)
    {
      for (int64_t c = 0; c < k; c++)
        bn_packed_set_code (w, r, c, (unsigned) g_test_rand_int_range (0, (gint32) top + 1));
      for (int64_t g = 0; g < k / group; g++)
        {
          float s = (float) g_test_rand_double_range (0.01, 0.1);
          float b = bits == 1 ? -s / 2 : bits == 2 ? -s
                    : (float) (-s * g_test_rand_double_range (6.5, 8.5));
          bn_packed_set_group (w, r, g, s, b);
        }
    }
}

static void
make_dense (BnTensor *w, BnDType dt, int64_t n, int64_t k)
{
  GError *error = NULL;
  int64_t shape[2] = { n, k };
  g_assert_true (bn_tensor_init (w, dt, 2, shape, &error));
  g_assert_no_error (error);
  for (int64_t i = 0; i < n * k; i++)
    {
      float v = (float) g_test_rand_double_range (-0.1, 0.1);
      if (dt == BN_DTYPE_F32)
        ((float *) w->data)[i] = v;
      else
        ((uint16_t *) w->data)[i]
            = dt == BN_DTYPE_F16 ? bn_f32_to_f16 (v) : bn_f32_to_bf16 (v);
    }
}

/* y (row stride ldy > n, padding checked untouched) = x (stride ldx > k)·Wᵀ
 * + bias on the device against bn_linear_ref. */
static void
check_linear (const char *what, BnTensor *w, int64_t m, gboolean with_bias,
              double tol)
{
  GError *error = NULL;
  const int64_t n = w->shape[0], k = w->shape[1], ldx = k + 3, ldy = n + 5;
  float *x = rand_floats (m * ldx, -1, 1);
  float *bias = with_bias ? rand_floats (n, -1, 1) : NULL;
  float *ref = g_new (float, m * ldy);
  for (int64_t i = 0; i < m * ldy; i++)
    ref[i] = 7.0f;
  bn_linear_ref (w, x, m, ldx, ref, ldy);
  if (bias)
    for (int64_t r = 0; r < m; r++)
      for (int64_t c = 0; c < n; c++)
        ref[r * ldy + c] += bias[c];

  BnBackendWeight *dw = be->ops->weight_new (be->impl, w, &error);
  g_assert_no_error (error);
  float *dx = dev_copy (x, (size_t) (m * ldx) * 4);
  float *dy = dev_copy (ref, (size_t) (m * ldy) * 4); /* padding = 7 */
  float *db = bias ? dev_copy (bias, (size_t) n * 4) : NULL;
  /* Garbage in the outputs first: each must be written. */
  float *junk = rand_floats (m * ldy, 1e3, 2e3);
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = n; c < ldy; c++)
      junk[r * ldy + c] = 7.0f;
  g_assert_true (be->ops->upload (be->impl, dy, junk, (size_t) (m * ldy) * 4, &error));
  g_assert_true (be->ops->linear (be->impl, dw, dx, m, ldx, db, dy, ldy, &error));
  g_assert_no_error (error);
  float *y = host_copy (dy, m * ldy);
  char *name = g_strdup_printf ("%s m=%" G_GINT64_FORMAT " n=%" G_GINT64_FORMAT
                                " k=%" G_GINT64_FORMAT "%s", what, m, n, k,
                                with_bias ? " +bias" : "");
  assert_close (name, y, ref, m, n, ldy, tol);
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = n; c < ldy; c++)
      g_assert_cmpfloat (y[r * ldy + c], ==, 7.0f);
  g_free (name);
  be->ops->free_ (be->impl, dx);
  be->ops->free_ (be->impl, dy);
  be->ops->free_ (be->impl, db);
  be->ops->weight_free (be->impl, dw);
  g_free (x);
  g_free (bias);
  g_free (ref);
  g_free (junk);
  g_free (y);
}

static void
test_linear_packed (void)
{
  static const struct { BnDType dt; int group; BnDType sdt; const char *name; } f[] = {
    { BN_DTYPE_Q1, 128, BN_DTYPE_BF16, "binary g128" },
    { BN_DTYPE_Q2, 128, BN_DTYPE_BF16, "ternary g128" },
    { BN_DTYPE_Q4, 64, BN_DTYPE_BF16, "q4 g64" },
    { BN_DTYPE_Q2, 32, BN_DTYPE_F16, "ternary g32 f16 scales" },
    { BN_DTYPE_Q4, 128, BN_DTYPE_F32, "q4 g128 f32 scales" },
  };
  static const int64_t ms[] = { 1, 37, 130 };
  for (guint i = 0; i < G_N_ELEMENTS (f); i++)
    for (guint j = 0; j < G_N_ELEMENTS (ms); j++)
      {
        BnTensor w = { 0 };
        make_packed (&w, f[i].dt, 200, 384, f[i].group, f[i].sdt);
        check_linear (f[i].name, &w, ms[j], j == 1, 1e-2);
        bn_tensor_clear (&w);
      }
}

static void
test_linear_dense (void)
{
  static const struct { BnDType dt; double tol; } f[] = {
    { BN_DTYPE_BF16, 1e-2 }, { BN_DTYPE_F16, 1e-2 }, { BN_DTYPE_F32, 1e-4 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (f); i++)
    {
      BnTensor w = { 0 };
      make_dense (&w, f[i].dt, 150, 200);
      check_linear (bn_dtype_name (f[i].dt), &w, 33, TRUE, f[i].tol);
      check_linear (bn_dtype_name (f[i].dt), &w, 1, FALSE, f[i].tol);
      bn_tensor_clear (&w);
    }
}

/* ---- Attention --------------------------------------------------------- */

static void
check_attention (int d, int64_t n_q, int64_t n_kv, int heads, int kv_heads,
                 int causal, gboolean masked)
{
  GError *error = NULL;
  const int64_t ldq = heads * d + 16, ldk = kv_heads * d + 8,
                ldo = heads * d + 4;
  float *q = rand_floats (n_q * ldq, -2, 2);
  float *k = rand_floats (n_kv * ldk, -2, 2);
  float *v = rand_floats (n_kv * ldk, -1, 1);
  uint8_t *mask = NULL;
  if (masked)
    {
      mask = g_new (uint8_t, n_kv);
      for (int64_t i = 0; i < n_kv; i++)
        mask[i] = (i % 5) != 1;
      mask[0] = 0; /* causal: query 0 then sees no key and gets zeros */
    }
  float *ref = g_new0 (float, n_q * ldo);
  BnAttention a = {
    .n_q = n_q, .n_kv = n_kv, .n_heads = heads, .n_kv_heads = kv_heads,
    .head_dim = d, .q = q, .ldq = ldq, .k = k, .ldk = ldk, .v = v,
    .ldv = ldk, .out = ref, .ldo = ldo, .scale = 1.0f / sqrtf ((float) d),
    .causal = causal, .key_mask = mask,
  };
  bn_attention (NULL, &a);

  float *dq = dev_copy (q, (size_t) (n_q * ldq) * 4);
  float *dk = dev_copy (k, (size_t) (n_kv * ldk) * 4);
  float *dv = dev_copy (v, (size_t) (n_kv * ldk) * 4);
  float *dout = dev_copy (ref, (size_t) (n_q * ldo) * 4);
  uint8_t *dm = mask ? dev_copy (mask, (size_t) n_kv) : NULL;
  float *junk = rand_floats (n_q * ldo, 1e3, 2e3);
  g_assert_true (be->ops->upload (be->impl, dout, junk, (size_t) (n_q * ldo) * 4, &error));
  BnBackendAttention da = { n_q, n_kv, heads, kv_heads, d, dq, ldq, dk, ldk,
                            dv, ldk, dout, ldo, a.scale, causal, dm };
  g_assert_true (be->ops->attention (be->impl, &da, &error));
  g_assert_no_error (error);
  float *out = host_copy (dout, n_q * ldo);
  char *name = g_strdup_printf ("attention d=%d q=%" G_GINT64_FORMAT " kv=%" G_GINT64_FORMAT
                                " heads=%d/%d%s%s", d, n_q, n_kv, heads, kv_heads,
                                causal ? " causal" : "", masked ? " masked" : "");
  assert_close (name, out, ref, n_q, heads * d, ldo, 1e-2);
  if (causal && masked)
    for (int i = 0; i < heads * d; i++)
      g_assert_cmpfloat (out[i], ==, 0.0f);
  g_free (name);
  be->ops->free_ (be->impl, dq);
  be->ops->free_ (be->impl, dk);
  be->ops->free_ (be->impl, dv);
  be->ops->free_ (be->impl, dout);
  be->ops->free_ (be->impl, dm);
  g_free (q);
  g_free (k);
  g_free (v);
  g_free (mask);
  g_free (ref);
  g_free (junk);
  g_free (out);
}

static void
test_attention (void)
{
  check_attention (128, 100, 150, 4, 2, 0, FALSE);
  check_attention (128, 100, 150, 4, 4, 0, TRUE);
  check_attention (128, 130, 130, 2, 1, 1, TRUE);
  check_attention (128, 1, 7, 1, 1, 0, FALSE);
  check_attention (64, 70, 90, 3, 1, 1, TRUE);
  check_attention (32, 65, 200, 2, 2, 0, TRUE);
}

/* ---- Norms, RoPE, SwiGLU ------------------------------------------------ */

static void
test_norms (void)
{
  GError *error = NULL;
  const int64_t rows = 19, n = 300, ld = 310;
  float *x = rand_floats (rows * ld, -3, 5);
  float *wt = rand_floats (n, 0.5, 1.5);
  float *sc = rand_floats (n, -0.5, 0.5), *sh = rand_floats (n, -1, 1);
  float *dx = dev_copy (x, (size_t) (rows * ld) * 4);
  float *dw = dev_copy (wt, (size_t) n * 4);
  float *dsc = dev_copy (sc, (size_t) n * 4), *dsh = dev_copy (sh, (size_t) n * 4);
  float *dy = dev_copy (x, (size_t) (rows * ld) * 4);

  float *ref = g_memdup2 (x, (gsize) (rows * ld) * 4);
  bn_rmsnorm_rows (ref, rows, n, ld, wt, 1e-6f);
  g_assert_true (be->ops->rmsnorm (be->impl, dy, rows, 1, n, ld, dw, 1e-6f, &error));
  float *got = host_copy (dy, rows * ld);
  assert_close ("rmsnorm", got, ref, rows, n, ld, 1e-4);
  g_free (got);

  /* Per head, as the transformer's QK norm: 3 heads of 100 a row. */
  memcpy (ref, x, (size_t) (rows * ld) * 4);
  for (int64_t r = 0; r < rows; r++)
    bn_rmsnorm_rows (ref + r * ld, 3, 100, 100, wt, 1e-6f);
  g_assert_true (be->ops->upload (be->impl, dy, x, (size_t) (rows * ld) * 4, &error));
  g_assert_true (be->ops->rmsnorm (be->impl, dy, rows, 3, 100, ld, dw, 1e-6f, &error));
  g_assert_no_error (error);
  got = host_copy (dy, rows * ld);
  assert_close ("rmsnorm per head", got, ref, rows, n, ld, 1e-4);
  g_free (got);

  /* Gated residual and row copies, between strided buffers. */
  memcpy (ref, x, (size_t) (rows * ld) * 4);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < 200; i++)
      ref[r * ld + i] += sc[i] * x[r * ld + 100 + i];
  g_assert_true (be->ops->upload (be->impl, dy, x, (size_t) (rows * ld) * 4, &error));
  g_assert_true (be->ops->gate_add (be->impl, dy, ld, dx + 100, ld, dsc, rows, 200, &error));
  g_assert_no_error (error);
  got = host_copy (dy, rows * ld);
  assert_close ("gated residual", got, ref, rows, 200, ld, 1e-6);
  g_free (got);
  g_assert_true (be->ops->copy_rows (be->impl, dy, ld, dx + 7, ld, rows, 250, &error));
  g_assert_no_error (error);
  got = host_copy (dy, rows * ld);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < 250; i++)
      g_assert_cmpfloat (got[r * ld + i], ==, x[r * ld + 7 + i]);
  g_free (got);

  bn_layernorm_rows (x, ref, rows, n, ld, 1e-6f);
  g_assert_true (be->ops->layernorm (be->impl, dx, dy, rows, n, ld, 1e-6f, NULL, NULL, &error));
  got = host_copy (dy, rows * ld);
  assert_close ("layernorm", got, ref, rows, n, ld, 1e-4);
  g_free (got);

  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < n; i++)
      ref[r * ld + i] = ref[r * ld + i] * (1.0f + sc[i]) + sh[i];
  g_assert_true (be->ops->layernorm (be->impl, dx, dx, rows, n, ld, 1e-6f, dsc, dsh, &error));
  g_assert_no_error (error);
  got = host_copy (dx, rows * ld);
  assert_close ("layernorm + modulation (in place)", got, ref, rows, n, ld, 1e-4);
  g_free (got);

  /* SwiGLU on halves of one row block, written over the gate half. */
  const int64_t h = 150;
  for (int64_t r = 0; r < rows; r++)
    bn_swiglu (x + r * ld, x + r * ld + h, ref + r * ld, h);
  g_assert_true (be->ops->upload (be->impl, dx, x, (size_t) (rows * ld) * 4, &error));
  g_assert_true (be->ops->swiglu (be->impl, dx, ld, dx + h, ld, dy, ld, rows, h, &error));
  g_assert_no_error (error);
  got = host_copy (dy, rows * ld);
  assert_close ("swiglu", got, ref, rows, h, ld, 1e-5);
  g_free (got);

  be->ops->free_ (be->impl, dx);
  be->ops->free_ (be->impl, dy);
  be->ops->free_ (be->impl, dw);
  be->ops->free_ (be->impl, dsc);
  be->ops->free_ (be->impl, dsh);
  g_free (x);
  g_free (wt);
  g_free (sc);
  g_free (sh);
  g_free (ref);
}

static void
test_rope (void)
{
  GError *error = NULL;
  const int64_t n_tok = 21;
  const int heads = 3, hd = 128;
  const int64_t ld = heads * hd + 8;
  int64_t *ids = g_new (int64_t, n_tok * 4);
  for (int64_t i = 0; i < n_tok * 4; i++)
    ids[i] = g_test_rand_int_range (0, 64);
  static const int axes[4] = { 32, 32, 32, 32 };
  float *ct = g_new (float, n_tok * hd / 2), *st = g_new (float, n_tok * hd / 2);
  for (int half = 0; half < 2; half++)
    {
      if (half)
        bn_rope_table_linear (n_tok, hd, 1e6, ct, st);
      else
        bn_rope_table_axes (ids, n_tok, axes, 4, 2000.0, ct, st);
      float *x = rand_floats (n_tok * ld, -2, 2);
      float *dx = dev_copy (x, (size_t) (n_tok * ld) * 4);
      float *dc = dev_copy (ct, (size_t) (n_tok * hd / 2) * 4);
      float *ds = dev_copy (st, (size_t) (n_tok * hd / 2) * 4);
      if (half)
        bn_rope_half (x, n_tok, ld, heads, hd, ct, st);
      else
        bn_rope_interleaved (x, n_tok, ld, heads, hd, ct, st);
      g_assert_true (be->ops->rope (be->impl, dx, n_tok, ld, heads, hd, dc, ds, half, &error));
      g_assert_no_error (error);
      float *got = host_copy (dx, n_tok * ld);
      assert_close (half ? "rope rotate-half" : "rope adjacent pairs", got, x,
                    n_tok, heads * hd, ld, 1e-5);
      be->ops->free_ (be->impl, dx);
      be->ops->free_ (be->impl, dc);
      be->ops->free_ (be->impl, ds);
      g_free (x);
      g_free (got);
    }
  g_free (ids);
  g_free (ct);
  g_free (st);
}

/* ---- VAE: GroupNorm and 3×3 convolutions ------------------------------- */

static void
test_vae_ops (void)
{
  GError *error = NULL;
  const int64_t h = 9, w = 14, ci = 24, co = 40, n = h * w;
  const int groups = 8;
  float *x = rand_floats (n * ci, -2, 3);
  float *gamma = rand_floats (ci, 0.5, 1.5), *beta = rand_floats (ci, -0.5, 0.5);
  float *sc = g_new (float, ci), *sh = g_new (float, ci);
  g_assert_true (bn_group_norm_fold (NULL, x, n, ci, groups, gamma, beta, 1e-6f, sc, sh, &error));
  float *dx = dev_copy (x, (size_t) (n * ci) * 4);
  float *dg = dev_copy (gamma, (size_t) ci * 4), *dbeta = dev_copy (beta, (size_t) ci * 4);
  float *dsc = dev_copy (sc, (size_t) ci * 4), *dsh = dev_copy (sh, (size_t) ci * 4);
  g_assert_true (be->ops->group_norm_fold (be->impl, dx, n, ci, groups, dg, dbeta, 1e-6f, dsc, dsh, &error));
  g_assert_no_error (error);
  float *got = host_copy (dsc, ci);
  assert_close ("group norm scale", got, sc, 1, ci, ci, 1e-5);
  g_free (got);
  got = host_copy (dsh, ci);
  assert_close ("group norm shift", got, sh, 1, ci, ci, 1e-5);
  g_free (got);

  float *bias = rand_floats (co, -1, 1);
  float *dbias = dev_copy (bias, (size_t) co * 4);
  static const BnDType dts[] = { BN_DTYPE_F32, BN_DTYPE_BF16 };
  for (guint t = 0; t < G_N_ELEMENTS (dts); t++)
    for (int mode = 0; mode < 3; mode++)
      for (int pre = 0; pre < 2; pre++)
        {
          BnTensor wt = { 0 };
          make_dense (&wt, dts[t], co, ci * 9);
          int64_t ho = bn_conv_out_size ((BnConvMode) mode, h);
          int64_t wo = bn_conv_out_size ((BnConvMode) mode, w);
          float *ref = rand_floats (ho * wo * co, -1, 1);
          float *dy = dev_copy (ref, (size_t) (ho * wo * co) * 4);
          BnConv3x3 c = { (BnConvMode) mode, &wt, bias, pre ? sc : NULL,
                          pre ? sh : NULL, pre, BN_ACT_EXACT };
          g_assert_true (bn_conv3x3 (NULL, &c, x, h, w, ref, &error));
          BnBackendWeight *dw = be->ops->weight_new (be->impl, &wt, &error);
          g_assert_no_error (error);
          BnBackendConv3x3 dc = { mode, dw, dbias, pre ? dsc : NULL,
                                  pre ? dsh : NULL, pre };
          g_assert_true (be->ops->conv3x3 (be->impl, &dc, dx, h, w, dy, &error));
          g_assert_no_error (error);
          got = host_copy (dy, ho * wo * co);
          char *name = g_strdup_printf ("conv3x3 %s mode %d%s", bn_dtype_name (dts[t]),
                                        mode, pre ? " +groupnorm/swish +accumulate" : "");
          assert_close (name, got, ref, ho * wo, co, co,
                        dts[t] == BN_DTYPE_F32 ? 1e-4 : 1e-2);
          g_free (name);
          g_free (got);
          g_free (ref);
          be->ops->free_ (be->impl, dy);
          be->ops->weight_free (be->impl, dw);
          bn_tensor_clear (&wt);
        }
  be->ops->free_ (be->impl, dx);
  be->ops->free_ (be->impl, dg);
  be->ops->free_ (be->impl, dbeta);
  be->ops->free_ (be->impl, dsc);
  be->ops->free_ (be->impl, dsh);
  be->ops->free_ (be->impl, dbias);
  g_free (x);
  g_free (gamma);
  g_free (beta);
  g_free (sc);
  g_free (sh);
  g_free (bias);
}

/* ---- The transformer's forward ----------------------------------------- */

/* A small klein-layout transformer with 128-wide heads (ternary and
 * binary packs, dense projections) on the device against the CPU forward,
 * text and image tokens both present, and velocities for only part of the
 * image tokens (reference tokens are fed, not returned).  Through the
 * blocks the bf16 rounding of every linear's input adds up, hence 3e-2. */
static void
check_dit (int bits)
{
  GError *error = NULL;
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, bits);
  BnFlux2Config *c = &spec.dit;
  c->head_dim = 128;
  c->dim = c->n_heads * 128;
  c->mlp_hidden = 3 * c->dim;
  for (int a = 0; a < 4; a++)
    c->axes_dim[a] = 32;
  /* Rewritten by every run; the test tree's tmp folder holds it. */
  const char *tmp = g_getenv ("BONSAI_TEST_TMP");
  g_autofree char *dir = g_build_filename (tmp ? tmp : g_get_tmp_dir (),
                                           bits == 1 ? "cuda-dit-binary" : "cuda-dit-ternary",
                                           NULL);
  g_assert_true (bn_synthetic_model_write (dir, &spec, 7, &error));
  g_assert_no_error (error);
  g_autofree char *tdir = g_build_filename (dir, "transformer-packed-mflux", NULL);
  BnFlux2Dit *dit = bn_flux2_dit_load (tdir, NULL, &error);
  g_assert_no_error (error);

  const int64_t n_txt = 37, n_img = 150, n_out = 100;
  float *ctx = rand_floats (n_txt * c->context_dim, -1, 1);
  float *x = rand_floats (n_img * c->in_channels, -1, 1);
  int64_t *txt_ids = g_new0 (int64_t, n_txt * 4), *img_ids = g_new0 (int64_t, n_img * 4);
  for (int64_t i = 0; i < n_txt; i++)
    txt_ids[i * 4 + 3] = i;
  for (int64_t i = 0; i < n_img; i++)
    {
      img_ids[i * 4 + 1] = (i % n_out) / 10;
      img_ids[i * 4 + 2] = (i % n_out) % 10;
      img_ids[i * 4] = i < n_out ? 0 : 10;
    }
  BnFlux2Input in = { .t = 0.7f, .x = x, .img_ids = img_ids, .n_img = n_img,
                      .n_out = n_out, .ctx = ctx, .txt_ids = txt_ids,
                      .n_txt = n_txt };
  float *ref = g_new (float, n_out * c->out_channels);
  float *got = g_new (float, n_out * c->out_channels);
  g_assert_true (bn_flux2_dit_forward (dit, NULL, &in, ref, &error));
  g_assert_no_error (error);
  BnFlux2DitDevice *dev = bn_flux2_dit_device_new (dit, be, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (bn_flux2_dit_device_weight_bytes (dev), >, 0);
  g_assert_true (bn_flux2_dit_device_forward (dit, dev, NULL, &in, got, &error));
  g_assert_no_error (error);
  assert_close (bits == 1 ? "transformer forward, binary" : "transformer forward, ternary",
                got, ref, n_out, c->out_channels, c->out_channels, 3e-2);
  /* A second forward reuses the resident weights and buffers. */
  in.t = 0.3f;
  g_assert_true (bn_flux2_dit_forward (dit, NULL, &in, ref, &error));
  g_assert_true (bn_flux2_dit_device_forward (dit, dev, NULL, &in, got, &error));
  g_assert_no_error (error);
  assert_close ("transformer forward, second step", got, ref, n_out,
                c->out_channels, c->out_channels, 3e-2);
  bn_flux2_dit_device_free (dev);
  bn_flux2_dit_free (dit);
  g_free (ctx);
  g_free (x);
  g_free (txt_ids);
  g_free (img_ids);
  g_free (ref);
  g_free (got);
}

static void
test_dit (void)
{
  check_dit (2);
  check_dit (1);
}

/* Errors come back as GErrors, not crashes. */
static void
test_errors (void)
{
  GError *error = NULL;
  void *small = be->ops->alloc (be->impl, 4096, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (be->ops->peak_bytes (be->impl), >=, 4096);
  be->ops->free_ (be->impl, small);
  BnBackendAttention a = { 4, 4, 1, 1, 48, NULL, 64, NULL, 64, NULL, 64, NULL, 64, 1.0f, 0, NULL };
  g_assert_false (be->ops->attention (be->impl, &a, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND);
  g_clear_error (&error);
  g_assert_null (be->ops->alloc (be->impl, (size_t) 1 << 62, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY);
  g_clear_error (&error);
  size_t free_b = 0, total_b = 0;
  g_assert_true (be->ops->memory (be->impl, &free_b, &total_b, &error));
  g_assert_cmpuint (total_b, >=, free_b);
  g_assert_cmpuint (total_b, >, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  GError *error = NULL;
  if (!bn_backend_get (BONSAI_BACKEND_CUDA, &be, &error))
    {
      printf ("skipped: %s\n", error->message);
      g_error_free (error);
      return 77;
    }
  printf ("CUDA backend on %s\n", be->ops->device_name (be->impl));
  g_test_add_func ("/cuda/linear/packed", test_linear_packed);
  g_test_add_func ("/cuda/linear/dense", test_linear_dense);
  g_test_add_func ("/cuda/attention", test_attention);
  g_test_add_func ("/cuda/norms", test_norms);
  g_test_add_func ("/cuda/rope", test_rope);
  g_test_add_func ("/cuda/vae", test_vae_ops);
  g_test_add_func ("/cuda/transformer", test_dit);
  g_test_add_func ("/cuda/errors", test_errors);
  return g_test_run ();
}
