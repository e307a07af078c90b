/* test-vae.c — the FLUX.2 VAE: parity with flux2-mini's vae_io (encoder
 * mean and two decodes), f16 and bf16 weights, the latent layout helpers,
 * tiled against untiled decoding, the workspace plan, thread count, bad
 * files and inputs, progress and cancel. */
#include "flux2_vae.h"
#include "safetensors.h"

#include "bonsai/bonsai.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define TOL 1e-4

/* ---- helpers -------------------------------------------------------------- */

/* $BONSAI_REFS/flux2-mini/`file`, or NULL (test skipped) without refs. */
static char *
mini_file (const char *file)
{
  const char *refs = g_getenv ("BONSAI_REFS");
  if (!refs)
    {
      g_test_skip ("BONSAI_REFS is not set");
      return NULL;
    }
  return g_build_filename (refs, "flux2-mini", file, NULL);
}

static BnVae *
open_vae (const char *path)
{
  GError *error = NULL;
  BnVae *vae = bn_vae_open (path, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (vae);
  return vae;
}

static BnSafetensors *
open_st (const char *path)
{
  GError *error = NULL;
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  return st;
}

/* An F32 [c, h, w] tensor of a set. */
static const float *
io_chw (const BnSafetensors *io, const char *name, int64_t *dims)
{
  int64_t shape[3] = { -1, -1, -1 };
  BnTensor t;
  GError *error = NULL;
  g_assert_true (bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, 3, shape,
                                      &t, &error));
  g_assert_no_error (error);
  memcpy (dims, t.shape, 3 * sizeof (int64_t));
  return t.data;
}

/* max |got − want| / max(1, max |want|) */
static double
rel_err (const float *got, const float *want, size_t n)
{
  double d = 0, m = 0;
  for (size_t i = 0; i < n; i++)
    {
      g_assert_true (isfinite (got[i]));
      d = fmax (d, fabs ((double) got[i] - want[i]));
      m = fmax (m, fabs ((double) want[i]));
    }
  return d / fmax (1.0, m);
}

static BnThreadPool *
pool_new (int n)
{
  GError *error = NULL;
  BnThreadPool *pool = bn_thread_pool_new (n, &error);
  g_assert_no_error (error);
  return pool;
}

/* Uniform values in [-2, 2), the same on every platform. */
static float *
random_values (int64_t n, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  float *v = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    v[i] = (float) g_rand_double_range (r, -2.0, 2.0);
  g_rand_free (r);
  return v;
}

/* image [out, h·s, w·s] = decode(z [latent, h, w]); asserts success. */
static float *
decode (const BnVae *vae, const float *z, int64_t h, int64_t w,
        BnVaeOptions *opt)
{
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  int s = bn_vae_scale (cfg);
  float *img = g_new (float, cfg->out_channels * h * s * w * s);
  GError *error = NULL;
  g_assert_true (bn_vae_decode (vae, z, h, w, img, opt, &error));
  g_assert_no_error (error);
  return img;
}

static size_t
image_numel (const BnVae *vae, int64_t h, int64_t w)
{
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  int s = bn_vae_scale (cfg);
  return (size_t) (cfg->out_channels * h * s * w * s);
}

/* A fresh folder under BONSAI_TEST_TMP (or the system's), removed by
 * tmp_remove with everything in it. */
static char *
tmp_folder (void)
{
  const char *base = g_getenv ("BONSAI_TEST_TMP");
  if (!base)
    base = g_get_tmp_dir ();
  g_assert_cmpint (g_mkdir_with_parents (base, 0700), ==, 0);
  char *dir = g_build_filename (base, "vae-XXXXXX", NULL);
  g_assert_nonnull (g_mkdtemp (dir));
  return dir;
}

