/* tokenizer.c — encoding and decoding with a loaded tokenizer, the klein
 * prompt template, and finding tokenizer.json. */
#include "tokenizer_priv.h"

#include "bonsai/bonsai.h"
#include "utf8.h"

#include <string.h>

void
bn_tokenizer_free (BnTokenizer *tok)
{
  if (!tok)
    return;
  g_clear_pointer (&tok->vocab, g_hash_table_unref);
  g_free (tok->id_text);
  bn_merges_clear (&tok->merges);
  for (size_t i = 0; i < tok->n_raw; i++)
    g_free (tok->raw_tokens[i].content);
  for (size_t i = 0; i < tok->n_norm; i++)
    g_free (tok->norm_tokens[i].content);
  g_free (tok->raw_tokens);
  g_free (tok->norm_tokens);
  if (tok->strings)
    g_string_chunk_free (tok->strings);
  g_free (tok);
}

int32_t
bn_tokenizer_n_ids (const BnTokenizer *tok)
{
  return tok->n_ids;
}

int32_t
bn_tokenizer_token_id (const BnTokenizer *tok, const char *token)
{
  /* Added tokens first, as Hugging Face's token_to_id. */
  const BnAddedToken *sets[] = { tok->raw_tokens, tok->norm_tokens };
  size_t counts[] = { tok->n_raw, tok->n_norm };
  for (size_t s = 0; s < 2; s++)
    for (size_t i = 0; i < counts[s]; i++)
      if (strcmp (tok->id_text[sets[s][i].id], token) == 0)
        return sets[s][i].id;
  gpointer v = g_hash_table_lookup (tok->vocab, token);
  return v ? GPOINTER_TO_INT (v) - 1 : -1;
}

/* ---- encoding ------------------------------------------------------------- */

typedef struct {
  const BnTokenizer *tok;
  GArray *ids;
} Sink;

static void
bpe_piece (const char *piece, size_t len, void *user)
{
  Sink *sink = user;
  bn_bpe_word (sink->tok, (const guint8 *) piece, len, sink->ids);
}

/* g_utf8_normalize stops at U+0000, so the text is normalised between
 * NULs; nothing composes with U+0000, so this is the normal form of the
 * whole. */
void
bn_tok_normalize (BnNormForm form, const char *s, size_t len, GString *out)
{
  static const GNormalizeMode modes[] = {
    [BN_NORM_NFC] = G_NORMALIZE_NFC, [BN_NORM_NFD] = G_NORMALIZE_NFD,
    [BN_NORM_NFKC] = G_NORMALIZE_NFKC, [BN_NORM_NFKD] = G_NORMALIZE_NFKD,
  };
  if (form == BN_NORM_NONE)
    {
      g_string_append_len (out, s, (gssize) len);
      return;
    }
  size_t i = 0;
  while (i < len)
    {
      const char *nul = memchr (s + i, '\0', len - i);
      size_t end = nul ? (size_t) (nul - s) : len;
      if (end > i)
        {
          g_autofree char *n = g_utf8_normalize (s + i, (gssize) (end - i), modes[form]);
          g_string_append (out, n);
        }
      if (nul)
        g_string_append_c (out, '\0');
      i = end + (nul != NULL);
    }
}

static bool
is_ascii (const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if ((guint8) s[i] >= 0x80)
      return false;
  return true;
}

/* One part of the text between added tokens: normalise, find the added
 * tokens that match normalised text, pre-tokenise and BPE the rest. */
static void
encode_part (const BnTokenizer *tok, const char *s, size_t len, GArray *ids)
{
  g_autoptr (GString) normal = NULL;
  /* ASCII is its own normal form in all four. */
  if (tok->norm != BN_NORM_NONE && !is_ascii (s, len))
    {
      normal = g_string_sized_new (len + 16);
      bn_tok_normalize (tok->norm, s, len, normal);
      s = normal->str;
      len = normal->len;
    }
  g_autoptr (GArray) spans = g_array_new (FALSE, FALSE, sizeof (BnSpan));
  bn_split_added (tok->norm_tokens, tok->n_norm, s, len, spans);
  Sink sink = { tok, ids };
  for (guint i = 0; i < spans->len; i++)
    {
      const BnSpan *sp = &g_array_index (spans, BnSpan, i);
      if (sp->id >= 0)
        g_array_append_val (ids, sp->id);
      else
        bn_pretokenize (s + sp->start, sp->end - sp->start, bpe_piece, &sink);
    }
}

static gboolean
check_utf8 (const char *what, const char *s, size_t len, GError **error)
{
  gssize bad = bn_utf8_find_invalid (s, len);
  if (bad < 0)
    return TRUE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
               "%s is not valid UTF-8: bad byte 0x%02x at offset %" G_GSSIZE_FORMAT,
               what, (guint8) s[bad], bad);
  return FALSE;
}

