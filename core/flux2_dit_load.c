/* flux2_dit_load.c — the FLUX.2 transformer's config and weights: parsing
 * config.json and quantization_config.json, and binding every tensor, under
 * diffusers or BFL names (flux2_klein_spec.md §2.6), as views into the file. */
#include "flux2_dit.h"

#include "bonsai/bonsai.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* Config files are a few hundred bytes; anything far larger is not one. */
#define MAX_CONFIG_BYTES (1 << 20)
/* Bounds that keep every width product in range of int and int64 maths. */
#define MAX_DIM (1 << 16)
#define MAX_LAYERS 1024

/* ---- config.json ---------------------------------------------------------- */

static JsonObject *
parse_object (JsonParser *parser, const char *json, gssize len,
              const char *origin, GError **error)
{
  GError *local = NULL;
  if (!bn_json_check (origin, json, len, error))
    return NULL;
  if (!json_parser_load_from_data (parser, json, len, &local))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: not valid JSON: %s", origin, local->message);
      g_error_free (local);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: not a JSON object", origin);
      return NULL;
    }
  return json_node_get_object (root);
}

/* diffusers writes arguments left at their default as null ("out_channels":
 * null), so a null member counts as absent. */
static gboolean
given (JsonObject *obj, const char *key)
{
  JsonNode *n = json_object_get_member (obj, key);
  return n && !JSON_NODE_HOLDS_NULL (n);
}

static gboolean
value_of_type (JsonObject *obj, const char *key, GType type)
{
  JsonNode *n = json_object_get_member (obj, key);
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == type;
}

/* An integer member in [lo, hi]; `def` when absent (def < lo: required). */
static gboolean
get_int (JsonObject *obj, const char *key, int def, int lo, int hi,
         const char *origin, int *out, GError **error)
{
  if (!given (obj, key) && def >= lo)
    {
      *out = def;
      return TRUE;
    }
  gint64 v = value_of_type (obj, key, G_TYPE_INT64)
               ? json_object_get_int_member (obj, key) : (gint64) lo - 1;
  if (v < lo || v > hi)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"%s\" must be an integer in [%d, %d]", origin, key,
                   lo, hi);
      return FALSE;
    }
  *out = (int) v;
  return TRUE;
}

/* A positive finite number (JSON integer or real); `def` when absent. */
static gboolean
get_positive (JsonObject *obj, const char *key, double def,
              const char *origin, double *out, GError **error)
{
  double v = def;
  if (given (obj, key))
    {
      if (value_of_type (obj, key, G_TYPE_DOUBLE))
        v = json_object_get_double_member (obj, key);
      else if (value_of_type (obj, key, G_TYPE_INT64))
        v = (double) json_object_get_int_member (obj, key);
      else
        v = -1;
    }
  if (!(v > 0 && isfinite (v)))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"%s\" must be a positive number", origin, key);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

static gboolean
get_axes (JsonObject *obj, const char *origin, BnFlux2Config *cfg,
          GError **error)
{
  const char *key = "axes_dims_rope";
  if (!given (obj, key))
    {
      cfg->n_axes = 4; /* diffusers' default (32, 32, 32, 32) */
      for (int a = 0; a < 4; a++)
        cfg->axes_dim[a] = 32;
      return TRUE;
    }
  JsonNode *node = json_object_get_member (obj, key);
  JsonArray *arr = JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  guint n = arr ? json_array_get_length (arr) : 0;
  gboolean ok = n >= 1 && n <= BN_FLUX2_MAX_AXES;
  for (guint a = 0; ok && a < n; a++)
    {
      JsonNode *e = json_array_get_element (arr, a);
      ok = JSON_NODE_HOLDS_VALUE (e)
           && json_node_get_value_type (e) == G_TYPE_INT64;
      gint64 v = ok ? json_node_get_int (e) : 0;
      /* Each axis rotates whole pairs of head dims. */
      ok = ok && v >= 2 && v <= MAX_DIM && v % 2 == 0;
      cfg->axes_dim[a] = (int) v;
    }
  if (!ok)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"%s\" must list 1 to %d even positive integers",
                   origin, key, BN_FLUX2_MAX_AXES);
      return FALSE;
    }
  cfg->n_axes = (int) n;
  return TRUE;
}

