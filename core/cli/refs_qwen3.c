/* refs_qwen3.c — check-refs for a qwen3_io set: every hidden_states_k and
 * the padded and unpadded features of the text encoder in the same folder. */
#include "cli.h"

#include "qwen3.h"
#include "safetensors.h"

#include "bonsai/bonsai.h"

#define TOL 1e-4

/* An I64 vector of the set as int32 (token ids and masks are small). */
static int32_t *
read_ids (const BnSafetensors *io, const char *name, int64_t *n, GError **error)
{
  int64_t any = -1;
  BnTensor t;
  if (!bn_safetensors_view (io, name, 1u << BN_DTYPE_I64, 1, &any, &t, error))
    return NULL;
  *n = t.shape[0];
  int32_t *out = g_new (int32_t, MAX (*n, 1));
  for (int64_t i = 0; i < *n; i++)
    {
      int64_t v;
      memcpy (&v, (const char *) t.data + i * 8, 8);
      out[i] = (int32_t) CLAMP (v, G_MININT32, G_MAXINT32);
    }
  return out;
}

static gboolean
report (BnRefTally *tally, const BnSafetensors *io, const char *set,
        const char *name, const BnTensor *got, GError **error)
{
  BnTensor want;
  if (!bn_safetensors_view (io, name, 1u << BN_DTYPE_F32, 2, got->shape, &want, error))
    return FALSE;
  bn_refs_report (tally, set, name, got->data, want.data,
                  (size_t) bn_tensor_numel (got), TOL);
  return TRUE;
}

/* hidden_states_k for every k the set holds, from one encode that returns
 * the states after every layer of the model. */
static gboolean
check_hidden_states (const char *dir, const BnQwen3Config *cfg,
                     const BnSafetensors *io, const char *set,
                     const int32_t *ids, const uint8_t *mask, int64_t n,
                     BnRefTally *tally, GError **error)
{
  g_autoptr (GArray) all = g_array_new (FALSE, FALSE, sizeof (int));
  for (int k = 0; k <= cfg->n_layers; k++)
    g_array_append_val (all, k);
  BnQwen3Options opts = { (const int *) all->data, (int) all->len, FALSE };
  BnQwen3 *m = bn_qwen3_open (dir, &opts, error);
  if (!m)
    return FALSE;
  int64_t h = cfg->hidden_size;
  BnTensor f = { 0 }, slot = { 0 };
  gboolean ok = bn_qwen3_encode (m, NULL, ids, mask, n, &f, error)
                && bn_tensor_init (&slot, BN_DTYPE_F32, 2, (int64_t[]) { n, h }, error);
  for (int k = 0; ok && k <= cfg->n_layers; k++)
    {
      g_autofree char *name = g_strdup_printf ("hidden_states_%d", k);
      if (!bn_safetensors_find (io, name))
        continue;
      for (int64_t t = 0; t < n; t++)
        memcpy ((float *) slot.data + t * h,
                (const float *) f.data + (t * (cfg->n_layers + 1) + k) * h,
                (size_t) h * sizeof (float));
      ok = report (tally, io, set, name, &slot, error);
    }
  bn_tensor_clear (&slot);
  bn_tensor_clear (&f);
  bn_qwen3_free (m);
  return ok;
}

gboolean
bn_refs_check_qwen3 (const char *dir, BnRefTally *tally, GError **error)
{
  g_autofree char *io_path = g_build_filename (dir, "qwen3_io.safetensors", NULL);
  g_autofree char *set = g_path_get_basename (dir);
  BnSafetensors *io = bn_safetensors_open (io_path, error);
  if (!io)
    return FALSE;
  BnQwen3 *m = NULL;
  int64_t n = 0, n_mask = 0, n_nopad = 0;
  g_autofree int32_t *ids = read_ids (io, "input_ids", &n, error);
  g_autofree int32_t *mask32 = ids ? read_ids (io, "attention_mask", &n_mask, error) : NULL;
  g_autofree int32_t *nopad = NULL;
  g_autofree uint8_t *mask = NULL;
  gboolean ok = mask32 != NULL;
  if (ok && n_mask != n)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: attention_mask has %" G_GINT64_FORMAT " entries for %"
                   G_GINT64_FORMAT " input_ids", io_path, n_mask, n);
      ok = FALSE;
    }
  if (ok)
    {
      mask = g_new (uint8_t, MAX (n, 1));
      for (int64_t i = 0; i < n; i++)
        mask[i] = mask32[i] != 0;
      ok = (m = bn_qwen3_open (dir, NULL, error))
           && check_hidden_states (dir, bn_qwen3_config (m), io, set, ids,
                                   mask, n, tally, error);
    }
  BnTensor f = { 0 };
  if (ok && (ok = bn_qwen3_encode (m, NULL, ids, mask, n, &f, error)))
    {
      ok = report (tally, io, set, "features", &f, error);
      bn_tensor_clear (&f);
    }
  if (ok && bn_safetensors_find (io, "input_ids_nopad"))
    {
      ok = (nopad = read_ids (io, "input_ids_nopad", &n_nopad, error))
           && bn_qwen3_encode (m, NULL, nopad, NULL, n_nopad, &f, error);
      if (ok)
        {
          ok = report (tally, io, set, "features_nopad", &f, error);
          bn_tensor_clear (&f);
        }
    }
  bn_qwen3_free (m);
  bn_safetensors_free (io);
  return ok;
}
