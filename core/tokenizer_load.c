/* tokenizer_load.c — reading a Hugging Face tokenizer.json into a
 * BnTokenizer, refusing what the encoder does not implement. */
#include "tokenizer_priv.h"

#include "bonsai/bonsai.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* The Qwen2 split pattern, as tokenizer.json spells it. */
static const char qwen2_pattern[] =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
  " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Real files nest 5 deep; json-glib's parser recurses, so a hostile file
 * must not reach it nested deeper. */
#define MAX_DEPTH 64

typedef struct {
  const char *origin;
  GError **error;
} Ctx;

G_GNUC_PRINTF (2, 3) static gboolean
fail (Ctx *cx, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (cx->error, BONSAI_ERROR, BONSAI_ERROR_FORMAT, "%s: %s", cx->origin, msg);
  return FALSE;
}

static bool
is_json_punct (char c)
{
  switch (c)
    {
    case ' ': case '\t': case '\r': case '\n': case ':': case ',':
    case '.': case '+': case '-':
      return true;
    default:
      return false;
    }
}

/* Depth outside strings.  Outside strings only JSON's own characters are
 * let through, so comments or single-quoted strings (which json-glib
 * accepts) cannot hide brackets from this count. */
static gboolean
check_nesting (Ctx *cx, const char *text, size_t len)
{
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < len; i++)
    {
      char c = text[i];
      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = false;
        }
      else if (c == '"')
        in_string = true;
      else if (c == '[' || c == '{')
        {
          if (++depth > MAX_DEPTH)
            return fail (cx, "JSON nested deeper than %d levels", MAX_DEPTH);
        }
      else if (c == ']' || c == '}')
        depth--;
      else if (!g_ascii_isalnum (c) && !is_json_punct (c))
        return fail (cx, "not JSON: unexpected byte 0x%02x at offset %zu",
                     (guint8) c, i);
    }
  return TRUE;
}

/* ---- typed member access (never a json-glib critical on a wrong type) --- */

static JsonNode *
member (JsonObject *o, const char *name)
{
  return o ? json_object_get_member (o, name) : NULL;
}

static bool
is_null (JsonNode *n)
{
  return !n || JSON_NODE_HOLDS_NULL (n);
}

static const char *
node_string (JsonNode *n)
{
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
           ? json_node_get_string (n) : NULL;
}