gboolean
bn_tokenizer_encode (const BnTokenizer *tok, const char *text, gssize len,
                     GArray *ids, GError **error)
{
  size_t n = len < 0 ? strlen (text) : (size_t) len;
  if (!check_utf8 ("text", text, n, error))
    return FALSE;
  if (n == 0)
    return TRUE;
  g_autoptr (GArray) spans = g_array_new (FALSE, FALSE, sizeof (BnSpan));
  bn_split_added (tok->raw_tokens, tok->n_raw, text, n, spans);
  for (guint i = 0; i < spans->len; i++)
    {
      const BnSpan *sp = &g_array_index (spans, BnSpan, i);
      if (sp->id >= 0)
        g_array_append_val (ids, sp->id);
      else
        encode_part (tok, text + sp->start, sp->end - sp->start, ids);
    }
  return TRUE;
}

/* ---- decoding ------------------------------------------------------------- */

/* The ByteLevel decoder: a token whose characters are all in the byte
 * alphabet gives those bytes; any other token gives its own text. */
static void
append_token_bytes (GByteArray *out, const char *text)
{
  size_t start = out->len;
  for (const char *p = text; *p; p = g_utf8_next_char (p))
    {
      int b = bn_char_byte (g_utf8_get_char (p));
      if (b < 0)
        {
          g_byte_array_set_size (out, (guint) start);
          g_byte_array_append (out, (const guint8 *) text, (guint) strlen (text));
          return;
        }
      guint8 byte = (guint8) b;
      g_byte_array_append (out, &byte, 1);
    }
}

char *
bn_tokenizer_decode (const BnTokenizer *tok, const int32_t *ids, size_t n,
                     GError **error)
{
  g_autoptr (GByteArray) bytes = g_byte_array_new ();
  for (size_t i = 0; i < n; i++)
    {
      if (ids[i] < 0 || ids[i] >= tok->n_ids || !tok->id_text[ids[i]])
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                       "token id %d (position %zu) is not in the vocabulary", ids[i], i);
          return NULL;
        }
      append_token_bytes (bytes, tok->id_text[ids[i]]);
    }
  GString *text = g_string_sized_new (bytes->len + 1);
  bn_utf8_append_lossy (text, bytes->data, bytes->len);
  return g_string_free (text, FALSE);
}

/* ---- the klein template --------------------------------------------------- */

static const char klein_head[] = "<|im_start|>user\n";
static const char klein_tail[] =
  "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

gboolean
bn_tokenizer_klein_ids (const BnTokenizer *tok, const char *prompt,
                        GArray *ids, GError **error)
{
  if (!check_utf8 ("prompt", prompt, strlen (prompt), error))
    return FALSE;
  /* One string, as the chat template renders it: the prompt's first and
   * last characters may merge with the template's newline. */
  g_autofree char *text = g_strconcat (klein_head, prompt, klein_tail, NULL);
  return bn_tokenizer_encode (tok, text, -1, ids, error);
}

gboolean
bn_tokenizer_klein_prompt (const BnTokenizer *tok, const char *prompt,
                           int max_len, int32_t *ids, uint8_t *mask,
                           int *n_real, GError **error)
{
  if (max_len < 1)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "prompt length %d: must be at least 1", max_len);
      return FALSE;
    }
  int32_t pad = bn_tokenizer_token_id (tok, BN_KLEIN_PAD_TOKEN);
  if (pad < 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "the tokenizer has no %s token to pad with", BN_KLEIN_PAD_TOKEN);
      return FALSE;
    }
  g_autoptr (GArray) all = g_array_new (FALSE, FALSE, sizeof (int32_t));
  if (!bn_tokenizer_klein_ids (tok, prompt, all, error))
    return FALSE;
  int n = (int) MIN (all->len, (guint) max_len);
  for (int i = 0; i < max_len; i++)
    {
      ids[i] = i < n ? g_array_index (all, int32_t, i) : pad;
      mask[i] = i < n;
    }
  *n_real = n;
  return TRUE;
}

/* ---- finding tokenizer.json --------------------------------------------- */

char *
bn_tokenizer_locate (const char *path, GError **error)
{
  const char *from = path ? path : g_getenv ("BONSAI_TOKENIZER");
  if (!from || !*from)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "no tokenizer named, and BONSAI_TOKENIZER is not set");
      return NULL;
    }
  if (g_file_test (from, G_FILE_TEST_IS_REGULAR))
    return g_strdup (from);
  if (g_file_test (from, G_FILE_TEST_IS_DIR))
    {
      g_autofree char *direct = g_build_filename (from, "tokenizer.json", NULL);
      g_autofree char *nested = g_build_filename (from, "tokenizer", "tokenizer.json", NULL);
      if (g_file_test (direct, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&direct);
      if (g_file_test (nested, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&nested);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "no tokenizer.json in %s (looked for %s and %s)", from, direct, nested);
      return NULL;
    }
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND, "%s%s: no such file or folder",
               from, path ? "" : " (from BONSAI_TOKENIZER)");
  return NULL;
}
