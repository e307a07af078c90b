/* test-safetensors.c — the safetensors reader and writer and the linear
 * weight loader: round trips in the MLX layout, damaged and hostile files,
 * sharded sets, and the reference files in $BONSAI_REFS. */
#include "safetensors.h"
#include "weights.h"

#include "bonsai/bonsai.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------- */

/* A fresh folder under $BONSAI_TEST_TMP for one test (caller frees). */
static char *
scratch_dir (const char *name)
{
  const char *root = g_getenv ("BONSAI_TEST_TMP");
  g_autofree char *base = g_build_filename (root ? root : g_get_tmp_dir (),
                                            "safetensors", NULL);
  char *dir = g_build_filename (base, name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  /* Leftovers of an earlier run would change what a folder holds. */
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *entry;
  while (d && (entry = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, entry, NULL);
      g_unlink (p);
    }
  if (d)
    g_dir_close (d);
  return dir;
}

static void
write_file (const char *path, const void *bytes, size_t len)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_set_contents (path, bytes, (gssize) len, &error));
}

/* A file of `header` (its length field as given) and `data_size` bytes. */
static GByteArray *
file_bytes (const char *header, uint64_t declared_len, size_t data_size)
{
  GByteArray *b = g_byte_array_new ();
  uint64_t le = GUINT64_TO_LE (declared_len);
  g_byte_array_append (b, (const guint8 *) &le, 8);
  g_byte_array_append (b, (const guint8 *) header, (guint) strlen (header));
  for (size_t i = 0; i < data_size; i++)
    g_byte_array_append (b, (const guint8 *) "\x5a", 1);
  return b;
}

/* Asserts that `error` is set with `code` and mentions each of `needles`. */
static void
assert_error (GError *error, int code, const char *const *needles)
{
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  if (!g_error_matches (error, BONSAI_ERROR, code))
    g_error ("expected error code %d, got %d: %s", code, error->code, error->message);
  for (; *needles; needles++)
    if (!strstr (error->message, *needles))
      g_error ("error \"%s\" does not mention \"%s\"", error->message, *needles);
}

/* Opening `header` + data as a file must fail with FORMAT naming the file
 * and containing `what`. */
static void
assert_bad_header (const char *dir, const char *tag, const char *header,
                   size_t data_size, const char *what)
{
  g_autoptr (GByteArray) b = file_bytes (header, strlen (header), data_size);
  g_autofree char *name = g_strconcat (tag, ".safetensors", NULL);
  g_autofree char *path = g_build_filename (dir, name, NULL);
  write_file (path, b->data, b->len);
  g_autoptr (GError) error = NULL;
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_null (st);
  assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { path, what, NULL });
  g_clear_error (&error);
  /* The in-memory reader says the same. */
  g_assert_null (bn_safetensors_open_bytes (tag, b->data, b->len, &error));
  assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { tag, what, NULL });
}

static float
quantize_like (BnDType scale_dtype, float s)
{
  switch (scale_dtype)
    {
    case BN_DTYPE_BF16: return bn_bf16_to_f32 (bn_f32_to_bf16 (s));
    case BN_DTYPE_F16: return bn_f16_to_f32 (bn_f32_to_f16 (s));
    default: return s;
    }
}

/* A random packed [n, k] tensor in the release's layout: codes below
 * `levels`, biases = −offset·scale, so w = scale·(q − offset) exactly. */
static void
make_packed (BnTensor *t, BnDType dtype, int64_t n, int64_t k, int group,
             BnDType scale_dtype, unsigned levels, float offset, GRand *rng,
             float *expect /* n·k */)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (bn_tensor_init_packed (t, dtype, n, k, group, scale_dtype, &error));
  for (int64_t r = 0; r < n; r++)
    {
      for (int64_t g = 0; g < k / group; g++)
        {
          float s = quantize_like (scale_dtype, (float) g_rand_double_range (rng, 0.01, 2.0));
          bn_packed_set_group (t, r, g, s, -offset * s);
          for (int64_t i = g * group; i < (g + 1) * group; i++)
            {
              unsigned q = (unsigned) g_rand_int_range (rng, 0, (gint32) levels);
              bn_packed_set_code (t, r, i, q);
              expect[r * k + i] = s * ((float) q - offset);
            }
        }
    }
}

/* ---- round trips ----------------------------------------------------------- */

typedef struct {
  int bits;
  int group;
  BnDType scale_dtype;
  gboolean ternary;
  unsigned levels;
  float offset;
} PackCase;

static void
roundtrip_packed (gconstpointer data)
{
  const PackCase *c = data;
  g_autofree char *dir = scratch_dir (c->ternary ? "ternary" : c->bits == 1 ? "binary" : "q4");
  g_autofree char *path = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  g_autoptr (GRand) rng = g_rand_new_with_seed (1234 + (guint32) c->bits);
  const int64_t n = 24, k = 384;
  BnDType dtype;
  g_assert_true (bn_dtype_packed_for_bits (c->bits, &dtype));
  BnTensor packed;
  g_autofree float *expect = g_new (float, n * k);
  make_packed (&packed, dtype, n, k, c->group, c->scale_dtype, c->levels, c->offset,
               rng, expect);
  /* A dense neighbour, as the release keeps x_embedder in bf16. */
  uint16_t dense[6] = { 0x3f80, 0xbf80, 0x4000, 0, 0x3f00, 0x4040 };

  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  g_assert_true (bn_st_writer_add_packed (w, "transformer_blocks.0.attn.to_q", &packed, &error));
  g_assert_true (bn_st_writer_add (w, "x_embedder.weight", BN_DTYPE_BF16, 2,
                                   (int64_t[]) { 2, 3 }, dense, &error));
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);

  /* The folder opens as a diffusers model. */
  BnSafetensors *st = bn_safetensors_open (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (bn_safetensors_path (st), ==, path);
  g_assert_cmpuint (bn_safetensors_n_tensors (st), ==, 4);
  const BnStTensor *tw = bn_safetensors_find (st, "transformer_blocks.0.attn.to_q.weight");
  const BnStTensor *ts = bn_safetensors_find (st, "transformer_blocks.0.attn.to_q.scales");
  const BnStTensor *tb = bn_safetensors_find (st, "transformer_blocks.0.attn.to_q.biases");
  g_assert_true (tw && ts && tb);
  g_assert_cmpint (tw->dtype, ==, BN_DTYPE_U32);
  g_assert_cmpint (tw->ndim, ==, 2);
  g_assert_cmpint (tw->shape[0], ==, n);
  g_assert_cmpint (tw->shape[1], ==, k * c->bits / 32);
  g_assert_cmpint (ts->dtype, ==, c->scale_dtype);
  g_assert_cmpint (tb->dtype, ==, c->scale_dtype);
  g_assert_cmpint (ts->shape[1], ==, k / c->group);
  g_assert_cmpint (tb->shape[0], ==, n);
  g_assert_cmpmem (tw->data, tw->nbytes, packed.data, bn_tensor_nbytes (&packed));

  BnQuantSpec spec = { c->bits, c->group, c->ternary };
  BnTensor t;
  /* Once with the extents given, once taken from the file. */
  for (int pass = 0; pass < 2; pass++)
    {
      g_assert_true (bn_weights_linear (st, "transformer_blocks.0.attn.to_q",
                                        pass ? -1 : n, pass ? -1 : k, &spec, &t, &error));
      g_assert_no_error (error);
      g_assert_cmpint (t.dtype, ==, dtype);
      g_assert_cmpint (t.shape[0], ==, n);
      g_assert_cmpint (t.shape[1], ==, k);
      g_assert_cmpint (t.group_size, ==, c->group);
      g_assert_cmpint (t.ternary, ==, c->ternary);
      g_assert_null (t.owned);
      g_autofree float *row = g_new (float, k);
      for (int64_t r = 0; r < n; r++)
        {
          bn_tensor_row_f32 (&t, r, row);
          for (int64_t i = 0; i < k; i++)
            if (row[i] != expect[r * k + i])
              g_error ("row %" G_GINT64_FORMAT " col %" G_GINT64_FORMAT ": %g != %g",
                       r, i, row[i], expect[r * k + i]);
        }
    }
  /* The dense neighbour loads as a dense linear. */
  g_assert_true (bn_weights_linear (st, "x_embedder", 2, 3, NULL, &t, &error));
  g_assert_cmpint (t.dtype, ==, BN_DTYPE_BF16);
  float row[3];
  bn_tensor_row_f32 (&t, 1, row);
  g_assert_cmpfloat (row[0], ==, 0.0f);
  g_assert_cmpfloat (row[1], ==, 0.5f);
  g_assert_cmpfloat (row[2], ==, 3.0f);
  bn_safetensors_free (st);
  bn_tensor_clear (&packed);
}

