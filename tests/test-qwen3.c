/* test-qwen3.c — the Qwen3 text encoder against the qwen3-mini reference
 * vectors (padded and unpadded, every layer), the Hugging Face folder layout
 * (sharded, config.json), MLX packs against their dequantised dense twin,
 * and clear errors for missing tensors, wrong shapes and bad configs. */
#include "qwen3.h"
#include "safetensors.h"

#include "bonsai/bonsai.h"

#include <glib/gstdio.h>
#include <math.h>

#define TOL 1e-4

/* ---- helpers ------------------------------------------------------------ */

static char *
refs_path (const char *file)
{
  const char *refs = g_getenv ("BONSAI_REFS");
  g_assert_nonnull (refs);
  return g_build_filename (refs, "qwen3-mini", file, NULL);
}

static char *
make_tmp_dir (void)
{
  const char *base = g_getenv ("BONSAI_TEST_TMP");
  g_autofree char *tmpl = NULL;
  if (base)
    {
      g_assert_cmpint (g_mkdir_with_parents (base, 0755), ==, 0);
      tmpl = g_build_filename (base, "qwen3-XXXXXX", NULL);
    }
  else
    tmpl = g_build_filename (g_get_tmp_dir (), "qwen3-XXXXXX", NULL);
  g_assert_nonnull (g_mkdtemp (tmpl));
  return g_steal_pointer (&tmpl);
}

static void
remove_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      GDir *d = g_dir_open (path, 0, NULL);
      const char *name;
      while (d && (name = g_dir_read_name (d)))
        {
          g_autofree char *sub = g_build_filename (path, name, NULL);
          remove_tree (sub);
        }
      if (d)
        g_dir_close (d);
    }
  g_remove (path);
}

static void
write_text (const char *dir, const char *name, const char *text)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (p, text, -1, NULL));
}

/* max |got − want| / max(1, max |want|), reported in the TAP log. */
static double
rel_error (const char *what, const float *got, const float *want, size_t n)
{
  double max_abs = 0, max_ref = 0;
  for (size_t i = 0; i < n; i++)
    {
      g_assert_true (isfinite (got[i]));
      max_abs = fmax (max_abs, fabs ((double) got[i] - want[i]));
      max_ref = fmax (max_ref, fabs ((double) want[i]));
    }
  double rel = max_abs / fmax (1.0, max_ref);
  g_test_message ("%s: max_abs %.3e max_rel %.3e", what, max_abs, rel);
  return rel;
}

typedef struct {
  BnSafetensors *io;
  int32_t ids[64], ids_nopad[64];
  uint8_t mask[64];
  int64_t n, n_nopad;
} RefIo;

static const float *
ref_f32 (const RefIo *r, const char *name, int64_t rows, int64_t cols)
{
  BnTensor t;
  GError *error = NULL;
  int64_t shape[2] = { rows, cols };
  g_assert_true (bn_safetensors_view (r->io, name, 1u << BN_DTYPE_F32, 2, shape,
                                      &t, &error));
  g_assert_no_error (error);
  return t.data;
}

static void
ref_i64 (const RefIo *r, const char *name, int32_t *out, int64_t *n)
{
  const BnStTensor *t = bn_safetensors_find (r->io, name);
  g_assert_nonnull (t);
  g_assert_cmpint (t->dtype, ==, BN_DTYPE_I64);
  g_assert_cmpint (t->ndim, ==, 1);
  g_assert_cmpint (t->shape[0], <=, 64);
  *n = t->shape[0];
  for (int64_t i = 0; i < *n; i++)
    {
      int64_t v;
      memcpy (&v, (const char *) t->data + i * 8, 8);
      out[i] = (int32_t) v;
    }
}

static void
ref_io_open (RefIo *r)
{
  GError *error = NULL;
  g_autofree char *p = refs_path ("qwen3_io.safetensors");
  r->io = bn_safetensors_open (p, &error);
  g_assert_no_error (error);
  int32_t mask[64];
  int64_t n_mask;
  ref_i64 (r, "input_ids", r->ids, &r->n);
  ref_i64 (r, "attention_mask", mask, &n_mask);
  ref_i64 (r, "input_ids_nopad", r->ids_nopad, &r->n_nopad);
  g_assert_cmpint (n_mask, ==, r->n);
  for (int64_t i = 0; i < r->n; i++)
    r->mask[i] = (uint8_t) mask[i];
}

