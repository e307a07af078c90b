/* test-dit.c — the FLUX.2 transformer: parity with the reference sets
 * (flux2-mini, flux2-realdims), MLX packs against their dequantised twins,
 * BFL names against diffusers names, bad files, cancel and thread count. */
#include "flux2_dit.h"

#include "bonsai/bonsai.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define TOL 1e-4

/* ---- reference sets ------------------------------------------------------ */

typedef struct {
  char *dir;
  BnFlux2Dit *dit;
  BnSafetensors *io;
  BnFlux2Input in;         /* x, ids, ctx of the set; n_out = n_img */
  int64_t *img_ids, *txt_ids;
  /* Editing: x then x_ref, img_ids then ref_ids. */
  float *x_edit;
  int64_t *ids_edit;
  int64_t n_edit;
} RefSet;

static const float *
io_f32 (const BnSafetensors *io, const char *name, int64_t rows, int64_t cols,
        int64_t *rows_out)
{
  int64_t shape[2] = { rows, cols };
  BnTensor t;
  GError *error = NULL;
  g_assert_true (bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, 2, shape, &t, &error));
  g_assert_no_error (error);
  if (rows_out)
    *rows_out = t.shape[0];
  return t.data;
}

static int64_t *
io_ids (const BnSafetensors *io, const char *name, int64_t rows, int n_axes)
{
  const float *v = io_f32 (io, name, rows, n_axes, NULL);
  int64_t *ids = g_new (int64_t, rows * n_axes);
  for (int64_t i = 0; i < rows * n_axes; i++)
    ids[i] = (int64_t) v[i];
  return ids;
}

static float
io_scalar (const BnSafetensors *io, const char *name)
{
  int64_t one = 1;
  BnTensor t;
  GError *error = NULL;
  g_assert_true (bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, 1, &one, &t, &error));
  return *(const float *) t.data;
}

/* Opens $BONSAI_REFS/<name>; FALSE (test skipped) without the refs. */
static gboolean
ref_open (const char *name, RefSet *r)
{
  memset (r, 0, sizeof *r);
  const char *refs = g_getenv ("BONSAI_REFS");
  if (!refs)
    {
      g_test_skip ("BONSAI_REFS is not set");
      return FALSE;
    }
  r->dir = g_build_filename (refs, name, NULL);
  g_autofree char *weights = g_build_filename (r->dir, "dit_weights.safetensors", NULL);
  g_autofree char *config = g_build_filename (r->dir, "dit_config.json", NULL);
  g_autofree char *io = g_build_filename (r->dir, "dit_io.safetensors", NULL);
  GError *error = NULL;
  r->dit = bn_flux2_dit_load (weights, config, &error);
  g_assert_no_error (error);
  r->io = bn_safetensors_open (io, &error);
  g_assert_no_error (error);
  const BnFlux2Config *c = &r->dit->cfg;
  BnFlux2Input *in = &r->in;
  in->x = io_f32 (r->io, "x", -1, c->in_channels, &in->n_img);
  in->ctx = io_f32 (r->io, "ctx", -1, c->context_dim, &in->n_txt);
  in->img_ids = r->img_ids = io_ids (r->io, "img_ids", in->n_img, c->n_axes);
  in->txt_ids = r->txt_ids = io_ids (r->io, "txt_ids", in->n_txt, c->n_axes);
  in->n_out = in->n_img;

  int64_t n_ref;
  const float *x_ref = io_f32 (r->io, "x_ref", -1, c->in_channels, &n_ref);
  g_autofree int64_t *ref_ids = io_ids (r->io, "ref_ids", n_ref, c->n_axes);
  r->n_edit = in->n_img + n_ref;
  r->x_edit = g_new (float, r->n_edit * c->in_channels);
  r->ids_edit = g_new (int64_t, r->n_edit * c->n_axes);
  memcpy (r->x_edit, in->x, (size_t) (in->n_img * c->in_channels) * sizeof (float));
  memcpy (r->x_edit + in->n_img * c->in_channels, x_ref,
          (size_t) (n_ref * c->in_channels) * sizeof (float));
  memcpy (r->ids_edit, in->img_ids, (size_t) (in->n_img * c->n_axes) * sizeof (int64_t));
  memcpy (r->ids_edit + in->n_img * c->n_axes, ref_ids,
          (size_t) (n_ref * c->n_axes) * sizeof (int64_t));
  return TRUE;
}

