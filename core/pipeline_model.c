/* pipeline_model.c — BonsaiModel (finding the parts of a release folder,
 * opening them through the model cache, references) and BonsaiTensor. */
#include "pipeline.h"

#include "cache.h"
#include "qwen3.h"
#include "safetensors.h"
#include "store.h"

#include <json-glib/json-glib.h>

#include <string.h>

/* ---- tensors --------------------------------------------------------------- */

BonsaiTensor *
bonsai_tensor_new (int ndim, const gint64 *shape, GError **error)
{
  gint64 n = 1;
  gboolean ok = ndim >= 1 && ndim <= 4;
  for (int i = 0; ok && i < ndim; i++)
    {
      ok = shape[i] > 0 && n <= (G_MAXSSIZE / (gint64) sizeof (float)) / shape[i];
      n *= ok ? shape[i] : 1;
    }
  if (!ok)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "cannot make a tensor of rank %d with that shape", ndim);
      return NULL;
    }
  float *data = g_try_new0 (float, n);
  if (!data)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for a tensor of %" G_GINT64_FORMAT " floats", n);
      return NULL;
    }
  BonsaiTensor *t = g_new0 (BonsaiTensor, 1);
  t->ndim = ndim;
  memcpy (t->shape, shape, sizeof (gint64) * ndim);
  t->data = data;
  return t;
}

void
bonsai_tensor_free (BonsaiTensor *tensor)
{
  if (!tensor)
    return;
  g_free (tensor->data);
  g_free (tensor);
}

/* ---- models ---------------------------------------------------------------- */

BonsaiModel *
bn_model_new (BnFlux2Dit *dit, BnVae *vae, const char *text_encoder,
              const char *tokenizer, GError **error)
{
  const BnVaeConfig *vc = bn_vae_get_config (vae);
  int token_width = vc->latent_channels * vc->patch_size[0] * vc->patch_size[1];
  if (dit->cfg.in_channels != token_width || dit->cfg.out_channels != token_width)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "the transformer takes tokens of %d and gives %d features, "
                   "but the VAE's patchified latents have %d",
                   dit->cfg.in_channels, dit->cfg.out_channels, token_width);
      bn_flux2_dit_free (dit);
      bn_vae_free (vae);
      return NULL;
    }
  BonsaiModel *m = g_new0 (BonsaiModel, 1);
  m->refs = 1;
  m->dit = dit;
  m->vae = vae;
  m->text_encoder = g_strdup (text_encoder);
  m->tokenizer = g_strdup (tokenizer);
  m->scale = bn_vae_scale (vc);
  m->patch[0] = vc->patch_size[0];
  m->patch[1] = vc->patch_size[1];
  m->multiple = m->scale * MAX (m->patch[0], m->patch[1]);
  g_mutex_init (&m->device_lock);
  return m;
}

gboolean
bn_model_dit_device (BonsaiModel *model, BnFlux2DitDevice **out,
                     GError **error)
{
  BnBackend *be;
  *out = NULL;
  if (!bn_backend_for_pipeline (&be, error))
    return FALSE;
  if (!be)
    return TRUE;
  g_mutex_lock (&model->device_lock);
  if (!model->dit_device)
    model->dit_device = bn_flux2_dit_device_new (model->dit, be, error);
  *out = model->dit_device;
  g_mutex_unlock (&model->device_lock);
  return *out != NULL;
}

/* ---- release folders ---------------------------------------------------------
 * The layouts of research/bonsai_release.md §1.1: the MLX repos hold
 * transformer-packed-mflux/ and text_encoder-mlx-4bit/ and a model_index.json
 * naming no parts; the unpacked (diffusers) repos hold transformer/ and
 * text_encoder/ and list them in model_index.json. */

enum { PART_TRANSFORMER, PART_VAE, PART_TEXT_ENCODER, PART_TOKENIZER,
       PART_SCHEDULER, N_PARTS };

static const struct {
  const char *name;        /* its key in model_index.json */
  const char *dirs[3];     /* folders that may hold it, preferred first */
  gboolean required;
} part_specs[N_PARTS] = {
  [PART_TRANSFORMER] = { "transformer", { "transformer-packed-mflux", "transformer" }, TRUE },
  [PART_VAE] = { "vae", { "vae" }, TRUE },
  /* The rest may be absent: a model generates from given prompt features. */
  [PART_TEXT_ENCODER] = { "text_encoder", { "text_encoder-mlx-4bit", "text_encoder" }, FALSE },
  [PART_TOKENIZER] = { "tokenizer", { "tokenizer" }, FALSE },
  [PART_SCHEDULER] = { "scheduler", { "scheduler" }, FALSE },
};