static void
tmp_remove (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  while ((name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_assert_cmpint (g_remove (p), ==, 0);
    }
  g_dir_close (d);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* How a tensor of the source file is written to a test copy. */
typedef enum {
  COPY_AS_IS,
  COPY_DROP,       /* left out */
  COPY_HALF_WIDTH, /* last dimension halved */
} CopyHow;

/* Writes `src` to `path` with every float tensor stored as `dtype`
 * (rounded = TRUE: kept F32 but rounded through `dtype`), tensor `name`
 * treated as `how`.  The metadata config is kept. */
static void
write_copy (const BnSafetensors *src, const char *path, BnDType dtype,
            gboolean rounded, const char *name, CopyHow how)
{
  BnStWriter *w = bn_st_writer_new ();
  GPtrArray *keep = g_ptr_array_new_with_free_func (g_free);
  bn_st_writer_set_metadata (w, "config", bn_safetensors_metadata (src, "config"));
  GError *error = NULL;
  for (guint i = 0; i < bn_safetensors_n_tensors (src); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (src, i);
      int64_t shape[BN_MAX_DIMS];
      memcpy (shape, t->shape, sizeof shape);
      gboolean special = name && strcmp (t->name, name) == 0;
      if (special && how == COPY_DROP)
        continue;
      if (special && how == COPY_HALF_WIDTH)
        shape[t->ndim - 1] /= 2;
      size_t n = 1;
      for (int d = 0; d < t->ndim; d++)
        n *= (size_t) shape[d];
      const float *f = t->data;
      void *data = (void *) t->data;
      BnDType out = t->dtype;
      if (t->dtype == BN_DTYPE_F32 && dtype != BN_DTYPE_F32)
        {
          uint16_t *h = g_new (uint16_t, n);
          float *r = g_new (float, n);
          for (size_t k = 0; k < n; k++)
            {
              h[k] = dtype == BN_DTYPE_BF16 ? bn_f32_to_bf16 (f[k])
                                            : bn_f32_to_f16 (f[k]);
              r[k] = dtype == BN_DTYPE_BF16 ? bn_bf16_to_f32 (h[k])
                                            : bn_f16_to_f32 (h[k]);
            }
          g_ptr_array_add (keep, h);
          g_ptr_array_add (keep, r);
          data = rounded ? (void *) r : (void *) h;
          out = rounded ? BN_DTYPE_F32 : dtype;
        }
      g_assert_true (bn_st_writer_add (w, t->name, out, t->ndim, shape, data,
                                       &error));
      g_assert_no_error (error);
    }
  g_assert_true (bn_st_writer_write (w, path, &error));
  g_assert_no_error (error);
  bn_st_writer_free (w);
  g_ptr_array_unref (keep);
}

/* ---- parity ----------------------------------------------------------------- */

static void
test_refs (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  g_autofree char *io_path = mini_file ("vae_io.safetensors");
  if (!weights)
    return;
  BnVae *vae = open_vae (weights);
  BnSafetensors *io = open_st (io_path);
  BnThreadPool *pool = pool_new (2);
  BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
  opt.pool = pool;
  opt.tile = 0;
  GError *error = NULL;

  int64_t idims[3], mdims[3], zdims[3], d[3];
  const float *image = io_chw (io, "image", idims);
  const float *mean_ref = io_chw (io, "latent_mean", mdims);
  const float *z = io_chw (io, "z", zdims);
  int64_t ho, wo;
  g_assert_true (bn_vae_encoded_size (bn_vae_get_config (vae), idims[1],
                                      idims[2], &ho, &wo));
  g_assert_cmpint (ho, ==, mdims[1]);
  g_assert_cmpint (wo, ==, mdims[2]);
  g_autofree float *mean = g_new (float, mdims[0] * ho * wo);
  g_assert_true (bn_vae_encode_mean (vae, image, idims[1], idims[2], mean,
                                     &opt, &error));
  g_assert_no_error (error);
  double e = rel_err (mean, mean_ref, (size_t) (mdims[0] * ho * wo));
  g_test_message ("latent_mean max_rel %.3e", e);
  g_assert_cmpfloat (e, <=, TOL);

  struct {
    const float *z;
    const int64_t *zd;
    const char *want;
  } cases[] = { { mean_ref, mdims, "decoded_from_mean" },
                { z, zdims, "decoded_z" } };
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autofree float *img = decode (vae, cases[c].z, cases[c].zd[1],
                                      cases[c].zd[2], &opt);
      const float *want = io_chw (io, cases[c].want, d);
      g_assert_cmpuint (image_numel (vae, cases[c].zd[1], cases[c].zd[2]), ==,
                        (size_t) (d[0] * d[1] * d[2]));
      e = rel_err (img, want, (size_t) (d[0] * d[1] * d[2]));
      g_test_message ("%s max_rel %.3e", cases[c].want, e);
      g_assert_cmpfloat (e, <=, TOL);
    }
  bn_thread_pool_free (pool);
  bn_safetensors_free (io);
  bn_vae_free (vae);
}

/* Weights stored as f16 or bf16 are read as such by the GEMMs: the decode
 * matches an f32 file holding the same rounded values. */
static void
test_half_weights (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  g_autofree char *io_path = mini_file ("vae_io.safetensors");
  if (!weights)
    return;
  BnSafetensors *src = open_st (weights);
  BnSafetensors *io = open_st (io_path);
  int64_t zd[3];
  const float *z = io_chw (io, "z", zd);
  g_autofree char *dir = tmp_folder ();
  g_autofree char *half = g_build_filename (dir, "half.safetensors", NULL);
  g_autofree char *twin = g_build_filename (dir, "twin.safetensors", NULL);
  BnDType types[] = { BN_DTYPE_BF16, BN_DTYPE_F16 };
  for (size_t i = 0; i < G_N_ELEMENTS (types); i++)
    {
      write_copy (src, half, types[i], FALSE, NULL, COPY_AS_IS);
      write_copy (src, twin, types[i], TRUE, NULL, COPY_AS_IS);
      BnVae *a = open_vae (half), *b = open_vae (twin);
      g_autofree float *ia = decode (a, z, zd[1], zd[2], NULL);
      g_autofree float *ib = decode (b, z, zd[1], zd[2], NULL);
      double e = rel_err (ia, ib, image_numel (a, zd[1], zd[2]));
      g_test_message ("%s weights vs rounded f32: max_rel %.3e",
                      bn_dtype_name (types[i]), e);
      g_assert_cmpfloat (e, <=, 1e-5);
      bn_vae_free (a);
      bn_vae_free (b);
    }
  tmp_remove (dir);
  bn_safetensors_free (io);
  bn_safetensors_free (src);
}

/* ---- latent layout ---------------------------------------------------------- */

static void
test_patchify (void)
{
  const int64_t c = 3, h = 4, w = 6;
  g_autofree float *z = g_new (float, c * h * w);
  g_autofree float *p = g_new (float, c * h * w);
  g_autofree float *back = g_new (float, c * h * w);
  for (int64_t i = 0; i < c * h * w; i++)
    z[i] = (float) i;
  int patches[][2] = { { 2, 2 }, { 1, 2 }, { 2, 3 } };
  for (size_t k = 0; k < G_N_ELEMENTS (patches); k++)
    {
      int ph = patches[k][0], pw = patches[k][1];
      int64_t hp = h / ph, wp = w / pw;
      bn_latent_patchify (z, c, h, w, ph, pw, p);
      for (int64_t ch = 0; ch < c; ch++)
        for (int py = 0; py < ph; py++)
          for (int px = 0; px < pw; px++)
            for (int64_t i = 0; i < hp; i++)
              for (int64_t j = 0; j < wp; j++)
                g_assert_cmpfloat (
                    p[(((ch * ph + py) * pw + px) * hp + i) * wp + j], ==,
                    z[(ch * h + i * ph + py) * w + j * pw + px]);
      bn_latent_unpatchify (p, c, h, w, ph, pw, back);
      g_assert_cmpmem (back, c * h * w * sizeof (float), z,
                       c * h * w * sizeof (float));
    }
  /* The 2×2 channel order of the spec: c·4 + py·2 + px. */
  bn_latent_patchify (z, c, h, w, 2, 2, p);
  g_assert_cmpfloat (p[(1 * 4 + 1 * 2 + 0) * 6 + 1 * 3 + 2], ==,
                     z[(1 * h + 3) * w + 4]);
}

static void
test_tokens (void)
{
  const int64_t c = 5, n = 7;
  g_autofree float *z = random_values (c * n, 1);
  g_autofree float *tok = g_new (float, c * n);
  g_autofree float *back = g_new (float, c * n);
  bn_latent_to_tokens (z, c, n, tok);
  for (int64_t i = 0; i < n; i++)
    for (int64_t ch = 0; ch < c; ch++)
      g_assert_cmpfloat (tok[i * c + ch], ==, z[ch * n + i]);
  bn_latent_from_tokens (tok, c, n, back);
  g_assert_cmpmem (back, c * n * sizeof (float), z, c * n * sizeof (float));
}

static void
test_batch_norm (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  if (!weights)
    return;
  BnVae *vae = open_vae (weights);
  BnSafetensors *st = open_st (weights);
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  int64_t c = cfg->latent_channels * cfg->patch_size[0] * cfg->patch_size[1];
  const int64_t n = 6;
  const float *mean = bn_safetensors_find (st, "bn.running_mean")->data;
  const float *var = bn_safetensors_find (st, "bn.running_var")->data;
  g_autofree float *z = random_values (c * n, 2);
  g_autofree float *zn = g_memdup2 (z, c * n * sizeof (float));
  bn_vae_bn_normalize (vae, zn, n);
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t i = 0; i < n; i++)
      {
        double want = (z[ch * n + i] - mean[ch])
                      / sqrt ((double) var[ch] + cfg->batch_norm_eps);
        g_assert_cmpfloat (fabs (zn[ch * n + i] - want), <=,
                           1e-6 * fmax (1, fabs (want)));
      }
  bn_vae_bn_denormalize (vae, zn, n);
  g_assert_cmpfloat (rel_err (zn, z, (size_t) (c * n)), <=, 1e-6);
  bn_safetensors_free (st);
  bn_vae_free (vae);
}

