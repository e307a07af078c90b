/* flux2_vae.c — the FLUX.2 VAE's config and weights: parsing, checking and
 * viewing every tensor under its diffusers name.  The forward passes are in
 * flux2_vae_run.c. */
#include "flux2_vae_weights.h"

#include "bonsai/bonsai.h"

#include <json-glib/json-glib.h>
#include <math.h>

#define FLOAT_MASK \
  ((1u << BN_DTYPE_F32) | (1u << BN_DTYPE_F16) | (1u << BN_DTYPE_BF16))
/* Sanity bounds on config values, far above any real VAE, so that products
 * of them can never overflow. */
#define MAX_CHANNELS 65536
#define MAX_LAYERS 64
#define MAX_PATCH 16

void
bn_vae_config_default (BnVaeConfig *cfg)
{
  static const int channels[] = { 128, 256, 512, 512 };
  memset (cfg, 0, sizeof *cfg);
  cfg->in_channels = 3;
  cfg->out_channels = 3;
  cfg->n_levels = G_N_ELEMENTS (channels);
  memcpy (cfg->block_out_channels, channels, sizeof channels);
  cfg->layers_per_block = 2;
  cfg->latent_channels = 32;
  cfg->norm_num_groups = 32;
  cfg->mid_block_add_attention = TRUE;
  cfg->use_quant_conv = TRUE;
  cfg->use_post_quant_conv = TRUE;
  cfg->batch_norm_eps = 1e-4;
  cfg->patch_size[0] = cfg->patch_size[1] = 2;
}

static gboolean
bad_key (const char *origin, const char *key, const char *want,
         GError **error)
{
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
               "%s: VAE config key \"%s\" must be %s", origin, key, want);
  return FALSE;
}

static gboolean
node_int (JsonNode *node, int lo, int hi, int *out)
{
  if (!JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (node);
  if (v < lo || v > hi)
    return FALSE;
  *out = (int) v;
  return TRUE;
}

static gboolean
get_int (JsonObject *o, const char *origin, const char *key, int lo, int hi,
         int *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n)
    return TRUE;
  if (node_int (n, lo, hi, out))
    return TRUE;
  g_autofree char *want = g_strdup_printf ("an integer in %d..%d", lo, hi);
  return bad_key (origin, key, want, error);
}

static gboolean
get_bool (JsonObject *o, const char *origin, const char *key, gboolean *out,
          GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n)
      || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return bad_key (origin, key, "true or false", error);
  *out = json_node_get_boolean (n);
  return TRUE;
}

/* An array of n_want strings all equal to `value` (n_want < 0: any
 * length); absent keys pass. */
static gboolean
check_strings (JsonObject *o, const char *origin, const char *key,
               int n_want, const char *value, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n)
    return TRUE;
  g_autofree char *want = g_strdup_printf (
      "a list of %d \"%s\" (one per block_out_channels)", n_want, value);
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return bad_key (origin, key, want, error);
  JsonArray *a = json_node_get_array (n);
  if ((int) json_array_get_length (a) != n_want)
    return bad_key (origin, key, want, error);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e)
          || json_node_get_value_type (e) != G_TYPE_STRING
          || strcmp (json_node_get_string (e), value) != 0)
        return bad_key (origin, key, want, error);
    }
  return TRUE;
}

