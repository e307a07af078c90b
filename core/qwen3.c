/* qwen3.c — the Qwen3 text encoder: config, weight loading and forward. */
#include "qwen3.h"

#include "bonsai/bonsai.h"
#include "kernels/kernels.h"
#include "ops.h"
#include "safetensors.h"
#include "weights.h"

#include <json-glib/json-glib.h>
#include <math.h>

/* Klein's recipe: the states after layers 9, 18 and 27 of Qwen3-4B. */
static const int default_out_layers[] = { 9, 18, 27 };

/* ---- config ------------------------------------------------------------- */

static gboolean
get_int (JsonObject *o, const char *origin, const char *key, gboolean required,
         int lo, int hi, int *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    {
      if (!required)
        return TRUE;
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: missing \"%s\"", origin, key);
      return FALSE;
    }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64
      || json_node_get_int (n) < lo || json_node_get_int (n) > hi)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"%s\" must be an integer from %d to %d", origin, key,
                   lo, hi);
      return FALSE;
    }
  *out = (int) json_node_get_int (n);
  return TRUE;
}

static gboolean
get_positive_double (JsonObject *o, const char *origin, const char *key,
                     double *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  GType t = JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : G_TYPE_NONE;
  double v = t == G_TYPE_INT64 ? (double) json_node_get_int (n)
             : t == G_TYPE_DOUBLE ? json_node_get_double (n) : NAN;
  if (!(v > 0 && isfinite (v)))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"%s\" must be a positive number", origin, key);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

/* MLX writes {"group_size": G, "bits": B} under "quantization" (and a copy
 * under "quantization_config"); other quantizers use "quantization_config"
 * with a "quant_method" and no "bits", which this engine does not read. */
static gboolean
parse_quantization (JsonObject *root, const char *origin, BnQwen3Config *cfg,
                    GError **error)
{
  JsonObject *q = NULL;
  const char *keys[] = { "quantization", "quantization_config" };
  for (size_t i = 0; i < G_N_ELEMENTS (keys) && !q; i++)
    {
      JsonNode *n = json_object_get_member (root, keys[i]);
      if (n && JSON_NODE_HOLDS_OBJECT (n)
          && json_object_has_member (json_node_get_object (n), "bits"))
        q = json_node_get_object (n);
    }
  if (!q)
    return TRUE;
  g_autofree char *where = g_strdup_printf ("%s (quantization)", origin);
  if (!get_int (q, where, "bits", TRUE, 1, 8, &cfg->quant_bits, error)
      || !get_int (q, where, "group_size", TRUE, 1, 1024,
                   &cfg->quant_group_size, error))
    return FALSE;
  BnDType packed;
  if (!bn_dtype_packed_for_bits (cfg->quant_bits, &packed)
      || (cfg->quant_group_size != 32 && cfg->quant_group_size != 64
          && cfg->quant_group_size != 128))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: %d-bit groups of %d are not supported (bits 1, 2 or 4; "
                   "groups of 32, 64 or 128)", where, cfg->quant_bits,
                   cfg->quant_group_size);
      return FALSE;
    }
  return TRUE;
}

