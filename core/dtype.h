/* dtype.h — element types of tensors and their conversions (internal). */
#ifndef BN_DTYPE_H
#define BN_DTYPE_H

#include <glib.h>
#include <stdint.h>
#include <string.h>

typedef enum {
  BN_DTYPE_F32,
  BN_DTYPE_F16,
  BN_DTYPE_BF16,
  /* Packed affine weights in the MLX layout: uint32 words, codes
   * least-significant-bit first, one scale and one bias per group along K;
   * w = scale * q + bias.  See tensor.h. */
  BN_DTYPE_Q1,
  BN_DTYPE_Q2,
  BN_DTYPE_Q4,
  /* Plain storage types met in safetensors files. */
  BN_DTYPE_F64,
  BN_DTYPE_I64,
  BN_DTYPE_I32,
  BN_DTYPE_I16,
  BN_DTYPE_I8,
  BN_DTYPE_U64,
  BN_DTYPE_U32,
  BN_DTYPE_U16,
  BN_DTYPE_U8,
  BN_DTYPE_BOOL,
  BN_DTYPE_COUNT
} BnDType;

/* Short lowercase name ("f32", "q2", …); static string. */
const char *bn_dtype_name (BnDType dtype);
/* Bytes per element of a plain type; 0 for the packed types. */
size_t bn_dtype_size (BnDType dtype);
/* Bits per element: 1/2/4 for packed types, 8·size otherwise. */
int bn_dtype_bits (BnDType dtype);
gboolean bn_dtype_is_packed (BnDType dtype);
gboolean bn_dtype_is_float (BnDType dtype); /* f32, f16, bf16, f64 */
/* The safetensors spelling ("F32", "BF16", …) ↔ BnDType; packed types have
 * none (they are stored as U32 words plus scale and bias tensors). */
gboolean bn_dtype_from_safetensors (const char *name, BnDType *out);
const char *bn_dtype_to_safetensors (BnDType dtype);
/* The packed type holding codes of `bits` bits (1, 2 or 4); FALSE otherwise. */
gboolean bn_dtype_packed_for_bits (int bits, BnDType *out);

static inline float
bn_bf16_to_f32 (uint16_t h)
{
  uint32_t u = (uint32_t) h << 16;
  float f;
  memcpy (&f, &u, sizeof f);
  return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t
bn_f32_to_bf16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t) ((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t) (u >> 16);
}

float bn_f16_to_f32 (uint16_t h);
uint16_t bn_f32_to_f16 (float f);

/* Convert n elements of a plain float type (f32, f16, bf16, f64) to f32. */
void bn_convert_to_f32 (BnDType dtype, const void *src, float *dst, size_t n);

#endif