static gboolean
parse_object (JsonObject *o, const char *origin, BnVaeConfig *cfg,
              GError **error)
{
  if (!get_int (o, origin, "in_channels", 1, MAX_CHANNELS, &cfg->in_channels,
                error)
      || !get_int (o, origin, "out_channels", 1, MAX_CHANNELS,
                   &cfg->out_channels, error)
      || !get_int (o, origin, "layers_per_block", 1, MAX_LAYERS,
                   &cfg->layers_per_block, error)
      || !get_int (o, origin, "latent_channels", 1, MAX_CHANNELS,
                   &cfg->latent_channels, error)
      || !get_int (o, origin, "norm_num_groups", 1, MAX_CHANNELS,
                   &cfg->norm_num_groups, error)
      || !get_bool (o, origin, "mid_block_add_attention",
                    &cfg->mid_block_add_attention, error)
      || !get_bool (o, origin, "use_quant_conv", &cfg->use_quant_conv, error)
      || !get_bool (o, origin, "use_post_quant_conv",
                    &cfg->use_post_quant_conv, error))
    return FALSE;

  JsonNode *n = json_object_get_member (o, "block_out_channels");
  if (n)
    {
      JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
      guint len = a ? json_array_get_length (a) : 0;
      if (len < 1 || len > BN_VAE_MAX_LEVELS)
        return bad_key (origin, "block_out_channels",
                        "a list of 1 to 8 channel counts", error);
      cfg->n_levels = (int) len;
      for (guint i = 0; i < len; i++)
        if (!node_int (json_array_get_element (a, i), 1, MAX_CHANNELS,
                       &cfg->block_out_channels[i]))
          return bad_key (origin, "block_out_channels",
                          "a list of positive channel counts", error);
    }

  n = json_object_get_member (o, "batch_norm_eps");
  if (n)
    {
      GType t = JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n)
                                           : G_TYPE_INVALID;
      double v = t == G_TYPE_DOUBLE ? json_node_get_double (n)
                 : t == G_TYPE_INT64 ? (double) json_node_get_int (n)
                                     : -1.0;
      if (!(v > 0 && v < 1))
        return bad_key (origin, "batch_norm_eps", "a number in (0, 1)", error);
      cfg->batch_norm_eps = v;
    }

  n = json_object_get_member (o, "patch_size");
  if (n)
    {
      JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
      gboolean ok;
      if (a)
        ok = json_array_get_length (a) == 2
             && node_int (json_array_get_element (a, 0), 1, MAX_PATCH,
                          &cfg->patch_size[0])
             && node_int (json_array_get_element (a, 1), 1, MAX_PATCH,
                          &cfg->patch_size[1]);
      else
        {
          ok = node_int (n, 1, MAX_PATCH, &cfg->patch_size[0]);
          cfg->patch_size[1] = cfg->patch_size[0];
        }
      if (!ok)
        return bad_key (origin, "patch_size", "two sizes in 1..16", error);
    }

  JsonNode *act = json_object_get_member (o, "act_fn");
  if (act
      && (!JSON_NODE_HOLDS_VALUE (act)
          || json_node_get_value_type (act) != G_TYPE_STRING
          || strcmp (json_node_get_string (act), "silu") != 0))
    return bad_key (origin, "act_fn", "\"silu\"", error);
  if (!check_strings (o, origin, "down_block_types", cfg->n_levels,
                      "DownEncoderBlock2D", error)
      || !check_strings (o, origin, "up_block_types", cfg->n_levels,
                         "UpDecoderBlock2D", error))
    return FALSE;

  return TRUE;
}

/* Checks a config, parsed or given by a caller, before any size is
 * computed from it. */
static gboolean
check_config (const BnVaeConfig *cfg, const char *origin, GError **error)
{
  const char *what = NULL;
  if (cfg->n_levels < 1 || cfg->n_levels > BN_VAE_MAX_LEVELS)
    what = "block_out_channels has 1 to 8 entries";
  else if (cfg->in_channels < 1 || cfg->in_channels > MAX_CHANNELS
           || cfg->out_channels < 1 || cfg->out_channels > MAX_CHANNELS
           || cfg->latent_channels < 1 || cfg->latent_channels > MAX_CHANNELS)
    what = "channel counts are in 1..65536";
  else if (cfg->layers_per_block < 1 || cfg->layers_per_block > MAX_LAYERS)
    what = "layers_per_block is in 1..64";
  else if (cfg->norm_num_groups < 1)
    what = "norm_num_groups is positive";
  else if (cfg->patch_size[0] < 1 || cfg->patch_size[0] > MAX_PATCH
           || cfg->patch_size[1] < 1 || cfg->patch_size[1] > MAX_PATCH)
    what = "patch_size is in 1..16";
  else if (!(cfg->batch_norm_eps > 0 && cfg->batch_norm_eps < 1))
    what = "batch_norm_eps is in (0, 1)";
  for (int i = 0; !what && i < cfg->n_levels; i++)
    if (cfg->block_out_channels[i] < 1
        || cfg->block_out_channels[i] > MAX_CHANNELS
        || cfg->block_out_channels[i] % cfg->norm_num_groups != 0)
      what = "every block_out_channels entry is in 1..65536 and a multiple "
             "of norm_num_groups";
  if (!what)
    return TRUE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
               "%s: invalid VAE config: need %s", origin, what);
  return FALSE;
}

gboolean
bn_vae_config_parse (const char *json, const char *origin, BnVaeConfig *cfg,
                     GError **error)
{
  bn_vae_config_default (cfg);
  g_autoptr (JsonParser) parser = json_parser_new ();
  GError *local = NULL;
  if (!bn_json_check (origin, json, -1, error))
    return FALSE;
  if (!json_parser_load_from_data (parser, json, -1, &local))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: VAE config is not valid JSON: %s", origin,
                   local->message);
      g_error_free (local);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: VAE config is not a JSON object", origin);
      return FALSE;
    }
  return parse_object (json_node_get_object (root), origin, cfg, error)
         && check_config (cfg, origin, error);
}

