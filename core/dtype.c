/* dtype.c — element types and float conversions. */
#include "dtype.h"

#include <math.h>

static const struct {
  const char *name;
  const char *st; /* safetensors spelling */
  size_t size;
  int bits;
} dtype_info[BN_DTYPE_COUNT] = {
  [BN_DTYPE_F32] = { "f32", "F32", 4, 32 },
  [BN_DTYPE_F16] = { "f16", "F16", 2, 16 },
  [BN_DTYPE_BF16] = { "bf16", "BF16", 2, 16 },
  [BN_DTYPE_Q1] = { "q1", NULL, 0, 1 },
  [BN_DTYPE_Q2] = { "q2", NULL, 0, 2 },
  [BN_DTYPE_Q4] = { "q4", NULL, 0, 4 },
  [BN_DTYPE_F64] = { "f64", "F64", 8, 64 },
  [BN_DTYPE_I64] = { "i64", "I64", 8, 64 },
  [BN_DTYPE_I32] = { "i32", "I32", 4, 32 },
  [BN_DTYPE_I16] = { "i16", "I16", 2, 16 },
  [BN_DTYPE_I8] = { "i8", "I8", 1, 8 },
  [BN_DTYPE_U64] = { "u64", "U64", 8, 64 },
  [BN_DTYPE_U32] = { "u32", "U32", 4, 32 },
  [BN_DTYPE_U16] = { "u16", "U16", 2, 16 },
  [BN_DTYPE_U8] = { "u8", "U8", 1, 8 },
  [BN_DTYPE_BOOL] = { "bool", "BOOL", 1, 8 },
};

const char *
bn_dtype_name (BnDType dtype)
{
  return (unsigned) dtype < BN_DTYPE_COUNT ? dtype_info[dtype].name : "invalid";
}

size_t
bn_dtype_size (BnDType dtype)
{
  return (unsigned) dtype < BN_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

int
bn_dtype_bits (BnDType dtype)
{
  return (unsigned) dtype < BN_DTYPE_COUNT ? dtype_info[dtype].bits : 0;
}

gboolean
bn_dtype_is_packed (BnDType dtype)
{
  return dtype == BN_DTYPE_Q1 || dtype == BN_DTYPE_Q2 || dtype == BN_DTYPE_Q4;
}

gboolean
bn_dtype_is_float (BnDType dtype)
{
  return dtype == BN_DTYPE_F32 || dtype == BN_DTYPE_F16
         || dtype == BN_DTYPE_BF16 || dtype == BN_DTYPE_F64;
}

gboolean
bn_dtype_from_safetensors (const char *name, BnDType *out)
{
  for (int i = 0; i < BN_DTYPE_COUNT; i++)
    if (dtype_info[i].st && g_strcmp0 (dtype_info[i].st, name) == 0)
      {
        *out = (BnDType) i;
        return TRUE;
      }
  return FALSE;
}

const char *
bn_dtype_to_safetensors (BnDType dtype)
{
  return (unsigned) dtype < BN_DTYPE_COUNT ? dtype_info[dtype].st : NULL;
}

gboolean
bn_dtype_packed_for_bits (int bits, BnDType *out)
{
  switch (bits)
    {
    case 1: *out = BN_DTYPE_Q1; return TRUE;
    case 2: *out = BN_DTYPE_Q2; return TRUE;
    case 4: *out = BN_DTYPE_Q4; return TRUE;
    default: return FALSE;
    }
}

float
bn_f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0)
    {
      /* zero or subnormal: value = man · 2^-24 */
      float f = ldexpf ((float) man, -24);
      return sign ? -f : f;
    }
  if (exp == 31)
    u = sign | 0x7f800000u | (man << 13);
  else
    u = sign | ((exp + 112u) << 23) | (man << 13);
  float f;
  memcpy (&f, &u, sizeof f);
  return f;
}

uint16_t
bn_f32_to_f16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, sizeof u);
  uint16_t sign = (uint16_t) ((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u)
    return sign | 0x7e00u;                    /* NaN */
  if (abs >= 0x477ff000u)                     /* rounds to ≥ 65520: inf */
    return sign | 0x7c00u;
  if (abs < 0x38800000u)
    {
      /* subnormal or zero in f16: round man·2^-24 to nearest even */
      float a;
      memcpy (&a, &abs, sizeof a);
      return sign | (uint16_t) lrintf (ldexpf (a, 24));
    }
  uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u); /* round to nearest even */
  return sign | (uint16_t) ((r - 0x38000000u) >> 13);
}

void
bn_convert_to_f32 (BnDType dtype, const void *src, float *dst, size_t n)
{
  switch (dtype)
    {
    case BN_DTYPE_F32:
      memcpy (dst, src, n * sizeof (float));
      break;
    case BN_DTYPE_BF16:
      for (size_t i = 0; i < n; i++)
        dst[i] = bn_bf16_to_f32 (((const uint16_t *) src)[i]);
      break;
    case BN_DTYPE_F16:
      for (size_t i = 0; i < n; i++)
        dst[i] = bn_f16_to_f32 (((const uint16_t *) src)[i]);
      break;
    case BN_DTYPE_F64:
      for (size_t i = 0; i < n; i++)
        dst[i] = (float) ((const double *) src)[i];
      break;
    default:
      g_return_if_reached ();
    }
}