gboolean
bn_qwen3_config_parse (const char *json, gssize len, const char *origin,
                       BnQwen3Config *cfg, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  GError *perr = NULL;
  if (!bn_json_check (origin, json, len, error))
    return FALSE;
  if (!json_parser_load_from_data (parser, json, len, &perr))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: not valid JSON: %s", origin, perr->message);
      g_error_free (perr);
      return FALSE;
    }
  JsonNode *rn = json_parser_get_root (parser);
  if (!rn || !JSON_NODE_HOLDS_OBJECT (rn))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: not a JSON object", origin);
      return FALSE;
    }
  JsonObject *o = json_node_get_object (rn);
  BnQwen3Config c = { 0 };
  c.rope_theta = 10000.0; /* Hugging Face's Qwen3Config defaults */
  c.rms_norm_eps = 1e-6;
  c.head_dim = 128;
  /* The bounds keep every product of sizes far inside int64. */
  if (!get_int (o, origin, "hidden_size", TRUE, 1, 65536, &c.hidden_size, error)
      || !get_int (o, origin, "num_hidden_layers", TRUE, 1, 1024, &c.n_layers, error)
      || !get_int (o, origin, "num_attention_heads", TRUE, 1, 1024, &c.n_heads, error)
      || !get_int (o, origin, "intermediate_size", TRUE, 1, 1 << 20,
                   &c.intermediate_size, error)
      || !get_int (o, origin, "vocab_size", TRUE, 1, 1 << 24, &c.vocab_size, error))
    return FALSE;
  c.n_kv_heads = c.n_heads;
  if (!get_int (o, origin, "num_key_value_heads", FALSE, 1, 1024, &c.n_kv_heads, error)
      || !get_int (o, origin, "head_dim", FALSE, 2, 4096, &c.head_dim, error)
      || !get_positive_double (o, origin, "rms_norm_eps", &c.rms_norm_eps, error))
    return FALSE;
  /* transformers 5 moved rope_theta into "rope_parameters". */
  JsonNode *rp = json_object_get_member (o, "rope_parameters");
  if (rp && JSON_NODE_HOLDS_OBJECT (rp)
      && !get_positive_double (json_node_get_object (rp), origin, "rope_theta",
                               &c.rope_theta, error))
    return FALSE;
  if (!get_positive_double (o, origin, "rope_theta", &c.rope_theta, error))
    return FALSE;
  JsonNode *rs = json_object_get_member (o, "rope_scaling");
  if (rs && !JSON_NODE_HOLDS_NULL (rs))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"rope_scaling\" is not supported", origin);
      return FALSE;
    }
  if (c.n_heads % c.n_kv_heads != 0 || c.head_dim % 2 != 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: %d attention heads do not share %d key/value heads "
                   "evenly, or head_dim %d is odd", origin, c.n_heads,
                   c.n_kv_heads, c.head_dim);
      return FALSE;
    }
  if (!parse_quantization (o, origin, &c, error))
    return FALSE;
  *cfg = c;
  return TRUE;
}

/* The optional non-HF "out_layers" list the reference configs carry. */
static gboolean
config_out_layers (const char *json, const char *origin, GArray *out,
                   GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!bn_json_check (origin, json, -1, NULL)
      || !json_parser_load_from_data (parser, json, -1, NULL))
    return TRUE; /* already reported by bn_qwen3_config_parse */
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  JsonNode *n = json_object_get_member (o, "out_layers");
  if (!n)
    return TRUE;
  JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  for (guint i = 0; a && i < json_array_get_length (a); i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64
          || json_node_get_int (e) < 0 || json_node_get_int (e) > G_MAXINT)
        a = NULL;
      else
        {
          int k = (int) json_node_get_int (e);
          g_array_append_val (out, k);
        }
    }
  if (!a)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"out_layers\" must be a list of layer numbers", origin);
      return FALSE;
    }
  return TRUE;
}

/* ---- locating the files -------------------------------------------------- */

static char *
first_existing (const char *dir, const char *const *names)
{
  for (; *names; names++)
    {
      char *p = g_build_filename (dir, *names, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        return p;
      g_free (p);
    }
  return NULL;
}

static const char *const config_names[] = { "config.json", "qwen3_config.json", NULL };
/* The index first: the release ships both model.safetensors and an index. */
static const char *const weight_names[] = {
  "model.safetensors.index.json", "model.safetensors",
  "qwen3_weights.safetensors", NULL
};

char *
bn_qwen3_find_dir (const char *dir, GError **error)
{
  const char *subs[] = { ".", "text_encoder-mlx-4bit", "text_encoder" };
  for (size_t i = 0; i < G_N_ELEMENTS (subs); i++)
    {
      g_autofree char *d = g_build_filename (dir, subs[i], NULL);
      g_autofree char *cfg = first_existing (d, config_names);
      if (cfg)
        return i == 0 ? g_strdup (dir) : g_steal_pointer (&d);
    }
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
               "%s: no text encoder (config.json) here or in "
               "text_encoder-mlx-4bit/ or text_encoder/", dir);
  return NULL;
}

/* ---- the model ----------------------------------------------------------- */