gboolean
bn_flux2_config_parse (const char *json, gssize len, const char *origin,
                       BnFlux2Config *cfg, GError **error)
{
  memset (cfg, 0, sizeof *cfg);
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *obj = parse_object (parser, json, len, origin, error);
  if (!obj)
    return FALSE;

  int patch = 0, out_channels = 0;
  double mlp_ratio = 0, eps = 0;
  /* Defaults are diffusers' Flux2Transformer2DModel defaults. */
  if (!get_int (obj, "in_channels", 0, 1, MAX_DIM, origin, &cfg->in_channels, error)
      || !get_int (obj, "out_channels", cfg->in_channels, 1, MAX_DIM, origin, &out_channels, error)
      || !get_int (obj, "patch_size", 1, 1, 16, origin, &patch, error)
      || !get_int (obj, "num_layers", -1, 0, MAX_LAYERS, origin, &cfg->num_layers, error)
      || !get_int (obj, "num_single_layers", -1, 0, MAX_LAYERS, origin, &cfg->num_single_layers, error)
      || !get_int (obj, "attention_head_dim", 0, 2, MAX_DIM, origin, &cfg->head_dim, error)
      || !get_int (obj, "num_attention_heads", 0, 1, MAX_DIM, origin, &cfg->n_heads, error)
      || !get_int (obj, "joint_attention_dim", 0, 1, 1 << 20, origin, &cfg->context_dim, error)
      || !get_int (obj, "timestep_guidance_channels", 256, 2, MAX_DIM, origin, &cfg->time_channels, error)
      || !get_positive (obj, "mlp_ratio", 3.0, origin, &mlp_ratio, error)
      || !get_positive (obj, "rope_theta", 2000.0, origin, &cfg->rope_theta, error)
      || !get_positive (obj, "eps", 1e-6, origin, &eps, error)
      || !get_axes (obj, origin, cfg, error))
    return FALSE;
  cfg->eps = (float) eps;

  /* out_channels' own bound keeps patch²·out_channels within MAX_DIM·256. */
  cfg->out_channels = patch * patch * out_channels;
  int axes_sum = 0;
  for (int a = 0; a < cfg->n_axes; a++)
    axes_sum += cfg->axes_dim[a];
  const char *problem = NULL;
  if ((gint64) cfg->n_heads * cfg->head_dim > MAX_DIM)
    problem = "num_attention_heads × attention_head_dim is too large";
  else if (cfg->head_dim % 2 || axes_sum != cfg->head_dim)
    problem = "axes_dims_rope must sum to attention_head_dim (an even number)";
  else if (cfg->time_channels % 2)
    problem = "timestep_guidance_channels must be even";
  if (problem)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT, "%s: %s", origin,
                   problem);
      return FALSE;
    }
  cfg->dim = cfg->n_heads * cfg->head_dim;
  /* Python's int(dim * mlp_ratio) truncates. */
  double hidden = floor ((double) cfg->dim * mlp_ratio);
  if (hidden < 1 || hidden > 4.0 * MAX_DIM)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: mlp_ratio %g gives an MLP width out of range", origin,
                   mlp_ratio);
      return FALSE;
    }
  cfg->mlp_hidden = (int) hidden;

  /* FLUX.2 [dev] embeds a guidance value too; klein has no such input. */
  gboolean guidance = TRUE; /* diffusers' default */
  if (value_of_type (obj, "guidance_embeds", G_TYPE_BOOLEAN))
    guidance = json_object_get_boolean_member (obj, "guidance_embeds");
  if (guidance)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: guidance embedding (\"guidance_embeds\": true, FLUX.2 "
                   "[dev]) is not supported; klein has none",
                   origin);
      return FALSE;
    }
  return TRUE;
}