typedef struct {
  char *dir[N_PARTS];   /* the folder found for each part, or NULL */
  char *tokenizer;      /* tokenizer.json, or NULL */
} Parts;

static void
parts_clear (Parts *p)
{
  for (int i = 0; i < N_PARTS; i++)
    g_free (p->dir[i]);
  g_free (p->tokenizer);
}

/* The string member `key` of `o`, or NULL. */
static const char *
string_member (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
           ? json_node_get_string (n) : NULL;
}

/* Reads model_index.json, when there is one: the pipeline must be klein's,
 * and each part it lists (["library", "Class"]; [null, null] for an absent
 * optional part) gets its class in `listed`. */
static gboolean
read_index (const char *root, char *listed[N_PARTS], GError **error)
{
  g_autofree char *path = g_build_filename (root, "model_index.json", NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  JsonNode *node = bn_json_load_file (path, error);
  if (!node)
    return FALSE;
  gboolean ok = JSON_NODE_HOLDS_OBJECT (node);
  JsonObject *o = ok ? json_node_get_object (node) : NULL;
  const char *cls = o ? string_member (o, "_class_name") : NULL;
  if (!ok)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                 "%s is not a JSON object", path);
  else if (cls && !g_str_has_prefix (cls, "Flux2Klein"))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s describes a %s; this engine runs FLUX.2 [klein] "
                   "(Flux2KleinPipeline)", path, cls);
      ok = FALSE;
    }
  for (int i = 0; ok && i < N_PARTS; i++)
    {
      JsonNode *n = json_object_get_member (o, part_specs[i].name);
      JsonArray *a = n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
      JsonNode *c = a && json_array_get_length (a) == 2 ? json_array_get_element (a, 1) : NULL;
      if (c && JSON_NODE_HOLDS_VALUE (c) && json_node_get_value_type (c) == G_TYPE_STRING)
        listed[i] = g_strdup (json_node_get_string (c));
    }
  json_node_unref (node);
  return ok;
}

/* The scheduler is not read (klein's schedule is fixed, spec §5), but a
 * folder with another one is not a klein model. */
static gboolean
check_scheduler (const char *dir, GError **error)
{
  g_autofree char *path = g_build_filename (dir, "scheduler_config.json", NULL);
  JsonNode *node = bn_json_load_file (path, error);
  if (!node)
    return FALSE;
  const char *cls = JSON_NODE_HOLDS_OBJECT (node)
                      ? string_member (json_node_get_object (node), "_class_name") : NULL;
  gboolean ok = cls && !strcmp (cls, "FlowMatchEulerDiscreteScheduler");
  if (!ok)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                 "%s: the scheduler is %s, not FlowMatchEulerDiscreteScheduler",
                 path, cls ? cls : "not named");
  json_node_unref (node);
  return ok;
}

/* The first of `names` that exists as a file inside `dir`, or NULL. */
static char *
find_in (const char *dir, const char *const *names, GFileTest test)
{
  for (; dir && *names; names++)
    {
      char *p = g_build_filename (dir, *names, NULL);
      if (g_file_test (p, test))
        return p;
      g_free (p);
    }
  return NULL;
}

/* Finds the parts of the release folder `root`.  A part that is required,
 * or listed in model_index.json, must be there; the message names it and
 * the folders looked for. */
static gboolean
find_parts (const char *root, Parts *parts, GError **error)
{
  memset (parts, 0, sizeof *parts);
  if (!g_file_test (root, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "model folder %s does not exist", root);
      return FALSE;
    }
  char *listed[N_PARTS] = { NULL };
  gboolean ok = read_index (root, listed, error);
  for (int i = 0; ok && i < N_PARTS; i++)
    {
      parts->dir[i] = find_in (root, part_specs[i].dirs, G_FILE_TEST_IS_DIR);
      if (parts->dir[i] || !(part_specs[i].required || listed[i]))
        continue;
      g_autofree char *where = g_strjoinv ("/ or ", (char **) part_specs[i].dirs);
      g_autofree char *why = listed[i]
        ? g_strdup_printf (", which model_index.json lists (%s)", listed[i]) : g_strdup ("");
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "%s has no %s: no %s/ folder%s", root, part_specs[i].name,
                   where, why);
      ok = FALSE;
    }
  for (int i = 0; i < N_PARTS; i++)
    g_free (listed[i]);
  if (!ok)
    return FALSE;

  /* tokenizer/ must hold its file; without the folder, one beside the
   * model or in the MLX text encoder's folder will do. */
  static const char *const tok_name[] = { "tokenizer.json", NULL };
  parts->tokenizer = find_in (parts->dir[PART_TOKENIZER], tok_name, G_FILE_TEST_IS_REGULAR);
  if (!parts->tokenizer && parts->dir[PART_TOKENIZER])
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "%s has no tokenizer.json", parts->dir[PART_TOKENIZER]);
      return FALSE;
    }
  if (!parts->tokenizer)
    parts->tokenizer = find_in (root, tok_name, G_FILE_TEST_IS_REGULAR);
  if (!parts->tokenizer)
    parts->tokenizer = find_in (parts->dir[PART_TEXT_ENCODER], tok_name, G_FILE_TEST_IS_REGULAR);
  return !parts->dir[PART_SCHEDULER] || check_scheduler (parts->dir[PART_SCHEDULER], error);
}

