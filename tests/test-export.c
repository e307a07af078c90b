/* test-export.c — bonsai-image export-release (bn_release_export): trained
 * float weights become a release folder that the ordinary model loading
 * opens.  bits 16 keeps refs/flux2-mini's transformer to bf16 accuracy;
 * bits 1 and 2 pack exactly the documented rule (computed here on its
 * own), ties and zeros included; every layout lists the same files as the
 * synthetic release writer's. */
#include "release-fixture.h"

#include "pipeline.h"
#include "safetensors.h"

#include <math.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

static void
copy_file (const char *from, const char *to)
{
  g_autofree char *data = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (from, &data, &len, NULL));
  g_assert_true (g_file_set_contents (to, data, (gssize) len, NULL));
}

/* Every file under `dir`, relative and sorted, one a line. */
static void
list_into (const char *dir, const char *rel, GPtrArray *out)
{
  g_autofree char *path = rel ? g_build_filename (dir, rel, NULL) : g_strdup (dir);
  GDir *d = g_dir_open (path, 0, NULL);
  g_assert_nonnull (d);
  const char *name;
  while ((name = g_dir_read_name (d)))
    {
      g_autofree char *sub = rel ? g_build_filename (rel, name, NULL) : g_strdup (name);
      g_autofree char *full = g_build_filename (dir, sub, NULL);
      if (g_file_test (full, G_FILE_TEST_IS_DIR))
        list_into (dir, sub, out);
      else
        g_ptr_array_add (out, g_strdup (sub));
    }
  g_dir_close (d);
}

static gint
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static char *
file_list (const char *dir)
{
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  list_into (dir, NULL, names);
  g_ptr_array_sort (names, cmp_str);
  g_ptr_array_add (names, NULL);
  return g_strjoinv ("\n", (char **) names->pdata);
}

static void
assert_same_files (const char *got, const char *want)
{
  g_autofree char *a = file_list (got);
  g_autofree char *b = file_list (want);
  g_assert_cmpstr (a, ==, b);
}

static void
assert_same_bytes (const char *a, const char *b)
{
  g_autofree char *x = NULL, *y = NULL;
  gsize nx, ny;
  g_assert_true (g_file_get_contents (a, &x, &nx, NULL));
  g_assert_true (g_file_get_contents (b, &y, &ny, NULL));
  g_assert_cmpmem (x, nx, y, ny);
}

static BnSafetensors *
refs_open (const char *name)
{
  const char *refs = g_getenv ("BONSAI_REFS");
  g_autofree char *path = refs ? g_build_filename (refs, "flux2-mini", name, NULL) : NULL;
  if (!path || !g_file_test (path, G_FILE_TEST_EXISTS))
    return NULL;
  GError *error = NULL;
  BnSafetensors *st = bn_safetensors_open (path, &error);
  g_assert_no_error (error);
  return st;
}

static char *
refs_path (const char *name)
{
  return g_build_filename (g_getenv ("BONSAI_REFS"), "flux2-mini", name, NULL);
}

/* ---- bits 16: refs/flux2-mini ----------------------------------------------------- */

static const float *
io_f32 (const BnSafetensors *io, const char *name, int64_t *rows)
{
  BnTensor t;
  GError *error = NULL;
  g_assert_true (bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, -1, NULL, &t, &error));
  g_assert_no_error (error);
  if (rows)
    *rows = t.shape[0];
  return t.data;
}

static int64_t *
io_ids (const BnSafetensors *io, const char *name, int64_t n)
{
  const float *v = io_f32 (io, name, NULL);
  int64_t *ids = g_new (int64_t, n);
  for (int64_t i = 0; i < n; i++)
    ids[i] = (int64_t) v[i];
  return ids;
}