static void
ref_close (RefSet *r)
{
  bn_flux2_dit_free (r->dit);
  bn_safetensors_free (r->io);
  g_free (r->img_ids);
  g_free (r->txt_ids);
  g_free (r->x_edit);
  g_free (r->ids_edit);
  g_free (r->dir);
}

/* The editing input of the set: image then reference tokens. */
static BnFlux2Input
edit_input (const RefSet *r, float t)
{
  BnFlux2Input in = r->in;
  in.x = r->x_edit;
  in.img_ids = r->ids_edit;
  in.n_img = in.n_out = r->n_edit;
  in.t = t;
  return in;
}

static float *
forward (const BnFlux2Dit *dit, BnThreadPool *pool, const BnFlux2Input *in)
{
  float *out = g_new (float, in->n_out * dit->cfg.out_channels);
  GError *error = NULL;
  g_assert_true (bn_flux2_dit_forward (dit, pool, in, out, &error));
  g_assert_no_error (error);
  return out;
}

/* max|got − want| / max(1, max|want|), refusing non-finite output. */
static double
rel_error (const float *got, const float *want, size_t n)
{
  double max_abs = 0, max_ref = 0;
  for (size_t i = 0; i < n; i++)
    {
      g_assert_true (isfinite (got[i]));
      max_abs = fmax (max_abs, fabs ((double) got[i] - want[i]));
      max_ref = fmax (max_ref, fabs ((double) want[i]));
    }
  return max_abs / fmax (1.0, max_ref);
}

static void
check_against (const RefSet *r, BnThreadPool *pool, const BnFlux2Input *in,
               const char *name)
{
  g_autofree float *got = forward (r->dit, pool, in);
  const float *want = io_f32 (r->io, name, in->n_out, r->dit->cfg.out_channels, NULL);
  double err = rel_error (got, want, (size_t) (in->n_out * r->dit->cfg.out_channels));
  g_test_message ("%s %s: max_rel %.3e", r->dir, name, err);
  g_assert_cmpfloat (err, <=, TOL);
}

static void
test_refs (gconstpointer data)
{
  RefSet r;
  if (!ref_open (data, &r))
    return;
  GError *error = NULL;
  BnThreadPool *pool = bn_thread_pool_new (2, &error);
  g_assert_no_error (error);
  int checked = 0;
  for (int k = 0;; k++)
    {
      g_autofree char *tname = g_strdup_printf ("t%d", k);
      g_autofree char *oname = g_strdup_printf ("out_t%d", k);
      if (!bn_safetensors_find (r.io, oname))
        break;
      r.in.t = io_scalar (r.io, tname);
      check_against (&r, pool, &r.in, oname);
      checked++;
    }
  g_assert_cmpint (checked, >=, 2);
  BnFlux2Input in = edit_input (&r, io_scalar (r.io, "t_edit"));
  check_against (&r, pool, &in, "out_edit");
  bn_thread_pool_free (pool);
  ref_close (&r);
}

/* Chunks of any length, splitting the text, image and reference tokens
 * anywhere, give the same bits as one chunk holding every token. */
static void
test_chunks (void)
{
  RefSet r;
  if (!ref_open ("flux2-realdims", &r))
    return;
  BnFlux2Input in = edit_input (&r, 0.6f);
  in.chunk_rows = in.n_txt + in.n_img;
  g_autofree float *whole = forward (r.dit, NULL, &in);
  size_t bytes = (size_t) (in.n_out * r.dit->cfg.out_channels) * sizeof (float);
  static const int64_t chunks[] = { 1, 5, 13, G_MAXINT64 };
  for (size_t i = 0; i < G_N_ELEMENTS (chunks); i++)
    {
      in.chunk_rows = chunks[i];
      g_autofree float *got = forward (r.dit, NULL, &in);
      g_assert_cmpmem (got, bytes, whole, bytes);
    }
  ref_close (&r);
}

/* Asking for the first n_out tokens gives exactly those rows of the whole. */
static void
test_n_out (void)
{
  RefSet r;
  if (!ref_open ("flux2-mini", &r))
    return;
  BnFlux2Input in = edit_input (&r, 0.5f);
  g_autofree float *all = forward (r.dit, NULL, &in);
  in.n_out = r.in.n_img;
  g_autofree float *first = forward (r.dit, NULL, &in);
  g_assert_cmpmem (first, in.n_out * r.dit->cfg.out_channels * sizeof (float), all,
                   in.n_out * r.dit->cfg.out_channels * sizeof (float));
  ref_close (&r);
}

/* ---- writing test models ------------------------------------------------- */

/* A fresh folder under BONSAI_TEST_TMP (or the system's), emptied and
 * removed by tmp_remove. */