int
bn_vae_scale (const BnVaeConfig *cfg)
{
  return 1 << (cfg->n_levels - 1);
}

gboolean
bn_vae_encoded_size (const BnVaeConfig *cfg, int64_t h, int64_t w,
                     int64_t *ho, int64_t *wo)
{
  for (int i = 0; i + 1 < cfg->n_levels; i++)
    {
      /* Pad right/bottom by 1, 3×3 stride 2: (n + 1 − 3)/2 + 1. */
      if (h < 2 || w < 2)
        return FALSE;
      h /= 2;
      w /= 2;
    }
  *ho = h;
  *wo = w;
  return h >= 1 && w >= 1;
}

/* ---- loading ----------------------------------------------------------- */

static float *
owned_floats (BnVae *vae, int64_t n)
{
  float *p = g_new (float, n);
  g_ptr_array_add (vae->owned, p);
  return p;
}

/* An f32 copy of the 1-D tensor `name` of n elements. */
static gboolean
load_vector (BnVae *vae, const char *name, int64_t n, const float **out,
             GError **error)
{
  BnTensor t;
  if (!bn_safetensors_view (vae->st, name, FLOAT_MASK, 1, &n, &t, error))
    return FALSE;
  float *dst = owned_floats (vae, n);
  bn_convert_to_f32 (t.dtype, t.data, dst, (size_t) n);
  *out = dst;
  return TRUE;
}

/* `prefix`.weight [co, ci, k, k] (k = 1 also as [co, ci]) and .bias. */
static gboolean
load_conv (BnVae *vae, const char *prefix, int64_t co, int64_t ci, int k,
           BnVaeConv *conv, GError **error)
{
  g_autofree char *wname = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *bname = g_strconcat (prefix, ".bias", NULL);
  const BnStTensor *found = bn_safetensors_find (vae->st, wname);
  int64_t shape[4] = { co, ci, k, k };
  int ndim = (k == 1 && found && found->ndim == 2) ? 2 : 4;
  if (!bn_safetensors_view (vae->st, wname, FLOAT_MASK, ndim, shape,
                            &conv->w, error))
    return FALSE;
  conv->w.ndim = 2;
  conv->w.shape[1] = ci * k * k;
  conv->w.shape[2] = conv->w.shape[3] = 0;
  return load_vector (vae, bname, co, &conv->b, error);
}

static gboolean
load_norm (BnVae *vae, const char *prefix, int64_t c, BnVaeNorm *norm,
           GError **error)
{
  g_autofree char *wname = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *bname = g_strconcat (prefix, ".bias", NULL);
  return load_vector (vae, wname, c, &norm->gamma, error)
         && load_vector (vae, bname, c, &norm->beta, error);
}

static gboolean
load_resnet (BnVae *vae, const char *prefix, int64_t ci, int64_t co,
             BnVaeResnet *r, GError **error)
{
  g_autofree char *n1 = g_strconcat (prefix, ".norm1", NULL);
  g_autofree char *c1 = g_strconcat (prefix, ".conv1", NULL);
  g_autofree char *n2 = g_strconcat (prefix, ".norm2", NULL);
  g_autofree char *c2 = g_strconcat (prefix, ".conv2", NULL);
  g_autofree char *sc = g_strconcat (prefix, ".conv_shortcut", NULL);
  r->ci = ci;
  r->co = co;
  r->has_shortcut = ci != co;
  return load_norm (vae, n1, ci, &r->norm1, error)
         && load_conv (vae, c1, co, ci, 3, &r->conv1, error)
         && load_norm (vae, n2, co, &r->norm2, error)
         && load_conv (vae, c2, co, co, 3, &r->conv2, error)
         && (!r->has_shortcut
             || load_conv (vae, sc, co, ci, 1, &r->shortcut, error));
}

static gboolean
load_mid (BnVae *vae, const char *coder, int64_t c, BnVaeCoder *cd,
          GError **error)
{
  for (int i = 0; i < 2; i++)
    {
      g_autofree char *p = g_strdup_printf ("%s.mid_block.resnets.%d", coder, i);
      if (!load_resnet (vae, p, c, c, &cd->mid[i], error))
        return FALSE;
    }
  cd->has_attention = vae->cfg.mid_block_add_attention;
  if (!cd->has_attention)
    return TRUE;
  g_autofree char *p = g_strdup_printf ("%s.mid_block.attentions.0", coder);
  g_autofree char *norm = g_strconcat (p, ".group_norm", NULL);
  g_autofree char *q = g_strconcat (p, ".to_q", NULL);
  g_autofree char *k = g_strconcat (p, ".to_k", NULL);
  g_autofree char *v = g_strconcat (p, ".to_v", NULL);
  g_autofree char *o = g_strconcat (p, ".to_out.0", NULL);
  BnVaeAttention *a = &cd->attention;
  return load_norm (vae, norm, c, &a->norm, error)
         && load_conv (vae, q, c, c, 1, &a->q, error)
         && load_conv (vae, k, c, c, 1, &a->k, error)
         && load_conv (vae, v, c, c, 1, &a->v, error)
         && load_conv (vae, o, c, c, 1, &a->out, error);
}