static BnQwen3 *
open_ok (const char *path, const int *layers, int n_layers)
{
  GError *error = NULL;
  BnQwen3Options opts = { layers, n_layers, FALSE };
  BnQwen3 *m = bn_qwen3_open (path, layers ? &opts : NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);
  return m;
}

static void
encode_ok (const BnQwen3 *m, BnThreadPool *pool, const int32_t *ids,
           const uint8_t *mask, int64_t n, BnTensor *out)
{
  GError *error = NULL;
  g_assert_true (bn_qwen3_encode (m, pool, ids, mask, n, out, &error));
  g_assert_no_error (error);
  g_assert_cmpint (out->shape[0], ==, n);
  g_assert_cmpint (out->shape[1], ==, bn_qwen3_feature_dim (m));
}

/* Features of `model` equal the reference's padded and unpadded ones. */
static void
check_features (const char *model, const RefIo *r, BnThreadPool *pool)
{
  BnQwen3 *m = open_ok (model, NULL, 0);
  int n_out;
  const int *outs = bn_qwen3_out_layers (m, &n_out);
  /* The config's own "out_layers" [1, 3, 4]. */
  g_assert_cmpint (n_out, ==, 3);
  g_assert_cmpint (outs[0], ==, 1);
  g_assert_cmpint (outs[2], ==, 4);
  int64_t dim = bn_qwen3_feature_dim (m);
  BnTensor f;
  encode_ok (m, pool, r->ids, r->mask, r->n, &f);
  g_assert_cmpfloat (rel_error ("features", f.data, ref_f32 (r, "features", r->n, dim),
                                (size_t) (r->n * dim)), <=, TOL);
  bn_tensor_clear (&f);
  encode_ok (m, pool, r->ids_nopad, NULL, r->n_nopad, &f);
  g_assert_cmpfloat (rel_error ("features_nopad", f.data,
                                ref_f32 (r, "features_nopad", r->n_nopad, dim),
                                (size_t) (r->n_nopad * dim)), <=, TOL);
  bn_tensor_clear (&f);
  bn_qwen3_free (m);
}

/* ---- reference vectors -------------------------------------------------- */

/* Every hidden_states_k, from one encode asking for layers 0..5. */
static void
test_hidden_states (void)
{
  RefIo r;
  ref_io_open (&r);
  g_autofree char *dir = refs_path ("");
  const int layers[] = { 0, 1, 2, 3, 4, 5 };
  BnQwen3 *m = open_ok (dir, layers, G_N_ELEMENTS (layers));
  int64_t h = bn_qwen3_config (m)->hidden_size;
  BnTensor f;
  encode_ok (m, NULL, r.ids, r.mask, r.n, &f);
  float *slot = g_new (float, r.n * h);
  for (int k = 0; k <= 5; k++)
    {
      for (int64_t t = 0; t < r.n; t++)
        memcpy (slot + t * h, (float *) f.data + t * 6 * h + k * h, h * sizeof (float));
      g_autofree char *name = g_strdup_printf ("hidden_states_%d", k);
      g_assert_cmpfloat (rel_error (name, slot, ref_f32 (&r, name, r.n, h),
                                    (size_t) (r.n * h)), <=, TOL);
    }
  g_free (slot);
  bn_tensor_clear (&f);
  bn_qwen3_free (m);
  bn_safetensors_free (r.io);
}

static void
test_features (void)
{
  RefIo r;
  ref_io_open (&r);
  g_autofree char *dir = refs_path ("");
  g_autofree char *file = refs_path ("qwen3_weights.safetensors");
  check_features (dir, &r, NULL);
  /* The weights file alone: the config comes from its metadata. */
  check_features (file, &r, NULL);
  bn_safetensors_free (r.io);
}