/* Dense f32/bf16/f16 (and other plain types) read back byte for byte, stay
 * aligned to their element size, and load as dense linears. */
static void
test_roundtrip_dense (void)
{
  g_autofree char *dir = scratch_dir ("dense");
  g_autofree char *path = g_build_filename (dir, "dense.safetensors", NULL);
  g_autoptr (GRand) rng = g_rand_new_with_seed (7);
  float f32[5 * 7];
  uint16_t bf16[5 * 7], f16[5 * 7];
  for (int i = 0; i < 5 * 7; i++)
    {
      f32[i] = (float) g_rand_double_range (rng, -3, 3);
      bf16[i] = bn_f32_to_bf16 (f32[i]);
      f16[i] = bn_f32_to_f16 (f32[i]);
    }
  int64_t ids[3] = { 151644, -1, 299 };
  uint8_t bytes[3] = { 1, 2, 3 };
  float scalar = 42.0f;
  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  /* Odd-sized U8 first: the writer must still keep the others aligned. */
  g_assert_true (bn_st_writer_add (w, "a.u8", BN_DTYPE_U8, 1, (int64_t[]) { 3 }, bytes, &error));
  g_assert_true (bn_st_writer_add (w, "w.bf16", BN_DTYPE_BF16, 2, (int64_t[]) { 5, 7 }, bf16, &error));
  g_assert_true (bn_st_writer_add (w, "w.f16", BN_DTYPE_F16, 2, (int64_t[]) { 5, 7 }, f16, &error));
  g_assert_true (bn_st_writer_add (w, "w.f32", BN_DTYPE_F32, 2, (int64_t[]) { 5, 7 }, f32, &error));
  g_assert_true (bn_st_writer_add (w, "ids", BN_DTYPE_I64, 1, (int64_t[]) { 3 }, ids, &error));
  g_assert_true (bn_st_writer_add (w, "scalar", BN_DTYPE_F32, 0, NULL, &scalar, &error));
  g_assert_true (bn_st_writer_add (w, "empty", BN_DTYPE_F32, 2, (int64_t[]) { 0, 4 }, NULL, &error));
  /* A second tensor of the same name is refused. */
  g_assert_false (bn_st_writer_add (w, "ids", BN_DTYPE_I64, 1, (int64_t[]) { 3 }, ids, &error));
  assert_error (error, BONSAI_ERROR_INVALID_INPUT, (const char *const[]) { "ids", NULL });
  g_clear_error (&error);
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);

  /* The header is padded with spaces to a multiple of 8. */
  g_autofree char *raw = NULL;
  gsize raw_len;
  g_assert_true (g_file_get_contents (path, &raw, &raw_len, NULL));
  uint64_t hlen;
  memcpy (&hlen, raw, 8);
  hlen = GUINT64_FROM_LE (hlen);
  g_assert_cmpuint (hlen % 8, ==, 0);
  g_assert_cmpint (raw[8], ==, '{');
  g_assert_cmpuint (raw_len, ==, 8 + hlen + 3 + 2 * 70 + 140 + 24 + 4);

  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (bn_safetensors_n_tensors (st), ==, 7);
  /* nth is in name order. */
  g_assert_cmpstr (bn_safetensors_nth (st, 0)->name, ==, "a.u8");
  g_assert_cmpstr (bn_safetensors_nth (st, 6)->name, ==, "w.f32");
  struct {
    const char *name;
    BnDType dtype;
    const void *data;
    size_t nbytes;
  } want[] = {
    { "a.u8", BN_DTYPE_U8, bytes, 3 },
    { "w.bf16", BN_DTYPE_BF16, bf16, 70 },
    { "w.f16", BN_DTYPE_F16, f16, 70 },
    { "w.f32", BN_DTYPE_F32, f32, 140 },
    { "ids", BN_DTYPE_I64, ids, 24 },
    { "scalar", BN_DTYPE_F32, &scalar, 4 },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (want); i++)
    {
      const BnStTensor *t = bn_safetensors_find (st, want[i].name);
      g_assert_nonnull (t);
      g_assert_cmpint (t->dtype, ==, want[i].dtype);
      g_assert_cmpstr (t->file, ==, path);
      g_assert_cmpmem (t->data, t->nbytes, want[i].data, want[i].nbytes);
      BnTensor v;
      g_assert_true (bn_safetensors_view (st, want[i].name, 0, -1, NULL, &v, &error));
      g_assert_no_error (error);
    }
  const BnStTensor *e = bn_safetensors_find (st, "empty");
  g_assert_cmpint (e->ndim, ==, 2);
  g_assert_cmpint (e->shape[0], ==, 0);
  g_assert_cmpuint (e->nbytes, ==, 0);
  g_assert_cmpint (bn_safetensors_find (st, "scalar")->ndim, ==, 0);
  g_assert_null (bn_safetensors_find (st, "absent"));

  const char *dense[] = { "w.f32", "w.bf16", "w.f16" };
  for (size_t d = 0; d < G_N_ELEMENTS (dense); d++)
    {
      BnTensor v;
      g_assert_true (bn_safetensors_view (st, dense[d], 0, 2, (int64_t[]) { 5, 7 }, &v, &error));
      g_assert_cmpint (v.dtype, ==, bn_safetensors_find (st, dense[d])->dtype);
      float row[7];
      for (int r = 0; r < 5; r++)
        {
          bn_tensor_row_f32 (&v, r, row);
          for (int i = 0; i < 7; i++)
            {
              float x = f32[r * 7 + i];
              float expect = v.dtype == BN_DTYPE_F32 ? x
                             : v.dtype == BN_DTYPE_BF16 ? bn_bf16_to_f32 (bn_f32_to_bf16 (x))
                             : bn_f16_to_f32 (bn_f32_to_f16 (x));
              g_assert_cmpfloat (row[i], ==, expect);
            }
        }
    }

  /* View checks: dtype, rank, shape and absence, each named. */
  BnTensor v;
  g_assert_false (bn_safetensors_view (st, "w.f16", 1u << BN_DTYPE_F32 | 1u << BN_DTYPE_BF16,
                                       2, NULL, &v, &error));
  assert_error (error, BONSAI_ERROR_FORMAT,
                (const char *const[]) { "w.f16", "f16", "f32 or bf16", NULL });
  g_clear_error (&error);
  g_assert_false (bn_safetensors_view (st, "w.f32", 0, 2, (int64_t[]) { 5, 8 }, &v, &error));
  assert_error (error, BONSAI_ERROR_FORMAT,
                (const char *const[]) { "w.f32", "[5, 7]", "[5, 8]", NULL });
  g_clear_error (&error);
  g_assert_false (bn_safetensors_view (st, "ids", 0, 2, NULL, &v, &error));
  assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { "ids", "rank 2", NULL });
  g_clear_error (&error);
  g_assert_false (bn_safetensors_view (st, "nope", 0, -1, NULL, &v, &error));
  assert_error (error, BONSAI_ERROR_NOT_FOUND, (const char *const[]) { "nope", path, NULL });
  g_clear_error (&error);
  /* A dense linear must be a float matrix of the asked shape. */
  g_assert_false (bn_weights_linear (st, "ids", 3, 1, NULL, &v, &error));
  assert_error (error, BONSAI_ERROR_NOT_FOUND, (const char *const[]) { "ids.weight", NULL });
  g_clear_error (&error);
  bn_safetensors_free (st);
}