/* ---- tiles, plan, threads ----------------------------------------------------- */

/* A latent large enough for 3 × 3 tiles of at most 16 with overlap 4. */
#define BIG_H 40
#define BIG_W 36

/* Over every line between two neighbouring pixel columns or rows of a
 * [c, h, w] image, the mean step |p(x+1) − p(x)| across the line: the
 * largest such mean (a seam shows as one) and the average over lines. */
static void
line_steps (const float *img, int64_t c, int64_t h, int64_t w, double *max,
            double *mean)
{
  double sum = 0;
  int64_t lines = 0;
  *max = 0;
  for (int axis = 0; axis < 2; axis++)
    {
      int64_t n_lines = axis ? h - 1 : w - 1, along = axis ? w : h;
      int64_t stride = axis ? w : 1;
      for (int64_t l = 0; l < n_lines; l++)
        {
          double s = 0;
          for (int64_t k = 0; k < c; k++)
            for (int64_t a = 0; a < along; a++)
              {
                const float *p = img + k * h * w
                                 + (axis ? l * w + a : a * w + l);
                s += fabs ((double) p[stride] - p[0]);
              }
          s /= (double) (c * along);
          *max = fmax (*max, s);
          sum += s;
          lines++;
        }
    }
  *mean = sum / (double) lines;
}