gboolean
bn_flux2_quant_parse (const char *json, gssize len, const char *origin,
                      BnQuantSpec *quant, GError **error)
{
  memset (quant, 0, sizeof *quant);
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *obj = parse_object (parser, json, len, origin, error);
  if (!obj)
    return FALSE;
  if (!get_int (obj, "bits", 0, 1, 4, origin, &quant->bits, error)
      || !get_int (obj, "group_size", 0, 32, 128, origin, &quant->group_size, error))
    return FALSE;
  const char *solver = value_of_type (obj, "solver", G_TYPE_STRING)
                         ? json_object_get_string_member (obj, "solver") : "";
  quant->ternary = !strcmp (solver, "ternary");
  if (quant->bits == 3
      || (quant->group_size != 32 && quant->group_size != 64 && quant->group_size != 128)
      || (quant->ternary && quant->bits != 2))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: unsupported packing: %d bits, group size %d, solver "
                   "\"%s\"", origin, quant->bits, quant->group_size, solver);
      return FALSE;
    }
  return TRUE;
}

/* ---- tensor names ------------------------------------------------------- */

typedef enum {
  G_IMG_IN, G_TXT_IN, G_TIME_IN, G_TIME_OUT, G_MOD_IMG, G_MOD_TXT,
  G_MOD_SINGLE, G_FINAL_MOD, G_FINAL_OUT, G_COUNT
} GlobalLinear;

/* Formats taking the block index. */
typedef struct {
  const char *qkv[3]; /* one fused or three separate; unused entries NULL */
  const char *q_norm, *k_norm, *proj, *mlp_in, *mlp_out;
} StreamNames;

typedef struct {
  const char *scheme;
  const char *global[G_COUNT]; /* linear prefixes */
  StreamNames img, txt;
  const char *linear1, *linear2, *single_q_norm, *single_k_norm;
  gboolean final_shift_first;
} NameScheme;

#define D_ATTN "transformer_blocks.%d.attn."
#define B_DBL "double_blocks.%d."
#define D_SGL "single_transformer_blocks.%d.attn."
#define B_SGL "single_blocks.%d."

static const NameScheme schemes[] = {
  { "diffusers",
    { "x_embedder", "context_embedder",
      "time_guidance_embed.timestep_embedder.linear_1",
      "time_guidance_embed.timestep_embedder.linear_2",
      "double_stream_modulation_img.linear", "double_stream_modulation_txt.linear",
      "single_stream_modulation.linear", "norm_out.linear", "proj_out" },
    { { D_ATTN "to_q", D_ATTN "to_k", D_ATTN "to_v" },
      D_ATTN "norm_q.weight", D_ATTN "norm_k.weight", D_ATTN "to_out.0",
      "transformer_blocks.%d.ff.linear_in", "transformer_blocks.%d.ff.linear_out" },
    { { D_ATTN "add_q_proj", D_ATTN "add_k_proj", D_ATTN "add_v_proj" },
      D_ATTN "norm_added_q.weight", D_ATTN "norm_added_k.weight", D_ATTN "to_add_out",
      "transformer_blocks.%d.ff_context.linear_in",
      "transformer_blocks.%d.ff_context.linear_out" },
    D_SGL "to_qkv_mlp_proj", D_SGL "to_out", D_SGL "norm_q.weight",
    D_SGL "norm_k.weight", FALSE },
  { "BFL",
    { "img_in", "txt_in", "time_in.in_layer", "time_in.out_layer",
      "double_stream_modulation_img.lin", "double_stream_modulation_txt.lin",
      "single_stream_modulation.lin", "final_layer.adaLN_modulation.1",
      "final_layer.linear" },
    { { B_DBL "img_attn.qkv", NULL, NULL },
      B_DBL "img_attn.norm.query_norm.scale", B_DBL "img_attn.norm.key_norm.scale",
      B_DBL "img_attn.proj", B_DBL "img_mlp.0", B_DBL "img_mlp.2" },
    { { B_DBL "txt_attn.qkv", NULL, NULL },
      B_DBL "txt_attn.norm.query_norm.scale", B_DBL "txt_attn.norm.key_norm.scale",
      B_DBL "txt_attn.proj", B_DBL "txt_mlp.0", B_DBL "txt_mlp.2" },
    B_SGL "linear1", B_SGL "linear2", B_SGL "norm.query_norm.scale",
    B_SGL "norm.key_norm.scale", TRUE },
};