static void
test_roundtrip_metadata (void)
{
  g_autofree char *dir = scratch_dir ("metadata");
  g_autofree char *path = g_build_filename (dir, "meta.safetensors", NULL);
  const char *config = "{\"num_layers\": 2, \"name\": \"b\\u00f6nsai \\\"q\\\"\"}\n\ttabs";
  float x = 1.0f;
  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  bn_st_writer_set_metadata (w, "config", config);
  bn_st_writer_set_metadata (w, "format", "pt");
  bn_st_writer_set_metadata (w, "format", "mlx"); /* the last value wins */
  bn_st_writer_set_metadata (w, "ünï", "cödé");
  g_assert_true (bn_st_writer_add (w, "x", BN_DTYPE_F32, 1, (int64_t[]) { 1 }, &x, &error));
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (bn_safetensors_metadata (st, "config"), ==, config);
  g_assert_cmpstr (bn_safetensors_metadata (st, "format"), ==, "mlx");
  g_assert_cmpstr (bn_safetensors_metadata (st, "ünï"), ==, "cödé");
  g_assert_null (bn_safetensors_metadata (st, "absent"));
  g_assert_cmpuint (bn_safetensors_n_tensors (st), ==, 1);
  bn_safetensors_free (st);
}

/* ---- the loader's errors ----------------------------------------------------- */

static void
test_ternary_code3 (void)
{
  g_autofree char *dir = scratch_dir ("code3");
  g_autofree char *path = g_build_filename (dir, "t.safetensors", NULL);
  g_autoptr (GRand) rng = g_rand_new_with_seed (3);
  g_autofree float *expect = g_new (float, 4 * 256);
  BnTensor packed;
  make_packed (&packed, BN_DTYPE_Q2, 4, 256, 128, BN_DTYPE_BF16, 3, 1.0f, rng, expect);
  bn_packed_set_code (&packed, 2, 77, 3);
  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  g_assert_true (bn_st_writer_add_packed (w, "blk.ff.linear_in", &packed, &error));
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  BnTensor t;
  BnQuantSpec ternary = { 2, 128, TRUE };
  g_assert_false (bn_weights_linear (st, "blk.ff.linear_in", 4, 256, &ternary, &t, &error));
  assert_error (error, BONSAI_ERROR_FORMAT,
                (const char *const[]) { path, "blk.ff.linear_in.weight", "code 3",
                                        "row 2", "column 77", NULL });
  g_clear_error (&error);
  /* As a plain 2-bit layer the same codes are fine. */
  BnQuantSpec q2 = { 2, 128, FALSE };
  g_assert_true (bn_weights_linear (st, "blk.ff.linear_in", 4, 256, &q2, &t, &error));
  bn_safetensors_free (st);
  bn_tensor_clear (&packed);
}