/* Tiles see their own attention and norm statistics and zero padding at
 * their borders, so a tiled decode differs from the untiled one.  The test
 * bounds how much (on this random-weight model, whose tiles are small next
 * to its receptive field), and that no line of pixels has the difference
 * jump by more than a small part of the image's own typical step (a
 * misplaced or unblended tile would). */
static void
test_tiled (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  if (!weights)
    return;
  BnVae *vae = open_vae (weights);
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  BnThreadPool *pool = pool_new (2);
  const int64_t h = 48, w = 40, s = bn_vae_scale (cfg);
  const int64_t c = cfg->out_channels;
  g_autofree float *z = random_values (cfg->latent_channels * h * w, 3);
  size_t n = image_numel (vae, h, w);

  BnVaeOptions whole = BN_VAE_OPTIONS_INIT;
  whole.pool = pool;
  whole.tile = 0;
  g_autofree float *ref = decode (vae, z, h, w, &whole);

  /* A tile as large as the latent is no tiling at all. */
  BnVaeOptions one = whole;
  one.tile = MAX (h, w);
  g_autofree float *same = decode (vae, z, h, w, &one);
  g_assert_cmpmem (same, n * sizeof (float), ref, n * sizeof (float));

  BnVaeOptions tiled = whole;
  tiled.tile = 24;
  tiled.overlap = 8;
  g_autofree float *img = decode (vae, z, h, w, &tiled);
  g_autofree float *diff = g_new (float, n);
  double max_d = 0, sum_d = 0, sum_ref = 0;
  for (size_t i = 0; i < n; i++)
    {
      diff[i] = img[i] - ref[i];
      max_d = fmax (max_d, fabs (diff[i]));
      sum_d += fabs (diff[i]);
      sum_ref += fabs (ref[i]);
    }
  double d_max, d_mean, ref_max, ref_mean;
  line_steps (diff, c, h * s, w * s, &d_max, &d_mean);
  line_steps (ref, c, h * s, w * s, &ref_max, &ref_mean);
  g_test_message ("tiled (tile 24, overlap 8: 3×2 tiles) vs untiled, %"
                  G_GINT64_FORMAT "×%" G_GINT64_FORMAT " latent: mean |diff| "
                  "%.4f = %.1f%% of mean |image| %.4f, max |diff| %.4f; mean "
                  "step across a line: diff %.4f (largest %.4f), image %.4f",
                  h, w, sum_d / n, 100 * sum_d / sum_ref, sum_ref / n, max_d,
                  d_mean, d_max, ref_mean);
  g_assert_cmpfloat (sum_d, <=, 0.1 * sum_ref);
  g_assert_cmpfloat (d_max, <=, 0.25 * ref_mean);

  /* Encoding the decoded image in tiles, likewise. */
  size_t nm = (size_t) (cfg->latent_channels * h * w);
  g_autofree float *mean = g_new (float, nm);
  g_autofree float *mean_tiled = g_new (float, nm);
  GError *error = NULL;
  g_assert_true (bn_vae_encode_mean (vae, ref, h * s, w * s, mean, &whole,
                                     &error));
  g_assert_true (bn_vae_encode_mean (vae, ref, h * s, w * s, mean_tiled,
                                     &tiled, &error));
  g_assert_no_error (error);
  sum_d = sum_ref = max_d = 0;
  for (size_t i = 0; i < nm; i++)
    {
      sum_d += fabs ((double) mean_tiled[i] - mean[i]);
      max_d = fmax (max_d, fabs ((double) mean_tiled[i] - mean[i]));
      sum_ref += fabs (mean[i]);
    }
  g_test_message ("tiled encode of that image: mean |diff| %.4f = %.1f%% of "
                  "mean |latent| %.4f, max |diff| %.4f",
                  sum_d / nm, 100 * sum_d / sum_ref, sum_ref / nm, max_d);
  g_assert_cmpfloat (sum_d, <=, 0.1 * sum_ref);

  /* An image that is not whole latent pixels is encoded whole. */
  const int64_t ph = 70, pw = 66;
  g_autofree float *odd = random_values (cfg->in_channels * ph * pw, 9);
  BnVaeOptions small = whole;
  small.tile = 8;
  small.overlap = 2;
  g_assert_true (bn_vae_encode_mean (vae, odd, ph, pw, mean, &whole, &error));
  g_assert_true (bn_vae_encode_mean (vae, odd, ph, pw, mean_tiled, &small,
                                     &error));
  g_assert_no_error (error);
  size_t n_odd = (size_t) (cfg->latent_channels * (ph / s) * (pw / s));
  g_assert_cmpmem (mean_tiled, n_odd * sizeof (float), mean,
                   n_odd * sizeof (float));

  bn_thread_pool_free (pool);
  bn_vae_free (vae);
}

