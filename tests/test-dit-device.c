/* test-dit-device.c — the transformer's device forward (flux2_dit_device.c)
 * on a stand-in backend whose "device" memory is host memory and whose
 * operations are the CPU operators, against bn_flux2_dit_forward.  It
 * checks, without a GPU, what the device path adds: the order of the steps,
 * every stride, offset and modulation slice, chunking, the staging of the
 * inputs and the final layer's rows.  Both sides compute in fp32 on the
 * same kernels, so they agree to rounding (the CPU forward normalises with
 * its own fused loop); a wrong slice or stride is off by O(1).  The CUDA
 * operations themselves are checked against the same CPU operators in
 * test-cuda.c.
 */
#include "flux2_dit_device.h"
#include "ops.h"
#include "synthetic_model.h"

#include <math.h>
#include <string.h>

/* ---- the stand-in backend ----------------------------------------------- */

struct BnBackendImpl {
  int allocations; /* live ones: every alloc must be freed */
};

struct BnBackendWeight {
  const BnTensor *t; /* the model's; it outlives the weight */
};

static void
mock_close (BnBackendImpl *b)
{
}

static const char *
mock_name (BnBackendImpl *b)
{
  return "host stand-in";
}

static gboolean
mock_memory (BnBackendImpl *b, size_t *free_bytes, size_t *total_bytes,
             GError **error)
{
  *free_bytes = *total_bytes = 0;
  return TRUE;
}

static size_t
mock_peak (BnBackendImpl *b)
{
  return 0;
}

static void *
mock_alloc (BnBackendImpl *b, size_t bytes, GError **error)
{
  b->allocations++;
  /* NaN-filled: a read of memory the forward never wrote poisons it. */
  float *p = g_malloc (bytes + 4);
  for (size_t i = 0; i < bytes / 4; i++)
    p[i] = NAN;
  return p;
}

static void
mock_free (BnBackendImpl *b, void *p)
{
  if (p)
    b->allocations--;
  g_free (p);
}

static gboolean
mock_copy (BnBackendImpl *b, void *dst, const void *src, size_t bytes,
           GError **error)
{
  memcpy (dst, src, bytes);
  return TRUE;
}

static gboolean
mock_sync (BnBackendImpl *b, GError **error)
{
  return TRUE;
}

static BnBackendWeight *
mock_weight_new (BnBackendImpl *b, const BnTensor *t, GError **error)
{
  b->allocations++;
  BnBackendWeight *w = g_new (BnBackendWeight, 1);
  w->t = t;
  return w;
}

static void
mock_weight_free (BnBackendImpl *b, BnBackendWeight *w)
{
  if (w)
    b->allocations--;
  g_free (w);
}

static gboolean
mock_linear (BnBackendImpl *b, const BnBackendWeight *w, const float *x,
             int64_t m, int64_t ldx, const float *bias, float *y, int64_t ldy,
             GError **error)
{
  bn_linear (NULL, w->t, x, m, ldx, y, ldy);
  g_assert_null (bias);
  return TRUE;
}

static gboolean
mock_attention (BnBackendImpl *b, const BnBackendAttention *a, GError **error)
{
  BnAttention c = {
    .n_q = a->n_q, .n_kv = a->n_kv, .n_heads = a->n_heads,
    .n_kv_heads = a->n_kv_heads, .head_dim = a->head_dim,
    .q = a->q, .ldq = a->ldq, .k = a->k, .ldk = a->ldk, .v = a->v,
    .ldv = a->ldv, .out = a->out, .ldo = a->ldo, .scale = a->scale,
    .causal = a->causal, .key_mask = a->key_mask,
  };
  bn_attention (NULL, &c);
  return TRUE;
}

static gboolean
mock_rmsnorm (BnBackendImpl *b, float *x, int64_t rows, int heads, int64_t n,
              int64_t ld, const float *weight, float eps, GError **error)
{
  for (int64_t r = 0; r < rows; r++)
    bn_rmsnorm_rows (x + r * ld, heads, n, n, weight, eps);
  return TRUE;
}

static gboolean
mock_layernorm (BnBackendImpl *b, const float *x, float *y, int64_t rows,
                int64_t n, int64_t ld, float eps, const float *scale,
                const float *shift, GError **error)
{
  bn_layernorm_rows (x, y, rows, n, ld, eps);
  for (int64_t r = 0; scale && r < rows; r++)
    for (int64_t i = 0; i < n; i++)
      y[r * ld + i] = y[r * ld + i] * (1.0f + scale[i]) + shift[i];
  return TRUE;
}