static void
test_linear_errors (void)
{
  g_autofree char *dir = scratch_dir ("linear-errors");
  g_autofree char *path = g_build_filename (dir, "l.safetensors", NULL);
  uint32_t words[4 * 16] = { 0 };
  uint16_t groups[4 * 2] = { 0 };
  float groups_f32[4 * 2] = { 0 };
  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  /* ok: a 2-bit [4, 256] pack with bf16 scales and biases */
  g_assert_true (bn_st_writer_add (w, "ok.weight", BN_DTYPE_U32, 2, (int64_t[]) { 4, 16 }, words, &error));
  g_assert_true (bn_st_writer_add (w, "ok.scales", BN_DTYPE_BF16, 2, (int64_t[]) { 4, 2 }, groups, &error));
  g_assert_true (bn_st_writer_add (w, "ok.biases", BN_DTYPE_BF16, 2, (int64_t[]) { 4, 2 }, groups, &error));
  /* mixed: scales bf16, biases f32 */
  g_assert_true (bn_st_writer_add (w, "mixed.weight", BN_DTYPE_U32, 2, (int64_t[]) { 4, 16 }, words, &error));
  g_assert_true (bn_st_writer_add (w, "mixed.scales", BN_DTYPE_BF16, 2, (int64_t[]) { 4, 2 }, groups, &error));
  g_assert_true (bn_st_writer_add (w, "mixed.biases", BN_DTYPE_F32, 2, (int64_t[]) { 4, 2 }, groups_f32, &error));
  /* nobias: no biases tensor */
  g_assert_true (bn_st_writer_add (w, "nobias.weight", BN_DTYPE_U32, 2, (int64_t[]) { 4, 16 }, words, &error));
  g_assert_true (bn_st_writer_add (w, "nobias.scales", BN_DTYPE_BF16, 2, (int64_t[]) { 4, 2 }, groups, &error));
  /* i8: codes of the wrong dtype */
  g_assert_true (bn_st_writer_add (w, "i8.weight", BN_DTYPE_I8, 2, (int64_t[]) { 4, 64 }, words, &error));
  g_assert_true (bn_st_writer_add (w, "i8.scales", BN_DTYPE_BF16, 2, (int64_t[]) { 4, 2 }, groups, &error));
  g_assert_true (bn_st_writer_add (w, "i8.biases", BN_DTYPE_BF16, 2, (int64_t[]) { 4, 2 }, groups, &error));
  /* dense u8 */
  g_assert_true (bn_st_writer_add (w, "u8.weight", BN_DTYPE_U8, 2, (int64_t[]) { 4, 16 }, words, &error));
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);

  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  BnTensor t;
  BnQuantSpec q2 = { 2, 128, FALSE }, q1 = { 1, 128, FALSE }, q2g64 = { 2, 64, FALSE };
  g_assert_true (bn_weights_linear (st, "ok", 4, 256, &q2, &t, &error));
  g_assert_no_error (error);

  struct {
    const char *prefix;
    int64_t n, k;
    const BnQuantSpec *quant;
    int code;
    const char *needle;
  } cases[] = {
    { "ok", 4, 256, NULL, BONSAI_ERROR_FORMAT, "no quantization" },
    { "ok", 4, 512, &q2, BONSAI_ERROR_FORMAT, "[4, 32]" },      /* wrong K */
    { "ok", 5, 256, &q2, BONSAI_ERROR_FORMAT, "[5, 16]" },      /* wrong N */
    { "ok", 4, 256, &q1, BONSAI_ERROR_FORMAT, "[4, 8]" },       /* wrong bits */
    { "ok", 4, 256, &q2g64, BONSAI_ERROR_FORMAT, "[4, 4]" },    /* wrong group */
    { "ok", 4, 200, &q2, BONSAI_ERROR_FORMAT, "multiple of the group size" },
    { "ok", 4, 256, &(BnQuantSpec) { 3, 128, FALSE }, BONSAI_ERROR_INVALID_INPUT, "3-bit" },
    { "ok", 4, 256, &(BnQuantSpec) { 1, 128, TRUE }, BONSAI_ERROR_INVALID_INPUT, "ternary" },
    { "mixed", 4, 256, &q2, BONSAI_ERROR_FORMAT, "mixed.biases" },
    { "nobias", 4, 256, &q2, BONSAI_ERROR_NOT_FOUND, "nobias.biases" },
    { "i8", 4, 256, &q2, BONSAI_ERROR_FORMAT, "i8.weight" },
    { "u8", 4, 16, NULL, BONSAI_ERROR_FORMAT, "u8.weight" },
    { "absent", 4, 16, NULL, BONSAI_ERROR_NOT_FOUND, "absent.weight" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_test_message ("case %zu: %s", i, cases[i].prefix);
      g_assert_false (bn_weights_linear (st, cases[i].prefix, cases[i].n, cases[i].k,
                                         cases[i].quant, &t, &error));
      assert_error (error, cases[i].code,
                    (const char *const[]) { cases[i].prefix, cases[i].needle, NULL });
      g_clear_error (&error);
    }
  bn_safetensors_free (st);
}

/* ---- damaged and hostile files ----------------------------------------------- */

static char *
write_small_model (const char *dir)
{
  char *path = g_build_filename (dir, "good.safetensors", NULL);
  float a[16];
  uint16_t b[24];
  for (int i = 0; i < 16; i++)
    a[i] = (float) i;
  for (int i = 0; i < 24; i++)
    b[i] = (uint16_t) i;
  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  bn_st_writer_set_metadata (w, "config", "{\"x\": 1}");
  g_assert_true (bn_st_writer_add (w, "a", BN_DTYPE_F32, 2, (int64_t[]) { 4, 4 }, a, &error));
  g_assert_true (bn_st_writer_add (w, "b", BN_DTYPE_BF16, 1, (int64_t[]) { 24 }, b, &error));
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);
  return path;
}

static void
test_truncated (void)
{
  g_autofree char *dir = scratch_dir ("truncated");
  g_autofree char *good = write_small_model (dir);
  g_autofree char *bytes = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (good, &bytes, &len, NULL));
  g_autofree char *cut = g_build_filename (dir, "cut.safetensors", NULL);
  /* 20 cuts: inside the length field, across the header, across the data. */
  size_t points[20];
  for (int i = 0; i < 20; i++)
    points[i] = i < 4 ? (size_t) i * 3 : (size_t) (i - 3) * (len - 1) / 16;
  for (int i = 0; i < 20; i++)
    {
      g_assert_cmpuint (points[i], <, len);
      write_file (cut, bytes, points[i]);
      g_autoptr (GError) error = NULL;
      BnSafetensors *st = bn_safetensors_open (cut, &error);
      g_test_message ("cut at %zu: %s", points[i], error ? error->message : "opened");
      g_assert_null (st);
      assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { cut, NULL });
      g_assert_true (strstr (error->message, "short") || strstr (error->message, "truncated"));
    }
  /* The whole file opens. */
  g_autoptr (GError) error = NULL;
  BnSafetensors *st = bn_safetensors_open (good, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (bn_safetensors_metadata (st, "config"), ==, "{\"x\": 1}");
  bn_safetensors_free (st);
}