/* The output depends neither on the thread count nor on whether weight
 * pages were dropped after each layer (and read back from the file on the
 * second encode), bit for bit. */
static void
test_threads (void)
{
  RefIo r;
  ref_io_open (&r);
  g_autofree char *dir = refs_path ("");
  BnQwen3 *m = open_ok (dir, NULL, 0);
  GError *error = NULL;
  BnQwen3Options keep = { NULL, 0, TRUE };
  BnQwen3 *kept = bn_qwen3_open (dir, &keep, &error);
  g_assert_no_error (error);
  BnThreadPool *pool = bn_thread_pool_new (3, NULL);
  g_assert_nonnull (pool);
  BnTensor a, b, c;
  encode_ok (m, NULL, r.ids, r.mask, r.n, &a);
  encode_ok (m, pool, r.ids, r.mask, r.n, &b);
  encode_ok (kept, pool, r.ids, r.mask, r.n, &c);
  g_assert_cmpmem (a.data, bn_tensor_nbytes (&a), b.data, bn_tensor_nbytes (&b));
  g_assert_cmpmem (a.data, bn_tensor_nbytes (&a), c.data, bn_tensor_nbytes (&c));
  bn_tensor_clear (&a);
  bn_tensor_clear (&b);
  bn_tensor_clear (&c);
  bn_thread_pool_free (pool);
  bn_qwen3_free (kept);
  bn_qwen3_free (m);
  bn_safetensors_free (r.io);
}

/* ---- folder layouts ----------------------------------------------------- */

/* Copies the reference weights into `path` except `skip`; `replace` (if not
 * NULL) takes the data and shape of `with` instead of its own. */
static void
write_mini_copy (const char *path, const char *skip, const char *replace,
                 const char *with)
{
  GError *error = NULL;
  g_autofree char *src = refs_path ("qwen3_weights.safetensors");
  BnSafetensors *st = bn_safetensors_open (src, &error);
  g_assert_no_error (error);
  BnStWriter *w = bn_st_writer_new ();
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      if (skip && !strcmp (t->name, skip))
        continue;
      if (replace && !strcmp (t->name, replace))
        t = bn_safetensors_find (st, with);
      g_assert_true (bn_st_writer_add (w, bn_safetensors_nth (st, i)->name, t->dtype,
                                       t->ndim, t->shape, t->data, &error));
      g_assert_no_error (error);
    }
  g_assert_true (bn_st_writer_write (w, path, &error));
  g_assert_no_error (error);
  bn_st_writer_free (w);
  bn_safetensors_free (st);
}

static char *
mini_config_text (void)
{
  g_autofree char *p = refs_path ("qwen3_config.json");
  char *text;
  g_assert_true (g_file_get_contents (p, &text, NULL, NULL));
  return text;
}