static char *
tmp_folder (void)
{
  const char *base = g_getenv ("BONSAI_TEST_TMP");
  if (!base)
    base = g_get_tmp_dir ();
  g_assert_cmpint (g_mkdir_with_parents (base, 0700), ==, 0);
  char *dir = g_build_filename (base, "dit-XXXXXX", NULL);
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

/* A writer with the metadata config of `src` (NULL: none); buffers made
 * for it are kept in `keep` until written. */
typedef struct {
  BnStWriter *w;
  GPtrArray *keep;
} Out;

static Out
out_new (const BnSafetensors *src)
{
  Out o = { bn_st_writer_new (), g_ptr_array_new_with_free_func (g_free) };
  if (src)
    bn_st_writer_set_metadata (o.w, "config", bn_safetensors_metadata (src, "config"));
  return o;
}

static void
out_add (Out *o, const char *name, BnDType dtype, int ndim, const int64_t *shape,
         const void *data)
{
  GError *error = NULL;
  g_assert_true (bn_st_writer_add (o->w, name, dtype, ndim, shape, data, &error));
  g_assert_no_error (error);
}

static void
out_write (Out *o, const char *path)
{
  GError *error = NULL;
  g_assert_true (bn_st_writer_write (o->w, path, &error));
  g_assert_no_error (error);
  bn_st_writer_free (o->w);
  g_ptr_array_unref (o->keep);
}

static void
out_copy (Out *o, const BnStTensor *t, const char *name)
{
  out_add (o, name, t->dtype, t->ndim, t->shape, t->data);
}

static void
write_text (const char *dir, const char *name, const char *text)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  GError *error = NULL;
  g_assert_true (g_file_set_contents (p, text, -1, &error));
}

/* ---- MLX packs ----------------------------------------------------------- */

/* The block linears the release packs (all 2-D block tensors). */
static gboolean
is_block_linear (const BnStTensor *t)
{
  return t->ndim == 2 && (g_str_has_prefix (t->name, "transformer_blocks.")
                          || g_str_has_prefix (t->name, "single_transformer_blocks."));
}

/* Packs W [n, k] as the release does, group size 128 with bf16 scales:
 * ternary w ≈ s·(q − 1), binary w ≈ ±s/2. */
static void
pack (const BnStTensor *src, int bits, BnTensor *p)
{
  int64_t n = src->shape[0], k = src->shape[1];
  GError *error = NULL;
  g_assert_true (bn_tensor_init_packed (p, bits == 1 ? BN_DTYPE_Q1 : BN_DTYPE_Q2,
                                        n, k, 128, BN_DTYPE_BF16, &error));
  g_autofree float *row = g_new (float, k);
  size_t esz = bn_dtype_size (src->dtype);
  for (int64_t r = 0; r < n; r++)
    {
      bn_convert_to_f32 (src->dtype, (const char *) src->data + (size_t) (r * k) * esz,
                         row, (size_t) k);
      for (int64_t g = 0; g < k / 128; g++)
        {
          double amax = 1e-3, amean = 1e-3;
          for (int64_t i = g * 128; i < (g + 1) * 128; i++)
            {
              amax = fmax (amax, fabsf (row[i]));
              amean += fabsf (row[i]) / 128;
            }
          float s = bn_bf16_to_f32 (bn_f32_to_bf16 ((float) (bits == 1 ? 2 * amean : amax)));
          bn_packed_set_group (p, r, g, s, bits == 1 ? -s / 2 : -s);
          for (int64_t i = g * 128; i < (g + 1) * 128; i++)
            {
              long q = bits == 1 ? row[i] >= 0 : CLAMP (lrintf (row[i] / s) + 1, 0, 2);
              bn_packed_set_code (p, r, i, (unsigned) q);
            }
        }
    }
}

/* Writes the realdims model with its block linears packed (`packed_dir`,
 * with quantization_config.json) and, dequantised to f32, as a dense twin
 * (`dense_dir`). */