static void
test_bad_headers (void)
{
  g_autofree char *dir = scratch_dir ("bad-headers");
#define T(dt, shape, offs) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}"
  struct {
    const char *tag;
    const char *header;
    size_t data;
    const char *what;
  } cases[] = {
    { "overlap", "{\"a\":" T ("F32", "[2]", "[0,8]") ",\"b\":" T ("F32", "[2]", "[4,12]") "}", 12,
      "overlap" },
    { "out-of-range", "{\"a\":" T ("F32", "[2]", "[0,8]") "}", 4, "past the end" },
    { "begin-after-end", "{\"a\":" T ("F32", "[0]", "[8,0]") "}", 8, "begin after" },
    { "byte-count", "{\"a\":" T ("F32", "[3]", "[0,8]") "}", 8, "needs 12 bytes" },
    { "dtype-size", "{\"a\":" T ("F16", "[4]", "[0,4]") "}", 8, "needs 8 bytes" },
    { "overflow", "{\"a\":" T ("F64", "[4294967296,4294967296,2]", "[0,8]") "}", 8, "more than 2^64" },
    { "unknown-dtype", "{\"a\":" T ("F8_E4M3", "[2]", "[0,2]") "}", 8, "unknown dtype \"F8_E4M3\"" },
    { "dtype-number", "{\"a\":" T ("F32", "[2]", "[0,8]") ",\"b\":{\"dtype\":3,\"shape\":[],\"data_offsets\":[0,0]}}", 8,
      "\"dtype\" is not a string" },
    { "negative-shape", "{\"a\":" T ("F32", "[-1]", "[0,0]") "}", 8, "shape entry 0" },
    { "float-shape", "{\"a\":" T ("F32", "[2,1.5]", "[0,8]") "}", 8, "shape entry 1" },
    { "string-shape", "{\"a\":" T ("F32", "[\"2\"]", "[0,8]") "}", 8, "shape entry 0" },
    { "shape-not-list", "{\"a\":" T ("F32", "2", "[0,8]") "}", 8, "not a list" },
    { "rank-9", "{\"a\":" T ("F32", "[1,1,1,1,1,1,1,1,2]", "[0,8]") "}", 8, "9 dimensions" },
    { "offsets-3", "{\"a\":" T ("F32", "[2]", "[0,8,8]") "}", 8, "two non-negative" },
    { "offsets-negative", "{\"a\":" T ("F32", "[2]", "[-8,0]") "}", 8, "two non-negative" },
    { "offsets-float", "{\"a\":" T ("F32", "[2]", "[0,8.0]") "}", 8, "two non-negative" },
    { "missing-offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "\"data_offsets\" is missing" },
    { "missing-dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "\"dtype\" is missing" },
    { "entry-not-object", "{\"a\":[1,2]}", 8, "not a JSON object" },
    { "duplicate-tensor", "{\"a\":" T ("F32", "[2]", "[0,8]") ",\"a\":" T ("F32", "[2]", "[0,8]") "}", 8,
      "\"a\" twice" },
    { "duplicate-key", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
      "\"dtype\" twice" },
    { "array", "[1,2,3]", 0, "not a JSON object" },
    { "number", "42", 0, "not a JSON object" },
    { "empty", "", 0, "empty" },
    { "blank", "        ", 0, "empty" },
    { "bad-json", "{\"a\":}", 0, "not valid JSON" },
    { "unclosed", "{\"a\":{", 0, "not valid JSON" },
    { "unbalanced", "]", 0, "unbalanced" },
    { "comment", "{/* [ */\"a\":1}", 0, "unexpected character" },
    { "single-quotes", "{'a':1}", 0, "unexpected character" },
    { "metadata-not-object", "{\"__metadata__\":\"x\"}", 0, "\"__metadata__\" is not a JSON object" },
    { "metadata-not-string", "{\"__metadata__\":{\"k\":1}}", 0, "entry \"k\" is not a string" },
    { "nul", "{\"a\\u0000\":1}", 0, "entry is not a JSON object" },
    { "brackets-in-string", "{\"[[[[\\\"]]\":1}", 0, "entry is not a JSON object" },
  };
#undef T
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_test_message ("case %s", cases[i].tag);
      assert_bad_header (dir, cases[i].tag, cases[i].header, cases[i].data, cases[i].what);
    }
}

static void
test_hostile_bytes (void)
{
  g_autofree char *dir = scratch_dir ("hostile");
  /* Invalid UTF-8 inside a name, and a raw NUL: the byte offset is named. */
  assert_bad_header (dir, "utf8", "{\"a\xff\":1}", 0, "not valid UTF-8 (byte 3 ");
  {
    const char nul[] = "{\"a\":\0}";
    g_autoptr (GByteArray) b = file_bytes ("", sizeof nul - 1, 0);
    g_byte_array_append (b, (const guint8 *) nul, sizeof nul - 1);
    g_autoptr (GError) error = NULL;
    g_assert_null (bn_safetensors_open_bytes ("nul", b->data, b->len, &error));
    assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { "nul", "byte 5 ", NULL });
  }
  /* 100000 '[' is refused by the depth scan before json-glib recurses. */
  {
    g_autofree char *deep = g_malloc (100001);
    memset (deep, '[', 100000);
    deep[100000] = 0;
    assert_bad_header (dir, "deep", deep, 0, "deeper than 32 levels (byte 32)");
    /* also after a string ending in an escaped backslash, which a scan
     * that only knew \" would take for an open string */
    g_autofree char *hidden = g_strconcat ("{\"a\\\\\":", deep, NULL);
    assert_bad_header (dir, "deep-escaped", hidden, 0, "deeper than 32");
  }
  /* A length field of 100 MB in a small file: refused from the field. */
  {
    g_autoptr (GByteArray) b = file_bytes ("{}", 100u << 20, 0);
    g_autofree char *path = g_build_filename (dir, "huge-field.safetensors", NULL);
    write_file (path, b->data, b->len);
    g_autoptr (GError) error = NULL;
    g_assert_null (bn_safetensors_open (path, &error));
    assert_error (error, BONSAI_ERROR_FORMAT,
                  (const char *const[]) { path, "104857600 bytes", "more than", NULL });
  }
  /* A length field past the end of the file. */
  {
    g_autoptr (GByteArray) b = file_bytes ("{}", 4096, 0);
    g_autofree char *path = g_build_filename (dir, "past-end.safetensors", NULL);
    write_file (path, b->data, b->len);
    g_autoptr (GError) error = NULL;
    g_assert_null (bn_safetensors_open (path, &error));
    assert_error (error, BONSAI_ERROR_FORMAT,
                  (const char *const[]) { path, "4096 bytes but only 2 follow", NULL });
  }
  /* A real file whose header is 17 MiB (sparse): refused, never parsed. */
  {
    g_autofree char *path = g_build_filename (dir, "big-header.safetensors", NULL);
    uint64_t le = GUINT64_TO_LE ((uint64_t) 17 << 20);
    write_file (path, &le, 8);
    g_assert_cmpint (truncate (path, 8 + (17 << 20)), ==, 0);
    g_autoptr (GError) error = NULL;
    g_assert_null (bn_safetensors_open (path, &error));
    assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { path, "more than", NULL });
    g_unlink (path);
    /* and the in-memory header parser refuses the length alone */
    g_clear_error (&error);
    g_assert_null (bn_safetensors_parse_header ("mem", "{}", BN_ST_MAX_HEADER + 1u, 0, &error));
    assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { "mem", "more than", NULL });
  }
  /* Not a file at all. */
  {
    g_autoptr (GError) error = NULL;
    g_autofree char *path = g_build_filename (dir, "absent.safetensors", NULL);
    g_assert_null (bn_safetensors_open (path, &error));
    assert_error (error, BONSAI_ERROR_NOT_FOUND, (const char *const[]) { path, NULL });
    g_clear_error (&error);
    g_assert_null (bn_safetensors_open (dir, &error));
    assert_error (error, BONSAI_ERROR_NOT_FOUND, (const char *const[]) { dir, NULL });
  }
}

