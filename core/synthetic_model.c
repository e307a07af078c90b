/* synthetic_model.c — writes models in the release's layout: the weights
 * (transformer, VAE, text encoder) and the folders they go in.  The same
 * code names, shapes and packs every tensor whether its values are random
 * (synthetic models) or read from a trained checkpoint (export-release),
 * so both give the same files. */
#include "synthetic_model.h"

#include "bonsai/bonsai.h"
#include "flux2_vae.h"
#include "synthetic_files.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define GROUP 128 /* the release packs one scale per 128 inputs */

void
bn_synth_spec_klein4b (BnSynthSpec *spec, int bits)
{
  memset (spec, 0, sizeof *spec);
  BnFlux2Config *c = &spec->dit;
  c->in_channels = 128;
  c->out_channels = 128;
  c->num_layers = 5;
  c->num_single_layers = 20;
  c->n_heads = 24;
  c->head_dim = 128;
  c->dim = 3072;
  c->context_dim = 7680;
  c->time_channels = 256;
  c->mlp_hidden = 9216;
  c->n_axes = 4;
  for (int a = 0; a < 4; a++)
    c->axes_dim[a] = 32;
  c->rope_theta = 2000;
  c->eps = 1e-6f;
  spec->bits = bits;
  spec->vae_levels = 4;
  const int ch[4] = { 128, 256, 512, 512 };
  memcpy (spec->vae_channels, ch, sizeof ch);
  spec->vae_layers_per_block = 2;
  spec->vae_latent_channels = 32;
  spec->vae_groups = 32;
  /* Qwen3-4B (§1.5). */
  spec->te_hidden = 2560;
  spec->te_layers = 36;
  spec->te_heads = 32;
  spec->te_kv_heads = 8;
  spec->te_head_dim = 128;
  spec->te_intermediate = 9728;
  spec->te_vocab = 151936;
  spec->te_group = 64; /* INFERRED for the MLX text encoder (§1.5) */
}

void
bn_synth_spec_tiny (BnSynthSpec *spec, int bits)
{
  bn_synth_spec_klein4b (spec, bits);
  BnFlux2Config *c = &spec->dit;
  c->in_channels = c->out_channels = 32;
  c->num_layers = 1;
  c->num_single_layers = 1;
  c->n_heads = 2;
  c->head_dim = 64;
  c->dim = 128;
  c->mlp_hidden = 384;
  for (int a = 0; a < 4; a++)
    c->axes_dim[a] = 16;
  spec->vae_levels = 3;
  const int ch[3] = { 16, 32, 32 };
  memcpy (spec->vae_channels, ch, sizeof ch);
  spec->vae_layers_per_block = 1;
  spec->vae_latent_channels = 8;
  spec->vae_groups = 8;
  /* Layers 28 and up would never run; the vocabulary stays the real one. */
  spec->te_hidden = 64;
  spec->te_layers = 28;
  spec->te_heads = 2;
  spec->te_kv_heads = 1;
  spec->te_head_dim = 32;
  spec->te_intermediate = 128;
  c->context_dim = 3 * spec->te_hidden;
}

void
bn_synth_spec_shapes (BnSynthSpec *spec, int bits)
{
  bn_synth_spec_tiny (spec, bits);
  BnFlux2Config *c = &spec->dit;
  c->num_layers = 2;
  c->num_single_layers = 4;
  spec->vae_levels = 4;
  const int ch[4] = { 16, 32, 64, 64 };
  memcpy (spec->vae_channels, ch, sizeof ch);
  /* A text encoder half as wide as tiny's: context_dim 96. */
  spec->te_hidden = 32;
  spec->te_head_dim = 16;
  spec->te_intermediate = 96;
  /* 32 and 96 wide: MLX's smallest group divides them, 64 would not. */
  spec->te_group = 32;
  c->context_dim = 3 * spec->te_hidden;
}

/* ---- random numbers ------------------------------------------------------ */

/* splitmix64: each tensor gets its own stream, seeded from its name, so a
 * tensor's values do not depend on the order of writing. */
