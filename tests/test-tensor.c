/* test-tensor.c — dtypes, float conversions and packed code access. */
#include "tensor.h"

#include "bonsai/bonsai.h"

#include <math.h>

static void
test_bf16 (void)
{
  g_assert_cmpfloat (bn_bf16_to_f32 (0x3f80), ==, 1.0f);
  g_assert_cmpfloat (bn_bf16_to_f32 (0xc000), ==, -2.0f);
  g_assert_cmpuint (bn_f32_to_bf16 (1.0f), ==, 0x3f80);
  /* 1 + 2^-8 lies halfway between two bf16 values: ties go to even. */
  g_assert_cmpuint (bn_f32_to_bf16 (1.0f + 1.0f / 256), ==, 0x3f80);
  g_assert_cmpuint (bn_f32_to_bf16 (1.0f + 3.0f / 256), ==, 0x3f82);
  g_assert_true (isnan (bn_bf16_to_f32 (bn_f32_to_bf16 (NAN))));
  for (int i = 0; i < 0x10000; i++)
    {
      float f = bn_bf16_to_f32 ((uint16_t) i);
      if (!isnan (f))
        g_assert_cmpuint (bn_f32_to_bf16 (f), ==, i);
    }
}

static void
test_f16 (void)
{
  /* Every finite f16 round-trips through f32 exactly. */
  for (int i = 0; i < 0x10000; i++)
    {
      float f = bn_f16_to_f32 ((uint16_t) i);
      if ((i & 0x7c00) == 0x7c00 && (i & 0x3ff))
        g_assert_true (isnan (f));
      else
        g_assert_cmpuint (bn_f32_to_f16 (f), ==, i);
    }
  g_assert_cmpfloat (bn_f16_to_f32 (0x3c00), ==, 1.0f);
  g_assert_cmpfloat (bn_f16_to_f32 (0x0001), ==, ldexpf (1.0f, -24));
  g_assert_cmpuint (bn_f32_to_f16 (65520.0f), ==, 0x7c00); /* rounds to inf */
  g_assert_cmpuint (bn_f32_to_f16 (65519.0f), ==, 0x7bff);
  g_assert_cmpuint (bn_f32_to_f16 (1.0f + ldexpf (1.0f, -11)), ==, 0x3c00); /* tie to even */
}

static void
test_dtype_names (void)
{
  BnDType d;
  g_assert_true (bn_dtype_from_safetensors ("BF16", &d));
  g_assert_cmpint (d, ==, BN_DTYPE_BF16);
  g_assert_false (bn_dtype_from_safetensors ("Q2", &d));
  g_assert_false (bn_dtype_from_safetensors ("bf16", &d));
  g_assert_null (bn_dtype_to_safetensors (BN_DTYPE_Q1));
  g_assert_cmpint (bn_dtype_bits (BN_DTYPE_Q4), ==, 4);
  g_assert_true (bn_dtype_packed_for_bits (2, &d) && d == BN_DTYPE_Q2);
  g_assert_false (bn_dtype_packed_for_bits (3, &d));
}

/* Codes set one by one read back, land in the documented bit positions, and
 * dequantise as scale·q + bias. */
static void
test_packed_layout (void)
{
  const int bits_list[] = { 1, 2, 4 };
  for (guint b = 0; b < G_N_ELEMENTS (bits_list); b++)
    {
      int bits = bits_list[b];
      BnDType dt;
      g_assert_true (bn_dtype_packed_for_bits (bits, &dt));
      BnTensor t;
      GError *error = NULL;
      g_assert_true (bn_tensor_init_packed (&t, dt, 3, 128, 64, BN_DTYPE_BF16, &error));
      g_assert_no_error (error);
      GRand *rand = g_rand_new_with_seed (bits);
      guint8 codes[3][128];
      for (int r = 0; r < 3; r++)
        for (int k = 0; k < 128; k++)
          {
            codes[r][k] = (guint8) g_rand_int_range (rand, 0, 1 << bits);
            bn_packed_set_code (&t, r, k, codes[r][k]);
          }
      for (int r = 0; r < 3; r++)
        for (int g = 0; g < 2; g++)
          bn_packed_set_group (&t, r, g, 0.5f * (r + 1), -0.25f * (g + 1));
      const uint32_t *words = t.data;
      int per_word = 32 / bits;
      for (int r = 0; r < 3; r++)
        {
          float row[128];
          bn_tensor_row_f32 (&t, r, row);
          for (int k = 0; k < 128; k++)
            {
              g_assert_cmpuint (bn_packed_get_code (&t, r, k), ==, codes[r][k]);
              uint32_t w = words[r * (128 / per_word) + k / per_word];
              g_assert_cmpuint ((w >> (bits * (k % per_word))) & ((1u << bits) - 1), ==, codes[r][k]);
              g_assert_cmpfloat (row[k], ==, 0.5f * (r + 1) * codes[r][k] - 0.25f * (k / 64 + 1));
            }
        }
      g_rand_free (rand);
      bn_tensor_clear (&t);
    }
}

static void
test_ternary_check (void)
{
  BnTensor t;
  g_assert_true (bn_tensor_init_packed (&t, BN_DTYPE_Q2, 4, 256, 128, BN_DTYPE_BF16, NULL));
  for (int r = 0; r < 4; r++)
    for (int k = 0; k < 256; k++)
      bn_packed_set_code (&t, r, k, (unsigned) (r + k) % 3);
  GError *error = NULL;
  g_assert_true (bn_packed_check_ternary (&t, "blk.to_q", &error));
  g_assert_no_error (error);
  bn_packed_set_code (&t, 2, 77, 3);
  g_assert_false (bn_packed_check_ternary (&t, "blk.to_q", &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "blk.to_q"));
  g_assert_nonnull (strstr (error->message, "row 2, column 77"));
  g_clear_error (&error);
  bn_tensor_clear (&t);
}

static void
test_bad_shapes (void)
{
  BnTensor t;
  GError *error = NULL;
  /* K not a multiple of the group size */
  g_assert_false (bn_tensor_init_packed (&t, BN_DTYPE_Q1, 2, 100, 32, BN_DTYPE_BF16, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  int64_t huge[2] = { G_MAXINT64 / 2, 4 };
  g_assert_false (bn_tensor_init (&t, BN_DTYPE_F32, 2, huge, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_clear_error (&error);
  int64_t neg[1] = { -1 };
  g_assert_false (bn_tensor_init (&t, BN_DTYPE_F32, 1, neg, &error));
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tensor/bf16", test_bf16);
  g_test_add_func ("/tensor/f16", test_f16);
  g_test_add_func ("/tensor/dtype-names", test_dtype_names);
  g_test_add_func ("/tensor/packed-layout", test_packed_layout);
  g_test_add_func ("/tensor/ternary-check", test_ternary_check);
  g_test_add_func ("/tensor/bad-shapes", test_bad_shapes);
  return g_test_run ();
}
