/* linear_ref.c — the scalar oracle for y = x·Wᵀ.  Each weight comes straight
 * from its definition (the stored value, or scale·code + bias in double) and
 * each output is one double-precision sum in k order: slow, and easy to
 * check by eye.  The fast paths are tested against this. */
#include "kernels.h"

static double
weight (const BnTensor *w, int64_t n, int64_t k)
{
  if (bn_dtype_is_packed (w->dtype))
    {
      int64_t g = k / w->group_size;
      return (double) bn_packed_scale (w, n, g) * bn_packed_get_code (w, n, k)
             + (double) bn_packed_bias (w, n, g);
    }
  size_t i = (size_t) (n * w->shape[1] + k);
  switch (w->dtype)
    {
    case BN_DTYPE_F32: return ((const float *) w->data)[i];
    case BN_DTYPE_F16: return bn_f16_to_f32 (((const uint16_t *) w->data)[i]);
    case BN_DTYPE_BF16: return bn_bf16_to_f32 (((const uint16_t *) w->data)[i]);
    default: g_return_val_if_reached (0.0);
    }
}

void
bn_linear_ref (const BnTensor *w, const float *x, int64_t m, int64_t ldx,
               float *y, int64_t ldy)
{
  const int64_t n_out = w->shape[0], k_in = w->shape[1];
  for (int64_t i = 0; i < m; i++)
    for (int64_t n = 0; n < n_out; n++)
      {
        double acc = 0.0;
        for (int64_t k = 0; k < k_in; k++)
          acc += (double) x[i * ldx + k] * weight (w, n, k);
        y[i * ldy + n] = (float) acc;
      }
}