/* The peak that a decode measures is the one its plan predicts. */
static void
test_peak_plan (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  if (!weights)
    return;
  BnVae *vae = open_vae (weights);
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  g_autofree float *z
      = random_values (cfg->latent_channels * BIG_H * BIG_W, 4);
  for (int threads = 1; threads <= 2; threads++)
    {
      BnThreadPool *pool = pool_new (threads);
      int tiles[] = { 0, 16 };
      for (size_t t = 0; t < G_N_ELEMENTS (tiles); t++)
        {
          BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
          opt.pool = pool;
          opt.tile = tiles[t];
          opt.overlap = 4;
          g_autofree float *img = decode (vae, z, BIG_H, BIG_W, &opt);
          size_t plan = bn_vae_decode_peak_bytes (cfg, BIG_H, BIG_W, threads,
                                                  opt.tile, opt.overlap);
          g_assert_cmpuint (opt.peak_bytes, ==, plan);
          g_assert_cmpuint (plan, >, 0);
        }
      bn_thread_pool_free (pool);
    }
  g_assert_cmpuint (bn_vae_decode_peak_bytes (cfg, 8, 8, 1, 4, 4), ==, 0);
  BnVaeConfig real;
  bn_vae_config_default (&real);
  for (int px = 512; px <= 1024; px *= 2)
    g_test_message (
        "klein VAE decode %d², 1 thread: peak %.1f MB untiled, %.1f MB in "
        "tiles of 64 (overlap 16), %.1f MB in tiles of 32 (overlap 8)",
        px, bn_vae_decode_peak_bytes (&real, px / 8, px / 8, 1, 0, 0) / 1e6,
        bn_vae_decode_peak_bytes (&real, px / 8, px / 8, 1, 64, 16) / 1e6,
        bn_vae_decode_peak_bytes (&real, px / 8, px / 8, 1, 32, 8) / 1e6);
  bn_vae_free (vae);
}