static guint64
mix64 (guint64 *s)
{
  guint64 z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static guint64
stream_for (guint64 seed, const char *name)
{
  guint64 s = seed ^ ((guint64) g_str_hash (name) << 32) ^ strlen (name);
  mix64 (&s);
  return s;
}

/* Uniform in [-1, 1). */
static float
uniform (guint64 *s)
{
  return (float) ((double) (mix64 (s) >> 11) * 0x1.0p-52 - 1.0);
}

/* ---- the writer's state ---------------------------------------------------- */

typedef struct {
  BnStWriter *w;
  GPtrArray *buffers;  /* data handed to w, freed after writing */
  GPtrArray *packed;   /* BnTensor *, cleared after writing */
  GPtrArray *names;    /* every tensor name written, for an index */
  GPtrArray *linears;  /* the packed linears' names */
  guint64 bytes;       /* tensor data written */
  guint64 seed;
  /* Low-bit linears as the dense bf16 matrices they stand for, as the
   * unpacked release stores them. */
  gboolean dense;
  /* A trained checkpoint's float tensors, read instead of random values
   * (NULL: random); `taken` holds the names read, so that a tensor the
   * layout does not know is reported rather than silently dropped. */
  const BnSafetensors *src;
  GHashTable *taken;
  int bits;            /* packs of trained weights: 1 or 2 */
} Out;

static void
out_init (Out *o, guint64 seed, gboolean dense)
{
  memset (o, 0, sizeof *o);
  o->taken = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  o->w = bn_st_writer_new ();
  o->buffers = g_ptr_array_new_with_free_func (g_free);
  o->packed = g_ptr_array_new ();
  o->names = g_ptr_array_new_with_free_func (g_free);
  o->linears = g_ptr_array_new_with_free_func (g_free);
  o->seed = seed;
  o->dense = dense;
}

static void
out_clear (Out *o)
{
  bn_st_writer_free (o->w);
  g_ptr_array_unref (o->buffers);
  for (guint i = 0; i < o->packed->len; i++)
    {
      bn_tensor_clear (o->packed->pdata[i]);
      g_free (o->packed->pdata[i]);
    }
  g_ptr_array_unref (o->packed);
  g_ptr_array_unref (o->names);
  g_ptr_array_unref (o->linears);
  g_hash_table_unref (o->taken);
}

/* Tensor `name` of the checkpoint, of exactly `shape`, as new f32 values.
 * NULL with NOT_FOUND / FORMAT naming it, or with FORMAT for a value that
 * is not finite (a diverged training run must not become a release). */
static float *
src_f32 (Out *o, const char *name, int ndim, const int64_t *shape,
         GError **error)
{
  const guint floats = (1u << BN_DTYPE_F32) | (1u << BN_DTYPE_F16)
                       | (1u << BN_DTYPE_BF16);
  BnTensor t;
  if (!bn_safetensors_view (o->src, name, floats, ndim, shape, &t, error))
    {
      g_prefix_error (error, "%s: ", bn_safetensors_path (o->src));
      return NULL;
    }
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  float *f = g_try_new (float, MAX (n, 1));
  if (!f)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for %s", name);
      return NULL;
    }
  bn_convert_to_f32 (t.dtype, t.data, f, (size_t) n);
  for (int64_t i = 0; i < n; i++)
    if (!isfinite (f[i]))
      {
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                     "%s: %s[%" G_GINT64_FORMAT "] is %g", bn_safetensors_path (o->src),
                     name, i, f[i]);
        g_free (f);
        return NULL;
      }
  g_hash_table_add (o->taken, g_strdup (name));
  return f;
}

static gboolean
add_bf16 (Out *o, const char *name, int ndim, const int64_t *shape,
          uint16_t *data, int64_t n, GError **error)
{
  g_ptr_array_add (o->names, g_strdup (name));
  o->bytes += (guint64) n * 2;
  return bn_st_writer_add (o->w, name, BN_DTYPE_BF16, ndim, shape, data, error);
}

static uint16_t *
alloc_bf16 (Out *o, int64_t n, const char *name, GError **error)
{
  uint16_t *data = g_try_new (uint16_t, n);
  if (!data)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                 "no memory for %s", name);
  else
    g_ptr_array_add (o->buffers, data);
  return data;
}

/* A dense bf16 tensor: uniform values of standard deviation `std` around
 * `mean` (std = 0: every value is `mean`). */
static gboolean
add_dense (Out *o, const char *name, int ndim, const int64_t *shape,
           float mean, float std, GError **error)
{
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  uint16_t *data = alloc_bf16 (o, n, name, error);
  if (!data)
    return FALSE;
  if (o->src)
    {
      g_autofree float *f = src_f32 (o, name, ndim, shape, error);
      if (!f)
        return FALSE;
      for (int64_t i = 0; i < n; i++)
        data[i] = bn_f32_to_bf16 (f[i]);
      return add_bf16 (o, name, ndim, shape, data, n, error);
    }
  guint64 s = stream_for (o->seed, name);
  float half_width = std * sqrtf (3.0f);
  for (int64_t i = 0; i < n; i++)
    data[i] = bn_f32_to_bf16 (std > 0 ? mean + half_width * uniform (&s) : mean);
  return add_bf16 (o, name, ndim, shape, data, n, error);
}

static gboolean
add_matrix (Out *o, const char *name, int64_t n, int64_t k, float gain,
            GError **error)
{
  const int64_t shape[2] = { n, k };
  return add_dense (o, name, 2, shape, 0.0f, gain / sqrtf ((float) k), error);
}

static gboolean
add_vector (Out *o, const char *name, int64_t n, float value, GError **error)
{
  return add_dense (o, name, 1, &n, value, 0.0f, error);
}

static BnTensor *
new_packed (Out *o, BnDType dtype, int64_t n, int64_t k, int group,
            GError **error)
{
  BnTensor *t = g_new0 (BnTensor, 1);
  if (!bn_tensor_init_packed (t, dtype, n, k, group, BN_DTYPE_BF16, error))
    {
      g_free (t);
      return NULL;
    }
  g_ptr_array_add (o->packed, t);
  return t;
}

/* Hands the filled pack `t` of linear `prefix` to the writer: as MLX
 * stores it, or (o->dense) as prefix.weight in bf16, which holds every
 * value exactly when the scales and biases are powers of two apart (the
 * release's ternary and binary packs). */
static gboolean
emit_packed (Out *o, const char *prefix, BnTensor *t, GError **error)
{
  int64_t n = t->shape[0], k = t->shape[1];
  if (!o->dense)
    {
      static const char *const parts[] = { "weight", "scales", "biases" };
      for (size_t i = 0; i < G_N_ELEMENTS (parts); i++)
        g_ptr_array_add (o->names, g_strdup_printf ("%s.%s", prefix, parts[i]));
      g_ptr_array_add (o->linears, g_strdup (prefix));
      o->bytes += bn_tensor_total_bytes (t);
      return bn_st_writer_add_packed (o->w, prefix, t, error);
    }
  g_autofree char *name = g_strconcat (prefix, ".weight", NULL);
  uint16_t *data = alloc_bf16 (o, n * k, name, error);
  if (!data)
    return FALSE;
  g_autofree float *row = g_new (float, k);
  for (int64_t r = 0; r < n; r++)
    {
      bn_tensor_row_f32 (t, r, row);
      for (int64_t j = 0; j < k; j++)
        data[r * k + j] = bn_f32_to_bf16 (row[j]);
    }
  return add_bf16 (o, name, 2, (const int64_t[2]) { n, k }, data, n * k, error);
}

