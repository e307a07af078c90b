/* weights.c — linear-layer weights from safetensors: dense matrices and
 * MLX packs (uint32 codes with per-group scales and biases). */
#include "weights.h"

#include "bonsai/bonsai.h"

#define FLOAT_DTYPES \
  ((1u << BN_DTYPE_F32) | (1u << BN_DTYPE_F16) | (1u << BN_DTYPE_BF16))

static gboolean
load_packed (const BnSafetensors *st, const char *prefix, int64_t n, int64_t k,
             const BnQuantSpec *quant, BnTensor *out, GError **error)
{
  g_autofree char *wname = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *sname = g_strconcat (prefix, ".scales", NULL);
  g_autofree char *bname = g_strconcat (prefix, ".biases", NULL);
  BnDType dtype;
  if (!quant)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: linear '%s' is packed (it has '%s') but no "
                   "quantization (bits, group size) is known for it",
                   bn_safetensors_path (st), prefix, sname);
      return FALSE;
    }
  if (!bn_dtype_packed_for_bits (quant->bits, &dtype)
      || (quant->group_size != 32 && quant->group_size != 64 && quant->group_size != 128)
      || (quant->ternary && quant->bits != 2))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "linear '%s': unsupported quantization: %d-bit%s codes, group size %d "
                   "(supported: 1, 2 or 4 bits, ternary only with 2; groups of 32, "
                   "64 or 128)", prefix, quant->bits, quant->ternary ? " ternary" : "",
                   quant->group_size);
      return FALSE;
    }
  int per_word = 32 / quant->bits;
  const BnStTensor *w = bn_safetensors_find (st, wname);
  /* Extents the caller leaves open (< 0) come from the codes. */
  if (w && w->ndim == 2)
    {
      if (n < 0)
        n = w->shape[0];
      if (k < 0 && w->shape[1] <= G_MAXINT64 / per_word)
        k = w->shape[1] * per_word;
    }
  if (k > 0 && (k % quant->group_size != 0 || k % per_word != 0))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: linear '%s' has %" G_GINT64_FORMAT " inputs, not a "
                   "multiple of the group size %d and of %d codes per word",
                   bn_safetensors_path (st), prefix, k, quant->group_size, per_word);
      return FALSE;
    }
  int64_t words[2] = { n, k < 0 ? -1 : k / per_word };
  int64_t groups[2] = { n, k < 0 ? -1 : k / quant->group_size };
  BnTensor wv, sv, bv;
  if (!bn_safetensors_view (st, wname, 1u << BN_DTYPE_U32, 2, words, &wv, error)
      || !bn_safetensors_view (st, sname, FLOAT_DTYPES, 2, groups, &sv, error)
      || !bn_safetensors_view (st, bname, 1u << sv.dtype, 2, groups, &bv, error))
    return FALSE;
  memset (out, 0, sizeof *out);
  out->dtype = dtype;
  out->ndim = 2;
  out->shape[0] = wv.shape[0];
  out->shape[1] = wv.shape[1] * per_word;
  out->data = wv.data;
  out->scales = sv.data;
  out->biases = bv.data;
  out->scale_dtype = sv.dtype;
  out->group_size = quant->group_size;
  out->ternary = quant->ternary;
  if (quant->ternary && out->data
      && !bn_packed_check_ternary (out, wname, error))
    {
      g_prefix_error (error, "%s: ", bn_safetensors_path (st));
      memset (out, 0, sizeof *out);
      return FALSE;
    }
  return TRUE;
}

gboolean
bn_weights_linear (const BnSafetensors *st, const char *prefix, int64_t n,
                   int64_t k, const BnQuantSpec *quant, BnTensor *out,
                   GError **error)
{
  g_autofree char *sname = g_strconcat (prefix, ".scales", NULL);
  /* MLX loaders tell packed from dense layers by the `.scales` sibling. */
  if (bn_safetensors_find (st, sname))
    return load_packed (st, prefix, n, k, quant, out, error);
  g_autofree char *wname = g_strconcat (prefix, ".weight", NULL);
  int64_t shape[2] = { n, k };
  return bn_safetensors_view (st, wname, FLOAT_DTYPES, 2, shape, out, error);
}