static void
test_threads (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  if (!weights)
    return;
  BnVae *vae = open_vae (weights);
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  int s = bn_vae_scale (cfg);
  g_autofree float *z
      = random_values (cfg->latent_channels * BIG_H * BIG_W, 5);
  g_autofree float *image
      = random_values (cfg->in_channels * BIG_H * s * BIG_W * s, 6);
  size_t n = image_numel (vae, BIG_H, BIG_W);
  size_t nm = (size_t) (cfg->latent_channels * BIG_H * BIG_W);
  float *out[2][3];
  for (int t = 0; t < 2; t++)
    {
      BnThreadPool *pool = pool_new (t + 1);
      BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
      opt.pool = pool;
      opt.tile = 0;
      out[t][0] = decode (vae, z, BIG_H, BIG_W, &opt);
      opt.tile = 16;
      opt.overlap = 4;
      out[t][1] = decode (vae, z, BIG_H, BIG_W, &opt);
      out[t][2] = g_new (float, nm);
      GError *error = NULL;
      g_assert_true (bn_vae_encode_mean (vae, image, BIG_H * s, BIG_W * s,
                                         out[t][2], &opt, &error));
      g_assert_no_error (error);
      bn_thread_pool_free (pool);
    }
  g_assert_cmpmem (out[0][0], n * sizeof (float), out[1][0], n * sizeof (float));
  g_assert_cmpmem (out[0][1], n * sizeof (float), out[1][1], n * sizeof (float));
  g_assert_cmpmem (out[0][2], nm * sizeof (float), out[1][2], nm * sizeof (float));
  for (int t = 0; t < 2; t++)
    for (int k = 0; k < 3; k++)
      g_free (out[t][k]);
  bn_vae_free (vae);
}

/* ---- bad input ------------------------------------------------------------------ */

static void
assert_open_fails (const char *path, const char *config, int code,
                   const char *needle)
{
  GError *error = NULL;
  BnVae *vae = bn_vae_open (path, config, &error);
  g_assert_null (vae);
  g_assert_error (error, BONSAI_ERROR, code);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, needle));
  g_error_free (error);
}