/* A low-bit linear `prefix` [n, k] as the release packs it.  Ternary codes
 * are 1 (weight 0) half the time and 0 or 2 a quarter each, so weights have
 * mean 0 and variance s²/2; binary weights are ±s/2.  Scales are chosen for
 * unit gain, with ±10 % spread between groups. */
/* The release's quantization of trained weights (synthetic_model.h): per
 * row and group of 128 inputs, a = mean |w| rounded to bf16; binary codes
 * w >= 0 with scale 2a and bias −a, ternary codes
 * clamp(round_half_even(w / a), −1, 1) + 1 with scale a and bias −a. */
static void
quantize (BnTensor *t, const float *w, int bits)
{
  int64_t n = t->shape[0], k = t->shape[1];
  t->ternary = bits == 2;
  for (int64_t r = 0; r < n; r++)
    for (int64_t g = 0; g < k / GROUP; g++)
      {
        const float *x = w + r * k + g * GROUP;
        double sum = 0;
        for (int i = 0; i < GROUP; i++)
          sum += fabs ((double) x[i]);
        float a = bn_bf16_to_f32 (bn_f32_to_bf16 ((float) (sum / GROUP)));
        for (int i = 0; i < GROUP; i++)
          {
            unsigned code;
            if (bits == 1)
              code = x[i] >= 0;
            else
              {
                /* rintf rounds half to even in the default rounding mode. */
                float q = a > 0 ? rintf (x[i] / a) : 0;
                code = (unsigned) (CLAMP (q, -1.0f, 1.0f) + 1);
              }
            bn_packed_set_code (t, r, g * GROUP + i, code);
          }
        bn_packed_set_group (t, r, g, bits == 1 ? 2 * a : a, -a);
      }
}

/* A trained linear `prefix` [n, k]: packed by `quantize`, or (o->dense)
 * its float weights as bf16 without quantization. */
static gboolean
add_trained_linear (Out *o, const char *prefix, int64_t n, int64_t k,
                    GError **error)
{
  g_autofree char *name = g_strconcat (prefix, ".weight", NULL);
  const int64_t shape[2] = { n, k };
  if (o->dense)
    return add_dense (o, name, 2, shape, 0, 0, error);
  g_autofree float *w = src_f32 (o, name, 2, shape, error);
  if (!w)
    return FALSE;
  BnTensor *t = new_packed (o, o->bits == 1 ? BN_DTYPE_Q1 : BN_DTYPE_Q2, n, k,
                            GROUP, error);
  if (!t)
    return FALSE;
  quantize (t, w, o->bits);
  return emit_packed (o, prefix, t, error);
}

static gboolean
add_packed (Out *o, const char *prefix, int64_t n, int64_t k, int bits,
            GError **error)
{
  if (o->src)
    return add_trained_linear (o, prefix, n, k, error);
  BnTensor *t = new_packed (o, bits == 1 ? BN_DTYPE_Q1 : BN_DTYPE_Q2, n, k, GROUP, error);
  if (!t)
    return FALSE;
  guint64 s = stream_for (o->seed, prefix);
  uint32_t *words = t->data;
  size_t n_words = bn_tensor_nbytes (t) / 4;
  for (size_t i = 0; i < n_words; i++)
    {
      guint64 r = mix64 (&s);
      uint32_t hi = (uint32_t) r, lo = (uint32_t) (r >> 32);
      if (bits == 1)
        words[i] = hi;
      else
        /* Per 2-bit slot: bit h of `hi` picks ±1 (code 2·l) or 0 (code 1). */
        words[i] = ((hi & lo & 0x55555555u) << 1) | (~hi & 0x55555555u);
    }
  t->ternary = bits == 2;
  float base = bits == 1 ? 2.0f / sqrtf ((float) k) : sqrtf (2.0f / (float) k);
  for (int64_t row = 0; row < n; row++)
    for (int64_t g = 0; g < k / GROUP; g++)
      {
        float scale = bn_bf16_to_f32 (bn_f32_to_bf16 (base * (1.0f + 0.1f * uniform (&s))));
        bn_packed_set_group (t, row, g, scale, bits == 1 ? -scale / 2 : -scale);
      }
  return emit_packed (o, prefix, t, error);
}

/* An MLX 4-bit affine pack of [n, k] with weights of standard deviation
 * `std`: codes uniform in 0..15 (σ = 4.61 steps) around the middle. */
static gboolean
add_q4 (Out *o, const char *prefix, int64_t n, int64_t k, int group, float std,
        GError **error)
{
  BnTensor *t = new_packed (o, BN_DTYPE_Q4, n, k, group, error);
  if (!t)
    return FALSE;
  guint64 s = stream_for (o->seed, prefix);
  uint32_t *words = t->data;
  size_t n_words = bn_tensor_nbytes (t) / 4;
  for (size_t i = 0; i < n_words; i++)
    words[i] = (uint32_t) mix64 (&s);
  for (int64_t row = 0; row < n; row++)
    for (int64_t g = 0; g < k / group; g++)
      {
        float scale = bn_bf16_to_f32 (bn_f32_to_bf16 (std / 4.61f * (1.0f + 0.1f * uniform (&s))));
        bn_packed_set_group (t, row, g, scale, -7.5f * scale);
      }
  return emit_packed (o, prefix, t, error);
}

/* ---- the transformer ------------------------------------------------------- */

