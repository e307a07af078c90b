/* fuzz-safetensors.c — libFuzzer target for the safetensors reader.  The
 * input is tried both as a header (bn_safetensors_parse_header, with a
 * 1 MiB data section) and as a whole file in memory
 * (bn_safetensors_open_bytes).  Whatever opens is then used as the engine
 * uses it: every tensor viewed and read to its last byte, every `.weight`
 * loaded as a linear (dense, or packed with and without a ternary check)
 * and its rows dequantised.  A crash, a sanitizer report, a leak or a GLib
 * critical is a bug. */
#include "safetensors.h"
#include "weights.h"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  /* g_return_if_fail and friends must crash here, not just print. */
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

/* Reads every byte so the sanitizer checks each tensor's range. */
static unsigned
touch (const BnStTensor *t)
{
  unsigned sum = 0;
  const unsigned char *p = t->data;
  for (size_t i = 0; p && i < t->nbytes; i++)
    sum += p[i];
  return sum;
}

static void
load_linear (const BnSafetensors *st, const char *prefix, const BnQuantSpec *quant)
{
  BnTensor t;
  GError *error = NULL;
  if (!bn_weights_linear (st, prefix, -1, -1, quant, &t, &error))
    {
      g_error_free (error);
      return;
    }
  if (!t.data || t.shape[1] > (1 << 16))
    return;
  float *row = g_new (float, t.shape[1] ? t.shape[1] : 1);
  for (int64_t r = 0; r < t.shape[0]; r++)
    bn_tensor_row_f32 (&t, r, row);
  g_free (row);
}

static void
exercise (BnSafetensors *st)
{
  static const BnQuantSpec specs[] = { { 1, 128, FALSE }, { 2, 128, TRUE }, { 4, 64, FALSE } };
  volatile unsigned sink = 0;
  for (guint i = 0; i < bn_safetensors_n_tensors (st); i++)
    {
      const BnStTensor *t = bn_safetensors_nth (st, i);
      g_assert (bn_safetensors_find (st, t->name) == t);
      BnTensor v;
      GError *error = NULL;
      if (bn_safetensors_view (st, t->name, 0, -1, NULL, &v, &error))
        sink += touch (t);
      else
        g_error_free (error);
      if (g_str_has_suffix (t->name, ".weight"))
        {
          char *prefix = g_strndup (t->name, strlen (t->name) - strlen (".weight"));
          load_linear (st, prefix, NULL);
          for (size_t s = 0; s < G_N_ELEMENTS (specs); s++)
            load_linear (st, prefix, &specs[s]);
          g_free (prefix);
        }
    }
  (void) bn_safetensors_metadata (st, "config");
  (void) sink;
  bn_safetensors_free (st);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  BnSafetensors *st = bn_safetensors_parse_header ("fuzz-header", (const char *) data,
                                                   size, 1 << 20, &error);
  if (st)
    exercise (st);
  else
    g_clear_error (&error);
  st = bn_safetensors_open_bytes ("fuzz-file", data, size, &error);
  if (st)
    exercise (st);
  else
    g_clear_error (&error);
  return 0;
}
