/* tokenizer_priv.h — what the tokenizer's files share (internal to
 * tokenizer.c, tokenizer_load.c, tokenizer_bpe.c, tokenizer_split.c and
 * tokenizer_pretok.c). */
#ifndef BN_TOKENIZER_PRIV_H
#define BN_TOKENIZER_PRIV_H

#include "tokenizer.h"

#include <stdbool.h>
#include <stddef.h>

/* The largest id a tokenizer.json may use: bounds the id → text table a
 * hostile file could make us allocate (Qwen's largest is 151668). */
#define BN_TOK_MAX_ID (1 << 24)

typedef enum {
  BN_NORM_NONE,
  BN_NORM_NFC,
  BN_NORM_NFD,
  BN_NORM_NFKC,
  BN_NORM_NFKD,
} BnNormForm;

typedef struct {
  char *content; /* as matched: already normalised when `normalized` */
  size_t len;
  int32_t id;
  bool single_word, lstrip, rstrip, normalized;
} BnAddedToken;

/* Merge rules keyed by the pair of ids: open addressing, linear probing,
 * a power-of-two table at most half full. */
typedef struct {
  uint64_t key; /* (left << 32 | right) + 1; 0 marks an empty slot */
  int32_t rank;
  int32_t new_id;
} BnMergeSlot;

typedef struct {
  BnMergeSlot *slots;
  size_t mask;
} BnMergeTable;

struct BnTokenizer {
  GStringChunk *strings; /* every vocabulary and added-token text */
  GHashTable *vocab;     /* model vocabulary: byte-level text → id + 1 */
  char **id_text;        /* [n_ids] text of each id (added tokens: their
                            content as written); NULL where unused; the
                            texts live in `strings` */
  int32_t n_ids;
  int32_t byte_id[256];  /* the id of each byte's one-character token */
  BnMergeTable merges;
  bool ignore_merges;    /* a word found whole in the vocabulary is one token */
  BnNormForm norm;
  /* Added tokens in the Hugging Face matching order (special ones first),
   * split by whether they match before or after normalisation. */
  BnAddedToken *raw_tokens;
  size_t n_raw;
  BnAddedToken *norm_tokens;
  size_t n_norm;
};

/* ---- tokenizer.c ---- */

/* Appends the normal form `form` of valid UTF-8 s[0..len) to `out`. */
void bn_tok_normalize (BnNormForm form, const char *s, size_t len, GString *out);

/* ---- tokenizer_bpe.c ---- */

/* GPT-2's byte alphabet: the character byte `b` is written as, and back
 * (-1 for a character outside the alphabet). */
gunichar bn_byte_char (guint8 b);
int bn_char_byte (gunichar c);

/* Records that (left, right) merge into new_id with priority `rank`
 * (lower first); a pair given again takes the later rank, as Hugging Face
 * does.  `capacity` is the number of merges the table is built for. */
void bn_merges_init (BnMergeTable *t, size_t capacity);
void bn_merges_add (BnMergeTable *t, int32_t left, int32_t right,
                    int32_t rank, int32_t new_id);
void bn_merges_clear (BnMergeTable *t);

/* Byte-level BPE of one pre-tokenised word (`len` raw bytes); appends the
 * ids to `out`. */
void bn_bpe_word (const BnTokenizer *tok, const guint8 *word, size_t len,
                  GArray *out);

/* ---- tokenizer_split.c ---- */

/* A part of a text found by added-token matching: [start, end) bytes and
 * the added token's id, or -1 for ordinary text. */
typedef struct {
  size_t start, end;
  int32_t id;
} BnSpan;

/* Splits `text` around the added tokens in `set`, as Hugging Face's
 * AddedVocabulary::find_matches does (leftmost-longest, then single_word,
 * lstrip and rstrip).  Appends BnSpan to `spans`. */
void bn_split_added (const BnAddedToken *set, size_t n, const char *text,
                     size_t len, GArray *spans);

/* ---- tokenizer_pretok.c ---- */

/* White_Space: Oniguruma's \s and Rust regex's \s alike (U+0009–U+000D,
 * U+0085 and the Zs, Zl, Zp categories). */
bool bn_tok_is_space (gunichar c);

/* Cuts valid UTF-8 `text` into the pieces the Qwen2 pattern matches and
 * calls `fn` on each, in order. */
typedef void (*BnPieceFn) (const char *piece, size_t len, void *user);
void bn_pretokenize (const char *text, size_t len, BnPieceFn fn, void *user);

#endif
