/* synthetic_model.c — writes random-weight models in the release's layout. */
#include "synthetic_model.h"

#include "bonsai/bonsai.h"

#include <errno.h>
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
  c->context_dim = 64;
  c->mlp_hidden = 384;
  for (int a = 0; a < 4; a++)
    c->axes_dim[a] = 16;
  spec->vae_levels = 3;
  const int ch[3] = { 16, 32, 32 };
  memcpy (spec->vae_channels, ch, sizeof ch);
  spec->vae_layers_per_block = 1;
  spec->vae_latent_channels = 8;
  spec->vae_groups = 8;
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
  guint64 seed;
} Out;

static void
out_init (Out *o, guint64 seed)
{
  o->w = bn_st_writer_new ();
  o->buffers = g_ptr_array_new_with_free_func (g_free);
  o->packed = g_ptr_array_new ();
  o->seed = seed;
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
  uint16_t *data = g_try_new (uint16_t, n);
  if (!data)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for %s", name);
      return FALSE;
    }
  g_ptr_array_add (o->buffers, data);
  guint64 s = stream_for (o->seed, name);
  float half_width = std * sqrtf (3.0f);
  for (int64_t i = 0; i < n; i++)
    data[i] = bn_f32_to_bf16 (std > 0 ? mean + half_width * uniform (&s) : mean);
  return bn_st_writer_add (o->w, name, BN_DTYPE_BF16, ndim, shape, data, error);
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

/* A low-bit linear `prefix` [n, k] as the release packs it.  Ternary codes
 * are 1 (weight 0) half the time and 0 or 2 a quarter each, so weights have
 * mean 0 and variance s²/2; binary weights are ±s/2.  Scales are chosen for
 * unit gain, with ±10 % spread between groups. */
static gboolean
add_packed (Out *o, const char *prefix, int64_t n, int64_t k, int bits,
            GError **error)
{
  BnTensor *t = g_new0 (BnTensor, 1);
  BnDType dtype = bits == 1 ? BN_DTYPE_Q1 : BN_DTYPE_Q2;
  if (!bn_tensor_init_packed (t, dtype, n, k, GROUP, BN_DTYPE_BF16, error))
    {
      g_free (t);
      return FALSE;
    }
  g_ptr_array_add (o->packed, t);
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
  return bn_st_writer_add_packed (o->w, prefix, t, error);
}

/* ---- the transformer ------------------------------------------------------- */

/* The nine dense matrices the release keeps in 16 bits (§1.2). */
static const char *const skip_patterns[] = {
  "x_embedder", "context_embedder", "proj_out", "norm_out.linear",
  "time_guidance_embed.timestep_embedder.linear_1",
  "time_guidance_embed.timestep_embedder.linear_2",
  "double_stream_modulation_img.linear", "double_stream_modulation_txt.linear",
  "single_stream_modulation.linear",
};

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

static char *
transformer_config (const BnSynthSpec *spec)
{
  const BnFlux2Config *c = &spec->dit;
  char ratio[G_ASCII_DTOSTR_BUF_SIZE], theta[G_ASCII_DTOSTR_BUF_SIZE],
       eps[G_ASCII_DTOSTR_BUF_SIZE];
  /* The C locale's spelling of numbers, whatever the user's locale. */
  g_ascii_formatd (ratio, sizeof ratio, "%g", (double) c->mlp_hidden / c->dim);
  g_ascii_formatd (theta, sizeof theta, "%g", c->rope_theta);
  g_ascii_formatd (eps, sizeof eps, "%g", c->eps);
  GString *s = g_string_new ("{\n  \"_class_name\": \"Flux2Transformer2DModel\",\n");
  g_string_append_printf (s,
      "  \"patch_size\": 1,\n  \"in_channels\": %d,\n  \"num_layers\": %d,\n"
      "  \"num_single_layers\": %d,\n  \"attention_head_dim\": %d,\n"
      "  \"num_attention_heads\": %d,\n  \"joint_attention_dim\": %d,\n"
      "  \"timestep_guidance_channels\": %d,\n  \"mlp_ratio\": %s,\n"
      "  \"axes_dims_rope\": [",
      c->in_channels, c->num_layers, c->num_single_layers, c->head_dim,
      c->n_heads, c->context_dim, c->time_channels, ratio);
  for (int a = 0; a < c->n_axes; a++)
    g_string_append_printf (s, "%s%d", a ? ", " : "", c->axes_dim[a]);
  g_string_append_printf (s, "],\n  \"rope_theta\": %s,\n  \"eps\": %s,\n"
                          "  \"guidance_embeds\": false\n}\n", theta, eps);
  return g_string_free (s, FALSE);
}

