/* fuzz-tokenizer.c — libFuzzer target for the Qwen3 encoder.  The input is
 * text (any bytes).  Invalid UTF-8 must be refused with INVALID_INPUT naming
 * the offset of the first bad byte; valid text must encode to ids the
 * tokenizer knows, and decode back to itself when it is already in NFC (a
 * byte-level BPE loses nothing).  The input up to its first NUL also goes
 * through the klein template at a length taken from its first byte, and the
 * padding and mask are checked.  A crash, a sanitizer report, a leak, a
 * GLib critical or a failed check is a bug.
 *
 * The tokenizer.json is the one $BONSAI_TOKENIZER names (a file or a model
 * folder), else the copy `npm ci --prefix tests/tokenizer` installs, whose
 * path is compiled in as BN_FUZZ_TOKENIZER. */
#include "tokenizer.h"
#include "utf8.h"

#include "bonsai/bonsai.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* libFuzzer's interface leaves nowhere else to keep what is loaded once. */
static BnTokenizer *tok;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  GError *error = NULL;
  char *path = bn_tokenizer_locate (g_getenv ("BONSAI_TOKENIZER") ? NULL : BN_FUZZ_TOKENIZER,
                                    &error);
  if (path)
    tok = bn_tokenizer_load (path, &error);
  if (!tok)
    {
      fprintf (stderr, "fuzz-tokenizer: %s (set BONSAI_TOKENIZER or run "
                       "'npm ci --prefix tests/tokenizer')\n", error->message);
      exit (1);
    }
  g_free (path);
  return 0;
}

static void
check_invalid (const char *text, size_t size, gssize bad)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  GError *error = NULL;
  g_assert_false (bn_tokenizer_encode (tok, text, (gssize) size, ids, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  char *offset = g_strdup_printf ("offset %" G_GSSIZE_FORMAT, bad);
  g_assert_nonnull (strstr (error->message, offset));
  g_assert_cmpuint (ids->len, ==, 0);
  g_free (offset);
  g_error_free (error);
  g_array_unref (ids);
}

static void
check_valid (const char *text, size_t size)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_assert_true (bn_tokenizer_encode (tok, text, (gssize) size, ids, NULL));
  for (guint i = 0; i < ids->len; i++)
    g_assert_cmpint (g_array_index (ids, int32_t, i), <, bn_tokenizer_n_ids (tok));
  char *back = bn_tokenizer_decode (tok, (const int32_t *) (void *) ids->data, ids->len, NULL);
  g_assert_nonnull (back);
  if (!memchr (text, 0, size))
    {
      char *nfc = g_utf8_normalize (text, (gssize) size, G_NORMALIZE_NFC);
      if (strlen (nfc) == size && memcmp (nfc, text, size) == 0)
        g_assert_cmpstr (back, ==, nfc);
      g_free (nfc);
    }
  g_free (back);
  g_array_unref (ids);
}

static void
check_template (const char *prompt, int max_len)
{
  int32_t *ids = g_new (int32_t, max_len);
  uint8_t *mask = g_new (uint8_t, max_len);
  int n = -1;
  GError *error = NULL;
  if (bn_tokenizer_klein_prompt (tok, prompt, max_len, ids, mask, &n, &error))
    {
      g_assert_cmpint (n, >=, 1);
      g_assert_cmpint (n, <=, max_len);
      int32_t pad = bn_tokenizer_token_id (tok, BN_KLEIN_PAD_TOKEN);
      for (int i = 0; i < max_len; i++)
        {
          g_assert_cmpint (mask[i], ==, i < n);
          if (i >= n)
            g_assert_cmpint (ids[i], ==, pad);
        }
    }
  else
    {
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
      g_assert_cmpint (bn_utf8_find_invalid (prompt, strlen (prompt)), >=, 0);
      g_error_free (error);
    }
  g_free (ids);
  g_free (mask);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *text = (const char *) data;
  gssize bad = bn_utf8_find_invalid (text, size);
  if (bad >= 0)
    check_invalid (text, size, bad);
  else
    check_valid (text, size);
  char *prompt = g_strndup (text, size);
  check_template (prompt, 1 + (size ? data[0] : 0) * 2);
  g_free (prompt);
  return 0;
}