/* Random corruptions of a good file never crash: each opens or fails with a
 * message (the fuzzer goes further; this runs in every build). */
static void
test_mutations (void)
{
  g_autofree char *dir = scratch_dir ("mutations");
  g_autofree char *good = write_small_model (dir);
  g_autofree char *bytes = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (good, &bytes, &len, NULL));
  g_autoptr (GRand) rng = g_rand_new_with_seed (99);
  g_autofree char *copy = g_malloc (len);
  int failed = 0;
  for (int i = 0; i < 2000; i++)
    {
      memcpy (copy, bytes, len);
      int flips = g_rand_int_range (rng, 1, 4);
      for (int f = 0; f < flips; f++)
        copy[g_rand_int_range (rng, 0, (gint32) len)] = (char) g_rand_int_range (rng, 0, 256);
      GError *error = NULL;
      BnSafetensors *st = bn_safetensors_open_bytes ("mutant", copy, len, &error);
      if (st)
        {
          for (guint t = 0; t < bn_safetensors_n_tensors (st); t++)
            g_assert_nonnull (bn_safetensors_nth (st, t)->name);
          bn_safetensors_free (st);
        }
      else
        {
          g_assert_true (g_str_has_prefix (error->message, "mutant"));
          g_error_free (error);
          failed++;
        }
    }
  g_assert_cmpint (failed, >, 0);
}

/* A view of data not aligned to its element size is refused. */
static void
test_misaligned (void)
{
  const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  g_autoptr (GByteArray) b = file_bytes (h, strlen (h), 4);
  g_assert_cmpuint (strlen (h) % 4, !=, 0);
  g_autoptr (GError) error = NULL;
  BnSafetensors *st = bn_safetensors_open_bytes ("odd", b->data, b->len, &error);
  g_assert_no_error (error);
  BnTensor v;
  g_assert_false (bn_safetensors_view (st, "a", 0, -1, NULL, &v, &error));
  assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { "'a'", "aligned", NULL });
  bn_safetensors_free (st);
}

/* ---- sharded sets and folders -------------------------------------------------- */

static void
write_shard (const char *dir, const char *file, const char *const *names,
             const float *values, const char *meta)
{
  g_autofree char *path = g_build_filename (dir, file, NULL);
  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  if (meta)
    bn_st_writer_set_metadata (w, "which", meta);
  for (int i = 0; names[i]; i++)
    g_assert_true (bn_st_writer_add (w, names[i], BN_DTYPE_F32, 1, (int64_t[]) { 2 },
                                     values + 2 * i, &error));
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);
}

static void
write_index (const char *dir, const char *weight_map)
{
  g_autofree char *path = g_build_filename (dir, "model.safetensors.index.json", NULL);
  g_autofree char *json = g_strdup_printf (
    "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {%s}}", weight_map);
  write_file (path, json, strlen (json));
}