static char *
quantization_config (const BnSynthSpec *spec)
{
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "{\n  \"bits\": %d,\n  \"group_size\": %d,\n"
                          "  \"solver\": \"%s\",\n  \"skip_patterns\": [",
                          spec->bits, GROUP, spec->bits == 1 ? "binary" : "ternary");
  for (size_t i = 0; i < G_N_ELEMENTS (skip_patterns); i++)
    g_string_append_printf (s, "%s\n    \"%s\"", i ? "," : "", skip_patterns[i]);
  g_string_append (s, "\n  ]\n}\n");
  return g_string_free (s, FALSE);
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

static char *
vae_config (const BnSynthSpec *spec)
{
  GString *s = g_string_new ("{\n  \"_class_name\": \"AutoencoderKLFlux2\",\n"
                             "  \"in_channels\": 3,\n  \"out_channels\": 3,\n");
  const char *kinds[2] = { "down_block_types", "up_block_types" };
  const char *names[2] = { "DownEncoderBlock2D", "UpDecoderBlock2D" };
  for (int k = 0; k < 2; k++)
    {
      g_string_append_printf (s, "  \"%s\": [", kinds[k]);
      for (int i = 0; i < spec->vae_levels; i++)
        g_string_append_printf (s, "%s\"%s\"", i ? ", " : "", names[k]);
      g_string_append (s, "],\n");
    }
  g_string_append (s, "  \"block_out_channels\": [");
  for (int i = 0; i < spec->vae_levels; i++)
    g_string_append_printf (s, "%s%d", i ? ", " : "", spec->vae_channels[i]);
  g_string_append_printf (s, "],\n  \"layers_per_block\": %d,\n"
                          "  \"latent_channels\": %d,\n  \"norm_num_groups\": %d,\n"
                          "  \"mid_block_add_attention\": true,\n"
                          "  \"batch_norm_eps\": 0.0001,\n  \"patch_size\": [2, 2]\n}\n",
                          spec->vae_layers_per_block, spec->vae_latent_channels,
                          spec->vae_groups);
  return g_string_free (s, FALSE);
}

/* ---- files ----------------------------------------------------------------- */

static gboolean
spec_valid (const BnSynthSpec *spec, GError **error)
{
  const BnFlux2Config *c = &spec->dit;
  gboolean ok = (spec->bits == 1 || spec->bits == 2)
    && c->dim == c->n_heads * c->head_dim && c->dim % GROUP == 0
    && c->mlp_hidden % GROUP == 0 && c->in_channels == 4 * spec->vae_latent_channels
    && c->out_channels == c->in_channels
    && spec->vae_levels >= 1 && spec->vae_levels <= BN_SYNTH_MAX_LEVELS
    && spec->vae_layers_per_block >= 1 && spec->vae_groups >= 1;
  for (int i = 0; ok && i < spec->vae_levels; i++)
    ok = spec->vae_channels[i] > 0 && spec->vae_channels[i] % spec->vae_groups == 0;
  if (!ok)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                 "synthetic model: inconsistent shapes (packed widths must be "
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

static gboolean
write_text (const char *dir, const char *name, const char *text, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  GError *local = NULL;
  /* g_file_set_contents writes a temporary file and renames it. */
  if (!g_file_set_contents (path, text, -1, &local))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "%s", local->message);
      g_error_free (local);
      return FALSE;
    }
  return TRUE;
}

static gboolean
make_dir (const char *path, GError **error)
{
  if (g_mkdir_with_parents (path, 0755) != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot create %s: %s",
                   path, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

typedef gboolean (*AddFn) (Out *o, const BnSynthSpec *spec, GError **error);

static gboolean
write_weights (const char *dir, AddFn add, const BnSynthSpec *spec, guint64 seed,
               GError **error)
{
  g_autofree char *path = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  Out o;
  out_init (&o, seed);
  gboolean ok = add (&o, spec, error) && bn_st_writer_write (o.w, path, error);
  out_clear (&o);
  return ok;
}

gboolean
bn_synthetic_model_write (const char *dir, const BnSynthSpec *spec,
                          guint64 seed, GError **error)
{
  if (!spec_valid (spec, error))
    return FALSE;
  g_autofree char *tdir = g_build_filename (dir, "transformer-packed-mflux", NULL);
  g_autofree char *vdir = g_build_filename (dir, "vae", NULL);
  g_autofree char *marker = g_build_filename (dir, "synthetic.json", NULL);
  g_autofree char *tconf = transformer_config (spec);
  g_autofree char *qconf = quantization_config (spec);
  g_autofree char *vconf = vae_config (spec);
  g_autofree char *mark = marker_text (spec, seed);
  /* An old marker must not vouch for files being replaced. */
  g_unlink (marker);
  return make_dir (tdir, error) && make_dir (vdir, error)
         && write_text (tdir, "config.json", tconf, error)
         && write_text (tdir, "quantization_config.json", qconf, error)
         && write_weights (tdir, add_transformer, spec, seed, error)
         && write_text (vdir, "config.json", vconf, error)
         && write_weights (vdir, add_vae, spec, seed, error)
         && write_text (dir, "synthetic.json", mark, error);
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
