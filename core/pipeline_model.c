/* pipeline_model.c — BonsaiModel (opening a release folder, references) and
 * BonsaiTensor. */
#include "pipeline.h"

#include "qwen3.h"
#include "tokenizer.h"

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
  return m;
}

/* The first of `names` that is a folder inside `dir`, or NULL. */
static char *
find_subdir (const char *dir, const char *const *names)
{
  for (; *names; names++)
    {
      char *p = g_build_filename (dir, *names, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        return p;
      g_free (p);
    }
  return NULL;
}

BonsaiModel *
bonsai_model_open (const char *path, GError **error)
{
  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "model folder %s does not exist", path);
      return NULL;
    }
  static const char *const dit_names[] = { "transformer-packed-mflux", "transformer", NULL };
  static const char *const vae_names[] = { "vae", NULL };
  g_autofree char *dit_dir = find_subdir (path, dit_names);
  g_autofree char *vae_dir = find_subdir (path, vae_names);
  if (!dit_dir || !vae_dir)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "%s has no %s folder", path,
                   dit_dir ? "vae/" : "transformer-packed-mflux/ or transformer/");
      return NULL;
    }
  /* The text path is optional: features can be given instead. */
  g_autofree char *te_dir = bn_qwen3_find_dir (path, NULL);
  g_autofree char *tok = bn_tokenizer_locate (path, NULL);

  BnFlux2Dit *dit = bn_flux2_dit_load (dit_dir, NULL, error);
  if (!dit)
    return NULL;
  BnVae *vae = bn_vae_open (vae_dir, NULL, error);
  if (!vae)
    {
      bn_flux2_dit_free (dit);
      return NULL;
    }
  g_debug ("model %s: transformer %s, VAE %s, text encoder %s, tokenizer %s",
           path, dit_dir, vae_dir, te_dir ? te_dir : "none", tok ? tok : "none");
  return bn_model_new (dit, vae, te_dir, tok, error);
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
  if (!model || !g_atomic_int_dec_and_test (&model->refs))
    return;
  bn_flux2_dit_free (model->dit);
  bn_vae_free (model->vae);
  g_free (model->text_encoder);
  g_free (model->tokenizer);
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