static gboolean
mock_gate_add (BnBackendImpl *b, float *h, int64_t ldh, const float *y,
               int64_t ldy, const float *gate, int64_t rows, int64_t n,
               GError **error)
{
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < n; i++)
      h[r * ldh + i] += gate[i] * y[r * ldy + i];
  return TRUE;
}

static gboolean
mock_copy_rows (BnBackendImpl *b, float *dst, int64_t ldd, const float *src,
                int64_t lds, int64_t rows, int64_t n, GError **error)
{
  for (int64_t r = 0; r < rows; r++)
    memcpy (dst + r * ldd, src + r * lds, (size_t) n * sizeof (float));
  return TRUE;
}

static gboolean
mock_swiglu (BnBackendImpl *b, const float *gate, int64_t ldg,
             const float *up, int64_t ldu, float *out, int64_t ldo,
             int64_t rows, int64_t n, GError **error)
{
  for (int64_t r = 0; r < rows; r++)
    bn_swiglu (gate + r * ldg, up + r * ldu, out + r * ldo, n);
  return TRUE;
}

static gboolean
mock_rope (BnBackendImpl *b, float *x, int64_t n_tok, int64_t ld, int n_heads,
           int head_dim, const float *cos_t, const float *sin_t,
           gboolean half, GError **error)
{
  if (half)
    bn_rope_half (x, n_tok, ld, n_heads, head_dim, cos_t, sin_t);
  else
    bn_rope_interleaved (x, n_tok, ld, n_heads, head_dim, cos_t, sin_t);
  return TRUE;
}

static const BnBackendOps mock_ops = {
  .abi = BN_BACKEND_ABI,
  .name = "mock",
  .close = mock_close,
  .device_name = mock_name,
  .memory = mock_memory,
  .peak_bytes = mock_peak,
  .alloc = mock_alloc,
  .free_ = mock_free,
  .upload = mock_copy,
  .download = mock_copy,
  .sync = mock_sync,
  .weight_new = mock_weight_new,
  .weight_free = mock_weight_free,
  .linear = mock_linear,
  .attention = mock_attention,
  .rmsnorm = mock_rmsnorm,
  .layernorm = mock_layernorm,
  .gate_add = mock_gate_add,
  .copy_rows = mock_copy_rows,
  .swiglu = mock_swiglu,
  .rope = mock_rope,
  /* The transformer uses neither. */
  .group_norm_fold = NULL,
  .conv3x3 = NULL,
};

/* ---- the test ------------------------------------------------------------ */

