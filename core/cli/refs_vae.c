/* refs_vae.c — check-refs for a vae_io set: the VAE in the same folder
 * (vae_weights.safetensors; config from vae_config.json, else the weights'
 * metadata) gives latent_mean as the encoder mean of `image`,
 * decoded_from_mean = decode(latent_mean) and decoded_z = decode(z).  The
 * reference is the untiled model, so decoding is untiled here. */
#include "cli.h"

#include "flux2_vae.h"
#include "safetensors.h"

#include "bonsai/bonsai.h"

#include <stdio.h>

#define TOL 1e-4

/* An F32 [c, h, w] tensor of the set; c < 0 accepts any count. */
static const float *
read_chw (const BnSafetensors *io, const char *name, int64_t c, int64_t *dims,
          GError **error)
{
  int64_t shape[3] = { c, -1, -1 };
  BnTensor t;
  if (!bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, 3, shape, &t, error))
    return NULL;
  memcpy (dims, t.shape, 3 * sizeof (int64_t));
  return t.data;
}

/* Reports `got` [dims] against tensor `name`; a shape that differs counts
 * as a failure. */
static void
report (const BnSafetensors *io, const char *set, const char *name,
        const float *got, const int64_t *dims, BnRefTally *tally)
{
  int64_t want_dims[3];
  GError *error = NULL;
  const float *want = read_chw (io, name, -1, want_dims, &error);
  if (!want || memcmp (dims, want_dims, sizeof want_dims) != 0)
    {
      printf ("%-28s %-22s %s  FAIL\n", set, name,
              want ? "shape differs from the engine's output"
                   : error->message);
      g_clear_error (&error);
      tally->failed++;
      return;
    }
  bn_refs_report (tally, set, name, got, want,
                  (size_t) (dims[0] * dims[1] * dims[2]), TOL);
}

static gboolean
decode_and_report (const BnVae *vae, BnVaeOptions *opt,
                   const BnSafetensors *io, const char *set, const float *z,
                   const int64_t *zdims, const char *name, BnRefTally *tally,
                   GError **error)
{
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  int s = bn_vae_scale (cfg);
  int64_t dims[3] = { cfg->out_channels, zdims[1] * s, zdims[2] * s };
  g_autofree float *img = g_try_new (float, dims[0] * dims[1] * dims[2]);
  if (!img)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for %s", name);
      return FALSE;
    }
  if (!bn_vae_decode (vae, z, zdims[1], zdims[2], img, opt, error))
    return FALSE;
  report (io, set, name, img, dims, tally);
  return TRUE;
}

static gboolean
check_set (const BnVae *vae, const BnSafetensors *io, const char *set,
           BnThreadPool *pool, BnRefTally *tally, GError **error)
{
  const BnVaeConfig *cfg = bn_vae_get_config (vae);
  BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
  opt.pool = pool;
  opt.tile = 0;
  int64_t idims[3], mdims[3], zdims[3];
  const float *image = read_chw (io, "image", cfg->in_channels, idims, error);
  const float *mean = image ? read_chw (io, "latent_mean", cfg->latent_channels,
                                        mdims, error)
                            : NULL;
  const float *z = mean ? read_chw (io, "z", cfg->latent_channels, zdims, error)
                        : NULL;
  if (!z)
    return FALSE;
  int64_t dims[3] = { cfg->latent_channels, 0, 0 };
  if (!bn_vae_encoded_size (cfg, idims[1], idims[2], &dims[1], &dims[2]))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: image is too small for the VAE",
                   bn_safetensors_path (io));
      return FALSE;
    }
  g_autofree float *got = g_try_new (float, dims[0] * dims[1] * dims[2]);
  if (!got)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for latent_mean");
      return FALSE;
    }
  if (!bn_vae_encode_mean (vae, image, idims[1], idims[2], got, &opt, error))
    return FALSE;
  report (io, set, "latent_mean", got, dims, tally);
  return decode_and_report (vae, &opt, io, set, mean, mdims,
                            "decoded_from_mean", tally, error)
         && decode_and_report (vae, &opt, io, set, z, zdims, "decoded_z",
                               tally, error);
}

gboolean
bn_refs_check_vae (const char *dir, BnRefTally *tally, GError **error)
{
  g_autofree char *io_path = g_build_filename (dir, "vae_io.safetensors", NULL);
  g_autofree char *weights = g_build_filename (dir, "vae_weights.safetensors", NULL);
  g_autofree char *config = g_build_filename (dir, "vae_config.json", NULL);
  g_autofree char *base = g_path_get_basename (dir);
  g_autofree char *set = g_strconcat (base, "/vae", NULL);
  BnVae *vae = bn_vae_open (
    weights, g_file_test (config, G_FILE_TEST_EXISTS) ? config : NULL, error);
  if (!vae)
    return FALSE;
  BnSafetensors *io = bn_safetensors_open (io_path, error);
  BnThreadPool *pool = io ? bn_thread_pool_new (0, error) : NULL;
  gboolean ok = pool && check_set (vae, io, set, pool, tally, error);
  bn_thread_pool_free (pool);
  bn_safetensors_free (io);
  bn_vae_free (vae);
  return ok;
}