static void
expect_index_error (const char *dir, int code, const char *what)
{
  g_autofree char *index = g_build_filename (dir, "model.safetensors.index.json", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_null (bn_safetensors_open (index, &error));
  assert_error (error, code, (const char *const[]) { index, what, NULL });
}

static void
test_sharded (void)
{
  g_autofree char *dir = scratch_dir ("sharded");
  const float v[6] = { 1, 2, 3, 4, 5, 6 };
  write_shard (dir, "model-00001-of-00002.safetensors",
               (const char *const[]) { "a", "b", NULL }, v, "first");
  write_shard (dir, "model-00002-of-00002.safetensors",
               (const char *const[]) { "c", NULL }, v + 4, "second");
  write_index (dir, "\"b\": \"model-00001-of-00002.safetensors\", "
                    "\"c\": \"model-00002-of-00002.safetensors\", "
                    "\"a\": \"model-00001-of-00002.safetensors\"");
  g_autoptr (GError) error = NULL;
  /* The folder opens through its index. */
  BnSafetensors *st = bn_safetensors_open (dir, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_suffix (bn_safetensors_path (st), "model.safetensors.index.json"));
  g_assert_cmpuint (bn_safetensors_n_tensors (st), ==, 3);
  const BnStTensor *c = bn_safetensors_find (st, "c");
  g_assert_nonnull (c);
  g_assert_true (g_str_has_suffix (c->file, "model-00002-of-00002.safetensors"));
  g_assert_cmpfloat (((const float *) c->data)[1], ==, 6.0f);
  g_assert_cmpfloat (((const float *) bn_safetensors_find (st, "b")->data)[0], ==, 3.0f);
  g_assert_true (g_str_has_suffix (bn_safetensors_find (st, "a")->file, "00001-of-00002.safetensors"));
  g_assert_cmpstr (bn_safetensors_metadata (st, "which"), ==, "first");
  bn_safetensors_free (st);

  /* A shard listed but missing. */
  write_index (dir, "\"a\": \"model-00001-of-00002.safetensors\", "
                    "\"z\": \"model-00003-of-00003.safetensors\"");
  expect_index_error (dir, BONSAI_ERROR_NOT_FOUND, "model-00003-of-00003.safetensors");
  /* A tensor listed in a shard that lacks it. */
  write_index (dir, "\"a\": \"model-00001-of-00002.safetensors\", "
                    "\"q\": \"model-00002-of-00002.safetensors\"");
  expect_index_error (dir, BONSAI_ERROR_FORMAT, "tensor 'q' is listed in shard model-00002");
  /* A tensor listed under the wrong shard. */
  write_index (dir, "\"a\": \"model-00002-of-00002.safetensors\", "
                    "\"c\": \"model-00002-of-00002.safetensors\"");
  expect_index_error (dir, BONSAI_ERROR_FORMAT, "tensor 'a' is listed in shard model-00002");
  /* A shard outside the folder. */
  write_index (dir, "\"a\": \"../elsewhere.safetensors\"");
  expect_index_error (dir, BONSAI_ERROR_FORMAT, "not a file name inside");
  /* No weight_map, or a damaged index. */
  write_index (dir, "");
  expect_index_error (dir, BONSAI_ERROR_FORMAT, "weight_map");
  write_index (dir, "\"a\": 3");
  expect_index_error (dir, BONSAI_ERROR_FORMAT, "tensor 'a'");
  write_index (dir, "\"a\": \"x\", \"a\": \"y\"");
  expect_index_error (dir, BONSAI_ERROR_FORMAT, "twice");
  /* The same tensor in two shards. */
  write_shard (dir, "model-00002-of-00002.safetensors",
               (const char *const[]) { "a", "c", NULL }, v, NULL);
  write_index (dir, "\"a\": \"model-00001-of-00002.safetensors\", "
                    "\"c\": \"model-00002-of-00002.safetensors\"");
  expect_index_error (dir, BONSAI_ERROR_FORMAT, "tensor 'a' is in both");
  /* A damaged shard is named. */
  g_autofree char *shard2 = g_build_filename (dir, "model-00002-of-00002.safetensors", NULL);
  write_file (shard2, "\x10\0\0\0\0\0\0\0{", 9);
  expect_index_error (dir, BONSAI_ERROR_FORMAT, shard2);
}

static void
test_folders (void)
{
  const float v[2] = { 1, 2 };
  g_autoptr (GError) error = NULL;
  /* model.safetensors beside its index: the single file wins. */
  g_autofree char *both = scratch_dir ("folder-both");
  write_shard (both, "model.safetensors", (const char *const[]) { "x", NULL }, v, NULL);
  write_index (both, "\"x\": \"model-00001-of-00009.safetensors\"");
  BnSafetensors *st = bn_safetensors_open (both, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_suffix (bn_safetensors_path (st), "/model.safetensors"));
  bn_safetensors_free (st);
  /* model and diffusion_pytorch_model together are ambiguous. */
  write_shard (both, "diffusion_pytorch_model.safetensors",
               (const char *const[]) { "x", NULL }, v, NULL);
  g_assert_null (bn_safetensors_open (both, &error));
  assert_error (error, BONSAI_ERROR_INVALID_INPUT,
                (const char *const[]) { both, "diffusion_pytorch_model.safetensors", NULL });
  g_clear_error (&error);
  /* An empty folder. */
  g_autofree char *empty = scratch_dir ("folder-empty");
  g_assert_null (bn_safetensors_open (empty, &error));
  assert_error (error, BONSAI_ERROR_NOT_FOUND, (const char *const[]) { empty, "model.safetensors", NULL });
}

/* ---- writing ------------------------------------------------------------------ */

static gboolean
has_temp_files (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  g_assert_nonnull (d);
  gboolean found = FALSE;
  const char *name;
  while ((name = g_dir_read_name (d)))
    found |= strstr (name, ".tmp-") != NULL;
  g_dir_close (d);
  return found;
}

static void
test_write_errors (void)
{
  g_autofree char *dir = scratch_dir ("write-errors");
  g_autofree char *path = g_build_filename (dir, "w.safetensors", NULL);
  g_autofree float *big = g_new0 (float, 1 << 16);
  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  g_assert_true (bn_st_writer_add (w, "big", BN_DTYPE_F32, 1, (int64_t[]) { 1 << 16 }, big, &error));
  /* Bad tensors are refused at add. */
  g_assert_false (bn_st_writer_add (w, "neg", BN_DTYPE_F32, 1, (int64_t[]) { -1 }, big, &error));
  assert_error (error, BONSAI_ERROR_INVALID_INPUT, (const char *const[]) { "neg", NULL });
  g_clear_error (&error);
  g_assert_false (bn_st_writer_add (w, "q", BN_DTYPE_Q2, 1, (int64_t[]) { 1 }, big, &error));
  assert_error (error, BONSAI_ERROR_INVALID_INPUT, (const char *const[]) { "q", "dtype", NULL });
  g_clear_error (&error);
  g_assert_false (bn_st_writer_add (w, "__metadata__", BN_DTYPE_F32, 1, (int64_t[]) { 1 }, big, &error));
  g_clear_error (&error);
  BnTensor dense = { .dtype = BN_DTYPE_F32, .ndim = 2, .shape = { 2, 2 }, .data = big };
  g_assert_false (bn_st_writer_add_packed (w, "p", &dense, &error));
  assert_error (error, BONSAI_ERROR_INVALID_INPUT, (const char *const[]) { "p", NULL });
  g_clear_error (&error);

  /* A folder that does not exist. */
  g_autofree char *nodir = g_build_filename (dir, "no", "such", "w.safetensors", NULL);
  g_assert_false (bn_st_writer_write (w, nodir, &error));
  assert_error (error, BONSAI_ERROR_IO, (const char *const[]) { nodir, NULL });
  g_clear_error (&error);

  /* The file system refuses mid-write (a 4 KiB file size limit stands in
   * for a full disk): the temporary file goes and `path` never appears. */
  struct rlimit old, small;
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &old), ==, 0);
  small = old;
  small.rlim_cur = 4096;
  void (*old_handler) (int) = signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &small), ==, 0);
  gboolean ok = bn_st_writer_write (w, path, &error);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &old), ==, 0);
  signal (SIGXFSZ, old_handler);
  g_assert_false (ok);
  assert_error (error, BONSAI_ERROR_IO, (const char *const[]) { path, g_strerror (EFBIG), NULL });
  g_clear_error (&error);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_assert_false (has_temp_files (dir));

  /* Rewriting replaces the file whole. */
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);
  float one = 1.0f;
  w = bn_st_writer_new ();
  g_assert_true (bn_st_writer_add (w, "small", BN_DTYPE_F32, 0, NULL, &one, &error));
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);
  g_assert_false (has_temp_files (dir));
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (bn_safetensors_n_tensors (st), ==, 1);
  g_assert_nonnull (bn_safetensors_find (st, "small"));
  bn_safetensors_free (st);
}

/* Dropping a tensor's pages keeps its data readable (it comes back from
 * the file). */
/* RssFile of this process in kB: mapped file pages it holds. */
static gint64
rss_file_kb (void)
{
  g_autofree char *status = NULL;
  g_assert_true (g_file_get_contents ("/proc/self/status", &status, NULL, NULL));
  const char *line = strstr (status, "RssFile:");
  g_assert_nonnull (line);
  return g_ascii_strtoll (line + strlen ("RssFile:"), NULL, 10);
}

