/* tensor.c — dense and packed tensors. */
#include "tensor.h"

#include "bonsai/bonsai.h"

int64_t
bn_tensor_numel (const BnTensor *t)
{
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

static int64_t
packed_words_per_row (const BnTensor *t)
{
  return t->shape[1] * bn_dtype_bits (t->dtype) / 32;
}

static int64_t
packed_groups_per_row (const BnTensor *t)
{
  return t->shape[1] / t->group_size;
}

size_t
bn_tensor_nbytes (const BnTensor *t)
{
  if (bn_dtype_is_packed (t->dtype))
    return (size_t) (t->shape[0] * packed_words_per_row (t)) * 4;
  return (size_t) bn_tensor_numel (t) * bn_dtype_size (t->dtype);
}

size_t
bn_tensor_total_bytes (const BnTensor *t)
{
  size_t n = bn_tensor_nbytes (t);
  if (bn_dtype_is_packed (t->dtype))
    n += 2 * (size_t) (t->shape[0] * packed_groups_per_row (t))
         * bn_dtype_size (t->scale_dtype);
  return n;
}

/* Product of the extents, refusing negative extents and overflow past
 * `limit` elements. */
static gboolean
checked_numel (int ndim, const int64_t *shape, int64_t limit, int64_t *out)
{
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    {
      if (shape[i] < 0 || (shape[i] > 0 && n > limit / shape[i]))
        return FALSE;
      n *= shape[i];
    }
  *out = n;
  return TRUE;
}

gboolean
bn_tensor_init (BnTensor *t, BnDType dtype, int ndim, const int64_t *shape,
                GError **error)
{
  memset (t, 0, sizeof *t);
  int64_t numel;
  if (bn_dtype_is_packed (dtype) || bn_dtype_size (dtype) == 0
      || ndim < 0 || ndim > BN_MAX_DIMS
      || !checked_numel (ndim, shape, G_MAXSSIZE / 8, &numel))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "cannot make a %s tensor of rank %d with that shape",
                   bn_dtype_name (dtype), ndim);
      return FALSE;
    }
  size_t bytes = (size_t) numel * bn_dtype_size (dtype);
  void *mem = g_try_malloc0 (bytes ? bytes : 1);
  if (!mem)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "out of memory allocating %zu bytes for a tensor", bytes);
      return FALSE;
    }
  t->dtype = dtype;
  t->ndim = ndim;
  memcpy (t->shape, shape, (size_t) ndim * sizeof *shape);
  t->data = t->owned = mem;
  return TRUE;
}

gboolean
bn_tensor_init_packed (BnTensor *t, BnDType dtype, int64_t n, int64_t k,
                       int group_size, BnDType scale_dtype, GError **error)
{
  memset (t, 0, sizeof *t);
  int bits = bn_dtype_bits (dtype);
  if (!bn_dtype_is_packed (dtype)
      || (group_size != 32 && group_size != 64 && group_size != 128)
      || (scale_dtype != BN_DTYPE_BF16 && scale_dtype != BN_DTYPE_F16
          && scale_dtype != BN_DTYPE_F32)
      || n <= 0 || k <= 0 || k % group_size != 0 || (k * bits) % 32 != 0
      || n > (G_MAXSSIZE / 16) / k)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "cannot make a %s tensor [%" G_GINT64_FORMAT
                   ", %" G_GINT64_FORMAT "] with group size %d",
                   bn_dtype_name (dtype), n, k, group_size);
      return FALSE;
    }
  size_t code_bytes = (size_t) (n * (k * bits / 32)) * 4;
  size_t group_bytes = (size_t) (n * (k / group_size))
                       * bn_dtype_size (scale_dtype);
  char *mem = g_try_malloc0 (code_bytes + 2 * group_bytes);
  if (!mem)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "out of memory allocating a packed tensor of %zu bytes",
                   code_bytes + 2 * group_bytes);
      return FALSE;
    }
  t->dtype = dtype;
  t->ndim = 2;
  t->shape[0] = n;
  t->shape[1] = k;
  t->data = t->owned = mem;
  t->scales = mem + code_bytes;
  t->biases = mem + code_bytes + group_bytes;
  t->scale_dtype = scale_dtype;
  t->group_size = group_size;
  return TRUE;
}

void
bn_tensor_clear (BnTensor *t)
{
  g_free (t->owned);
  memset (t, 0, sizeof *t);
}

