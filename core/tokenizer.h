/* tokenizer.h — the Qwen3 tokenizer and the klein prompt template (internal).
 *
 * A byte-level BPE tokenizer read from a Hugging Face tokenizer.json, giving
 * the ids the Hugging Face `tokenizers` library gives:
 *   1. added tokens (special or not) are found first and split the text;
 *      they are never normalised or BPE'd; their lstrip, rstrip,
 *      single_word and normalized flags are honoured;
 *   2. every other piece is normalised (NFC for Qwen; NFD, NFKC, NFKD and
 *      none are accepted too);
 *   3. pre-tokenised by the Qwen2 split pattern
 *        (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
 *        | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *      matched by hand with Oniguruma's semantics (the engine under the
 *      `tokenizers` library): \s is U+0009–U+000D, U+0085 and the Zs, Zl,
 *      Zp categories; (?i) lets U+017F (long s) match 's';
 *   4. mapped to the GPT-2 byte alphabet and merged by rank.
 * Only this shape of tokenizer.json loads (BPE model, that pre-tokenizer,
 * no dropout, no byte fallback, no subword prefix or suffix); anything
 * else fails with BONSAI_ERROR_FORMAT naming the part that differs.
 *
 * Input text is UTF-8 with an explicit length, so U+0000 is an ordinary
 * character.  Text that is not valid UTF-8 (stray or truncated sequences,
 * overlong forms, surrogates, beyond U+10FFFF) is refused with
 * BONSAI_ERROR_INVALID_INPUT naming the byte offset of the first bad byte:
 * the Hugging Face library only accepts valid strings, and guessing a
 * repair would give ids no reference produces.
 *
 * A BnTokenizer is immutable after loading and may be used from several
 * threads at once.
 */
#ifndef BN_TOKENIZER_H
#define BN_TOKENIZER_H

#include <glib.h>
#include <stdint.h>

typedef struct BnTokenizer BnTokenizer;

/* The klein text encoder's sequence length (research/flux2_klein_spec.md
 * §3.2): prompts are truncated and padded to it. */
#define BN_KLEIN_MAX_LENGTH 512
/* The token klein pads with. */
#define BN_KLEIN_PAD_TOKEN "<|endoftext|>"

/* Loads tokenizer.json from `path`.  Returns a new tokenizer owned by the
 * caller (bn_tokenizer_free), or NULL with error: NOT_FOUND or IO when the
 * file cannot be read, FORMAT when it is damaged or of an unsupported
 * kind.  Messages name the file. */
BnTokenizer *bn_tokenizer_load (const char *path, GError **error);
/* The same from `len` bytes of JSON held in memory (owned by the caller);
 * `origin` names the source in error messages. */
BnTokenizer *bn_tokenizer_load_data (const char *origin, const char *json,
                                     size_t len, GError **error);
void bn_tokenizer_free (BnTokenizer *tok);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BnTokenizer, bn_tokenizer_free)

/* Finds a tokenizer.json: `path` may name the file itself or a folder
 * holding tokenizer.json or tokenizer/tokenizer.json (a model folder).
 * With path NULL the environment variable BONSAI_TOKENIZER is used the same
 * way.  Returns a new string owned by the caller, or NULL with NOT_FOUND
 * saying where it looked. */
char *bn_tokenizer_locate (const char *path, GError **error);

/* One more than the largest id the tokenizer knows. */
int32_t bn_tokenizer_n_ids (const BnTokenizer *tok);
/* The id of the vocabulary entry or added token spelled exactly `token`
 * (byte-level form for vocabulary entries), or -1. */
int32_t bn_tokenizer_token_id (const BnTokenizer *tok, const char *token);

/* Appends the ids of `len` bytes of `text` (len < 0: NUL-terminated) to
 * `ids`, a GArray of int32_t owned by the caller.  On failure (invalid
 * UTF-8, see above) returns FALSE with error and leaves `ids` as it was. */
gboolean bn_tokenizer_encode (const BnTokenizer *tok, const char *text,
                              gssize len, GArray *ids, GError **error);

/* Decodes `n` ids to text as the Hugging Face ByteLevel decoder does
 * (special tokens kept; byte sequences that are not valid UTF-8 become
 * U+FFFD, one per maximal invalid part).  Returns a new NUL-terminated
 * string owned by the caller, or NULL with INVALID_INPUT for an unknown
 * id. */
char *bn_tokenizer_decode (const BnTokenizer *tok, const int32_t *ids,
                           size_t n, GError **error);

/* Tokenises `prompt` (NUL-terminated UTF-8) in the klein chat template
 *   <|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n
 *   <think>\n\n</think>\n\n
 * as diffusers does (special tokens inside the prompt are recognised too),
 * keeps the first `max_len` ids (Hugging Face `truncation=True`, which cuts
 * the tail, template suffix included), and right-pads with
 * BN_KLEIN_PAD_TOKEN.  Fills ids[max_len] and mask[max_len] (1 = token,
 * 0 = padding; caller-owned) and sets *n_real to the number of unpadded
 * tokens.  Fails with INVALID_INPUT for max_len < 1 or a prompt that is
 * not valid UTF-8 (the offset named is within the prompt), and FORMAT when
 * the tokenizer lacks the pad token; the outputs are then untouched. */
gboolean bn_tokenizer_klein_prompt (const BnTokenizer *tok, const char *prompt,
                                    int max_len, int32_t *ids, uint8_t *mask,
                                    int *n_real, GError **error);
/* The template alone, unpadded: appends its ids to `ids` (int32_t). */
gboolean bn_tokenizer_klein_ids (const BnTokenizer *tok, const char *prompt,
                                 GArray *ids, GError **error);

#endif