static gboolean
add_transformer (Out *o, const BnSynthSpec *spec, GError **error)
{
  const BnFlux2Config *c = &spec->dit;
  int64_t d = c->dim, m = c->mlp_hidden, hd = c->head_dim;
  int b = spec->bits;
  gboolean ok = add_matrix (o, "x_embedder.weight", d, c->in_channels, 1, error)
    && add_matrix (o, "context_embedder.weight", d, c->context_dim, 1, error)
    && add_matrix (o, "time_guidance_embed.timestep_embedder.linear_1.weight", d,
                   c->time_channels, 1, error)
    && add_matrix (o, "time_guidance_embed.timestep_embedder.linear_2.weight", d,
                   d, 1, error)
    /* Small modulation keeps (1 + scale) and the gates near their trained
     * range. */
    && add_matrix (o, "double_stream_modulation_img.linear.weight", 6 * d, d, 0.5f, error)
    && add_matrix (o, "double_stream_modulation_txt.linear.weight", 6 * d, d, 0.5f, error)
    && add_matrix (o, "single_stream_modulation.linear.weight", 3 * d, d, 0.5f, error)
    && add_matrix (o, "norm_out.linear.weight", 2 * d, d, 0.5f, error)
    && add_matrix (o, "proj_out.weight", c->out_channels, d, 1, error);

  static const char *const attn_in[] = { "to_q", "to_k", "to_v", "add_q_proj",
                                         "add_k_proj", "add_v_proj" };
  static const char *const norms[] = { "norm_q", "norm_k", "norm_added_q",
                                       "norm_added_k" };
  for (int i = 0; ok && i < c->num_layers; i++)
    {
      char name[128];
      for (size_t j = 0; ok && j < G_N_ELEMENTS (attn_in); j++)
        {
          g_snprintf (name, sizeof name, "transformer_blocks.%d.attn.%s", i, attn_in[j]);
          ok = add_packed (o, name, d, d, b, error);
        }
      for (size_t j = 0; ok && j < G_N_ELEMENTS (norms); j++)
        {
          g_snprintf (name, sizeof name, "transformer_blocks.%d.attn.%s.weight", i, norms[j]);
          ok = add_vector (o, name, hd, 1.0f, error);
        }
      static const char *const outs[] = { "attn.to_out.0", "attn.to_add_out" };
      for (size_t j = 0; ok && j < 2; j++)
        {
          g_snprintf (name, sizeof name, "transformer_blocks.%d.%s", i, outs[j]);
          ok = add_packed (o, name, d, d, b, error);
        }
      static const char *const ffs[] = { "ff", "ff_context" };
      for (size_t j = 0; ok && j < 2; j++)
        {
          g_snprintf (name, sizeof name, "transformer_blocks.%d.%s.linear_in", i, ffs[j]);
          ok = add_packed (o, name, 2 * m, d, b, error);
          g_snprintf (name, sizeof name, "transformer_blocks.%d.%s.linear_out", i, ffs[j]);
          ok = ok && add_packed (o, name, d, m, b, error);
        }
    }
  for (int i = 0; ok && i < c->num_single_layers; i++)
    {
      char name[128];
      g_snprintf (name, sizeof name, "single_transformer_blocks.%d.attn.to_qkv_mlp_proj", i);
      ok = add_packed (o, name, 3 * d + 2 * m, d, b, error);
      g_snprintf (name, sizeof name, "single_transformer_blocks.%d.attn.to_out", i);
      ok = ok && add_packed (o, name, d, d + m, b, error);
      g_snprintf (name, sizeof name, "single_transformer_blocks.%d.attn.norm_q.weight", i);
      ok = ok && add_vector (o, name, hd, 1.0f, error);
      g_snprintf (name, sizeof name, "single_transformer_blocks.%d.attn.norm_k.weight", i);
      ok = ok && add_vector (o, name, hd, 1.0f, error);
    }
  return ok;
}

/* ---- the VAE --------------------------------------------------------------- */

static gboolean
add_conv (Out *o, const char *prefix, int64_t co, int64_t ci, int64_t kk,
          GError **error)
{
  g_autofree char *w = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *b = g_strconcat (prefix, ".bias", NULL);
  const int64_t shape[4] = { co, ci, kk, kk };
  return add_dense (o, w, 4, shape, 0.0f, 1.0f / sqrtf ((float) (ci * kk * kk)), error)
         && add_vector (o, b, co, 0.0f, error);
}

static gboolean
add_norm (Out *o, const char *prefix, int64_t c, GError **error)
{
  g_autofree char *w = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *b = g_strconcat (prefix, ".bias", NULL);
  return add_vector (o, w, c, 1.0f, error) && add_vector (o, b, c, 0.0f, error);
}

static gboolean
add_resnet (Out *o, const char *prefix, int64_t ci, int64_t co, GError **error)
{
  g_autofree char *n1 = g_strconcat (prefix, ".norm1", NULL);
  g_autofree char *c1 = g_strconcat (prefix, ".conv1", NULL);
  g_autofree char *n2 = g_strconcat (prefix, ".norm2", NULL);
  g_autofree char *c2 = g_strconcat (prefix, ".conv2", NULL);
  g_autofree char *sc = g_strconcat (prefix, ".conv_shortcut", NULL);
  return add_norm (o, n1, ci, error) && add_conv (o, c1, co, ci, 3, error)
         && add_norm (o, n2, co, error) && add_conv (o, c2, co, co, 3, error)
         && (ci == co || add_conv (o, sc, co, ci, 1, error));
}

/* Resnet, attention, resnet at the lowest resolution. */
static gboolean
add_mid (Out *o, const char *side, int64_t c, GError **error)
{
  char p[128];
  gboolean ok = TRUE;
  for (int r = 0; ok && r < 2; r++)
    {
      g_snprintf (p, sizeof p, "%s.mid_block.resnets.%d", side, r);
      ok = add_resnet (o, p, c, c, error);
    }
  g_snprintf (p, sizeof p, "%s.mid_block.attentions.0.group_norm", side);
  ok = ok && add_norm (o, p, c, error);
  static const char *const lin[] = { "to_q", "to_k", "to_v", "to_out.0" };
  for (size_t i = 0; ok && i < G_N_ELEMENTS (lin); i++)
    {
      g_snprintf (p, sizeof p, "%s.mid_block.attentions.0.%s.weight", side, lin[i]);
      ok = add_matrix (o, p, c, c, 1, error);
      g_snprintf (p, sizeof p, "%s.mid_block.attentions.0.%s.bias", side, lin[i]);
      ok = ok && add_vector (o, p, c, 0.0f, error);
    }
  return ok;
}