typedef struct {
  BnTensor q, k, v, o, gate, up, down; /* views into the mapping */
  float *in_norm, *post_norm, *q_norm, *k_norm; /* owned f32 copies */
  GPtrArray *files; /* const BnStTensor *: every tensor of the layer */
} Layer;

struct BnQwen3 {
  BnQwen3Config cfg;
  BnSafetensors *st;
  int *out_layers;
  int n_out;
  int n_run; /* layers loaded and run: the deepest output layer */
  BnTensor embed;
  GPtrArray *embed_files;
  Layer *layers;
  gboolean keep_pages;
};

/* Every tensor whose name starts with `prefix`, for dropping its pages. */
static GPtrArray *
tensors_with_prefix (const BnSafetensors *st, const char *prefix)
{
  GPtrArray *a = g_ptr_array_new ();
  size_t n = strlen (prefix);
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      if (!strncmp (t->name, prefix, n))
        g_ptr_array_add (a, (gpointer) t);
    }
  return a;
}

static float *
load_norm (const BnSafetensors *st, const char *name, int64_t n, GError **error)
{
  BnTensor t;
  guint mask = (1u << BN_DTYPE_F32) | (1u << BN_DTYPE_F16) | (1u << BN_DTYPE_BF16);
  if (!bn_safetensors_view (st, name, mask, 1, &n, &t, error))
    return NULL;
  float *w = g_new (float, n);
  bn_convert_to_f32 (t.dtype, t.data, w, (size_t) n);
  return w;
}

static gboolean
load_layer (BnQwen3 *m, int i, Layer *ly, GError **error)
{
  const BnQwen3Config *c = &m->cfg;
  BnQuantSpec qs = { c->quant_bits, c->quant_group_size, FALSE };
  const BnQuantSpec *quant = c->quant_bits ? &qs : NULL;
  int64_t h = c->hidden_size, qw = (int64_t) c->n_heads * c->head_dim;
  int64_t kw = (int64_t) c->n_kv_heads * c->head_dim, im = c->intermediate_size;
  const struct {
    const char *name;
    BnTensor *t;
    int64_t n, k;
  } lin[] = {
    { "self_attn.q_proj", &ly->q, qw, h },
    { "self_attn.k_proj", &ly->k, kw, h },
    { "self_attn.v_proj", &ly->v, kw, h },
    { "self_attn.o_proj", &ly->o, h, qw },
    { "mlp.gate_proj", &ly->gate, im, h },
    { "mlp.up_proj", &ly->up, im, h },
    { "mlp.down_proj", &ly->down, h, im },
  };
  for (size_t j = 0; j < G_N_ELEMENTS (lin); j++)
    {
      g_autofree char *p = g_strdup_printf ("model.layers.%d.%s", i, lin[j].name);
      if (!bn_weights_linear (m->st, p, lin[j].n, lin[j].k, quant, lin[j].t, error))
        return FALSE;
    }
  const struct {
    const char *name;
    float **w;
    int64_t n;
  } norms[] = {
    { "input_layernorm", &ly->in_norm, h },
    { "post_attention_layernorm", &ly->post_norm, h },
    { "self_attn.q_norm", &ly->q_norm, c->head_dim },
    { "self_attn.k_norm", &ly->k_norm, c->head_dim },
  };
  for (size_t j = 0; j < G_N_ELEMENTS (norms); j++)
    {
      g_autofree char *p = g_strdup_printf ("model.layers.%d.%s.weight", i,
                                            norms[j].name);
      if (!(*norms[j].w = load_norm (m->st, p, norms[j].n, error)))
        return FALSE;
    }
  g_autofree char *prefix = g_strdup_printf ("model.layers.%d.", i);
  ly->files = tensors_with_prefix (m->st, prefix);
  return TRUE;
}

static void
layer_clear (Layer *ly)
{
  g_free (ly->in_norm);
  g_free (ly->post_norm);
  g_free (ly->q_norm);
  g_free (ly->k_norm);
  if (ly->files)
    g_ptr_array_unref (ly->files);
}

