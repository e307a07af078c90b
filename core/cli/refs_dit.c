/* refs_dit.c — check-refs for a dit_io set: the transformer in the same
 * folder (dit_weights.safetensors; config from dit_config.json, else the
 * weights' metadata) gives out_t<k> at sigma t<k> for every k the set has,
 * and out_edit with the reference tokens x_ref (ids ref_ids) appended after
 * x at sigma t_edit.  With the CUDA backend chosen (check-refs --backend
 * cuda) the transformer runs on the device (flux2_dit_device.c). */
#include "cli.h"

#include "flux2_dit_device.h"

#include "bonsai/bonsai.h"

#include <math.h>

#define TOL 1e-4
/* On the device attention rounds q, k, v and the probabilities to bf16
 * (and f16 weights take f16 inputs): relative errors near 1e-2. */
#define TOL_DEVICE 3e-2

/* An F32 [rows, cols] tensor of the set; rows < 0 accepts any count. */
static const float *
read_f32 (const BnSafetensors *io, const char *name, int64_t rows,
          int64_t cols, int64_t *rows_out, GError **error)
{
  int64_t shape[2] = { rows, cols };
  BnTensor t;
  if (!bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, 2, shape, &t, error))
    return NULL;
  if (rows_out)
    *rows_out = t.shape[0];
  return t.data;
}

/* Position ids, stored as F32 [rows, n_axes] integers. */
static int64_t *
read_ids (const BnSafetensors *io, const char *name, int64_t rows,
          int n_axes, GError **error)
{
  const float *v = read_f32 (io, name, rows, n_axes, NULL, error);
  if (!v)
    return NULL;
  int64_t n = rows * n_axes;
  int64_t *ids = g_new (int64_t, MAX (n, 1));
  for (int64_t i = 0; i < n; i++)
    {
      if (!(fabsf (v[i]) < 1e9f) || v[i] != floorf (v[i]))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: %s[%" G_GINT64_FORMAT "] = %g is not an integer "
                       "position", bn_safetensors_path (io), name, i, v[i]);
          g_free (ids);
          return NULL;
        }
      ids[i] = (int64_t) v[i];
    }
  return ids;
}

static gboolean
read_sigma (const BnSafetensors *io, const char *name, float *t, GError **error)
{
  int64_t one = 1;
  BnTensor v;
  if (!bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, 1, &one, &v, error))
    return FALSE;
  *t = *(const float *) v.data;
  return TRUE;
}

/* The transformer, and its resident copy when it runs on a device. */
typedef struct {
  const BnFlux2Dit *dit;
  BnFlux2DitDevice *dev;
  BnThreadPool *pool;
} Model;

/* Runs `in` and reports its output against `want` ([in->n_out, out]). */
static gboolean
run (const Model *m, const BnFlux2Input *in, const float *want,
     const char *set, const char *name, BnRefTally *tally, GError **error)
{
  size_t n = (size_t) in->n_out * (size_t) m->dit->cfg.out_channels;
  g_autofree float *got = g_new (float, n);
  if (!(m->dev ? bn_flux2_dit_device_forward (m->dit, m->dev, m->pool, in, got, error)
               : bn_flux2_dit_forward (m->dit, m->pool, in, got, error)))
    return FALSE;
  bn_refs_report (tally, set, name, got, want, n, m->dev ? TOL_DEVICE : TOL);
  return TRUE;
}