static gboolean
add_vae (Out *o, const BnSynthSpec *spec, GError **error)
{
  const int n = spec->vae_levels, *ch = spec->vae_channels;
  const int64_t lat = spec->vae_latent_channels, top = ch[n - 1];
  char p[128];
  gboolean ok = add_conv (o, "encoder.conv_in", ch[0], 3, 3, error);
  for (int i = 0; ok && i < n; i++)
    {
      for (int j = 0; ok && j < spec->vae_layers_per_block; j++)
        {
          g_snprintf (p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
          ok = add_resnet (o, p, j == 0 ? ch[i > 0 ? i - 1 : 0] : ch[i], ch[i], error);
        }
      g_snprintf (p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
      ok = ok && (i == n - 1 || add_conv (o, p, ch[i], ch[i], 3, error));
    }
  ok = ok && add_mid (o, "encoder", top, error)
       && add_norm (o, "encoder.conv_norm_out", top, error)
       && add_conv (o, "encoder.conv_out", 2 * lat, top, 3, error)
       && add_conv (o, "quant_conv", 2 * lat, 2 * lat, 1, error)
       && add_conv (o, "post_quant_conv", lat, lat, 1, error)
       && add_conv (o, "decoder.conv_in", top, lat, 3, error)
       && add_mid (o, "decoder", top, error);
  /* Up blocks run from the deepest level back to the first. */
  for (int i = 0; ok && i < n; i++)
    {
      int out = ch[n - 1 - i], prev = ch[n - 1 - (i > 0 ? i - 1 : 0)];
      for (int j = 0; ok && j < spec->vae_layers_per_block + 1; j++)
        {
          g_snprintf (p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
          ok = add_resnet (o, p, j == 0 ? prev : out, out, error);
        }
      g_snprintf (p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
      ok = ok && (i == n - 1 || add_conv (o, p, out, out, 3, error));
    }
  return ok && add_norm (o, "decoder.conv_norm_out", ch[0], error)
         && add_conv (o, "decoder.conv_out", 3, ch[0], 3, error)
         && add_vector (o, "bn.running_mean", 4 * lat, 0.0f, error)
         && add_vector (o, "bn.running_var", 4 * lat, 1.0f, error);
}

/* ---- the text encoder ------------------------------------------------------- */

/* One linear of the text encoder: an MLX 4-bit pack, or dense bf16. */
static gboolean
add_te_linear (Out *o, gboolean mlx, int group, const char *prefix, int64_t n,
               int64_t k, float gain, GError **error)
{
  if (mlx)
    return add_q4 (o, prefix, n, k, group, gain / sqrtf ((float) k), error);
  g_autofree char *name = g_strconcat (prefix, ".weight", NULL);
  return add_matrix (o, name, n, k, gain, error);
}

/* Layers [first, last) of Qwen3 in Hugging Face names, with the embedding
 * when first is 0 and the final norm when last is the end.  Branch outputs
 * have gain 0.5, so the residual stream grows slowly over 27 layers. */
static gboolean
add_te_layers (Out *o, const BnSynthSpec *spec, gboolean mlx, int first,
               int last, GError **error)
{
  const int64_t h = spec->te_hidden, hd = spec->te_head_dim, im = spec->te_intermediate;
  const int64_t qw = (int64_t) spec->te_heads * hd, kw = (int64_t) spec->te_kv_heads * hd;
  gboolean ok = TRUE;
  if (first == 0)
    ok = mlx ? add_q4 (o, "model.embed_tokens", spec->te_vocab, h, spec->te_group,
                       1.0f, error)
             : add_dense (o, "model.embed_tokens.weight", 2,
                          (const int64_t[2]) { spec->te_vocab, h }, 0.0f, 1.0f, error);
  for (int i = first; ok && i < last; i++)
    {
      const struct {
        const char *name;
        int64_t n, k;
        float gain;
      } lin[] = {
        { "self_attn.q_proj", qw, h, 1 }, { "self_attn.k_proj", kw, h, 1 },
        { "self_attn.v_proj", kw, h, 1 }, { "self_attn.o_proj", h, qw, 0.5f },
        { "mlp.gate_proj", im, h, 1 }, { "mlp.up_proj", im, h, 1 },
        { "mlp.down_proj", h, im, 0.5f },
      };
      char name[128];
      for (size_t j = 0; ok && j < G_N_ELEMENTS (lin); j++)
        {
          g_snprintf (name, sizeof name, "model.layers.%d.%s", i, lin[j].name);
          ok = add_te_linear (o, mlx, spec->te_group, name, lin[j].n, lin[j].k,
                              lin[j].gain, error);
        }
      const struct {
        const char *name;
        int64_t n;
      } norms[] = {
        { "input_layernorm", h }, { "post_attention_layernorm", h },
        { "self_attn.q_norm", hd }, { "self_attn.k_norm", hd },
      };
      for (size_t j = 0; ok && j < G_N_ELEMENTS (norms); j++)
        {
          g_snprintf (name, sizeof name, "model.layers.%d.%s.weight", i, norms[j].name);
          ok = add_vector (o, name, norms[j].n, 1.0f, error);
        }
    }
  if (ok && last == spec->te_layers)
    ok = add_vector (o, "model.norm.weight", h, 1.0f, error);
  return ok;
}

/* The text encoder folder: MLX writes one model.safetensors (and an index
 * naming it for every tensor); the unpacked release has BFL's two shards. */
static gboolean
write_text_encoder (const char *dir, const BnSynthSpec *spec, gboolean mlx,
                    guint64 seed, GError **error)
{
  static const char *const shard_names[2] = { "model-00001-of-00002.safetensors",
                                              "model-00002-of-00002.safetensors" };
  const int n_shards = mlx ? 1 : 2;
  const int split = mlx ? spec->te_layers : spec->te_layers / 2;
  Out o[2];
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  g_autoptr (GPtrArray) shards = g_ptr_array_new ();
  guint64 total = 0;
  gboolean ok = bn_synth_make_dir (dir, error);
  for (int s = 0; s < n_shards; s++)
    {
      out_init (&o[s], seed, FALSE);
      const char *file = mlx ? "model.safetensors" : shard_names[s];
      g_autofree char *path = g_build_filename (dir, file, NULL);
      ok = ok && add_te_layers (&o[s], spec, mlx, s ? split : 0, s ? spec->te_layers : split, error)
           && bn_st_writer_write (o[s].w, path, error);
      for (guint i = 0; ok && i < o[s].names->len; i++)
        {
          g_ptr_array_add (names, o[s].names->pdata[i]);
          g_ptr_array_add (shards, (gpointer) file);
        }
      total += o[s].bytes;
    }
  g_autofree char *index = ok ? bn_synth_weight_index (names, shards, total) : NULL;
  g_autofree char *config = bn_synth_text_encoder_config (spec, mlx ? BN_SYNTH_LAYOUT_MLX
                                                                    : BN_SYNTH_LAYOUT_UNPACKED,
                                                          spec->te_group);
  ok = ok && bn_synth_write_text (dir, "model.safetensors.index.json", index, -1, error)
       && bn_synth_write_text (dir, "config.json", config, -1, error);
  for (int s = 0; s < n_shards; s++)
    out_clear (&o[s]);
  return ok;
}

/* ---- files ----------------------------------------------------------------- */

/* `packed`: the block linears are packed in groups of GROUP (dense bf16
 * ones take any width). */
static gboolean
spec_valid (const BnSynthSpec *spec, gboolean packed, GError **error)
{
  const BnFlux2Config *c = &spec->dit;
  gboolean ok = (spec->bits == 1 || spec->bits == 2 || !packed)
    && c->dim == c->n_heads * c->head_dim
    && (!packed || (c->dim % GROUP == 0 && c->mlp_hidden % GROUP == 0))
    && c->in_channels == 4 * spec->vae_latent_channels
    && c->out_channels == c->in_channels
    && spec->vae_levels >= 1 && spec->vae_levels <= BN_SYNTH_MAX_LEVELS
    && spec->vae_layers_per_block >= 1 && spec->vae_groups >= 1;
  for (int i = 0; ok && i < spec->vae_levels; i++)
    ok = spec->vae_channels[i] > 0 && spec->vae_channels[i] % spec->vae_groups == 0;
  if (!ok)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                 "release layout: inconsistent shapes (packed widths must be "
                 "multiples of %d, in_channels 4 × latent channels, VAE "
                 "channels multiples of the groups)", GROUP);
  return ok;
}

static char *
marker_text (const BnSynthSpec *spec, guint64 seed)
{
  const BnFlux2Config *c = &spec->dit;
  return g_strdup_printf ("{\"synthetic\": 1, \"seed\": %" G_GUINT64_FORMAT
                          ", \"bits\": %d, \"dim\": %d, \"heads\": %d, "
                          "\"layers\": [%d, %d], \"mlp\": %d, \"context\": %d, "
                          "\"in\": %d, \"vae\": [%d, %d, %d, %d, %d]}\n",
                          seed, spec->bits, c->dim, c->n_heads, c->num_layers,
                          c->num_single_layers, c->mlp_hidden, c->context_dim,
                          c->in_channels, spec->vae_levels, spec->vae_channels[0],
                          spec->vae_channels[spec->vae_levels - 1],
                          spec->vae_layers_per_block, spec->vae_latent_channels);
}

/* The transformer's folder: the weights, config.json and, for the MLX
 * pack, quantization_config.json listing what was packed. */
/* Every tensor of `o->src` was read, but for those in `ignored`. */
static gboolean
all_taken (const Out *o, const char *const *ignored, GError **error)
{
  for (guint i = 0; o->src && i < bn_safetensors_n_tensors (o->src); i++)
    {
      const char *name = bn_safetensors_nth (o->src, i)->name;
      if (g_hash_table_contains (o->taken, name)
          || (ignored && g_strv_contains (ignored, name)))
        continue;
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: %s is not a tensor of this model's layout",
                   bn_safetensors_path (o->src), name);
      return FALSE;
    }
  return TRUE;
}

/* `src`: the trained weights (NULL: random ones from `seed`). */
static gboolean
write_transformer (const char *dir, const BnSynthSpec *spec,
                   BnSynthLayout layout, guint64 seed,
                   const BnSafetensors *src, GError **error)
{
  gboolean dense = layout == BN_SYNTH_LAYOUT_UNPACKED;
  g_autofree char *path = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  g_autofree char *config = bn_synth_transformer_config (spec, layout);
  Out o;
  out_init (&o, seed, dense);
  o.src = src;
  o.bits = spec->bits;
  gboolean ok = bn_synth_make_dir (dir, error) && add_transformer (&o, spec, error)
                && all_taken (&o, NULL, error)
                && bn_st_writer_write (o.w, path, error)
                && bn_synth_write_text (dir, "config.json", config, -1, error);
  if (ok && !dense)
    {
      g_autofree char *quant = bn_synth_quantization_config (spec, o.linears);
      ok = bn_synth_write_text (dir, "quantization_config.json", quant, -1, error);
    }
  out_clear (&o);
  return ok;
}

static gboolean
write_vae (const char *dir, const BnSynthSpec *spec, guint64 seed,
           const BnSafetensors *src, GError **error)
{
  /* torch's BatchNorm counter: no loader reads it. */
  static const char *const ignored[] = { "bn.num_batches_tracked", NULL };
  g_autofree char *path = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  g_autofree char *config = bn_synth_vae_config (spec);
  Out o;
  out_init (&o, seed, FALSE);
  o.src = src;
  gboolean ok = bn_synth_make_dir (dir, error) && add_vae (&o, spec, error)
                && all_taken (&o, ignored, error)
                && bn_st_writer_write (o.w, path, error)
                && bn_synth_write_text (dir, "config.json", config, -1, error);
  out_clear (&o);
  return ok;
}

gboolean
bn_synthetic_model_write (const char *dir, const BnSynthSpec *spec,
                          guint64 seed, GError **error)
{
  if (!spec_valid (spec, TRUE, error))
    return FALSE;
  g_autofree char *tdir = g_build_filename (dir, "transformer-packed-mflux", NULL);
  g_autofree char *vdir = g_build_filename (dir, "vae", NULL);
  g_autofree char *marker = g_build_filename (dir, "synthetic.json", NULL);
  g_autofree char *mark = marker_text (spec, seed);
  /* An old marker must not vouch for files being replaced. */
  g_unlink (marker);
  return write_transformer (tdir, spec, BN_SYNTH_LAYOUT_MLX, seed, NULL, error)
         && write_vae (vdir, spec, seed, NULL, error)
         && bn_synth_write_text (dir, "synthetic.json", mark, -1, error);
}

/* What the text encoder needs beyond spec_valid: klein's three output
 * layers, features as wide as the transformer's context, MLX groups. */
static gboolean
text_spec_valid (const BnSynthSpec *spec, BnSynthLayout layout, GError **error)
{
  /* Only the MLX pack has groups; the unpacked encoder is dense. */
  int g = layout == BN_SYNTH_LAYOUT_MLX ? spec->te_group : 1;
  gboolean ok = spec->te_layers >= 27 && spec->dit.context_dim == 3 * spec->te_hidden
    && (g == 1 || g == 32 || g == 64 || g == 128)
    && spec->te_hidden % g == 0 && spec->te_intermediate % g == 0
    && spec->te_kv_heads >= 1 && spec->te_heads % spec->te_kv_heads == 0
    && spec->te_head_dim % 2 == 0 && (spec->te_heads * spec->te_head_dim) % g == 0
    && spec->te_vocab >= 1;
  if (!ok)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                 "synthetic text encoder: inconsistent shapes (27 layers or "
                 "more, context_dim 3 × hidden, widths multiples of the MLX group "
                 "of %d (32, 64 or 128), heads a multiple of the key/value "
                 "heads)", spec->te_group);
  return ok;
}

gboolean
bn_synthetic_release_write (const char *dir, const BnSynthSpec *spec,
                            BnSynthLayout layout, const char *tokenizer_json,
                            guint64 seed, GError **error)
{
  if (!spec_valid (spec, TRUE, error) || !text_spec_valid (spec, layout, error))
    return FALSE;
  gboolean mlx = layout == BN_SYNTH_LAYOUT_MLX;
  g_autofree char *tdir = g_build_filename (dir, mlx ? "transformer-packed-mflux"
                                                     : "transformer", NULL);
  g_autofree char *vdir = g_build_filename (dir, "vae", NULL);
  g_autofree char *tedir = g_build_filename (dir, mlx ? "text_encoder-mlx-4bit"
                                                      : "text_encoder", NULL);
  return bn_synth_make_dir (dir, error)
         && write_transformer (tdir, spec, layout, seed, NULL, error)
         && write_vae (vdir, spec, seed, NULL, error)
         && write_text_encoder (tedir, spec, mlx, seed, error)
         && bn_synth_write_release_files (dir, spec, layout, tokenizer_json, error);
}

gboolean
bn_synthetic_model_ready (const char *dir, const BnSynthSpec *spec, guint64 seed)
{
  g_autofree char *marker = g_build_filename (dir, "synthetic.json", NULL);
  g_autofree char *have = NULL;
  if (!g_file_get_contents (marker, &have, NULL, NULL))
    return FALSE;
  g_autofree char *want = marker_text (spec, seed);
  return strcmp (have, want) == 0;
}

/* ---- releases of trained weights ---------------------------------------------- */

/* Copies the files of folder `from` into `to` (created), byte for byte,
 * each through a temporary name so that none is ever seen half-written.
 * Subfolders are copied too. */
static gboolean
copy_dir (const char *from, const char *to, GError **error)
{
  GError *local = NULL;
  GDir *d = g_dir_open (from, 0, &local);
  if (!d)
    {
      g_set_error (error, BONSAI_ERROR,
                   g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                     ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO,
                   "%s", local->message);
      g_error_free (local);
      return FALSE;
    }
  gboolean ok = bn_synth_make_dir (to, error);
  const char *name;
  while (ok && (name = g_dir_read_name (d)))
    {
      g_autofree char *src = g_build_filename (from, name, NULL);
      g_autofree char *dst = g_build_filename (to, name, NULL);
      if (g_file_test (src, G_FILE_TEST_IS_DIR))
        {
          ok = copy_dir (src, dst, error);
          continue;
        }
      g_autofree char *tmp = g_strconcat (dst, ".tmp-copy", NULL);
      g_autoptr (GFile) fs = g_file_new_for_path (src);
      g_autoptr (GFile) ft = g_file_new_for_path (tmp);
      if (!g_file_copy (fs, ft, G_FILE_COPY_OVERWRITE, NULL, NULL, NULL, &local)
          || g_rename (tmp, dst) != 0)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot copy %s to %s: %s",
                       src, dst, local ? local->message : g_strerror (errno));
          g_clear_error (&local);
          g_unlink (tmp);
          ok = FALSE;
        }
    }
  g_dir_close (d);
  return ok;
}