static BnVaeResnet *
owned_resnets (BnVae *vae, int n)
{
  BnVaeResnet *r = g_new0 (BnVaeResnet, n);
  g_ptr_array_add (vae->owned, r);
  return r;
}

static gboolean
load_encoder (BnVae *vae, GError **error)
{
  const BnVaeConfig *cfg = &vae->cfg;
  BnVaeCoder *cd = &vae->enc;
  const int *boc = cfg->block_out_channels;
  int top = boc[cfg->n_levels - 1];
  if (!load_conv (vae, "encoder.conv_in", boc[0], cfg->in_channels, 3,
                  &cd->conv_in, error))
    return FALSE;
  int64_t ci = boc[0];
  for (int i = 0; i < cfg->n_levels; i++)
    {
      BnVaeLevel *lv = &cd->levels[i];
      lv->n_resnets = cfg->layers_per_block;
      lv->resnets = owned_resnets (vae, lv->n_resnets);
      for (int j = 0; j < lv->n_resnets; j++)
        {
          g_autofree char *p
              = g_strdup_printf ("encoder.down_blocks.%d.resnets.%d", i, j);
          if (!load_resnet (vae, p, ci, boc[i], &lv->resnets[j], error))
            return FALSE;
          ci = boc[i];
        }
      lv->has_sampler = i + 1 < cfg->n_levels;
      g_autofree char *p
          = g_strdup_printf ("encoder.down_blocks.%d.downsamplers.0.conv", i);
      if (lv->has_sampler
          && !load_conv (vae, p, ci, ci, 3, &lv->sampler, error))
        return FALSE;
    }
  int64_t two_l = 2 * (int64_t) cfg->latent_channels;
  if (!load_mid (vae, "encoder", top, cd, error)
      || !load_norm (vae, "encoder.conv_norm_out", top, &cd->norm_out, error)
      || !load_conv (vae, "encoder.conv_out", two_l, top, 3, &cd->conv_out,
                     error))
    return FALSE;
  if (cfg->use_quant_conv)
    {
      if (!load_conv (vae, "quant_conv", two_l, two_l, 1, &vae->mean_out,
                      error))
        return FALSE;
    }
  else
    vae->mean_out = cd->conv_out;
  /* The mean is the first half of the moments: the first rows of W. */
  vae->mean_out.w.shape[0] = cfg->latent_channels;
  return TRUE;
}

static gboolean
load_decoder (BnVae *vae, GError **error)
{
  const BnVaeConfig *cfg = &vae->cfg;
  BnVaeCoder *cd = &vae->dec;
  int n = cfg->n_levels;
  const int *boc = cfg->block_out_channels;
  int top = boc[n - 1];
  if ((cfg->use_post_quant_conv
       && !load_conv (vae, "post_quant_conv", cfg->latent_channels,
                      cfg->latent_channels, 1, &vae->post_quant, error))
      || !load_conv (vae, "decoder.conv_in", top, cfg->latent_channels, 3,
                     &cd->conv_in, error)
      || !load_mid (vae, "decoder", top, cd, error))
    return FALSE;
  int64_t ci = top;
  for (int i = 0; i < n; i++)
    {
      int64_t co = boc[n - 1 - i];
      BnVaeLevel *lv = &cd->levels[i];
      lv->n_resnets = cfg->layers_per_block + 1;
      lv->resnets = owned_resnets (vae, lv->n_resnets);
      for (int j = 0; j < lv->n_resnets; j++)
        {
          g_autofree char *p
              = g_strdup_printf ("decoder.up_blocks.%d.resnets.%d", i, j);
          if (!load_resnet (vae, p, ci, co, &lv->resnets[j], error))
            return FALSE;
          ci = co;
        }
      lv->has_sampler = i + 1 < n;
      g_autofree char *p
          = g_strdup_printf ("decoder.up_blocks.%d.upsamplers.0.conv", i);
      if (lv->has_sampler
          && !load_conv (vae, p, co, co, 3, &lv->sampler, error))
        return FALSE;
    }
  return load_norm (vae, "decoder.conv_norm_out", boc[0], &cd->norm_out,
                    error)
         && load_conv (vae, "decoder.conv_out", cfg->out_channels, boc[0], 3,
                       &cd->conv_out, error);
}