static gboolean
check_edit (const Model *m, const BnSafetensors *io, BnFlux2Input in,
            const char *set, BnRefTally *tally, GError **error)
{
  const BnFlux2Config *c = &m->dit->cfg;
  int64_t n_ref = 0, n_out = 0, n_img = in.n_img;
  const float *x_ref = read_f32 (io, "x_ref", -1, c->in_channels, &n_ref, error);
  const float *want = x_ref ? read_f32 (io, "out_edit", -1, c->out_channels, &n_out, error) : NULL;
  g_autofree int64_t *ref_ids = want ? read_ids (io, "ref_ids", n_ref, c->n_axes, error) : NULL;
  if (!ref_ids || !read_sigma (io, "t_edit", &in.t, error))
    return FALSE;
  if (n_out < 1 || n_out > n_img + n_ref)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: out_edit has %" G_GINT64_FORMAT " rows for %"
                   G_GINT64_FORMAT " image and reference tokens",
                   bn_safetensors_path (io), n_out, n_img + n_ref);
      return FALSE;
    }
  /* Reference tokens follow the image tokens, ids likewise. */
  g_autofree float *x = g_new (float, (n_img + n_ref) * c->in_channels);
  g_autofree int64_t *ids = g_new (int64_t, (n_img + n_ref) * c->n_axes);
  memcpy (x, in.x, (size_t) (n_img * c->in_channels) * sizeof (float));
  memcpy (x + n_img * c->in_channels, x_ref, (size_t) (n_ref * c->in_channels) * sizeof (float));
  memcpy (ids, in.img_ids, (size_t) (n_img * c->n_axes) * sizeof (int64_t));
  memcpy (ids + n_img * c->n_axes, ref_ids, (size_t) (n_ref * c->n_axes) * sizeof (int64_t));
  in.x = x;
  in.img_ids = ids;
  in.n_img = n_img + n_ref;
  in.n_out = n_out;
  return run (m, &in, want, set, "out_edit", tally, error);
}

static gboolean
check_set (Model *m, const BnSafetensors *io, const char *set,
           BnRefTally *tally, GError **error)
{
  const BnFlux2Config *c = &m->dit->cfg;
  BnFlux2Input in = { 0 };
  in.x = read_f32 (io, "x", -1, c->in_channels, &in.n_img, error);
  in.ctx = in.x ? read_f32 (io, "ctx", -1, c->context_dim, &in.n_txt, error) : NULL;
  g_autofree int64_t *img_ids = in.ctx ? read_ids (io, "img_ids", in.n_img, c->n_axes, error) : NULL;
  g_autofree int64_t *txt_ids = img_ids ? read_ids (io, "txt_ids", in.n_txt, c->n_axes, error) : NULL;
  if (!txt_ids)
    return FALSE;
  in.img_ids = img_ids;
  in.txt_ids = txt_ids;
  in.n_out = in.n_img;
  m->pool = bn_thread_pool_new (0, error);
  if (!m->pool)
    return FALSE;
  gboolean ok = TRUE;
  for (int k = 0; ok; k++)
    {
      g_autofree char *tname = g_strdup_printf ("t%d", k);
      g_autofree char *oname = g_strdup_printf ("out_t%d", k);
      if (!bn_safetensors_find (io, oname))
        break;
      const float *want = read_f32 (io, oname, in.n_img, c->out_channels, NULL, error);
      ok = want && read_sigma (io, tname, &in.t, error)
           && run (m, &in, want, set, oname, tally, error);
    }
  if (ok && bn_safetensors_find (io, "out_edit"))
    ok = check_edit (m, io, in, set, tally, error);
  bn_thread_pool_free (m->pool);
  return ok;
}

gboolean
bn_refs_check_dit (const char *dir, BnRefTally *tally, GError **error)
{
  g_autofree char *io_path = g_build_filename (dir, "dit_io.safetensors", NULL);
  g_autofree char *weights = g_build_filename (dir, "dit_weights.safetensors", NULL);
  g_autofree char *config = g_build_filename (dir, "dit_config.json", NULL);
  g_autofree char *set = g_path_get_basename (dir);
  BnFlux2Dit *dit = bn_flux2_dit_load (
    weights, g_file_test (config, G_FILE_TEST_EXISTS) ? config : NULL, error);
  if (!dit)
    return FALSE;
  Model m = { dit, NULL, NULL };
  BnBackend *be;
  gboolean ok = bn_backend_for_pipeline (&be, error)
                && (!be || (m.dev = bn_flux2_dit_device_new (dit, be, error)));
  BnSafetensors *io = ok ? bn_safetensors_open (io_path, error) : NULL;
  ok = io && check_set (&m, io, set, tally, error);
  bn_safetensors_free (io);
  bn_flux2_dit_device_free (m.dev);
  bn_flux2_dit_free (dit);
  return ok;
}
