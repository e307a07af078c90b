/* refs_pipeline.c — check-refs for a pipeline_io set: the whole klein
 * pipeline with the transformer and VAE of the same folder, prompt features
 * given (prompt_embeds) and the initial latents given (noise):
 *   schedule_N{n}_steps{s}, sigmas_steps{s}   the sigma schedules
 *   latents_steps{s}   de-normalised, unpatchified final latents (1e-4)
 *   image_steps{s}     the image, HWC in [0, 1] before rounding (2e-3)
 *   image_edit_steps4  the same with edit_ref_image_u8 as reference (2e-3)
 */
#include "cli.h"

#include "pipeline.h"
#include "safetensors.h"
#include "sampler.h"

#include <stdio.h>
#include <string.h>

#define TOL_LATENTS 1e-4
#define TOL_IMAGE 2e-3
/* The schedule is computed as diffusers does, operation by operation. */
#define TOL_SIGMAS 1e-6

typedef struct {
  const BnSafetensors *io;
  const char *set;
  BnRefTally *tally;
} Refs;

/* Compares n values with F32 tensor `name`; a missing tensor or another
 * element count is a failure. */
static void
compare (Refs *r, const char *name, const float *got, size_t n, double tol)
{
  BnTensor want;
  GError *error = NULL;
  if (!bn_safetensors_view (r->io, name, 1u << BN_DTYPE_F32, -1, NULL, &want, &error)
      || (size_t) bn_tensor_numel (&want) != n)
    {
      printf ("%-28s %-22s %s  FAIL\n", r->set, name,
              error ? error->message : "size differs from the engine's output");
      g_clear_error (&error);
      r->tally->failed++;
      return;
    }
  bn_refs_report (r->tally, r->set, name, got, want.data, n, tol);
}

/* A BonsaiTensor copy of F32 tensor `name` of rank `ndim`. */
static BonsaiTensor *
load_tensor (const BnSafetensors *io, const char *name, int ndim, GError **error)
{
  BnTensor t;
  if (!bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, ndim, NULL, &t, error))
    return NULL;
  BonsaiTensor *out = bonsai_tensor_new (ndim, t.shape, error);
  if (out)
    memcpy (out->data, t.data, bn_tensor_nbytes (&t));
  return out;
}

/* Every schedule_N{n}_steps{s} and sigmas_steps{s} (n = the noise's tokens). */
static gboolean
check_schedules (Refs *r, int64_t n_noise, GError **error)
{
  for (guint i = 0; i < bn_safetensors_n_tensors (r->io); i++)
    {
      const char *name = bn_safetensors_nth (r->io, i)->name;
      long long n = n_noise;
      int steps;
      if (sscanf (name, "schedule_N%lld_steps%d", &n, &steps) != 2
          && sscanf (name, "sigmas_steps%d", &steps) != 1)
        continue;
      if (steps < 1 || steps > BONSAI_MAX_STEPS)
        continue;
      g_autofree float *sigmas = g_new (float, steps + 1);
      if (!bn_sampler_sigmas (n, steps, sigmas, error))
        return FALSE;
      compare (r, name, sigmas, steps + 1, TOL_SIGMAS);
    }
  return TRUE;
}

/* edit_ref_image_u8 [h, w, 3] as an RGBA8 image. */
static BonsaiImage *
load_u8_image (const BnSafetensors *io, const char *name, GError **error)
{
  const int64_t shape[3] = { -1, -1, 3 };
  BnTensor t;
  if (!bn_safetensors_view (io, name, 1u << BN_DTYPE_U8, 3, shape, &t, error))
    return NULL;
  BonsaiImage *img = bonsai_image_new ((int) t.shape[1], (int) t.shape[0],
                                       BONSAI_PIXEL_RGBA8, error);
  if (!img)
    return NULL;
  const uint8_t *src = t.data;
  for (int64_t y = 0; y < t.shape[0]; y++)
    for (int64_t x = 0; x < t.shape[1]; x++)
      memcpy ((uint8_t *) img->pixels + y * img->stride + x * 4,
              src + (y * t.shape[1] + x) * 3, 3);
  return img;
}

static size_t
image_floats (const BonsaiImage *img)
{
  return (size_t) img->width * img->height * 3;
}

/* Samples `steps` steps from the set's noise and features; reports the
 * latents and the image when the set has them.  `ref` may be NULL. */