static void
test_drop_pages (void)
{
  g_autofree char *dir = scratch_dir ("drop-pages");
  g_autofree char *path = g_build_filename (dir, "d.safetensors", NULL);
  const int n = 1 << 16;
  g_autofree float *x = g_new (float, n);
  for (int i = 0; i < n; i++)
    x[i] = (float) i * 0.5f;
  g_autoptr (GError) error = NULL;
  BnStWriter *w = bn_st_writer_new ();
  g_assert_true (bn_st_writer_add (w, "x", BN_DTYPE_F32, 1, (int64_t[]) { n }, x, &error));
  g_assert_true (bn_st_writer_write (w, path, &error));
  bn_st_writer_free (w);
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  const BnStTensor *t = bn_safetensors_find (st, "x");
  g_assert_cmpmem (t->data, t->nbytes, x, n * sizeof (float));
  bn_safetensors_drop_pages (st, t);
  g_assert_cmpmem (t->data, t->nbytes, x, n * sizeof (float));
  /* A range of the mapping leaves the resident set (the data was just
   * touched by the comparison) and reads back the same. */
  gint64 before = rss_file_kb ();
  bn_safetensors_drop_range (st, t->data, t->nbytes);
  g_assert_cmpint (before - rss_file_kb (), >=, (gint64) (t->nbytes / 1024) - 8);
  g_assert_cmpmem (t->data, t->nbytes, x, n * sizeof (float));
  /* A range outside the set's mappings is left alone. */
  bn_safetensors_drop_range (st, x, n * sizeof (float));
  for (int i = 0; i < n; i++)
    g_assert_cmpfloat (x[i], ==, (float) i * 0.5f);
  bn_safetensors_free (st);
  /* In-memory sets own no mapping: dropping leaves the caller's bytes alone. */
  g_autofree char *bytes = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &bytes, &len, NULL));
  st = bn_safetensors_open_bytes ("mem", bytes, len, &error);
  g_assert_no_error (error);
  t = bn_safetensors_find (st, "x");
  bn_safetensors_drop_pages (st, t);
  g_assert_cmpmem (t->data, t->nbytes, x, n * sizeof (float));
  bn_safetensors_free (st);
}

static void
test_json_file (void)
{
  g_autofree char *dir = scratch_dir ("json");
  g_autofree char *path = g_build_filename (dir, "quantization_config.json", NULL);
  const char *good = "{\"bits\": 2, \"group_size\": 128, \"solver\": \"ternary\"}";
  write_file (path, good, strlen (good));
  g_autoptr (GError) error = NULL;
  JsonNode *root = bn_json_load_file (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (root), "bits"), ==, 2);
  json_node_unref (root);
  g_autofree char *deep = g_strnfill (5000, '{');
  write_file (path, deep, strlen (deep));
  g_assert_null (bn_json_load_file (path, &error));
  assert_error (error, BONSAI_ERROR_FORMAT, (const char *const[]) { path, "deeper", NULL });
}

/* ---- the reference files --------------------------------------------------------- */

static BnSafetensors *
open_ref (const char *rel)
{
  const char *refs = g_getenv ("BONSAI_REFS");
  g_autofree char *path = refs ? g_build_filename (refs, rel, NULL) : NULL;
  if (!path || !g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("BONSAI_REFS has no reference files");
      return NULL;
    }
  g_autoptr (GError) error = NULL;
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  return st;
}

static void
test_refs (void)
{
  BnSafetensors *st = open_ref ("flux2-mini/dit_weights.safetensors");
  if (!st)
    return;
  g_assert_cmpuint (bn_safetensors_n_tensors (st), ==, 49);
  BnTensor t;
  g_autoptr (GError) error = NULL;
  g_assert_true (bn_safetensors_view (st, "context_embedder.weight", 1u << BN_DTYPE_F32, 2,
                                      (int64_t[]) { 64, 24 }, &t, &error));
  g_assert_true (bn_weights_linear (st, "transformer_blocks.0.ff.linear_in", 384, 64, NULL, &t, &error));
  g_assert_no_error (error);
  const BnStTensor *nq = bn_safetensors_find (st, "transformer_blocks.1.attn.norm_q.weight");
  g_assert_cmpint (nq->ndim, ==, 1);
  g_assert_cmpint (nq->shape[0], ==, 32);
  const char *config = bn_safetensors_metadata (st, "config");
  g_assert_nonnull (config);
  g_assert_nonnull (strstr (config, "\"num_single_layers\": 2"));
  bn_safetensors_free (st);

  st = open_ref ("qwen3-mini/qwen3_io.safetensors");
  const BnStTensor *ids = bn_safetensors_find (st, "input_ids");
  g_assert_cmpint (ids->dtype, ==, BN_DTYPE_I64);
  g_assert_cmpint (ids->shape[0], ==, 16);
  int64_t last;
  memcpy (&last, (const char *) ids->data + 15 * 8, 8);
  g_assert_cmpint (last, ==, 299); /* right-padded with id 299 */
  g_assert_cmpint (bn_safetensors_find (st, "attention_mask")->dtype, ==, BN_DTYPE_I64);
  g_assert_cmpint (bn_safetensors_find (st, "features")->shape[1], ==, 144);
  bn_safetensors_free (st);

  st = open_ref ("flux2-realdims/dit_weights.safetensors");
  g_assert_true (bn_weights_linear (st, "context_embedder", 256, 7680, NULL, &t, &error));
  g_assert_cmpint (t.dtype, ==, BN_DTYPE_F16);
  g_assert_nonnull (strstr (bn_safetensors_metadata (st, "config"), "\"joint_attention_dim\": 7680"));
  bn_safetensors_free (st);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  static const PackCase binary = { 1, 128, BN_DTYPE_BF16, FALSE, 2, 0.5f };
  static const PackCase ternary = { 2, 128, BN_DTYPE_BF16, TRUE, 3, 1.0f };
  static const PackCase q4 = { 4, 64, BN_DTYPE_F16, FALSE, 16, 8.0f };
  g_test_add_data_func ("/safetensors/roundtrip/binary", &binary, roundtrip_packed);
  g_test_add_data_func ("/safetensors/roundtrip/ternary", &ternary, roundtrip_packed);
  g_test_add_data_func ("/safetensors/roundtrip/q4-f16", &q4, roundtrip_packed);
  g_test_add_func ("/safetensors/roundtrip/dense", test_roundtrip_dense);
  g_test_add_func ("/safetensors/roundtrip/metadata", test_roundtrip_metadata);
  g_test_add_func ("/safetensors/weights/ternary-code3", test_ternary_code3);
  g_test_add_func ("/safetensors/weights/errors", test_linear_errors);
  g_test_add_func ("/safetensors/damaged/truncated", test_truncated);
  g_test_add_func ("/safetensors/damaged/headers", test_bad_headers);
  g_test_add_func ("/safetensors/damaged/hostile", test_hostile_bytes);
  g_test_add_func ("/safetensors/damaged/mutations", test_mutations);
  g_test_add_func ("/safetensors/misaligned", test_misaligned);
  g_test_add_func ("/safetensors/sharded", test_sharded);
  g_test_add_func ("/safetensors/folders", test_folders);
  g_test_add_func ("/safetensors/write-errors", test_write_errors);
  g_test_add_func ("/safetensors/drop-pages", test_drop_pages);
  g_test_add_func ("/safetensors/json-file", test_json_file);
  g_test_add_func ("/safetensors/refs", test_refs);
  return g_test_run ();
}