/* A config file's text; NULL with NOT_FOUND / IO naming it. */
static char *
read_text (const char *dir, const char *name, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  char *text = NULL;
  GError *local = NULL;
  if (!g_file_get_contents (path, &text, NULL, &local))
    {
      g_set_error (error, BONSAI_ERROR,
                   g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                     ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO,
                   "%s", local->message);
      g_error_free (local);
    }
  return text;
}

/* The spec of a checkpoint from its diffusers configs; what the release's
 * config files cannot express (they are written from the spec) is refused
 * rather than changed. */
static gboolean
checkpoint_spec (const char *ckpt, int bits, BnSynthSpec *spec, GError **error)
{
  memset (spec, 0, sizeof *spec);
  spec->bits = bits;
  g_autofree char *tpath = g_build_filename (ckpt, "transformer_config.json", NULL);
  g_autofree char *vpath = g_build_filename (ckpt, "vae_config.json", NULL);
  g_autofree char *tjson = read_text (ckpt, "transformer_config.json", error);
  g_autofree char *vjson = tjson ? read_text (ckpt, "vae_config.json", error) : NULL;
  BnVaeConfig v;
  bn_vae_config_default (&v);
  if (!vjson || !bn_flux2_config_parse (tjson, -1, tpath, &spec->dit, error)
      || !bn_vae_config_parse (vjson, vpath, &v, error))
    return FALSE;
  if (spec->dit.out_channels != spec->dit.in_channels || v.in_channels != 3
      || v.out_channels != 3 || !v.mid_block_add_attention || !v.use_quant_conv
      || !v.use_post_quant_conv || v.patch_size[0] != 2 || v.patch_size[1] != 2
      || v.n_levels > BN_SYNTH_MAX_LEVELS || v.batch_norm_eps != 1e-4)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "%s: the release layout needs out_channels = in_channels, "
                   "and %s: 3 image channels, the mid-block attention, both "
                   "quant convolutions, 2×2 patches, batch_norm_eps 1e-4 and "
                   "at most %d levels", tpath, vpath, BN_SYNTH_MAX_LEVELS);
      return FALSE;
    }
  spec->vae_levels = v.n_levels;
  memcpy (spec->vae_channels, v.block_out_channels, sizeof (int) * v.n_levels);
  spec->vae_layers_per_block = v.layers_per_block;
  spec->vae_latent_channels = v.latent_channels;
  spec->vae_groups = v.norm_num_groups;
  return spec_valid (spec, bits != 16, error);
}