static const NameScheme *
detect_scheme (const BnSafetensors *st, GError **error)
{
  for (size_t i = 0; i < G_N_ELEMENTS (schemes); i++)
    {
      g_autofree char *name = g_strconcat (schemes[i].global[G_IMG_IN], ".weight", NULL);
      if (bn_safetensors_find (st, name))
        return &schemes[i];
    }
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
               "%s: not a FLUX.2 transformer: neither x_embedder.weight "
               "(diffusers) nor img_in.weight (BFL) is in it",
               bn_safetensors_path (st));
  return NULL;
}

/* ---- binding ------------------------------------------------------------ */

typedef struct {
  const BnSafetensors *st;
  const BnQuantSpec *quant;
  const BnFlux2Config *cfg;
  float *next_norm; /* the next free head_dim slot in BnFlux2Dit.norms */
} Binder;

static gboolean
bind_linear (Binder *b, const char *fmt, int block, int64_t n, int64_t k,
             BnTensor *out, GError **error)
{
  g_autofree char *prefix = g_strdup_printf (fmt, block);
  return bn_weights_linear (b->st, prefix, n, k, b->quant, out, error);
}

static gboolean
bind_norm (Binder *b, const char *fmt, int block, const float **out,
           GError **error)
{
  g_autofree char *name = g_strdup_printf (fmt, block);
  int64_t shape[1] = { b->cfg->head_dim };
  guint floats = (1u << BN_DTYPE_F32) | (1u << BN_DTYPE_F16) | (1u << BN_DTYPE_BF16);
  BnTensor view;
  if (!bn_safetensors_view (b->st, name, floats, 1, shape, &view, error))
    return FALSE;
  bn_convert_to_f32 (view.dtype, view.data, b->next_norm, (size_t) shape[0]);
  *out = b->next_norm;
  b->next_norm += shape[0];
  return TRUE;
}

/* Rows [r0, r0 + n) of a 2-D dense or packed tensor, as a view. */
static void
row_slice (const BnTensor *w, int64_t r0, int64_t n, BnTensor *out)
{
  *out = *w;
  out->owned = NULL;
  out->shape[0] = n;
  int64_t k = w->shape[1];
  if (!bn_dtype_is_packed (w->dtype))
    {
      out->data = (char *) w->data + (size_t) (r0 * k) * bn_dtype_size (w->dtype);
      return;
    }
  size_t group_bytes = (size_t) (r0 * (k / w->group_size)) * bn_dtype_size (w->scale_dtype);
  out->data = (char *) w->data + (size_t) (r0 * (k * bn_dtype_bits (w->dtype) / 32)) * 4;
  out->scales = (const char *) w->scales + group_bytes;
  out->biases = (const char *) w->biases + group_bytes;
}

static gboolean
bind_stream (Binder *b, const StreamNames *names, int block, BnFlux2Stream *s,
             GError **error)
{
  int64_t d = b->cfg->dim, m = b->cfg->mlp_hidden;
  s->n_qkv = names->qkv[1] ? 3 : 1;
  for (int j = 0; j < s->n_qkv; j++)
    if (!bind_linear (b, names->qkv[j], block, 3 * d / s->n_qkv, d, &s->qkv[j], error))
      return FALSE;
  return bind_norm (b, names->q_norm, block, &s->q_norm, error)
         && bind_norm (b, names->k_norm, block, &s->k_norm, error)
         && bind_linear (b, names->proj, block, d, d, &s->proj, error)
         && bind_linear (b, names->mlp_in, block, 2 * m, d, &s->mlp_in, error)
         && bind_linear (b, names->mlp_out, block, d, m, &s->mlp_out, error);
}