static void
write_packed_pair (const BnSafetensors *src, int bits, const char *packed_dir,
                   const char *dense_dir)
{
  Out po = out_new (src), dout = out_new (src);
  GPtrArray *packs = g_ptr_array_new ();
  for (guint i = 0; i < bn_safetensors_n_tensors (src); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (src, i);
      if (!is_block_linear (t))
        {
          out_copy (&po, t, t->name);
          out_copy (&dout, t, t->name);
          continue;
        }
      BnTensor *p = g_new0 (BnTensor, 1);
      pack (t, bits, p);
      g_ptr_array_add (packs, p);
      g_autofree char *prefix = g_strndup (t->name, strlen (t->name) - strlen (".weight"));
      GError *error = NULL;
      g_assert_true (bn_st_writer_add_packed (po.w, prefix, p, &error));
      float *dense = g_new (float, t->shape[0] * t->shape[1]);
      g_ptr_array_add (dout.keep, dense);
      for (int64_t r = 0; r < t->shape[0]; r++)
        bn_tensor_row_f32 (p, r, dense + r * t->shape[1]);
      out_add (&dout, t->name, BN_DTYPE_F32, 2, t->shape, dense);
    }
  g_autofree char *ppath = g_build_filename (packed_dir, "model.safetensors", NULL);
  g_autofree char *dpath = g_build_filename (dense_dir, "model.safetensors", NULL);
  out_write (&po, ppath);
  out_write (&dout, dpath);
  for (guint i = 0; i < packs->len; i++)
    {
      bn_tensor_clear (packs->pdata[i]);
      g_free (packs->pdata[i]);
    }
  g_ptr_array_unref (packs);
  write_text (packed_dir, "quantization_config.json",
              bits == 1 ? "{\"bits\": 1, \"group_size\": 128}"
                        : "{\"bits\": 2, \"group_size\": 128, \"solver\": \"ternary\"}");
}