unsigned
bn_packed_get_code (const BnTensor *t, int64_t row, int64_t k)
{
  int bits = bn_dtype_bits (t->dtype);
  int per_word = 32 / bits;
  const uint32_t *w = (const uint32_t *) t->data + row * packed_words_per_row (t);
  return (w[k / per_word] >> (bits * (k % per_word))) & ((1u << bits) - 1u);
}

void
bn_packed_set_code (BnTensor *t, int64_t row, int64_t k, unsigned code)
{
  int bits = bn_dtype_bits (t->dtype);
  int per_word = 32 / bits;
  uint32_t *w = (uint32_t *) t->data + row * packed_words_per_row (t);
  int shift = bits * (int) (k % per_word);
  uint32_t mask = ((1u << bits) - 1u) << shift;
  w[k / per_word] = (w[k / per_word] & ~mask) | ((code << shift) & mask);
}

static float
group_value (const BnTensor *t, const void *base, int64_t row, int64_t group)
{
  size_t i = (size_t) (row * packed_groups_per_row (t) + group);
  switch (t->scale_dtype)
    {
    case BN_DTYPE_BF16: return bn_bf16_to_f32 (((const uint16_t *) base)[i]);
    case BN_DTYPE_F16: return bn_f16_to_f32 (((const uint16_t *) base)[i]);
    case BN_DTYPE_F32: return ((const float *) base)[i];
    default: g_return_val_if_reached (0.0f);
    }
}

float
bn_packed_scale (const BnTensor *t, int64_t row, int64_t group)
{
  return group_value (t, t->scales, row, group);
}

float
bn_packed_bias (const BnTensor *t, int64_t row, int64_t group)
{
  return group_value (t, t->biases, row, group);
}

void
bn_packed_set_group (BnTensor *t, int64_t row, int64_t group, float scale,
                     float bias)
{
  size_t i = (size_t) (row * packed_groups_per_row (t) + group);
  /* The scales and biases of an owned tensor live in its writable block. */
  void *s = (void *) t->scales, *b = (void *) t->biases;
  switch (t->scale_dtype)
    {
    case BN_DTYPE_BF16:
      ((uint16_t *) s)[i] = bn_f32_to_bf16 (scale);
      ((uint16_t *) b)[i] = bn_f32_to_bf16 (bias);
      break;
    case BN_DTYPE_F16:
      ((uint16_t *) s)[i] = bn_f32_to_f16 (scale);
      ((uint16_t *) b)[i] = bn_f32_to_f16 (bias);
      break;
    case BN_DTYPE_F32:
      ((float *) s)[i] = scale;
      ((float *) b)[i] = bias;
      break;
    default:
      g_return_if_reached ();
    }
}

void
bn_tensor_row_f32 (const BnTensor *t, int64_t row, float *out)
{
  int64_t k = t->shape[t->ndim - 1];
  if (!bn_dtype_is_packed (t->dtype))
    {
      size_t esz = bn_dtype_size (t->dtype);
      bn_convert_to_f32 (t->dtype, (const char *) t->data + (size_t) (row * k) * esz,
                         out, (size_t) k);
      return;
    }
  for (int64_t g = 0; g < k / t->group_size; g++)
    {
      float s = bn_packed_scale (t, row, g), b = bn_packed_bias (t, row, g);
      for (int64_t i = g * t->group_size; i < (g + 1) * t->group_size; i++)
        out[i] = s * (float) bn_packed_get_code (t, row, i) + b;
    }
}

gboolean
bn_packed_check_ternary (const BnTensor *t, const char *name, GError **error)
{
  g_return_val_if_fail (t->dtype == BN_DTYPE_Q2, FALSE);
  int64_t words = packed_words_per_row (t);
  const uint32_t *w = t->data;
  for (int64_t r = 0; r < t->shape[0]; r++)
    for (int64_t i = 0; i < words; i++)
      {
        uint32_t v = w[r * words + i];
        /* A 2-bit code is 3 exactly when both of its bits are set. */
        uint32_t both = v & (v >> 1) & 0x55555555u;
        if (G_UNLIKELY (both))
          {
            int slot = g_bit_nth_lsf (both, -1) / 2;
            g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                         "tensor %s: ternary code 3 (unused by the format) at "
                         "row %" G_GINT64_FORMAT ", column %" G_GINT64_FORMAT,
                         name, r, i * 16 + slot);
            return FALSE;
          }
      }
  return TRUE;
}