static void
test_bad_files (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  if (!weights)
    return;
  BnSafetensors *src = open_st (weights);
  g_autofree char *dir = tmp_folder ();
  g_autofree char *path = g_build_filename (dir, "bad.safetensors", NULL);
  g_autofree char *config = g_build_filename (dir, "config.json", NULL);

  const char *gone = "decoder.up_blocks.1.resnets.0.conv2.weight";
  write_copy (src, path, BN_DTYPE_F32, FALSE, gone, COPY_DROP);
  assert_open_fails (path, NULL, BONSAI_ERROR_NOT_FOUND, gone);

  const char *narrow = "encoder.mid_block.attentions.0.to_q.weight";
  write_copy (src, path, BN_DTYPE_F32, FALSE, narrow, COPY_HALF_WIDTH);
  assert_open_fails (path, NULL, BONSAI_ERROR_FORMAT, narrow);

  /* A config that does not describe these weights. */
  g_assert_true (g_file_set_contents (config, "{\"block_out_channels\": [16, 32, 32], "
                                      "\"layers_per_block\": 1, \"norm_num_groups\": 8, "
                                      "\"latent_channels\": 4}", -1, NULL));
  assert_open_fails (weights, config, BONSAI_ERROR_FORMAT, "post_quant_conv.weight");
  assert_open_fails (weights, "/nonexistent/config.json", BONSAI_ERROR_NOT_FOUND,
                     "/nonexistent/config.json");

  struct {
    const char *json, *needle;
  } bad[] = {
    { "not json", "not valid JSON" },
    { "[1, 2]", "not a JSON object" },
    { "{\"block_out_channels\": []}", "block_out_channels" },
    { "{\"block_out_channels\": [16, -1]}", "block_out_channels" },
    { "{\"norm_num_groups\": 7}", "norm_num_groups" },
    { "{\"layers_per_block\": 1.5}", "layers_per_block" },
    { "{\"act_fn\": \"relu\"}", "act_fn" },
    { "{\"up_block_types\": [\"UpDecoderBlock2D\"]}", "up_block_types" },
    { "{\"patch_size\": [2]}", "patch_size" },
    { "{\"batch_norm_eps\": 0}", "batch_norm_eps" },
    { "{\"use_quant_conv\": 1}", "use_quant_conv" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      BnVaeConfig cfg;
      GError *error = NULL;
      g_assert_false (bn_vae_config_parse (bad[i].json, "test", &cfg, &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
      g_assert_nonnull (strstr (error->message, bad[i].needle));
      g_error_free (error);
    }
  tmp_remove (dir);
  bn_safetensors_free (src);
}

static void
test_bad_input (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  if (!weights)
    return;
  BnVae *vae = open_vae (weights);
  float z[8 * 4 * 4] = { 0 }, img[3 * 16 * 16];
  GError *error = NULL;
  g_assert_false (bn_vae_decode (vae, z, 0, 4, img, NULL, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  g_assert_false (bn_vae_decode (vae, z, 1 << 20, 4, img, NULL, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
  opt.tile = 2;
  opt.overlap = 2;
  g_assert_false (bn_vae_decode (vae, z, 4, 4, img, &opt, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  g_assert_false (bn_vae_encode_mean (vae, img, 16, 16, z, &opt, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  /* Two downsamplings need at least 4 pixels a side. */
  g_assert_false (bn_vae_encode_mean (vae, img, 3, 16, z, NULL, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  bn_vae_free (vae);
}

/* ---- progress and cancel ---------------------------------------------------------- */

typedef struct {
  int calls, last_done, last_total;
  gint *cancel_after_first; /* NULL: never cancel */
} Progress;

static void
on_progress (int done, int total, gpointer data)
{
  Progress *p = data;
  p->calls++;
  g_assert_cmpint (done, ==, p->calls);
  p->last_done = done;
  p->last_total = total;
  if (p->cancel_after_first)
    g_atomic_int_set (p->cancel_after_first, 1);
}

static void
test_progress_cancel (void)
{
  g_autofree char *weights = mini_file ("vae_weights.safetensors");
  if (!weights)
    return;
  BnVae *vae = open_vae (weights);
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  int s = bn_vae_scale (cfg);
  g_autofree float *z
      = random_values (cfg->latent_channels * BIG_H * BIG_W, 7);
  g_autofree float *img = g_new (float, image_numel (vae, BIG_H, BIG_W));
  GError *error = NULL;

  Progress p = { 0 };
  BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
  opt.tile = 16;
  opt.overlap = 4;
  opt.progress = on_progress;
  opt.progress_data = &p;
  g_assert_true (bn_vae_decode (vae, z, BIG_H, BIG_W, img, &opt, &error));
  g_assert_no_error (error);
  g_assert_cmpint (p.calls, ==, 9);
  g_assert_cmpint (p.last_total, ==, 9);

  /* Cancelled from the callback after the first tile. */
  gint cancel = 0;
  Progress pc = { 0, 0, 0, &cancel };
  opt.cancel = &cancel;
  opt.progress_data = &pc;
  g_assert_false (bn_vae_decode (vae, z, BIG_H, BIG_W, img, &opt, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpint (pc.calls, ==, 1);

  /* Already cancelled: untiled decode and encode stop too. */
  opt.tile = 0;
  opt.progress = NULL;
  g_assert_false (bn_vae_decode (vae, z, BIG_H, BIG_W, img, &opt, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
  g_clear_error (&error);
  g_autofree float *image
      = random_values (cfg->in_channels * 8 * s * 8 * s, 8);
  g_assert_false (bn_vae_encode_mean (vae, image, 8 * s, 8 * s, z, &opt, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
  g_clear_error (&error);
  bn_vae_free (vae);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/vae/refs", test_refs);
  g_test_add_func ("/vae/half-weights", test_half_weights);
  g_test_add_func ("/vae/patchify", test_patchify);
  g_test_add_func ("/vae/tokens", test_tokens);
  g_test_add_func ("/vae/batch-norm", test_batch_norm);
  g_test_add_func ("/vae/tiled", test_tiled);
  g_test_add_func ("/vae/peak-plan", test_peak_plan);
  g_test_add_func ("/vae/threads", test_threads);
  g_test_add_func ("/vae/bad-files", test_bad_files);
  g_test_add_func ("/vae/bad-input", test_bad_input);
  g_test_add_func ("/vae/progress-cancel", test_progress_cancel);
  return g_test_run ();
}