void
bn_qwen3_free (BnQwen3 *m)
{
  if (!m)
    return;
  for (int i = 0; m->layers && i < m->n_run; i++)
    layer_clear (&m->layers[i]);
  g_free (m->layers);
  if (m->embed_files)
    g_ptr_array_unref (m->embed_files);
  g_free (m->out_layers);
  bn_safetensors_free (m->st);
  g_free (m);
}

/* Finds the weights and the config text for `path` (see bn_qwen3_open). */
static gboolean
open_files (const char *path, BnSafetensors **st_out, char **cfg_text,
            char **cfg_origin, GError **error)
{
  g_autofree char *weights = NULL, *cfg_file = NULL;
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      weights = first_existing (path, weight_names);
      if (!weights)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                       "%s: no model.safetensors[.index.json] or "
                       "qwen3_weights.safetensors", path);
          return FALSE;
        }
      cfg_file = first_existing (path, config_names);
    }
  else
    {
      weights = g_strdup (path);
      g_autofree char *dir = g_path_get_dirname (path);
      cfg_file = first_existing (dir, config_names);
    }
  BnSafetensors *st = bn_safetensors_open (weights, error);
  if (!st)
    return FALSE;
  const char *meta = bn_safetensors_metadata (st, "config");
  if (meta && !g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      *cfg_text = g_strdup (meta);
      *cfg_origin = g_strdup_printf ("%s (metadata \"config\")", weights);
    }
  else if (cfg_file)
    {
      GError *ferr = NULL;
      if (!g_file_get_contents (cfg_file, cfg_text, NULL, &ferr))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "%s", ferr->message);
          g_error_free (ferr);
          bn_safetensors_free (st);
          return FALSE;
        }
      *cfg_origin = g_steal_pointer (&cfg_file);
    }
  else if (meta)
    {
      *cfg_text = g_strdup (meta);
      *cfg_origin = g_strdup_printf ("%s (metadata \"config\")", weights);
    }
  else
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "%s: no config.json beside it and no \"config\" metadata",
                   weights);
      bn_safetensors_free (st);
      return FALSE;
    }
  *st_out = st;
  return TRUE;
}

static gboolean
set_out_layers (BnQwen3 *m, const BnQwen3Options *opts, const char *cfg_text,
                const char *origin, GError **error)
{
  g_autoptr (GArray) list = g_array_new (FALSE, FALSE, sizeof (int));
  if (opts && opts->out_layers)
    g_array_append_vals (list, opts->out_layers, (guint) MAX (opts->n_out, 0));
  else
    {
      if (!config_out_layers (cfg_text, origin, list, error))
        return FALSE;
      if (list->len == 0)
        g_array_append_vals (list, default_out_layers,
                             G_N_ELEMENTS (default_out_layers));
    }
  if (list->len == 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "no text encoder output layer requested");
      return FALSE;
    }
  for (guint i = 0; i < list->len; i++)
    {
      int k = g_array_index (list, int, i);
      if (k < 0 || k > m->cfg.n_layers || (i > 0 && k <= g_array_index (list, int, i - 1)))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                       "text encoder output layers must increase and lie in "
                       "0..%d (%s has %d layers); got %d at position %u",
                       m->cfg.n_layers, origin, m->cfg.n_layers, k, i);
          return FALSE;
        }
    }
  m->n_out = (int) list->len;
  m->n_run = g_array_index (list, int, list->len - 1);
  m->out_layers = (int *) g_array_free (g_steal_pointer (&list), FALSE);
  return TRUE;
}

BnQwen3 *
bn_qwen3_open (const char *path, const BnQwen3Options *opts, GError **error)
{
  g_autofree char *cfg_text = NULL, *origin = NULL;
  BnQwen3 *m = g_new0 (BnQwen3, 1);
  m->keep_pages = opts && opts->keep_pages;
  if (!open_files (path, &m->st, &cfg_text, &origin, error)
      || !bn_qwen3_config_parse (cfg_text, -1, origin, &m->cfg, error)
      || !set_out_layers (m, opts, cfg_text, origin, error))
    goto fail;
  const BnQwen3Config *c = &m->cfg;
  BnQuantSpec qs = { c->quant_bits, c->quant_group_size, FALSE };
  if (!bn_weights_linear (m->st, "model.embed_tokens", c->vocab_size,
                          c->hidden_size, c->quant_bits ? &qs : NULL, &m->embed,
                          error))
    goto fail;
  m->embed_files = tensors_with_prefix (m->st, "model.embed_tokens.");
  m->layers = g_new0 (Layer, m->n_run);
  for (int i = 0; i < m->n_run; i++)
    if (!load_layer (m, i, &m->layers[i], error))
      goto fail;
  g_debug ("text encoder %s: %d of %d layers, hidden %d, %s", path, m->n_run,
           c->n_layers, c->hidden_size, c->quant_bits ? "MLX pack" : "dense");
  return m;
fail:
  bn_qwen3_free (m);
  return NULL;
}