static void
check_forward (int bits, int64_t n_txt, int64_t n_img, int64_t n_out,
               int64_t chunk_rows)
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
  c->num_layers = 2;
  c->num_single_layers = 2;
  const char *tmp = g_getenv ("BONSAI_TEST_TMP");
  g_autofree char *dir = g_build_filename (tmp ? tmp : g_get_tmp_dir (),
                                           bits == 1 ? "dit-device-binary"
                                                     : "dit-device-ternary",
                                           NULL);
  g_assert_true (bn_synthetic_model_write (dir, &spec, 11, &error));
  g_assert_no_error (error);
  g_autofree char *tdir = g_build_filename (dir, "transformer-packed-mflux", NULL);
  BnFlux2Dit *dit = bn_flux2_dit_load (tdir, NULL, &error);
  g_assert_no_error (error);

  float *ctx = g_new (float, MAX (n_txt, 1) * c->context_dim);
  float *x = g_new (float, n_img * c->in_channels);
  for (int64_t i = 0; i < n_txt * c->context_dim; i++)
    ctx[i] = (float) g_test_rand_double_range (-1, 1);
  for (int64_t i = 0; i < n_img * c->in_channels; i++)
    x[i] = (float) g_test_rand_double_range (-1, 1);
  int64_t *txt_ids = g_new0 (int64_t, MAX (n_txt, 1) * 4);
  int64_t *img_ids = g_new0 (int64_t, n_img * 4);
  for (int64_t i = 0; i < n_txt; i++)
    txt_ids[i * 4 + 3] = i;
  for (int64_t i = 0; i < n_img; i++)
    {
      img_ids[i * 4] = i < n_out ? 0 : 10;
      img_ids[i * 4 + 1] = (i % n_out) / 8;
      img_ids[i * 4 + 2] = (i % n_out) % 8;
    }
  BnFlux2Input in = { .t = 0.6f, .x = x, .img_ids = img_ids, .n_img = n_img,
                      .n_out = n_out, .ctx = n_txt ? ctx : NULL,
                      .txt_ids = n_txt ? txt_ids : NULL, .n_txt = n_txt,
                      .chunk_rows = chunk_rows };
  float *ref = g_new (float, n_out * c->out_channels);
  float *got = g_new (float, n_out * c->out_channels);

  BnBackendImpl impl = { 0 };
  BnBackend be = { &mock_ops, &impl };
  BnFlux2DitDevice *dev = bn_flux2_dit_device_new (dit, &be, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (bn_flux2_dit_device_weight_bytes (dev), >, 0);
  for (int step = 0; step < 2; step++)
    {
      in.t = step ? 0.25f : 0.6f;
      g_assert_true (bn_flux2_dit_forward (dit, NULL, &in, ref, &error));
      g_assert_true (bn_flux2_dit_device_forward (dit, dev, NULL, &in, got, &error));
      g_assert_no_error (error);
      double err = 0, big = 0;
      for (int64_t i = 0; i < n_out * c->out_channels; i++)
        {
          g_assert_false (isnan (got[i]));
          err = MAX (err, fabs (got[i] - ref[i]));
          big = MAX (big, fabs (ref[i]));
        }
      g_test_message ("bits %d, %" G_GINT64_FORMAT " + %" G_GINT64_FORMAT
                      " tokens, chunk %" G_GINT64_FORMAT ": max error %.3g of %.3g",
                      bits, n_txt, n_img, chunk_rows, err, big);
      g_assert_cmpfloat (big, >, 1e-3);
      g_assert_cmpfloat (err, <=, 1e-4 * big);
    }
  /* Errors of the shared checks come back unchanged. */
  in.n_out = n_img + 1;
  g_assert_false (bn_flux2_dit_device_forward (dit, dev, NULL, &in, got, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  bn_flux2_dit_device_free (dev);
  g_assert_cmpint (impl.allocations, ==, 0);
  bn_flux2_dit_free (dit);
  g_free (ctx);
  g_free (x);
  g_free (txt_ids);
  g_free (img_ids);
  g_free (ref);
  g_free (got);
}

static void
test_forward (void)
{
  check_forward (2, 37, 150, 100, 0);
  check_forward (1, 37, 150, 150, 0);
  check_forward (2, 0, 64, 64, 0);
  /* Chunks that split both streams and leave a short last one. */
  check_forward (2, 37, 150, 100, 23);
}

/* A head size the device attention lacks is refused, naming it. */
static void
test_head_dim (void)
{
  GError *error = NULL;
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  BnFlux2Config *c = &spec.dit;
  c->n_heads = 4;
  c->head_dim = 96;
  c->dim = 384;
  c->mlp_hidden = 3 * 384;
  for (int a = 0; a < 4; a++)
    c->axes_dim[a] = 24;
  const char *tmp = g_getenv ("BONSAI_TEST_TMP");
  g_autofree char *dir = g_build_filename (tmp ? tmp : g_get_tmp_dir (),
                                           "dit-device-hd64", NULL);
  g_assert_true (bn_synthetic_model_write (dir, &spec, 3, &error));
  g_autofree char *tdir = g_build_filename (dir, "transformer-packed-mflux", NULL);
  BnFlux2Dit *dit = bn_flux2_dit_load (tdir, NULL, &error);
  g_assert_no_error (error);
  BnBackendImpl impl = { 0 };
  BnBackend be = { &mock_ops, &impl };
  g_assert_null (bn_flux2_dit_device_new (dit, &be, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND);
  g_assert_nonnull (strstr (error->message, "head_dim 32, 64 or 128, not 96"));
  g_clear_error (&error);
  g_assert_cmpint (impl.allocations, ==, 0);
  bn_flux2_dit_free (dit);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/dit-device/forward", test_forward);
  g_test_add_func ("/dit-device/head-dim", test_head_dim);
  return g_test_run ();
}