static gboolean
bind_all (BnFlux2Dit *dit, const NameScheme *ns, Binder *b, GError **error)
{
  const BnFlux2Config *c = &dit->cfg;
  int64_t d = c->dim, m = c->mlp_hidden;
  struct {
    BnTensor *t;
    int64_t n, k;
  } globals[G_COUNT] = {
    [G_IMG_IN] = { &dit->img_in, d, c->in_channels },
    [G_TXT_IN] = { &dit->txt_in, d, c->context_dim },
    [G_TIME_IN] = { &dit->time_in, d, c->time_channels },
    [G_TIME_OUT] = { &dit->time_out, d, d },
    [G_MOD_IMG] = { &dit->mod_img, 6 * d, d },
    [G_MOD_TXT] = { &dit->mod_txt, 6 * d, d },
    [G_MOD_SINGLE] = { &dit->mod_single, 3 * d, d },
    [G_FINAL_MOD] = { &dit->final_mod, 2 * d, d },
    [G_FINAL_OUT] = { &dit->final_out, c->out_channels, d },
  };
  for (int i = 0; i < G_COUNT; i++)
    if (!bind_linear (b, ns->global[i], 0, globals[i].n, globals[i].k,
                      globals[i].t, error))
      return FALSE;
  dit->final_shift_first = ns->final_shift_first;

  for (int i = 0; i < c->num_layers; i++)
    if (!bind_stream (b, &ns->img, i, &dit->doubles[i].img, error)
        || !bind_stream (b, &ns->txt, i, &dit->doubles[i].txt, error))
      return FALSE;
  for (int i = 0; i < c->num_single_layers; i++)
    {
      BnFlux2SingleBlock *s = &dit->singles[i];
      if (!bind_linear (b, ns->linear1, i, 3 * d + 2 * m, d, &s->linear1, error)
          || !bind_linear (b, ns->linear2, i, d, d + m, &s->linear2, error)
          || !bind_norm (b, ns->single_q_norm, i, &s->q_norm, error)
          || !bind_norm (b, ns->single_k_norm, i, &s->k_norm, error))
        return FALSE;
      /* The forward runs linear1's q|k|v and MLP rows in separate passes. */
      row_slice (&s->linear1, 0, 3 * d, &s->linear1_qkv);
      row_slice (&s->linear1, 3 * d, 2 * m, &s->linear1_mlp);
    }
  return TRUE;
}

BnFlux2Dit *
bn_flux2_dit_new (BnSafetensors *st, const BnFlux2Config *cfg,
                  const BnQuantSpec *quant, GError **error)
{
  BnFlux2Dit *dit = g_new0 (BnFlux2Dit, 1);
  dit->st = st;
  dit->cfg = *cfg;
  const NameScheme *ns = detect_scheme (st, error);
  if (!ns)
    goto fail;
  /* Two streams × (q, k) per double block, (q, k) per single block. */
  size_t n_norms = 4 * (size_t) cfg->num_layers + 2 * (size_t) cfg->num_single_layers;
  dit->doubles = g_try_new0 (BnFlux2DoubleBlock, cfg->num_layers + 1);
  dit->singles = g_try_new0 (BnFlux2SingleBlock, cfg->num_single_layers + 1);
  dit->norms = g_try_new (float, n_norms * (size_t) cfg->head_dim + 1);
  if (!dit->doubles || !dit->singles || !dit->norms)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "out of memory for the transformer's block tables");
      goto fail;
    }
  Binder b = { st, quant, &dit->cfg, dit->norms };
  if (!bind_all (dit, ns, &b, error))
    goto fail;
  g_debug ("FLUX.2 transformer %s: %s names, %d double + %d single blocks, "
           "dim %d, %s",
           bn_safetensors_path (st), ns->scheme, cfg->num_layers,
           cfg->num_single_layers, cfg->dim,
           quant ? "MLX-packed linears allowed" : "dense");
  return dit;

fail:
  bn_flux2_dit_free (dit);
  return NULL;
}

static void
clear_stream (BnFlux2Stream *s)
{
  for (int j = 0; j < 3; j++)
    bn_tensor_clear (&s->qkv[j]);
  bn_tensor_clear (&s->proj);
  bn_tensor_clear (&s->mlp_in);
  bn_tensor_clear (&s->mlp_out);
}