/* The packed model runs the same forward as its dequantised dense twin. */
static void
test_packed (gconstpointer data)
{
  int bits = GPOINTER_TO_INT (data);
  RefSet r;
  if (!ref_open ("flux2-realdims", &r))
    return;
  g_autofree char *pdir = tmp_folder ();
  g_autofree char *ddir = tmp_folder ();
  write_packed_pair (r.dit->st, bits, pdir, ddir);
  GError *error = NULL;
  BnFlux2Dit *packed = bn_flux2_dit_load (pdir, NULL, &error);
  g_assert_no_error (error);
  BnFlux2Dit *dense = bn_flux2_dit_load (ddir, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (packed->singles[0].linear1.dtype, ==, bits == 1 ? BN_DTYPE_Q1 : BN_DTYPE_Q2);
  g_assert_cmpint (packed->doubles[0].img.qkv[0].dtype, ==, bits == 1 ? BN_DTYPE_Q1 : BN_DTYPE_Q2);
  g_assert_cmpint (packed->img_in.dtype, ==, BN_DTYPE_F16);
  g_assert_cmpint (dense->singles[0].linear1.dtype, ==, BN_DTYPE_F32);

  BnFlux2Input in = edit_input (&r, 0.75f);
  g_autofree float *got = forward (packed, NULL, &in);
  g_autofree float *want = forward (dense, NULL, &in);
  double err = rel_error (got, want, (size_t) (in.n_out * packed->cfg.out_channels));
  g_test_message ("%d-bit pack vs dequantised dense: max_rel %.3e", bits, err);
  g_assert_cmpfloat (err, <=, TOL);

  bn_flux2_dit_free (packed);
  bn_flux2_dit_free (dense);
  tmp_remove (pdir);
  tmp_remove (ddir);
  ref_close (&r);
}

/* ---- BFL names ----------------------------------------------------------- */

static const struct {
  const char *diffusers, *bfl;
} renames[] = {
  { "x_embedder.weight", "img_in.weight" },
  { "context_embedder.weight", "txt_in.weight" },
  { "time_guidance_embed.timestep_embedder.linear_1.weight", "time_in.in_layer.weight" },
  { "time_guidance_embed.timestep_embedder.linear_2.weight", "time_in.out_layer.weight" },
  { "double_stream_modulation_img.linear.weight", "double_stream_modulation_img.lin.weight" },
  { "double_stream_modulation_txt.linear.weight", "double_stream_modulation_txt.lin.weight" },
  { "single_stream_modulation.linear.weight", "single_stream_modulation.lin.weight" },
  { "proj_out.weight", "final_layer.linear.weight" },
  /* Per double block %d (stream tensors: img, then txt). */
  { "transformer_blocks.%d.attn.norm_q.weight", "double_blocks.%d.img_attn.norm.query_norm.scale" },
  { "transformer_blocks.%d.attn.norm_k.weight", "double_blocks.%d.img_attn.norm.key_norm.scale" },
  { "transformer_blocks.%d.attn.to_out.0.weight", "double_blocks.%d.img_attn.proj.weight" },
  { "transformer_blocks.%d.ff.linear_in.weight", "double_blocks.%d.img_mlp.0.weight" },
  { "transformer_blocks.%d.ff.linear_out.weight", "double_blocks.%d.img_mlp.2.weight" },
  { "transformer_blocks.%d.attn.norm_added_q.weight", "double_blocks.%d.txt_attn.norm.query_norm.scale" },
  { "transformer_blocks.%d.attn.norm_added_k.weight", "double_blocks.%d.txt_attn.norm.key_norm.scale" },
  { "transformer_blocks.%d.attn.to_add_out.weight", "double_blocks.%d.txt_attn.proj.weight" },
  { "transformer_blocks.%d.ff_context.linear_in.weight", "double_blocks.%d.txt_mlp.0.weight" },
  { "transformer_blocks.%d.ff_context.linear_out.weight", "double_blocks.%d.txt_mlp.2.weight" },
  /* Per single block %d. */
  { "single_transformer_blocks.%d.attn.to_qkv_mlp_proj.weight", "single_blocks.%d.linear1.weight" },
  { "single_transformer_blocks.%d.attn.to_out.weight", "single_blocks.%d.linear2.weight" },
  { "single_transformer_blocks.%d.attn.norm_q.weight", "single_blocks.%d.norm.query_norm.scale" },
  { "single_transformer_blocks.%d.attn.norm_k.weight", "single_blocks.%d.norm.key_norm.scale" },
};

static const BnStTensor *
src_tensor (const BnSafetensors *src, const char *fmt, int block)
{
  g_autofree char *name = g_strdup_printf (fmt, block);
  const BnStTensor *t = bn_safetensors_find (src, name);
  g_assert_nonnull (t);
  return t;
}

/* Concatenates the rows of f32 tensors `fmts` (block `block`) as `name`. */
static void
out_concat_rows (Out *o, const BnSafetensors *src, const char *const *fmts,
                 int n, int block, const char *name)
{
  int64_t rows = 0, cols = 0;
  for (int i = 0; i < n; i++)
    {
      const BnStTensor *t = src_tensor (src, fmts[i], block);
      g_assert_cmpint (t->dtype, ==, BN_DTYPE_F32);
      rows += t->shape[0];
      cols = t->shape[1];
    }
  float *buf = g_new (float, rows * cols);
  g_ptr_array_add (o->keep, buf);
  size_t at = 0;
  for (int i = 0; i < n; i++)
    {
      const BnStTensor *t = src_tensor (src, fmts[i], block);
      memcpy ((char *) buf + at, t->data, t->nbytes);
      at += t->nbytes;
    }
  int64_t shape[2] = { rows, cols };
  out_add (o, name, BN_DTYPE_F32, 2, shape, buf);
}

/* The mini model (f32, diffusers names) under BFL names: q, k, v fused and
 * the final modulation's halves swapped to shift, scale. */
static void
write_bfl (const BnSafetensors *src, const BnFlux2Config *c, const char *path)
{
  Out o = out_new (src);
  for (size_t i = 0; i < G_N_ELEMENTS (renames); i++)
    {
      gboolean per_block = strstr (renames[i].diffusers, "%d") != NULL;
      gboolean single = g_str_has_prefix (renames[i].diffusers, "single_transformer");
      int n = !per_block ? 1 : single ? c->num_single_layers : c->num_layers;
      for (int b = 0; b < n; b++)
        {
          g_autofree char *name = g_strdup_printf (renames[i].bfl, b);
          out_copy (&o, src_tensor (src, renames[i].diffusers, b), name);
        }
    }
  static const char *const img_qkv[] = { "transformer_blocks.%d.attn.to_q.weight",
                                         "transformer_blocks.%d.attn.to_k.weight",
                                         "transformer_blocks.%d.attn.to_v.weight" };
  static const char *const txt_qkv[] = { "transformer_blocks.%d.attn.add_q_proj.weight",
                                         "transformer_blocks.%d.attn.add_k_proj.weight",
                                         "transformer_blocks.%d.attn.add_v_proj.weight" };
  for (int b = 0; b < c->num_layers; b++)
    {
      g_autofree char *img = g_strdup_printf ("double_blocks.%d.img_attn.qkv.weight", b);
      g_autofree char *txt = g_strdup_printf ("double_blocks.%d.txt_attn.qkv.weight", b);
      out_concat_rows (&o, src, img_qkv, 3, b, img);
      out_concat_rows (&o, src, txt_qkv, 3, b, txt);
    }
  /* diffusers: scale rows, then shift rows; BFL: shift, then scale. */
  static const char *const final_mod = "norm_out.linear.weight";
  const BnStTensor *fm = src_tensor (src, final_mod, 0);
  size_t half = fm->nbytes / 2;
  char *swapped = g_malloc (fm->nbytes);
  g_ptr_array_add (o.keep, swapped);
  memcpy (swapped, (const char *) fm->data + half, half);
  memcpy (swapped + half, fm->data, half);
  out_add (&o, "final_layer.adaLN_modulation.1.weight", fm->dtype, 2, fm->shape, swapped);
  out_write (&o, path);
}

static void
test_bfl_names (void)
{
  RefSet r;
  if (!ref_open ("flux2-mini", &r))
    return;
  g_autofree char *dir = tmp_folder ();
  g_autofree char *path = g_build_filename (dir, "flux-2-bfl.safetensors", NULL);
  write_bfl (r.dit->st, &r.dit->cfg, path);
  GError *error = NULL;
  BnFlux2Dit *bfl = bn_flux2_dit_load (path, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (bfl->final_shift_first);
  g_assert_cmpint (bfl->doubles[0].txt.n_qkv, ==, 1);

  BnFlux2Input in = edit_input (&r, 0.3f);
  g_autofree float *got = forward (bfl, NULL, &in);
  g_autofree float *want = forward (r.dit, NULL, &in);
  double err = rel_error (got, want, (size_t) (in.n_out * r.dit->cfg.out_channels));
  g_test_message ("BFL vs diffusers names: max_rel %.3e", err);
  g_assert_cmpfloat (err, <=, 1e-6);

  bn_flux2_dit_free (bfl);
  tmp_remove (dir);
  ref_close (&r);
}

/* ---- bad files and arguments -------------------------------------------- */

/* Copies the mini weights without `drop` and with `shorten` one row short,
 * loads them and returns the error. */
static GError *
load_damaged (const BnSafetensors *src, const char *drop, const char *shorten)
{
  g_autofree char *dir = tmp_folder ();
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  Out o = out_new (src);
  for (guint i = 0; i < bn_safetensors_n_tensors (src); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (src, i);
      if (drop && !strcmp (t->name, drop))
        continue;
      int64_t shape[BN_MAX_DIMS];
      memcpy (shape, t->shape, sizeof shape);
      if (shorten && !strcmp (t->name, shorten))
        shape[0]--;
      out_add (&o, t->name, t->dtype, t->ndim, shape, t->data);
    }
  out_write (&o, path);
  GError *error = NULL;
  BnFlux2Dit *dit = bn_flux2_dit_load (path, NULL, &error);
  g_assert_null (dit);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  tmp_remove (dir);
  return error;
}

static void
test_bad_weights (void)
{
  RefSet r;
  if (!ref_open ("flux2-mini", &r))
    return;
  const char *missing = "transformer_blocks.1.attn.to_k.weight";
  GError *error = load_damaged (r.dit->st, missing, NULL);
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, missing));
  g_clear_error (&error);

  const char *misshapen = "single_transformer_blocks.1.attn.to_qkv_mlp_proj.weight";
  error = load_damaged (r.dit->st, NULL, misshapen);
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, misshapen));
  g_clear_error (&error);

  const char *norm = "transformer_blocks.0.attn.norm_added_k.weight";
  error = load_damaged (r.dit->st, NULL, norm);
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, norm));
  g_clear_error (&error);

  error = load_damaged (r.dit->st, "x_embedder.weight", NULL);
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "img_in.weight"));
  g_clear_error (&error);
  ref_close (&r);
}