static void
test_bits16 (void)
{
  BnSafetensors *io = refs_open ("dit_io.safetensors");
  if (!io)
    {
      g_test_skip ("no refs/flux2-mini (BONSAI_REFS)");
      return;
    }
  g_autofree char *tok = fixture_tokenizer ();
  if (!tok)
    return;
  /* A text encoder whose features fit flux2-mini's context (3 × 8); only
   * the dense unpacked layout holds one that narrow. */
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  spec.te_hidden = 8;
  spec.te_head_dim = 4;
  spec.te_intermediate = 16;
  spec.dit.context_dim = 24;
  g_autofree char *te = fixture_path ("te-unpacked");
  g_autofree char *ckpt = fixture_path ("ckpt-mini");
  g_autofree char *out = fixture_path ("export16");
  GError *error = NULL;
  g_assert_true (bn_synthetic_release_write (te, &spec, BN_SYNTH_LAYOUT_UNPACKED, tok, 1, &error));
  g_assert_no_error (error);
  g_mkdir_with_parents (ckpt, 0755);
  const char *pairs[][2] = {
    { "dit_weights.safetensors", "transformer.safetensors" },
    { "dit_config.json", "transformer_config.json" },
    { "vae_weights.safetensors", "vae.safetensors" },
    { "vae_config.json", "vae_config.json" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (pairs); i++)
    {
      g_autofree char *from = refs_path (pairs[i][0]);
      g_autofree char *to = g_build_filename (ckpt, pairs[i][1], NULL);
      copy_file (from, to);
    }
  g_assert_true (bn_release_export (ckpt, te, 16, out, &error));
  g_assert_no_error (error);
  assert_same_files (out, te);

  /* flux2-mini's widths (64) are no multiple of 128: no packs. */
  g_autofree char *bad = fixture_path ("export-mini-1");
  g_assert_false (bn_release_export (ckpt, te, 1, bad, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);

  BonsaiModel *model = bonsai_model_open (out, &error);
  g_assert_no_error (error);
  const BnFlux2Dit *dit = model->dit;
  const BnFlux2Config *c = &dit->cfg;
  BnFlux2Input in = { 0 };
  in.x = io_f32 (io, "x", &in.n_img);
  in.ctx = io_f32 (io, "ctx", &in.n_txt);
  g_autofree int64_t *img_ids = io_ids (io, "img_ids", in.n_img * c->n_axes);
  g_autofree int64_t *txt_ids = io_ids (io, "txt_ids", in.n_txt * c->n_axes);
  in.img_ids = img_ids;
  in.txt_ids = txt_ids;
  in.n_out = in.n_img;
  BnThreadPool *pool = bn_thread_pool_new (0, &error);
  g_assert_no_error (error);
  size_t n = (size_t) in.n_img * c->out_channels;
  g_autofree float *got = g_new (float, n);
  for (int k = 0; k < 3; k++)
    {
      g_autofree char *tname = g_strdup_printf ("t%d", k);
      g_autofree char *oname = g_strdup_printf ("out_t%d", k);
      in.t = *io_f32 (io, tname, NULL);
      const float *want = io_f32 (io, oname, NULL);
      g_assert_true (bn_flux2_dit_forward (dit, pool, &in, got, &error));
      g_assert_no_error (error);
      double worst = 0, big = 1;
      for (size_t i = 0; i < n; i++)
        {
          worst = MAX (worst, fabs ((double) got[i] - want[i]));
          big = MAX (big, fabs ((double) want[i]));
        }
      g_test_message ("bits 16, %s: max |error| %.2e of %.2f", oname, worst, big);
      /* bf16 weights: 2^-9 relative per weight, a few of them in a row. */
      g_assert_cmpfloat (worst / big, <, 1e-2);
    }
  bn_thread_pool_free (pool);
  bonsai_model_unref (model);
  bn_safetensors_free (io);
}

/* ---- bits 1 and 2 --------------------------------------------------------------- */

/* The rule of synthetic_model.h, written out again. */
static float
round_half_even (float x)
{
  float r = floorf (x), d = x - r;
  if (d > 0.5f || (d == 0.5f && fmodf (r, 2.0f) != 0))
    r += 1;
  return r;
}

static void
expected_row (const float *w, int64_t k, int bits, float *out)
{
  for (int64_t g = 0; g < k; g += 128)
    {
      double sum = 0;
      for (int i = 0; i < 128; i++)
        sum += fabs ((double) w[g + i]);
      float a = bn_bf16_to_f32 (bn_f32_to_bf16 ((float) (sum / 128)));
      for (int i = 0; i < 128; i++)
        {
          float x = w[g + i];
          if (bits == 1)
            out[g + i] = x >= 0 ? a : -a;
          else
            {
              float q = a == 0 ? 0 : round_half_even (x / a);
              out[g + i] = a * CLAMP (q, -1.0f, 1.0f);
            }
        }
    }
}

/* The tiny transformer's tensors as f32 checkpoint values off the bf16
 * grid; transformer_blocks.0.attn.to_q.weight's first group of row 0 holds
 * ternary ties (w / a = ±0.5 exactly, a = 0.9375) and its row 1 starts
 * with a group of zeros (+0 and −0). */
static void
write_checkpoint_transformer (const char *unpacked, const char *ckpt)
{
  g_autofree char *src = g_build_filename (unpacked, "transformer", NULL);
  GError *error = NULL;
  BnSafetensors *st = bn_safetensors_open (src, &error);
  g_assert_no_error (error);
  BnStWriter *w = bn_st_writer_new ();
  g_autoptr (GPtrArray) bufs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      size_t n = t->nbytes / 2;
      float *f = g_new (float, n);
      bn_convert_to_f32 (t->dtype, t->data, f, n);
      for (size_t j = 0; j < n; j++)
        f[j] *= 1.0f + 0.37f * sinf ((float) j * 1.7f + (float) i);
      if (!strcmp (t->name, "transformer_blocks.0.attn.to_q.weight"))
        {
          for (int j = 0; j < 128; j++)
            {
              float sign = j % 2 ? -1.0f : 1.0f;
              f[j] = sign * (j < 64 ? 1.5f : j < 96 ? 0.46875f : 0.28125f);
            }
          int64_t k = t->shape[1];
          for (int j = 0; j < 128; j++)
            f[k + j] = j % 2 ? -0.0f : 0.0f;
        }
      g_ptr_array_add (bufs, f);
      g_assert_true (bn_st_writer_add (w, t->name, BN_DTYPE_F32, t->ndim, t->shape, f, &error));
    }
  g_autofree char *path = g_build_filename (ckpt, "transformer.safetensors", NULL);
  g_assert_true (bn_st_writer_write (w, path, &error));
  g_assert_no_error (error);
  bn_st_writer_free (w);
  bn_safetensors_free (st);
  g_autofree char *cfg_from = g_build_filename (src, "config.json", NULL);
  g_autofree char *cfg_to = g_build_filename (ckpt, "transformer_config.json", NULL);
  copy_file (cfg_from, cfg_to);
}

typedef struct {
  const char *name;
  const BnTensor *t;
} Linear;

/* Every block linear of `dit` with its diffusers name. */
static GArray *
block_linears (const BnFlux2Dit *dit)
{
  GArray *a = g_array_new (FALSE, FALSE, sizeof (Linear));
  static const char *const qkv[2][3] = { { "attn.to_q", "attn.to_k", "attn.to_v" },
                                         { "attn.add_q_proj", "attn.add_k_proj",
                                           "attn.add_v_proj" } };
  static const char *const rest[2][3] = { { "attn.to_out.0", "ff.linear_in", "ff.linear_out" },
                                          { "attn.to_add_out", "ff_context.linear_in",
                                            "ff_context.linear_out" } };
  for (int i = 0; i < dit->cfg.num_layers; i++)
    for (int s = 0; s < 2; s++)
      {
        const BnFlux2Stream *st = s ? &dit->doubles[i].txt : &dit->doubles[i].img;
        g_assert_cmpint (st->n_qkv, ==, 3);
        const BnTensor *ts[6] = { &st->qkv[0], &st->qkv[1], &st->qkv[2], &st->proj,
                                  &st->mlp_in, &st->mlp_out };
        for (int j = 0; j < 6; j++)
          {
            Linear l = { g_strdup_printf ("transformer_blocks.%d.%s.weight", i,
                                          j < 3 ? qkv[s][j] : rest[s][j - 3]), ts[j] };
            g_array_append_val (a, l);
          }
      }
  for (int i = 0; i < dit->cfg.num_single_layers; i++)
    {
      Linear l1 = { g_strdup_printf ("single_transformer_blocks.%d.attn.to_qkv_mlp_proj.weight", i),
                    &dit->singles[i].linear1 };
      Linear l2 = { g_strdup_printf ("single_transformer_blocks.%d.attn.to_out.weight", i),
                    &dit->singles[i].linear2 };
      g_array_append_val (a, l1);
      g_array_append_val (a, l2);
    }
  return a;
}

static void
test_packed (void)
{
  g_autofree char *tok = fixture_tokenizer ();
  BnSafetensors *refs_vae = refs_open ("vae_weights.safetensors");
  if (!tok)
    return;
  if (!refs_vae)
    {
      g_test_skip ("no refs/flux2-mini (BONSAI_REFS)");
      return;
    }
  bn_safetensors_free (refs_vae);
  g_autofree char *mlx[3] = { NULL, NULL, NULL };
  g_autofree char *unp = fixture_path ("tiny-unpacked");
  g_autofree char *ckpt = fixture_path ("ckpt-tiny");
  BnSynthSpec spec;
  GError *error = NULL;
  for (int bits = 1; bits <= 2; bits++)
    {
      bn_synth_spec_tiny (&spec, bits);
      mlx[bits] = fixture_path (bits == 1 ? "tiny-mlx-1" : "tiny-mlx-2");
      g_assert_true (bn_synthetic_release_write (mlx[bits], &spec, BN_SYNTH_LAYOUT_MLX,
                                                 tok, 1, &error));
      g_assert_no_error (error);
    }
  g_assert_true (bn_synthetic_release_write (unp, &spec, BN_SYNTH_LAYOUT_UNPACKED, tok, 1, &error));
  g_assert_no_error (error);
  g_mkdir_with_parents (ckpt, 0755);
  write_checkpoint_transformer (unp, ckpt);
  /* The tiny transformer takes flux2-mini's VAE's latents (8 channels). */
  g_autofree char *vae_from = refs_path ("vae_weights.safetensors");
  g_autofree char *vcfg_from = refs_path ("vae_config.json");
  g_autofree char *vae_to = g_build_filename (ckpt, "vae.safetensors", NULL);
  g_autofree char *vcfg_to = g_build_filename (ckpt, "vae_config.json", NULL);
  copy_file (vae_from, vae_to);
  copy_file (vcfg_from, vcfg_to);
  g_autofree char *tw = g_build_filename (ckpt, "transformer.safetensors", NULL);
  BnSafetensors *src = bn_safetensors_open (tw, &error);
  g_assert_no_error (error);

  for (int bits = 1; bits <= 2; bits++)
    {
      g_autofree char *out = fixture_path (bits == 1 ? "export1" : "export2");
      g_assert_true (bn_release_export (ckpt, mlx[2], bits, out, &error));
      g_assert_no_error (error);
      assert_same_files (out, mlx[bits]);
      /* Same shapes and the same packed set: the configs are the synthetic
       * writer's to the byte; the text encoder is copied as it is. */
      const char *same[] = { "transformer-packed-mflux/quantization_config.json",
                             "transformer-packed-mflux/config.json",
                             "text_encoder-mlx-4bit/model.safetensors" };
      for (size_t i = 0; i < G_N_ELEMENTS (same); i++)
        {
          g_autofree char *a = g_build_filename (out, same[i], NULL);
          g_autofree char *b = g_build_filename (mlx[bits], same[i], NULL);
          assert_same_bytes (a, b);
        }

      BonsaiModel *model = bonsai_model_open (out, &error);
      g_assert_no_error (error);
      g_autoptr (GArray) lin = block_linears (model->dit);
      int64_t checked = 0, ties = 0;
      for (guint i = 0; i < lin->len; i++)
        {
          Linear *l = &g_array_index (lin, Linear, i);
          g_assert_cmpint (l->t->dtype, ==, bits == 1 ? BN_DTYPE_Q1 : BN_DTYPE_Q2);
          int64_t n = l->t->shape[0], k = l->t->shape[1];
          BnTensor w;
          g_assert_true (bn_safetensors_view (src, l->name, 1u << BN_DTYPE_F32, 2,
                                              (const int64_t[2]) { n, k }, &w, &error));
          g_autofree float *want = g_new (float, k);
          g_autofree float *got = g_new (float, k);
          for (int64_t r = 0; r < n; r++)
            {
              const float *x = (const float *) w.data + r * k;
              expected_row (x, k, bits, want);
              bn_tensor_row_f32 (l->t, r, got);
              for (int64_t j = 0; j < k; j++)
                if (got[j] != want[j])
                  g_error ("%s [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]: w %.9g packs "
                           "as %.9g, the rule gives %.9g", l->name, r, j, x[j], got[j], want[j]);
              checked += k;
              if (i == 0 && r == 0)
                for (int j = 64; j < 96; j++)
                  {
                    /* ±0.46875 / 0.9375 = ±0.5 rounds to the even 0. */
                    g_assert_cmpfloat (got[j], ==, bits == 1 ? (j % 2 ? -0.9375f : 0.9375f) : 0.0f);
                    ties++;
                  }
              if (i == 0 && r == 1)
                for (int j = 0; j < 128; j++)
                  g_assert_cmpfloat (got[j], ==, 0.0f);
            }
          g_free ((char *) l->name);
        }
      g_assert_cmpint (ties, ==, 32);
      g_test_message ("bits %d: %" G_GINT64_FORMAT " weights of %u linears as the rule gives",
                      bits, checked, lin->len);
      /* Dense tensors are the checkpoint's values rounded to bf16. */
      BnTensor x_emb;
      g_assert_true (bn_safetensors_view (src, "x_embedder.weight", 1u << BN_DTYPE_F32, 2,
                                          NULL, &x_emb, &error));
      g_autofree float *row = g_new (float, x_emb.shape[1]);
      bn_tensor_row_f32 (&model->dit->img_in, 3, row);
      for (int64_t j = 0; j < x_emb.shape[1]; j++)
        g_assert_cmpfloat (row[j], ==,
                           bn_bf16_to_f32 (bn_f32_to_bf16 (((const float *) x_emb.data)[3 * x_emb.shape[1] + j])));
      bonsai_model_unref (model);
    }
  bn_safetensors_free (src);
  for (int bits = 1; bits <= 2; bits++)
    g_free (mlx[bits]);
}

/* A checkpoint tensor the layout does not have is named, not dropped. */
static void
test_refusals (void)
{
  g_autofree char *ckpt = fixture_path ("ckpt-tiny");
  g_autofree char *te = fixture_path ("tiny-mlx-2");
  if (!g_file_test (ckpt, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("needs test_packed's checkpoint");
      return;
    }
  GError *error = NULL;
  g_autofree char *out = fixture_path ("export-bad");
  g_assert_false (bn_release_export (ckpt, te, 3, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  g_autofree char *none = fixture_path ("nothing-here");
  g_assert_false (bn_release_export (ckpt, none, 1, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_clear_error (&error);
  /* An extra tensor. */
  g_autofree char *tw = g_build_filename (ckpt, "transformer.safetensors", NULL);
  BnSafetensors *st = bn_safetensors_open (tw, &error);
  g_assert_no_error (error);
  BnStWriter *w = bn_st_writer_new ();
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      g_assert_true (bn_st_writer_add (w, t->name, t->dtype, t->ndim, t->shape, t->data, &error));
    }
  const float extra[2] = { 1, 2 };
  g_assert_true (bn_st_writer_add (w, "guidance_in.weight", BN_DTYPE_F32, 1,
                                   (const int64_t[1]) { 2 }, extra, &error));
  g_autofree char *bad_dir = fixture_path ("ckpt-extra");
  g_mkdir_with_parents (bad_dir, 0755);
  g_autofree char *bad_tw = g_build_filename (bad_dir, "transformer.safetensors", NULL);
  g_assert_true (bn_st_writer_write (w, bad_tw, &error));
  bn_st_writer_free (w);
  bn_safetensors_free (st);
  const char *copies[] = { "transformer_config.json", "vae.safetensors", "vae_config.json" };
  for (size_t i = 0; i < G_N_ELEMENTS (copies); i++)
    {
      g_autofree char *a = g_build_filename (ckpt, copies[i], NULL);
      g_autofree char *b = g_build_filename (bad_dir, copies[i], NULL);
      copy_file (a, b);
    }
  g_assert_false (bn_release_export (bad_dir, te, 2, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "guidance_in.weight"));
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  fixture_init ("test-export");
  g_test_add_func ("/export/bits16-refs", test_bits16);
  g_test_add_func ("/export/packed", test_packed);
  g_test_add_func ("/export/refusals", test_refusals);
  int rc = g_test_run ();
  fixture_done ();
  return rc;
}