const BnQwen3Config *
bn_qwen3_config (const BnQwen3 *m)
{
  return &m->cfg;
}

const int *
bn_qwen3_out_layers (const BnQwen3 *m, int *n_out)
{
  *n_out = m->n_out;
  return m->out_layers;
}

int64_t
bn_qwen3_feature_dim (const BnQwen3 *m)
{
  return (int64_t) m->n_out * m->cfg.hidden_size;
}

/* ---- forward ------------------------------------------------------------- */

typedef struct {
  int64_t n_tok;
  float *x;        /* [n_tok, hidden] the residual stream */
  float *h;        /* [n_tok, hidden] normed input / branch output */
  /* One block serves attention (q, k, v, att) and then the MLP (gate, up). */
  float *q, *k, *v, *att, *gate, *up;
  float *cos_t, *sin_t; /* [n_tok, head_dim/2] */
  const uint8_t *mask;
} Scratch;

static void
drop_pages (const BnQwen3 *m, GPtrArray *files)
{
  if (m->keep_pages)
    return;
  for (guint i = 0; i < files->len; i++)
    bn_safetensors_drop_pages (m->st, files->pdata[i]);
}

static void
add_rows (float *x, const float *y, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    x[i] += y[i];
}

static void
run_layer (const BnQwen3 *m, const Layer *ly, BnThreadPool *pool, Scratch *s)
{
  const BnQwen3Config *c = &m->cfg;
  int64_t n = s->n_tok, h = c->hidden_size, im = c->intermediate_size;
  int64_t qw = (int64_t) c->n_heads * c->head_dim;
  int64_t kw = (int64_t) c->n_kv_heads * c->head_dim;
  float eps = (float) c->rms_norm_eps;

  memcpy (s->h, s->x, (size_t) (n * h) * sizeof (float));
  bn_rmsnorm_rows (s->h, n, h, h, ly->in_norm, eps);
  bn_linear (pool, &ly->q, s->h, n, h, s->q, qw);
  bn_linear (pool, &ly->k, s->h, n, h, s->k, kw);
  bn_linear (pool, &ly->v, s->h, n, h, s->v, kw);
  /* QK-norm: every head row of head_dim values, before RoPE. */
  bn_rmsnorm_rows (s->q, n * c->n_heads, c->head_dim, c->head_dim, ly->q_norm, eps);
  bn_rmsnorm_rows (s->k, n * c->n_kv_heads, c->head_dim, c->head_dim, ly->k_norm, eps);
  bn_rope_half (s->q, n, qw, c->n_heads, c->head_dim, s->cos_t, s->sin_t);
  bn_rope_half (s->k, n, kw, c->n_kv_heads, c->head_dim, s->cos_t, s->sin_t);
  BnAttention a = {
    .n_q = n, .n_kv = n,
    .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
    .q = s->q, .ldq = qw, .k = s->k, .ldk = kw, .v = s->v, .ldv = kw,
    .out = s->att, .ldo = qw,
    .scale = (float) (1.0 / sqrt ((double) c->head_dim)),
    .causal = 1, .key_mask = s->mask,
  };
  bn_attention (pool, &a);
  bn_linear (pool, &ly->o, s->att, n, qw, s->h, h);
  add_rows (s->x, s->h, n * h);

  memcpy (s->h, s->x, (size_t) (n * h) * sizeof (float));
  bn_rmsnorm_rows (s->h, n, h, h, ly->post_norm, eps);
  bn_linear (pool, &ly->gate, s->h, n, h, s->gate, im);
  bn_linear (pool, &ly->up, s->h, n, h, s->up, im);
  bn_swiglu (s->gate, s->up, s->gate, n * im);
  bn_linear (pool, &ly->down, s->gate, n, im, s->h, h);
  add_rows (s->x, s->h, n * h);
}