static gboolean
load_batch_norm (BnVae *vae, GError **error)
{
  const BnVaeConfig *cfg = &vae->cfg;
  int64_t c = (int64_t) cfg->latent_channels * cfg->patch_size[0]
              * cfg->patch_size[1];
  const float *mean, *var;
  if (!load_vector (vae, "bn.running_mean", c, &mean, error)
      || !load_vector (vae, "bn.running_var", c, &var, error))
    return FALSE;
  vae->bn_mean = mean;
  vae->bn_std = owned_floats (vae, c);
  for (int64_t i = 0; i < c; i++)
    {
      if (!(var[i] >= 0) || !isfinite (mean[i]) || !isfinite (var[i]))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: bn.running_mean/var[%" G_GINT64_FORMAT
                       "] is not a finite mean and variance",
                       bn_safetensors_path (vae->st), i);
          return FALSE;
        }
      vae->bn_std[i] = (float) sqrt ((double) var[i] + cfg->batch_norm_eps);
    }
  return TRUE;
}

static gboolean
read_config_file (const char *file, BnVaeConfig *cfg, GError **error)
{
  g_autofree char *text = NULL;
  GError *local = NULL;
  if (!g_file_get_contents (file, &text, NULL, &local))
    {
      g_set_error (error, BONSAI_ERROR,
                   g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                       ? BONSAI_ERROR_NOT_FOUND
                       : BONSAI_ERROR_IO,
                   "%s", local->message);
      g_error_free (local);
      return FALSE;
    }
  return bn_vae_config_parse (text, file, cfg, error);
}

/* The config when the caller named no file: the weights' "config"
 * metadata, else config.json in the weights' folder. */
static gboolean
find_config (const char *path, const BnSafetensors *st, BnVaeConfig *cfg,
             GError **error)
{
  const char *meta = bn_safetensors_metadata (st, "config");
  if (meta)
    {
      g_autofree char *origin = g_strdup_printf ("%s metadata", path);
      return bn_vae_config_parse (meta, origin, cfg, error);
    }
  g_autofree char *dir = g_file_test (path, G_FILE_TEST_IS_DIR)
                             ? g_strdup (path)
                             : g_path_get_dirname (path);
  g_autofree char *file = g_build_filename (dir, "config.json", NULL);
  if (!g_file_test (file, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "%s: no VAE config (no \"config\" metadata and no %s)",
                   path, file);
      return FALSE;
    }
  return read_config_file (file, cfg, error);
}

BnVae *
bn_vae_open (const char *path, const char *config_path, GError **error)
{
  BnSafetensors *st = bn_safetensors_open (path, error);
  if (!st)
    return NULL;
  BnVae *vae = g_new0 (BnVae, 1);
  vae->st = st;
  vae->owned = g_ptr_array_new_with_free_func (g_free);
  if (!(config_path ? read_config_file (config_path, &vae->cfg, error)
                    : find_config (path, st, &vae->cfg, error)))
    goto fail;
  /* Tensor errors name the file already (bn_safetensors_view). */
  if (!load_decoder (vae, error) || !load_encoder (vae, error)
      || !load_batch_norm (vae, error))
    goto fail;
  return vae;

fail:
  bn_vae_free (vae);
  return NULL;
}

void
bn_vae_free (BnVae *vae)
{
  if (!vae)
    return;
  g_ptr_array_unref (vae->owned);
  bn_safetensors_free (vae->st);
  g_free (vae);
}

const BnVaeConfig *
bn_vae_get_config (const BnVae *vae)
{
  return &vae->cfg;
}

void
bn_vae_bn_normalize (const BnVae *vae, float *zp, int64_t n)
{
  int64_t c = (int64_t) vae->cfg.latent_channels * vae->cfg.patch_size[0]
              * vae->cfg.patch_size[1];
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t i = 0; i < n; i++)
      zp[ch * n + i] = (zp[ch * n + i] - vae->bn_mean[ch]) / vae->bn_std[ch];
}

void
bn_vae_bn_denormalize (const BnVae *vae, float *zp, int64_t n)
{
  int64_t c = (int64_t) vae->cfg.latent_channels * vae->cfg.patch_size[0]
              * vae->cfg.patch_size[1];
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t i = 0; i < n; i++)
      zp[ch * n + i] = zp[ch * n + i] * vae->bn_std[ch] + vae->bn_mean[ch];
}