/* Opens the text encoder once to check its files, tensors and width, so a
 * damaged one is reported now rather than at the first prompt. */
static gboolean
check_text_encoder (const char *dir, int context_dim, GError **error)
{
  BnQwen3 *te = bn_qwen3_open (dir, NULL, error);
  if (!te)
    return FALSE;
  int64_t dim = bn_qwen3_feature_dim (te);
  bn_qwen3_free (te);
  if (dim == context_dim)
    return TRUE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
               "the text encoder in %s gives %" G_GINT64_FORMAT " features per "
               "token, the transformer takes %d", dir, dim, context_dim);
  return FALSE;
}

static BonsaiModel *
load_parts (const char *root, const Parts *p, GError **error)
{
  BnFlux2Dit *dit = bn_flux2_dit_load (p->dir[PART_TRANSFORMER], NULL, error);
  if (!dit)
    return NULL;
  BnVae *vae = bn_vae_open (p->dir[PART_VAE], NULL, error);
  const char *te = p->dir[PART_TEXT_ENCODER];
  if (!vae || (te && !check_text_encoder (te, dit->cfg.context_dim, error)))
    {
      bn_flux2_dit_free (dit);
      bn_vae_free (vae);
      return NULL;
    }
  g_debug ("model %s: transformer %s, VAE %s, text encoder %s, tokenizer %s",
           root, p->dir[PART_TRANSFORMER], p->dir[PART_VAE], te ? te : "none",
           p->tokenizer ? p->tokenizer : "none");
  return bn_model_new (dit, vae, te, p->tokenizer, error);
}

BonsaiModel *
bonsai_model_open (const char *path, GError **error)
{
  /* A name ("ternary", ORG/NAME) opens its installed folder; nothing is
   * downloaded here, only by bonsai_model_download. */
  g_autofree char *dir = NULL;
  if (!bn_store_resolve (path, NULL, &dir, error))
    return NULL;
  path = dir;
  Parts parts;
  BonsaiModel *model = NULL;
  if (find_parts (path, &parts, error))
    {
      /* What the loaders read; CPU is the only backend so far. */
      const char *files[] = { parts.dir[PART_TRANSFORMER], parts.dir[PART_VAE],
                              parts.dir[PART_TEXT_ENCODER], parts.tokenizer };
      g_autofree char *key = bn_cache_model_key ("cpu", files, G_N_ELEMENTS (files), error);
      if (key && (model = bn_cache_model_begin (key)))
        g_info ("model %s is already loaded: shared, not read again", path);
      else if (key)
        {
          model = load_parts (path, &parts, error);
          bn_cache_model_done (key, model);
        }
    }
  parts_clear (&parts);
  return model;
}

BonsaiModel *
bonsai_model_ref (BonsaiModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_atomic_int_inc (&model->refs);
  return model;
}

void
bonsai_model_unref (BonsaiModel *model)
{
  if (!model || !bn_cache_model_release (model))
    return;
  bn_flux2_dit_device_free (model->dit_device);
  g_mutex_clear (&model->device_lock);
  bn_flux2_dit_free (model->dit);
  bn_vae_free (model->vae);
  g_free (model->text_encoder);
  g_free (model->tokenizer);
  g_free (model->cache_key);
  g_free (model);
}

int
bonsai_model_size_multiple (const BonsaiModel *model)
{
  g_return_val_if_fail (model != NULL, 0);
  return model->multiple;
}

void
bn_model_drop_transformer_pages (BonsaiModel *model)
{
  const BnSafetensors *st = model->dit->st;
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    bn_safetensors_drop_pages (st, bn_safetensors_nth (st, i));
}
