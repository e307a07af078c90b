/* test-pipeline.c — image I/O, resampling, and the generate/edit pipeline
 * against ../shared/refs/flux2-mini/pipeline_io. */
#include "image_io.h"
#include "resize.h"

#include "bonsai/bonsai.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

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
  int rc = g_test_run ();
  rm_tree (tmp_dir);
  return rc;
}