/* Copies the residual stream into output slot `slot` of every token. */
static void
emit (const BnQwen3 *m, const Scratch *s, int slot, float *out)
{
  int64_t h = m->cfg.hidden_size, dim = bn_qwen3_feature_dim (m);
  for (int64_t t = 0; t < s->n_tok; t++)
    memcpy (out + t * dim + slot * h, s->x + t * h, (size_t) h * sizeof (float));
}

static float *
scratch_alloc (Scratch *s, const BnQwen3Config *c, int64_t n, GError **error)
{
  int64_t h = c->hidden_size, hd = c->head_dim;
  int64_t qw = (int64_t) c->n_heads * hd, kw = (int64_t) c->n_kv_heads * hd;
  int64_t im = c->intermediate_size;
  int64_t block = MAX (2 * qw + 2 * kw, 2 * im);
  int64_t total = n * (2 * h + block + hd);
  float *mem = g_try_new (float, (gsize) total);
  if (!mem)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "out of memory for text encoder activations (%" G_GINT64_FORMAT
                   " tokens)", n);
      return NULL;
    }
  s->n_tok = n;
  s->x = mem;
  s->h = s->x + n * h;
  float *b = s->h + n * h;
  s->q = b;
  s->att = s->q + n * qw;
  s->k = s->att + n * qw;
  s->v = s->k + n * kw;
  s->gate = b;
  s->up = b + n * im;
  s->cos_t = b + n * block;
  s->sin_t = s->cos_t + n * (hd / 2);
  return mem;
}

gboolean
bn_qwen3_encode (const BnQwen3 *m, BnThreadPool *pool, const int32_t *ids,
                 const uint8_t *mask, int64_t n_tok, BnTensor *features,
                 GError **error)
{
  const BnQwen3Config *c = &m->cfg;
  memset (features, 0, sizeof *features);
  if (n_tok <= 0 || n_tok > (1 << 20))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "cannot encode a prompt of %" G_GINT64_FORMAT " tokens", n_tok);
      return FALSE;
    }
  for (int64_t t = 0; t < n_tok; t++)
    if (ids[t] < 0 || ids[t] >= c->vocab_size)
      {
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                     "token %" G_GINT64_FORMAT " has id %d, outside the "
                     "vocabulary of %d", t, (int) ids[t], c->vocab_size);
        return FALSE;
      }
  int64_t shape[2] = { n_tok, bn_qwen3_feature_dim (m) };
  if (!bn_tensor_init (features, BN_DTYPE_F32, 2, shape, error))
    return FALSE;
  Scratch s = { 0 };
  g_autofree float *mem = scratch_alloc (&s, c, n_tok, error);
  if (!mem)
    {
      bn_tensor_clear (features);
      return FALSE;
    }
  s.mask = mask;
  gint64 t0 = g_get_monotonic_time ();

  /* Only the rows the prompt uses are read, so a packed table is
   * dequantised row by row rather than as a whole. */
  for (int64_t t = 0; t < n_tok; t++)
    bn_tensor_row_f32 (&m->embed, ids[t], s.x + t * c->hidden_size);
  drop_pages (m, m->embed_files);
  bn_rope_table_linear (n_tok, c->head_dim, c->rope_theta, s.cos_t, s.sin_t);

  int slot = 0;
  if (m->out_layers[0] == 0)
    emit (m, &s, slot++, features->data);
  for (int i = 0; i < m->n_run; i++)
    {
      run_layer (m, &m->layers[i], pool, &s);
      drop_pages (m, m->layers[i].files);
      if (m->out_layers[slot] == i + 1)
        emit (m, &s, slot++, features->data);
    }
  g_debug ("text encoder: %" G_GINT64_FORMAT " tokens through %d layers in %.2f s",
           n_tok, m->n_run, (g_get_monotonic_time () - t0) / 1e6);
  return TRUE;
}