static JsonObject *
node_object (JsonNode *n)
{
  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static JsonArray *
node_array (JsonNode *n)
{
  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

/* A boolean member, `dflt` when absent or null; FALSE from `ok` when the
 * member is something else. */
static bool
member_bool (JsonObject *o, const char *name, bool dflt, bool *ok)
{
  JsonNode *n = member (o, name);
  if (is_null (n))
    return dflt;
  if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_BOOLEAN)
    return json_node_get_boolean (n);
  *ok = false;
  return dflt;
}

/* An id: an integer in [0, BN_TOK_MAX_ID). */
static bool
node_id (JsonNode *n, int32_t *id)
{
  if (!n || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return false;
  gint64 v = json_node_get_int (n);
  if (v < 0 || v >= BN_TOK_MAX_ID)
    return false;
  *id = (int32_t) v;
  return true;
}

static bool
string_is (JsonObject *o, const char *name, const char *want)
{
  const char *s = node_string (member (o, name));
  return s && strcmp (s, want) == 0;
}

/* ---- parts ---------------------------------------------------------------- */

static int32_t
vocab_id (const BnTokenizer *tok, const char *text)
{
  gpointer v = g_hash_table_lookup (tok->vocab, text);
  return v ? GPOINTER_TO_INT (v) - 1 : -1;
}

static gboolean
load_vocab (Ctx *cx, BnTokenizer *tok, JsonObject *model, GPtrArray *texts)
{
  JsonObject *vocab = node_object (member (model, "vocab"));
  if (!vocab)
    return fail (cx, "model.vocab is missing or not an object");
  g_autoptr (GList) names = json_object_get_members (vocab);
  for (GList *l = names; l; l = l->next)
    {
      int32_t id;
      if (!node_id (json_object_get_member (vocab, l->data), &id))
        return fail (cx, "model.vocab[\"%s\"] is not an id in [0, %d)",
                     (const char *) l->data, BN_TOK_MAX_ID);
      char *text = g_string_chunk_insert (tok->strings, l->data);
      g_hash_table_insert (tok->vocab, text, GINT_TO_POINTER (id + 1));
      if ((guint) id >= texts->len)
        g_ptr_array_set_size (texts, id + 1);
      /* Of two entries with one id, the first names it when decoding. */
      if (!texts->pdata[id])
        texts->pdata[id] = text;
    }
  return TRUE;
}

/* Merges are "a b" strings (one space) or ["a", "b"] pairs. */
static gboolean
load_merges (Ctx *cx, BnTokenizer *tok, JsonObject *model)
{
  JsonArray *merges = node_array (member (model, "merges"));
  if (!merges)
    return fail (cx, "model.merges is missing or not an array");
  guint n = json_array_get_length (merges);
  bn_merges_init (&tok->merges, n);
  g_autoptr (GString) joined = g_string_new (NULL);
  for (guint i = 0; i < n; i++)
    {
      JsonNode *node = json_array_get_element (merges, i);
      JsonArray *pair = node_array (node);
      const char *line = node_string (node);
      g_auto (GStrv) parts = NULL;
      const char *a = NULL, *b = NULL;
      if (pair && json_array_get_length (pair) == 2)
        {
          a = node_string (json_array_get_element (pair, 0));
          b = node_string (json_array_get_element (pair, 1));
        }
      else if (line)
        {
          parts = g_strsplit (line, " ", -1);
          if (g_strv_length (parts) == 2)
            {
              a = parts[0];
              b = parts[1];
            }
        }
      if (!a || !b)
        return fail (cx, "model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]", i);
      g_string_assign (joined, a);
      g_string_append (joined, b);
      int32_t ia = vocab_id (tok, a), ib = vocab_id (tok, b),
              ij = vocab_id (tok, joined->str);
      if (ia < 0 || ib < 0 || ij < 0)
        return fail (cx, "model.merges[%u]: \"%s\" is not in the vocabulary",
                     i, ia < 0 ? a : ib < 0 ? b : joined->str);
      bn_merges_add (&tok->merges, ia, ib, (int32_t) i, ij);
    }
  return TRUE;
}

static gboolean
load_model (Ctx *cx, BnTokenizer *tok, JsonObject *root, GPtrArray *texts)
{
  JsonObject *model = node_object (member (root, "model"));
  if (!model)
    return fail (cx, "no \"model\" object");
  if (!string_is (model, "type", "BPE"))
    return fail (cx, "model.type is not \"BPE\" (only byte-level BPE is implemented)");
  JsonNode *dropout = member (model, "dropout");
  if (!is_null (dropout)
      && !(JSON_NODE_HOLDS_VALUE (dropout) && json_node_get_double (dropout) == 0.0))
    return fail (cx, "model.dropout is set (BPE dropout is not implemented)");
  const char *affixes[] = { "continuing_subword_prefix", "end_of_word_suffix" };
  for (size_t i = 0; i < G_N_ELEMENTS (affixes); i++)
    {
      JsonNode *n = member (model, affixes[i]);
      if (!is_null (n) && !string_is (model, affixes[i], ""))
        return fail (cx, "model.%s is set (not implemented)", affixes[i]);
    }
  bool ok = true;
  bool byte_fallback = member_bool (model, "byte_fallback", false, &ok);
  tok->ignore_merges = member_bool (model, "ignore_merges", false, &ok);
  if (!ok)
    return fail (cx, "model.byte_fallback or model.ignore_merges is not a boolean");
  if (byte_fallback)
    return fail (cx, "model.byte_fallback is true (not implemented)");
  if (!load_vocab (cx, tok, model, texts) || !load_merges (cx, tok, model))
    return FALSE;
  /* Byte-level BPE starts from one token per byte; without all 256 some
   * text could not be encoded at all. */
  for (int b = 0; b < 256; b++)
    {
      char utf8[8] = { 0 };
      g_unichar_to_utf8 (bn_byte_char ((guint8) b), utf8);
      tok->byte_id[b] = vocab_id (tok, utf8);
      if (tok->byte_id[b] < 0)
        return fail (cx, "model.vocab lacks \"%s\", the token of byte 0x%02x", utf8, b);
    }
  return TRUE;
}

static gboolean
load_normalizer (Ctx *cx, BnTokenizer *tok, JsonObject *root)
{
  static const struct {
    const char *name;
    BnNormForm form;
  } forms[] = { { "NFC", BN_NORM_NFC }, { "NFD", BN_NORM_NFD },
                { "NFKC", BN_NORM_NFKC }, { "NFKD", BN_NORM_NFKD } };
  JsonNode *n = member (root, "normalizer");
  tok->norm = BN_NORM_NONE;
  if (is_null (n))
    return TRUE;
  for (size_t i = 0; i < G_N_ELEMENTS (forms); i++)
    if (string_is (node_object (n), "type", forms[i].name))
      {
        tok->norm = forms[i].form;
        return TRUE;
      }
  return fail (cx, "unsupported normalizer (NFC, NFD, NFKC, NFKD or none are implemented)");
}

static bool
is_bytelevel (JsonObject *o, bool want_prefix_space_off)
{
  bool ok = true;
  bool prefix = member_bool (o, "add_prefix_space", true, &ok);
  bool regex = member_bool (o, "use_regex", true, &ok);
  return ok && string_is (o, "type", "ByteLevel")
         && (!want_prefix_space_off || (!prefix && !regex));
}

/* Only the Qwen2 shape: Sequence [Split(pattern, Isolated), ByteLevel
 * without prefix space or regex]; and ByteLevel (or nothing) after. */
static gboolean
check_pipeline (Ctx *cx, JsonObject *root)
{
  JsonObject *pre = node_object (member (root, "pre_tokenizer"));
  JsonArray *seq = node_array (member (pre, "pretokenizers"));
  JsonObject *split = NULL, *bytes = NULL;
  if (string_is (pre, "type", "Sequence") && seq && json_array_get_length (seq) == 2)
    {
      split = node_object (json_array_get_element (seq, 0));
      bytes = node_object (json_array_get_element (seq, 1));
    }
  bool ok = true;
  bool invert = member_bool (split, "invert", false, &ok);
  if (!split || !string_is (split, "type", "Split") || !ok || invert
      || !string_is (node_object (member (split, "pattern")), "Regex", qwen2_pattern)
      || !string_is (split, "behavior", "Isolated") || !is_bytelevel (bytes, true))
    return fail (cx, "unsupported pre_tokenizer (only Qwen2's Split pattern followed "
                     "by ByteLevel is implemented)");
  /* The post-processor and decoder: ByteLevel adds no tokens and is what
   * decoding does; anything else (e.g. one adding BOS) is not implemented. */
  const char *parts[] = { "post_processor", "decoder" };
  for (size_t i = 0; i < G_N_ELEMENTS (parts); i++)
    {
      JsonNode *n = member (root, parts[i]);
      if (!is_null (n) && !is_bytelevel (node_object (n), false))
        return fail (cx, "unsupported %s (only ByteLevel is implemented)", parts[i]);
    }
  return TRUE;
}

/* ---- added tokens ------------------------------------------------------- */

typedef struct {
  char *content; /* as written; owned by the JSON parser */
  int32_t id;
  bool special, single_word, lstrip, rstrip, normalized;
  gint prev_same; /* the previous entry with this content, or -1 */
} Added;

static bool
same_added (const Added *a, const Added *b)
{
  return a->special == b->special && a->single_word == b->single_word
         && a->lstrip == b->lstrip && a->rstrip == b->rstrip
         && a->normalized == b->normalized;
}

/* Hugging Face re-registers added tokens one by one on load and gives each
 * the id its rules pick, not the id the file states (it only warns when
 * they differ): a text already registered or in the vocabulary keeps its
 * id, a new one takes the vocabulary's size or one past the largest added
 * id. */
static int32_t
pick_id (const BnTokenizer *tok, GHashTable *by_content, GArray *reg,
         int32_t max_added, const char *content)
{
  gpointer v;
  if (g_hash_table_lookup_extended (by_content, content, NULL, &v))
    return g_array_index (reg, Added, GPOINTER_TO_INT (v)).id;
  int32_t id = vocab_id (tok, content);
  if (id >= 0)
    return id;
  int32_t size = (int32_t) g_hash_table_size (tok->vocab);
  if (max_added < 0)
    return size;
  return (max_added >= size || size == 0) ? max_added + 1 : size;
}

static gboolean
parse_added (Ctx *cx, JsonArray *arr, guint i, Added *a)
{
  JsonObject *o = node_object (json_array_get_element (arr, i));
  const char *content = node_string (member (o, "content"));
  bool ok = true;
  *a = (Added) { .prev_same = -1 };
  a->special = member_bool (o, "special", false, &ok);
  a->single_word = member_bool (o, "single_word", false, &ok);
  a->lstrip = member_bool (o, "lstrip", false, &ok);
  a->rstrip = member_bool (o, "rstrip", false, &ok);
  a->normalized = member_bool (o, "normalized", !a->special, &ok);
  if (!content || !ok || !node_id (member (o, "id"), &a->id))
    return fail (cx, "added_tokens[%u] lacks a content string or an id, or has "
                     "a flag that is not a boolean", i);
  a->content = (char *) content;
  return TRUE;
}

/* The token as matched: content from `entry` (normalised if it says so),
 * rules from `rules`. */
static void
add_to_set (const BnTokenizer *tok, GArray *set, const Added *entry,
            const Added *rules)
{
  g_autoptr (GString) content = g_string_new (NULL);
  bn_tok_normalize (entry->normalized ? tok->norm : BN_NORM_NONE, entry->content,
                    strlen (entry->content), content);
  size_t len = content->len;
  BnAddedToken t = {
    .content = g_string_free (g_steal_pointer (&content), FALSE),
    .len = len,
    .id = entry->id,
    .single_word = rules->single_word,
    .lstrip = rules->lstrip,
    .rstrip = rules->rstrip,
    .normalized = entry->normalized,
  };
  g_array_append_val (set, t);
}

static gboolean
load_added (Ctx *cx, BnTokenizer *tok, JsonObject *root, GPtrArray *texts)
{
  JsonNode *node = member (root, "added_tokens");
  JsonArray *arr = node_array (node);
  if (!arr && !is_null (node))
    return fail (cx, "added_tokens is not an array");
  guint n = arr ? json_array_get_length (arr) : 0;
  g_autoptr (GArray) reg = g_array_new (FALSE, FALSE, sizeof (Added));
  g_autoptr (GArray) order = g_array_new (FALSE, FALSE, sizeof (gint));
  g_autoptr (GArray) others = g_array_new (FALSE, FALSE, sizeof (gint));
  g_autoptr (GHashTable) by_content = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) by_id = g_hash_table_new (NULL, NULL);
  g_autoptr (GHashTable) specials = g_hash_table_new (g_str_hash, g_str_equal);
  int32_t max_added = -1;
  for (guint i = 0; i < n; i++)
    {
      Added a;
      if (!parse_added (cx, arr, i, &a))
        return FALSE;
      if (!*a.content)
        continue;
      gpointer v;
      if (g_hash_table_lookup_extended (by_content, a.content, NULL, &v))
        a.prev_same = GPOINTER_TO_INT (v);
      bool repeat = false;
      for (gint k = a.prev_same; k >= 0 && !repeat; k = g_array_index (reg, Added, k).prev_same)
        repeat = same_added (&g_array_index (reg, Added, k), &a);
      if (repeat)
        continue;
      int32_t stated = a.id;
      a.id = pick_id (tok, by_content, reg, max_added, a.content);
      if (a.id != stated)
        g_debug ("%s: added token \"%s\" is stated as id %d but loads as %d, as "
                 "in Hugging Face", cx->origin, a.content, stated, a.id);
      max_added = MAX (max_added, a.id);
      gint index = (gint) reg->len;
      g_array_append_val (reg, a);
      g_hash_table_insert (by_content, a.content, GINT_TO_POINTER (index));
      g_hash_table_insert (by_id, GINT_TO_POINTER (a.id), GINT_TO_POINTER (index));
      /* Special tokens match first, each text once; other tokens follow
       * unless their text was a special token's when they came. */
      if (a.special && !g_hash_table_contains (specials, a.content))
        {
          g_hash_table_add (specials, a.content);
          g_array_append_val (order, index);
        }
      else if (!a.special && !g_hash_table_contains (specials, a.content))
        g_array_append_val (others, index);
      if ((guint) a.id >= texts->len)
        g_ptr_array_set_size (texts, a.id + 1);
      texts->pdata[a.id] = g_string_chunk_insert (tok->strings, a.content);
    }
  g_array_append_vals (order, others->data, others->len);

  /* Each match's rules come from the last token registered under its id. */
  g_autoptr (GArray) raw = g_array_new (FALSE, FALSE, sizeof (BnAddedToken));
  g_autoptr (GArray) norm = g_array_new (FALSE, FALSE, sizeof (BnAddedToken));
  for (guint k = 0; k < order->len; k++)
    {
      const Added *entry = &g_array_index (reg, Added, g_array_index (order, gint, k));
      gint last = GPOINTER_TO_INT (g_hash_table_lookup (by_id, GINT_TO_POINTER (entry->id)));
      add_to_set (tok, entry->normalized ? norm : raw, entry,
                  &g_array_index (reg, Added, last));
    }
  tok->n_raw = raw->len;
  tok->raw_tokens = (BnAddedToken *) (void *) g_array_steal (raw, NULL);
  tok->n_norm = norm->len;
  tok->norm_tokens = (BnAddedToken *) (void *) g_array_steal (norm, NULL);
  return TRUE;
}

/* ---- entry points --------------------------------------------------------- */

BnTokenizer *
bn_tokenizer_load_data (const char *origin, const char *json, size_t len,
                        GError **error)
{
  Ctx cx = { origin, error };
  if (len == 0)
    {
      fail (&cx, "empty file");
      return NULL;
    }
  const char *bad;
  if (!g_utf8_validate_len (json, len, &bad))
    {
      fail (&cx, "not UTF-8 text (byte %zu)", (size_t) (bad - json));
      return NULL;
    }
  if (!check_nesting (&cx, json, len))
    return NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) jerr = NULL;
  if (!json_parser_load_from_data (parser, json, (gssize) len, &jerr))
    {
      fail (&cx, "not valid JSON: %s", jerr->message);
      return NULL;
    }
  JsonObject *root = node_object (json_parser_get_root (parser));
  if (!root)
    {
      fail (&cx, "the JSON is not an object");
      return NULL;
    }
  JsonNode *version = member (root, "version");
  if (!is_null (version) && !string_is (root, "version", "1.0"))
    {
      fail (&cx, "unknown tokenizer.json version (1.0 is known)");
      return NULL;
    }

  BnTokenizer *tok = g_new0 (BnTokenizer, 1);
  tok->vocab = g_hash_table_new (g_str_hash, g_str_equal);
  tok->strings = g_string_chunk_new (1 << 20);
  g_autoptr (GPtrArray) texts = g_ptr_array_new ();
  if (!load_model (&cx, tok, root, texts) || !load_normalizer (&cx, tok, root)
      || !check_pipeline (&cx, root) || !load_added (&cx, tok, root, texts))
    {
      bn_tokenizer_free (tok);
      return NULL;
    }
  tok->n_ids = (int32_t) texts->len;
  tok->id_text = (char **) g_ptr_array_steal (texts, NULL);
  return tok;
}

BnTokenizer *
bn_tokenizer_load (const char *path, GError **error)
{
  g_autoptr (GError) ferr = NULL;
  g_autoptr (GMappedFile) file = g_mapped_file_new (path, FALSE, &ferr);
  if (!file)
    {
      g_set_error (error, BONSAI_ERROR,
                   g_error_matches (ferr, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                     ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_IO,
                   "%s", ferr->message);
      return NULL;
    }
  gint64 t0 = g_get_monotonic_time ();
  BnTokenizer *tok = bn_tokenizer_load_data (path, g_mapped_file_get_contents (file),
                                             g_mapped_file_get_length (file), error);
  if (tok)
    g_debug ("tokenizer: %s loaded in %.0f ms (%d ids)", path,
             (g_get_monotonic_time () - t0) / 1e3, tok->n_ids);
  return tok;
}