static gboolean
run_case (Refs *r, BonsaiModel *model, BonsaiRequest *req, int steps,
          const char *latents_name, const char *image_name, GError **error)
{
  req->steps = steps;
  BonsaiTensor *packed = bonsai_sample (model, req, NULL, NULL, error);
  if (!packed)
    return FALSE;
  gboolean ok = TRUE;
  if (latents_name)
    {
      BonsaiTensor *z = bn_pipeline_unpack_latents (model, packed, error);
      ok = z != NULL;
      if (ok)
        compare (r, latents_name, z->data,
                 (size_t) (z->shape[0] * z->shape[1] * z->shape[2]), TOL_LATENTS);
      bonsai_tensor_free (z);
    }
  BonsaiImage *img = ok ? bonsai_decode (model, packed, BONSAI_PIXEL_RGB_F32,
                                         req->threads, NULL, NULL, error)
                        : NULL;
  if (img)
    compare (r, image_name, img->pixels, image_floats (img), TOL_IMAGE);
  bonsai_image_free (img);
  bonsai_tensor_free (packed);
  return img != NULL;
}

static gboolean
check_set (Refs *r, BonsaiModel *model, GError **error)
{
  BonsaiTensor *features = load_tensor (r->io, "prompt_embeds", 2, error);
  BonsaiTensor *noise = features ? load_tensor (r->io, "noise", 3, error) : NULL;
  if (!noise)
    {
      bonsai_tensor_free (features);
      return FALSE;
    }
  BonsaiRequest req;
  bonsai_request_init (&req);
  /* The references are computed in fp32. */
  req.precision = BONSAI_PRECISION_EXACT;
  req.features = features;
  req.latents = noise;
  req.width = (int) noise->shape[2] * model->multiple;
  req.height = (int) noise->shape[1] * model->multiple;
  req.format = BONSAI_PIXEL_RGB_F32;

  gboolean ok = check_schedules (r, noise->shape[1] * noise->shape[2], error);
  for (int steps = 4; ok && steps >= 2; steps -= 2)
    {
      g_autofree char *lat = g_strdup_printf ("latents_steps%d", steps);
      g_autofree char *img = g_strdup_printf ("image_steps%d", steps);
      if (bn_safetensors_find (r->io, img))
        ok = run_case (r, model, &req, steps, lat, img, error);
    }
  if (ok && bn_safetensors_find (r->io, "image_edit_steps4"))
    {
      BonsaiImage *ref = load_u8_image (r->io, "edit_ref_image_u8", error);
      const BonsaiImage *refs[1] = { ref };
      req.references = refs;
      req.n_references = 1;
      /* The output takes the reference's size, as diffusers' default. */
      req.width = req.height = BONSAI_SIZE_AUTO;
      ok = ref && run_case (r, model, &req, 4, NULL, "image_edit_steps4", error);
      bonsai_image_free (ref);
    }
  bonsai_tensor_free (features);
  bonsai_tensor_free (noise);
  return ok;
}

static char *
optional_file (const char *dir, const char *name)
{
  char *p = g_build_filename (dir, name, NULL);
  if (g_file_test (p, G_FILE_TEST_EXISTS))
    return p;
  g_free (p);
  return NULL;
}

gboolean
bn_refs_check_pipeline (const char *dir, BnRefTally *tally, GError **error)
{
  g_autofree char *io_path = g_build_filename (dir, "pipeline_io.safetensors", NULL);
  g_autofree char *dit_path = g_build_filename (dir, "dit_weights.safetensors", NULL);
  g_autofree char *vae_path = g_build_filename (dir, "vae_weights.safetensors", NULL);
  g_autofree char *dit_conf = optional_file (dir, "dit_config.json");
  g_autofree char *vae_conf = optional_file (dir, "vae_config.json");
  g_autofree char *base = g_path_get_basename (dir);
  g_autofree char *set = g_strconcat (base, "/pipeline", NULL);

  BnFlux2Dit *dit = bn_flux2_dit_load (dit_path, dit_conf, error);
  BnVae *vae = dit ? bn_vae_open (vae_path, vae_conf, error) : NULL;
  if (!vae)
    {
      bn_flux2_dit_free (dit);
      return FALSE;
    }
  BonsaiModel *model = bn_model_new (dit, vae, NULL, NULL, error);
  BnSafetensors *io = model ? bn_safetensors_open (io_path, error) : NULL;
  Refs r = { io, set, tally };
  gboolean ok = io && check_set (&r, model, error);
  bn_safetensors_free (io);
  bonsai_model_unref (model);
  return ok;
}