gboolean
bn_release_export (const char *ckpt, const char *text_release, int bits,
                   const char *dir, GError **error)
{
  if (bits != 1 && bits != 2 && bits != 16)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "bits must be 1, 2 or 16, not %d", bits);
      return FALSE;
    }
  BnSynthSpec spec;
  if (!checkpoint_spec (ckpt, bits, &spec, error))
    return FALSE;
  /* The text encoder folder as the given release names it decides the
   * layout of the top-level files; the transformer's follows `bits`. */
  g_autofree char *te_mlx = g_build_filename (text_release, "text_encoder-mlx-4bit", NULL);
  g_autofree char *te_unp = g_build_filename (text_release, "text_encoder", NULL);
  gboolean mlx_te = g_file_test (te_mlx, G_FILE_TEST_IS_DIR);
  if (!mlx_te && !g_file_test (te_unp, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "%s has neither text_encoder-mlx-4bit/ nor text_encoder/",
                   text_release);
      return FALSE;
    }
  BnSynthLayout t_layout = bits == 16 ? BN_SYNTH_LAYOUT_UNPACKED : BN_SYNTH_LAYOUT_MLX;
  BnSynthLayout top = mlx_te ? BN_SYNTH_LAYOUT_MLX : BN_SYNTH_LAYOUT_UNPACKED;
  const char *te_name = mlx_te ? "text_encoder-mlx-4bit" : "text_encoder";
  g_autofree char *tw = g_build_filename (ckpt, "transformer.safetensors", NULL);
  g_autofree char *vw = g_build_filename (ckpt, "vae.safetensors", NULL);
  g_autofree char *tdir = g_build_filename (dir, bits == 16 ? "transformer"
                                                            : "transformer-packed-mflux", NULL);
  g_autofree char *vdir = g_build_filename (dir, "vae", NULL);
  g_autofree char *te_to = g_build_filename (dir, te_name, NULL);
  g_autofree char *tok_from = g_build_filename (text_release, "tokenizer", NULL);
  g_autofree char *tok_to = g_build_filename (dir, "tokenizer", NULL);
  g_autofree char *sch_from = g_build_filename (text_release, "scheduler", NULL);
  g_autofree char *sch_to = g_build_filename (dir, "scheduler", NULL);
  BnSafetensors *ts = bn_safetensors_open (tw, error);
  BnSafetensors *vs = ts ? bn_safetensors_open (vw, error) : NULL;
  gboolean ok = vs && bn_synth_make_dir (dir, error)
    && write_transformer (tdir, &spec, t_layout, 0, ts, error)
    && write_vae (vdir, &spec, 0, vs, error)
    && copy_dir (mlx_te ? te_mlx : te_unp, te_to, error)
    && copy_dir (tok_from, tok_to, error)
    && copy_dir (sch_from, sch_to, error)
    && bn_synth_write_release_notes (dir, bits, top, TRUE, error);
  bn_safetensors_free (ts);
  bn_safetensors_free (vs);
  return ok;
}