/* A Hugging Face folder: config.json and two shards behind an index. */
static void
test_sharded_folder (void)
{
  RefIo r;
  ref_io_open (&r);
  GError *error = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *src = refs_path ("qwen3_weights.safetensors");
  BnSafetensors *st = bn_safetensors_open (src, &error);
  g_assert_no_error (error);
  BnStWriter *w[2] = { bn_st_writer_new (), bn_st_writer_new () };
  const char *shard[2] = { "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors" };
  GString *index = g_string_new ("{\"metadata\": {}, \"weight_map\": {");
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      guint s = i % 2;
      g_assert_true (bn_st_writer_add (w[s], t->name, t->dtype, t->ndim, t->shape,
                                       t->data, &error));
      g_string_append_printf (index, "%s\"%s\": \"%s\"", i ? ", " : "", t->name,
                              shard[s]);
    }
  g_string_append (index, "}}");
  for (int s = 0; s < 2; s++)
    {
      g_autofree char *p = g_build_filename (dir, shard[s], NULL);
      g_assert_true (bn_st_writer_write (w[s], p, &error));
      g_assert_no_error (error);
      bn_st_writer_free (w[s]);
    }
  write_text (dir, "model.safetensors.index.json", index->str);
  g_string_free (index, TRUE);
  g_autofree char *cfg = mini_config_text ();
  write_text (dir, "config.json", cfg);
  bn_safetensors_free (st);

  check_features (dir, &r, NULL);

  /* A release folder finds its encoder in text_encoder/. */
  g_autofree char *release = make_tmp_dir ();
  g_autofree char *te = g_build_filename (release, "text_encoder", NULL);
  g_assert_cmpint (g_rename (dir, te), ==, 0);
  g_autofree char *found = bn_qwen3_find_dir (release, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (found, ==, te);
  g_autofree char *again = bn_qwen3_find_dir (te, &error);
  g_assert_cmpstr (again, ==, te);
  remove_tree (release);
  g_assert_null (bn_qwen3_find_dir (release, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_clear_error (&error);
  bn_safetensors_free (r.io);
}

/* ---- MLX packs ---------------------------------------------------------- */

typedef struct {
  int bits, group;
} PackCase;

/* MLX's affine quantisation of one row: per group, scale = (max − min) /
 * (2^bits − 1), bias = min, q = round((w − bias) / scale). */
static void
quantize_row (BnTensor *t, int64_t row, const float *w)
{
  int64_t k = t->shape[1];
  int levels = (1 << bn_dtype_bits (t->dtype)) - 1;
  for (int64_t g = 0; g < k / t->group_size; g++)
    {
      const float *x = w + g * t->group_size;
      float lo = x[0], hi = x[0];
      for (int i = 1; i < t->group_size; i++)
        lo = fminf (lo, x[i]), hi = fmaxf (hi, x[i]);
      float scale = fmaxf ((hi - lo) / levels, 1e-6f);
      bn_packed_set_group (t, row, g, scale, lo);
      for (int i = 0; i < t->group_size; i++)
        {
          long q = lroundf ((x[i] - lo) / scale);
          bn_packed_set_code (t, row, g * t->group_size + i,
                              (unsigned) CLAMP (q, 0, levels));
        }
    }
}

typedef struct {
  BnStWriter *packed, *dense;
  GPtrArray *keep; /* buffers the writers reference */
  GRand *rand;
  BnDType dt;
  int group;
} PackWriter;

static void
free_tensor (gpointer p)
{
  bn_tensor_clear (p);
  g_free (p);
}

/* Adds random linear `prefix` [n, k]: packed to one file, its exact
 * dequantisation (f32) to the other. */
static void
add_linear (PackWriter *pw, const char *prefix, int64_t n, int64_t k, float range)
{
  GError *error = NULL;
  BnTensor *t = g_new0 (BnTensor, 1), *d = g_new0 (BnTensor, 1);
  g_assert_true (bn_tensor_init_packed (t, pw->dt, n, k, pw->group, BN_DTYPE_BF16, &error));
  int64_t shape[2] = { n, k };
  g_assert_true (bn_tensor_init (d, BN_DTYPE_F32, 2, shape, &error));
  float *row = g_new (float, k);
  for (int64_t r = 0; r < n; r++)
    {
      for (int64_t i = 0; i < k; i++)
        row[i] = (float) g_rand_double_range (pw->rand, -range, range);
      quantize_row (t, r, row);
      bn_tensor_row_f32 (t, r, (float *) d->data + r * k);
    }
  g_free (row);
  g_assert_true (bn_st_writer_add_packed (pw->packed, prefix, t, &error));
  g_autofree char *name = g_strdup_printf ("%s.weight", prefix);
  g_assert_true (bn_st_writer_add (pw->dense, name, BN_DTYPE_F32, 2, shape, d->data, &error));
  g_assert_no_error (error);
  g_ptr_array_add (pw->keep, t);
  g_ptr_array_add (pw->keep, d);
}

/* Norm weights stay dense (bf16, as in the release) in both files. */
static void
add_norm (PackWriter *pw, const char *name, int64_t n)
{
  GError *error = NULL;
  BnTensor *t = g_new0 (BnTensor, 1);
  g_assert_true (bn_tensor_init (t, BN_DTYPE_BF16, 1, &n, &error));
  for (int64_t i = 0; i < n; i++)
    ((uint16_t *) t->data)[i] = bn_f32_to_bf16 ((float) g_rand_double_range (pw->rand, 0.8, 1.2));
  g_assert_true (bn_st_writer_add (pw->packed, name, BN_DTYPE_BF16, 1, &n, t->data, &error));
  g_assert_true (bn_st_writer_add (pw->dense, name, BN_DTYPE_BF16, 1, &n, t->data, &error));
  g_assert_no_error (error);
  g_ptr_array_add (pw->keep, t);
}

#define PACK_CONFIG                                                          \
  "{\"architectures\": [\"Qwen3ForCausalLM\"], \"model_type\": \"qwen3\", "  \
  "\"hidden_size\": 64, \"num_hidden_layers\": 3, "                          \
  "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16, " \
  "\"intermediate_size\": 128, \"vocab_size\": 40, \"rope_theta\": 1000000, " \
  "\"rms_norm_eps\": 1e-06, \"tie_word_embeddings\": true, "                 \
  "\"rope_scaling\": null"

static void
test_packed (gconstpointer data)
{
  const PackCase *pc = data;
  GError *error = NULL;
  g_autofree char *pdir = make_tmp_dir (), *ddir = make_tmp_dir ();
  PackWriter pw = { bn_st_writer_new (), bn_st_writer_new (),
                    g_ptr_array_new_with_free_func (free_tensor),
                    g_rand_new_with_seed (pc->bits * 1000 + pc->group), 0, pc->group };
  g_assert_true (bn_dtype_packed_for_bits (pc->bits, &pw.dt));
  add_linear (&pw, "model.embed_tokens", 40, 64, 1.0f);
  for (int i = 0; i < 3; i++)
    {
      const struct { const char *name; int64_t n, k; } lin[] = {
        { "self_attn.q_proj", 64, 64 }, { "self_attn.k_proj", 32, 64 },
        { "self_attn.v_proj", 32, 64 }, { "self_attn.o_proj", 64, 64 },
        { "mlp.gate_proj", 128, 64 }, { "mlp.up_proj", 128, 64 },
        { "mlp.down_proj", 64, 128 },
      };
      for (size_t j = 0; j < G_N_ELEMENTS (lin); j++)
        {
          g_autofree char *p = g_strdup_printf ("model.layers.%d.%s", i, lin[j].name);
          add_linear (&pw, p, lin[j].n, lin[j].k, 0.3f);
        }
      const struct { const char *name; int64_t n; } norms[] = {
        { "input_layernorm", 64 }, { "post_attention_layernorm", 64 },
        { "self_attn.q_norm", 16 }, { "self_attn.k_norm", 16 },
      };
      for (size_t j = 0; j < G_N_ELEMENTS (norms); j++)
        {
          g_autofree char *p = g_strdup_printf ("model.layers.%d.%s.weight", i, norms[j].name);
          add_norm (&pw, p, norms[j].n);
        }
    }
  add_norm (&pw, "model.norm.weight", 64);
  g_autofree char *pfile = g_build_filename (pdir, "model.safetensors", NULL);
  g_autofree char *dfile = g_build_filename (ddir, "model.safetensors", NULL);
  g_assert_true (bn_st_writer_write (pw.packed, pfile, &error));
  g_assert_true (bn_st_writer_write (pw.dense, dfile, &error));
  g_assert_no_error (error);
  g_autofree char *pcfg = g_strdup_printf (
      PACK_CONFIG ", \"quantization\": {\"group_size\": %d, \"bits\": %d}, "
      "\"quantization_config\": {\"group_size\": %d, \"bits\": %d}}",
      pc->group, pc->bits, pc->group, pc->bits);
  write_text (pdir, "config.json", pcfg);
  write_text (ddir, "config.json", PACK_CONFIG "}");

  const int layers[] = { 1, 3 };
  BnQwen3 *pm = open_ok (pdir, layers, 2), *dm = open_ok (ddir, layers, 2);
  g_assert_cmpint (bn_qwen3_config (pm)->quant_bits, ==, pc->bits);
  g_assert_cmpint (bn_qwen3_config (pm)->quant_group_size, ==, pc->group);
  const int32_t ids[10] = { 3, 17, 39, 0, 5, 22, 8, 1, 1, 1 };
  const uint8_t mask[10] = { 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 };
  BnTensor a, b;
  encode_ok (pm, NULL, ids, mask, 10, &a);
  encode_ok (dm, NULL, ids, mask, 10, &b);
  g_autofree char *what = g_strdup_printf ("%d-bit group %d vs dense", pc->bits, pc->group);
  g_assert_cmpfloat (rel_error (what, a.data, b.data, (size_t) bn_tensor_numel (&a)), <=, TOL);
  bn_tensor_clear (&a);
  bn_tensor_clear (&b);
  bn_qwen3_free (pm);
  bn_qwen3_free (dm);

  /* A config that disagrees with the pack's width is refused by name. */
  int other = pc->bits == 4 ? 2 : 4;
  g_autofree char *bad = g_strdup_printf (
      PACK_CONFIG ", \"quantization\": {\"group_size\": %d, \"bits\": %d}}",
      pc->group, other);
  write_text (pdir, "config.json", bad);
  BnQwen3Options opts = { layers, 2, FALSE };
  g_assert_null (bn_qwen3_open (pdir, &opts, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "model.embed_tokens"));
  g_clear_error (&error);

  bn_st_writer_free (pw.packed);
  bn_st_writer_free (pw.dense);
  g_ptr_array_unref (pw.keep);
  g_rand_free (pw.rand);
  remove_tree (pdir);
  remove_tree (ddir);
}

/* ---- errors ------------------------------------------------------------- */

/* Writes a copy of the mini model into a new folder and opens it. */
static BnQwen3 *
open_modified (const char *skip, const char *replace, const char *with,
               const int *layers, int n_layers, GError **error)
{
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *file = g_build_filename (dir, "model.safetensors", NULL);
  write_mini_copy (file, skip, replace, with);
  g_autofree char *cfg = mini_config_text ();
  write_text (dir, "config.json", cfg);
  BnQwen3Options opts = { layers, n_layers, FALSE };
  BnQwen3 *m = bn_qwen3_open (dir, layers ? &opts : NULL, error);
  remove_tree (dir);
  return m;
}

static void
test_missing_tensor (void)
{
  GError *error = NULL;
  const char *name = "model.layers.2.mlp.up_proj.weight";
  g_assert_null (open_modified (name, NULL, NULL, NULL, 0, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "model.layers.2.mlp.up_proj"));
  g_clear_error (&error);
  /* Layers past the deepest output are never loaded. */
  const int layers[] = { 1, 2 };
  BnQwen3 *m = open_modified (name, NULL, NULL, layers, 2, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);
  bn_qwen3_free (m);
  g_assert_null (open_modified ("model.layers.0.self_attn.q_norm.weight", NULL,
                                NULL, layers, 2, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "model.layers.0.self_attn.q_norm.weight"));
  g_clear_error (&error);
}

static void
test_wrong_shape (void)
{
  GError *error = NULL;
  /* q_proj is [64, 48] where k_proj must be [32, 48]. */
  g_assert_null (open_modified (NULL, "model.layers.0.self_attn.k_proj.weight",
                                "model.layers.0.self_attn.q_proj.weight", NULL, 0,
                                &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "model.layers.0.self_attn.k_proj"));
  g_clear_error (&error);
  /* A [16] k_norm where the input norm [48] belongs. */
  g_assert_null (open_modified (NULL, "model.layers.1.input_layernorm.weight",
                                "model.layers.1.self_attn.k_norm.weight", NULL, 0,
                                &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "model.layers.1.input_layernorm.weight"));
  g_clear_error (&error);
}

static void
test_bad_config (void)
{
  const struct {
    const char *json, *word;
  } cases[] = {
    { "{\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
      "\"intermediate_size\": 8, \"vocab_size\": 10}", "hidden_size" },
    { "{\"hidden_size\": \"64\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
      "\"intermediate_size\": 8, \"vocab_size\": 10}", "hidden_size" },
    { "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
      "\"num_key_value_heads\": 3, \"intermediate_size\": 8, \"vocab_size\": 10}",
      "key/value" },
    { "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
      "\"intermediate_size\": 8, \"vocab_size\": 10, \"rope_theta\": -1}", "rope_theta" },
    { "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
      "\"intermediate_size\": 8, \"vocab_size\": 10, "
      "\"quantization\": {\"group_size\": 64, \"bits\": 3}}", "quantization" },
    { "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
      "\"intermediate_size\": 8, \"vocab_size\": 10, "
      "\"quantization\": {\"bits\": 4}}", "group_size" },
    { "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
      "\"intermediate_size\": 8, \"vocab_size\": 10, "
      "\"rope_scaling\": {\"type\": \"yarn\"}}", "rope_scaling" },
    { "[1, 2]", "object" },
    { "{\"hidden_size\": 64,", "JSON" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      GError *error = NULL;
      BnQwen3Config c;
      g_assert_false (bn_qwen3_config_parse (cases[i].json, -1, "test.json", &c, &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
      g_assert_nonnull (strstr (error->message, "test.json"));
      g_assert_nonnull (strstr (error->message, cases[i].word));
      g_clear_error (&error);
    }
  /* transformers 5 keeps rope_theta under rope_parameters; head_dim and
   * num_key_value_heads default as Hugging Face's Qwen3Config does. */
  BnQwen3Config c;
  GError *error = NULL;
  g_assert_true (bn_qwen3_config_parse (
      "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
      "\"intermediate_size\": 8, \"vocab_size\": 10, "
      "\"rope_parameters\": {\"rope_theta\": 5e5, \"rope_type\": \"default\"}}",
      -1, "test.json", &c, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (c.rope_theta, ==, 5e5);
  g_assert_cmpint (c.n_kv_heads, ==, 4);
  g_assert_cmpint (c.head_dim, ==, 128);
  g_assert_cmpint (c.quant_bits, ==, 0);
}

static void
test_bad_requests (void)
{
  GError *error = NULL;
  g_autofree char *dir = refs_path ("");
  const int too_deep[] = { 1, 6 }, unordered[] = { 3, 1 };
  BnQwen3Options opts = { too_deep, 2, FALSE };
  g_assert_null (bn_qwen3_open (dir, &opts, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  opts.out_layers = unordered;
  g_assert_null (bn_qwen3_open (dir, &opts, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);

  g_autofree char *empty = make_tmp_dir ();
  g_assert_null (bn_qwen3_open (empty, NULL, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, empty));
  g_clear_error (&error);
  remove_tree (empty);

  BnQwen3 *m = open_ok (dir, NULL, 0);
  BnTensor f;
  const int32_t ids[3] = { 1, 300, 2 };
  g_assert_false (bn_qwen3_encode (m, NULL, ids, NULL, 3, &f, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, "300"));
  g_clear_error (&error);
  g_assert_false (bn_qwen3_encode (m, NULL, ids, NULL, 0, &f, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  bn_qwen3_free (m);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  static const PackCase packs[] = { { 4, 32 }, { 4, 64 }, { 2, 32 } };
  if (g_getenv ("BONSAI_REFS"))
    {
      g_test_add_func ("/qwen3/refs/hidden-states", test_hidden_states);
      g_test_add_func ("/qwen3/refs/features", test_features);
      g_test_add_func ("/qwen3/refs/threads", test_threads);
      g_test_add_func ("/qwen3/layout/sharded-folder", test_sharded_folder);
      g_test_add_func ("/qwen3/errors/missing-tensor", test_missing_tensor);
      g_test_add_func ("/qwen3/errors/wrong-shape", test_wrong_shape);
      g_test_add_func ("/qwen3/errors/bad-requests", test_bad_requests);
    }
  for (size_t i = 0; i < G_N_ELEMENTS (packs); i++)
    {
      g_autofree char *path = g_strdup_printf ("/qwen3/mlx-pack/%d-bit-group-%d",
                                               packs[i].bits, packs[i].group);
      g_test_add_data_func (path, &packs[i], test_packed);
    }
  g_test_add_func ("/qwen3/errors/bad-config", test_bad_config);
  return g_test_run ();
}