void
bn_flux2_dit_free (BnFlux2Dit *dit)
{
  if (!dit)
    return;
  BnTensor *globals[] = { &dit->img_in, &dit->txt_in, &dit->time_in,
                          &dit->time_out, &dit->mod_img, &dit->mod_txt,
                          &dit->mod_single, &dit->final_mod, &dit->final_out };
  for (size_t i = 0; i < G_N_ELEMENTS (globals); i++)
    bn_tensor_clear (globals[i]);
  for (int i = 0; dit->doubles && i < dit->cfg.num_layers; i++)
    {
      clear_stream (&dit->doubles[i].img);
      clear_stream (&dit->doubles[i].txt);
    }
  for (int i = 0; dit->singles && i < dit->cfg.num_single_layers; i++)
    {
      bn_tensor_clear (&dit->singles[i].linear1);
      bn_tensor_clear (&dit->singles[i].linear2);
    }
  g_free (dit->doubles);
  g_free (dit->singles);
  g_free (dit->norms);
  bn_safetensors_free (dit->st);
  g_free (dit);
}

/* ---- from files --------------------------------------------------------- */

static char *
read_small_file (const char *path, gsize *len, GError **error)
{
  char *text = NULL;
  GError *local = NULL;
  if (!g_file_get_contents (path, &text, len, &local))
    {
      gboolean missing = g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
      g_set_error (error, BONSAI_ERROR,
                   missing ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO, "%s",
                   local->message);
      g_error_free (local);
      return NULL;
    }
  if (*len > MAX_CONFIG_BYTES)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: %" G_GSIZE_FORMAT " bytes is too large for a config file",
                   path, *len);
      g_free (text);
      return NULL;
    }
  return text;
}

static gboolean
parse_config_file (const char *path, BnFlux2Config *cfg, GError **error)
{
  gsize len;
  g_autofree char *text = read_small_file (path, &len, error);
  return text && bn_flux2_config_parse (text, (gssize) len, path, cfg, error);
}

static gboolean
find_config (const BnSafetensors *st, const char *dir, const char *config_path,
             BnFlux2Config *cfg, GError **error)
{
  if (config_path)
    return parse_config_file (config_path, cfg, error);
  const char *meta = bn_safetensors_metadata (st, "config");
  if (meta)
    {
      g_autofree char *origin = g_strdup_printf ("%s (__metadata__ config)",
                                                 bn_safetensors_path (st));
      return bn_flux2_config_parse (meta, -1, origin, cfg, error);
    }
  g_autofree char *beside = g_build_filename (dir, "config.json", NULL);
  if (g_file_test (beside, G_FILE_TEST_EXISTS))
    return parse_config_file (beside, cfg, error);
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
               "%s: no transformer config: no __metadata__ \"config\" entry "
               "and no %s", bn_safetensors_path (st), beside);
  return FALSE;
}

/* The quantization_config.json in `dir`, if there is one. */
static gboolean
find_quant (const char *dir, BnQuantSpec *quant, gboolean *found,
            GError **error)
{
  g_autofree char *path = g_build_filename (dir, "quantization_config.json", NULL);
  *found = g_file_test (path, G_FILE_TEST_EXISTS);
  if (!*found)
    return TRUE;
  gsize len;
  g_autofree char *text = read_small_file (path, &len, error);
  return text && bn_flux2_quant_parse (text, (gssize) len, path, quant, error);
}

BnFlux2Dit *
bn_flux2_dit_load (const char *weights, const char *config_path,
                   GError **error)
{
  BnSafetensors *st = bn_safetensors_open (weights, error);
  if (!st)
    return NULL;
  g_autofree char *dir = g_file_test (weights, G_FILE_TEST_IS_DIR)
                           ? g_strdup (weights) : g_path_get_dirname (weights);
  BnFlux2Config cfg;
  BnQuantSpec quant;
  gboolean packed = FALSE;
  if (!find_config (st, dir, config_path, &cfg, error)
      || !find_quant (dir, &quant, &packed, error))
    {
      bn_safetensors_free (st);
      return NULL;
    }
  return bn_flux2_dit_new (st, &cfg, packed ? &quant : NULL, error);
}