static void
expect_config_error (const char *json, const char *needle)
{
  BnFlux2Config cfg;
  GError *error = NULL;
  g_assert_false (bn_flux2_config_parse (json, -1, "test.json", &cfg, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "test.json"));
  g_assert_nonnull (strstr (error->message, needle));
  g_error_free (error);
}

#define BASE "\"in_channels\": 32, \"num_layers\": 1, \"num_single_layers\": 1, " \
             "\"attention_head_dim\": 32, \"num_attention_heads\": 2, "           \
             "\"joint_attention_dim\": 24, \"guidance_embeds\": false"

static void
test_config (void)
{
  BnFlux2Config cfg;
  GError *error = NULL;
  g_assert_true (bn_flux2_config_parse ("{" BASE ", \"axes_dims_rope\": [8, 8, 8, 8], "
                                        "\"mlp_ratio\": 2.5, \"patch_size\": 2}",
                                        -1, "test.json", &cfg, &error));
  g_assert_no_error (error);
  g_assert_cmpint (cfg.dim, ==, 64);
  g_assert_cmpint (cfg.mlp_hidden, ==, 160);
  g_assert_cmpint (cfg.out_channels, ==, 4 * 32);
  g_assert_cmpint (cfg.time_channels, ==, 256);
  g_assert_cmpfloat (cfg.rope_theta, ==, 2000.0);
  g_assert_cmpfloat (cfg.eps, ==, 1e-6f);
  /* diffusers writes defaults as null. */
  g_assert_true (bn_flux2_config_parse ("{" BASE ", \"axes_dims_rope\": [16, 16], "
                                        "\"out_channels\": null, \"eps\": null, "
                                        "\"_class_name\": \"Flux2Transformer2DModel\"}",
                                        -1, "test.json", &cfg, &error));
  g_assert_no_error (error);
  g_assert_cmpint (cfg.out_channels, ==, 32);
  g_assert_cmpint (cfg.n_axes, ==, 2);
  g_assert_cmpfloat (cfg.eps, ==, 1e-6f);

  expect_config_error ("{" BASE "}", "axes_dims_rope"); /* default 4 × 32 ≠ 32 */
  expect_config_error ("{" BASE ", \"axes_dims_rope\": [8, 8, 8, 7]}", "axes_dims_rope");
  expect_config_error ("{\"in_channels\": 32}", "num_layers");
  expect_config_error ("{" BASE ", \"axes_dims_rope\": [32], \"eps\": -1}", "eps");
  expect_config_error ("{" BASE ", \"axes_dims_rope\": [32], \"guidance_embeds\": true}", "guidance");
  expect_config_error ("{" BASE ", \"axes_dims_rope\": [32], \"num_attention_heads\": \"2\"}",
                       "num_attention_heads");
  expect_config_error ("[1, 2]", "object");
  expect_config_error ("{\"in_channels\": ", "JSON");

  BnQuantSpec q;
  g_assert_true (bn_flux2_quant_parse ("{\"bits\": 2, \"group_size\": 128, \"solver\": "
                                       "\"ternary\", \"skip_patterns\": []}",
                                       -1, "q.json", &q, &error));
  g_assert_true (q.bits == 2 && q.group_size == 128 && q.ternary);
  g_assert_false (bn_flux2_quant_parse ("{\"bits\": 3, \"group_size\": 128}", -1,
                                        "q.json", &q, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_clear_error (&error);

  /* A weights file without any config. */
  RefSet r;
  if (!ref_open ("flux2-mini", &r))
    return;
  g_autofree char *dir = tmp_folder ();
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  Out o = out_new (NULL);
  for (guint i = 0; i < bn_safetensors_n_tensors (r.dit->st); i++)
    out_copy (&o, bn_safetensors_nth (r.dit->st, i), bn_safetensors_nth (r.dit->st, i)->name);
  out_write (&o, path);
  g_assert_null (bn_flux2_dit_load (path, NULL, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "config"));
  g_clear_error (&error);
  /* ... and with config.json beside it. */
  g_autofree char *cfg_path = g_build_filename (r.dir, "dit_config.json", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (cfg_path, &text, NULL, NULL));
  write_text (dir, "config.json", text);
  BnFlux2Dit *dit = bn_flux2_dit_load (path, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (dit->cfg.num_single_layers, ==, r.dit->cfg.num_single_layers);
  bn_flux2_dit_free (dit);
  tmp_remove (dir);
  ref_close (&r);
}

static void
test_bad_input (void)
{
  RefSet r;
  if (!ref_open ("flux2-mini", &r))
    return;
  float out[16 * 32];
  GError *error = NULL;
  BnFlux2Input in = r.in;
  in.n_out = in.n_img + 1;
  g_assert_false (bn_flux2_dit_forward (r.dit, NULL, &in, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  in = r.in;
  in.ctx = NULL;
  g_assert_false (bn_flux2_dit_forward (r.dit, NULL, &in, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  in = r.in;
  in.chunk_rows = -1;
  g_assert_false (bn_flux2_dit_forward (r.dit, NULL, &in, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  in = r.in;
  in.t = NAN;
  g_assert_false (bn_flux2_dit_forward (r.dit, NULL, &in, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  ref_close (&r);
}

/* ---- cancel, progress, threads, memory ----------------------------------- */

typedef struct {
  gint cancel;
  int calls, last_done, total;
  int cancel_after;
} Progress;

static void
on_progress (void *data, int done, int total)
{
  Progress *p = data;
  p->calls++;
  p->last_done = done;
  p->total = total;
  if (done == p->cancel_after)
    g_atomic_int_set (&p->cancel, 1);
}

static void
test_cancel (void)
{
  RefSet r;
  if (!ref_open ("flux2-mini", &r))
    return;
  int blocks = r.dit->cfg.num_layers + r.dit->cfg.num_single_layers;
  float out[12 * 32];
  GError *error = NULL;

  Progress p = { 0, 0, 0, 0, -1 };
  BnFlux2Input in = r.in;
  in.cancel = &p.cancel;
  in.progress = on_progress;
  in.progress_data = &p;
  g_assert_true (bn_flux2_dit_forward (r.dit, NULL, &in, out, &error));
  g_assert_cmpint (p.calls, ==, blocks);
  g_assert_cmpint (p.last_done, ==, blocks);
  g_assert_cmpint (p.total, ==, blocks);

  p = (Progress) { 0, 0, 0, 0, 1 };
  g_assert_false (bn_flux2_dit_forward (r.dit, NULL, &in, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
  g_assert_cmpint (p.calls, ==, 1);
  g_clear_error (&error);

  p = (Progress) { 1, 0, 0, 0, -1 };
  g_assert_false (bn_flux2_dit_forward (r.dit, NULL, &in, out, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
  g_assert_cmpint (p.calls, ==, 0);
  g_clear_error (&error);
  ref_close (&r);
}

static void
test_threads (void)
{
  RefSet r;
  if (!ref_open ("flux2-realdims", &r))
    return;
  GError *error = NULL;
  BnThreadPool *one = bn_thread_pool_new (1, &error);
  BnThreadPool *two = bn_thread_pool_new (2, &error);
  g_assert_no_error (error);
  BnFlux2Input in = edit_input (&r, 0.5f);
  g_autofree float *a = forward (r.dit, one, &in);
  g_autofree float *b = forward (r.dit, two, &in);
  g_autofree float *c = forward (r.dit, NULL, &in);
  size_t bytes = (size_t) (in.n_out * r.dit->cfg.out_channels) * sizeof (float);
  g_assert_cmpmem (a, bytes, b, bytes);
  g_assert_cmpmem (a, bytes, c, bytes);
  bn_thread_pool_free (one);
  bn_thread_pool_free (two);
  ref_close (&r);
}

/* The activation workspace of klein 4B at 512² (512 text + 1024 image
 * tokens, 512-token chunks: 171 MB) leaves room in the ~1.2 GB budget
 * beside the 1-bit weights (whose once-per-forward pages are dropped). */
static void
test_workspace (void)
{
  BnFlux2Config klein;
  GError *error = NULL;
  g_assert_true (bn_flux2_config_parse (
    "{\"in_channels\": 128, \"num_layers\": 5, \"num_single_layers\": 20, "
    "\"attention_head_dim\": 128, \"num_attention_heads\": 24, "
    "\"joint_attention_dim\": 7680, \"guidance_embeds\": false}",
    -1, "klein", &klein, &error));
  size_t s512 = bn_flux2_workspace_bytes (&klein, 512 + 1024, 0);
  size_t s1024 = bn_flux2_workspace_bytes (&klein, 512 + 4096, 0);
  g_test_message ("klein workspace: %.1f MB at 512x512, %.1f MB at 1024x1024",
                  s512 / 1e6, s1024 / 1e6);
  g_assert_cmpuint (s512, >, 0);
  g_assert_cmpuint (s512, <, 180000000);
  g_assert_cmpuint (s1024, <, 3 * s512 + 20000000);
  g_assert_cmpuint (bn_flux2_workspace_bytes (&klein, 0, 0), ==, 0);
  g_assert_cmpuint (bn_flux2_workspace_bytes (&klein, G_MAXINT64, 0), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/dit/refs/mini", "flux2-mini", test_refs);
  g_test_add_data_func ("/dit/refs/realdims", "flux2-realdims", test_refs);
  g_test_add_func ("/dit/chunks", test_chunks);
  g_test_add_func ("/dit/n-out", test_n_out);
  g_test_add_data_func ("/dit/packed/ternary", GINT_TO_POINTER (2), test_packed);
  g_test_add_data_func ("/dit/packed/binary", GINT_TO_POINTER (1), test_packed);
  g_test_add_func ("/dit/bfl-names", test_bfl_names);
  g_test_add_func ("/dit/bad-weights", test_bad_weights);
  g_test_add_func ("/dit/config", test_config);
  g_test_add_func ("/dit/bad-input", test_bad_input);
  g_test_add_func ("/dit/cancel", test_cancel);
  g_test_add_func ("/dit/threads", test_threads);
  g_test_add_func ("/dit/workspace", test_workspace);
  return g_test_run ();
}
