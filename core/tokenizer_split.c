/* tokenizer_split.c — finding added tokens in a text, as Hugging Face's
 * AddedVocabulary::find_matches does: an Aho-Corasick leftmost-longest scan
 * (here a plain scan: tokenizers have a few dozen added tokens), then each
 * match's single_word, lstrip and rstrip rules. */
#include "tokenizer_priv.h"

#include <string.h>

/* Rust regex's \w, which Hugging Face uses for single_word: Alphabetic,
 * marks, decimal digits, connector punctuation and the joiners.  Alphabetic
 * is the letters, Nl and Other_Alphabetic; of the latter only the marks
 * (covered by M) and the enclosed Latin letters are not letters already. */
static bool
is_word_char (gunichar c)
{
  if (g_unichar_isalpha (c))
    return true;
  switch (g_unichar_type (c))
    {
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_NON_SPACING_MARK:
    case G_UNICODE_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK:
    case G_UNICODE_CONNECT_PUNCTUATION:
      return true;
    default:
      return c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9)
             || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169)
             || (c >= 0x1F170 && c <= 0x1F189);
    }
}

/* The character that ends text[0..end) (end > 0). */
static gunichar
char_before (const char *text, size_t end)
{
  return g_utf8_get_char (g_utf8_find_prev_char (text, text + end));
}

static const BnAddedToken *
longest_at (const BnAddedToken *set, size_t n, const char *text, size_t len,
            size_t p)
{
  const BnAddedToken *best = NULL;
  for (size_t k = 0; k < n; k++)
    {
      const BnAddedToken *t = &set[k];
      if (t->len > 0 && t->len <= len - p && (!best || t->len > best->len)
          && memcmp (text + p, t->content, t->len) == 0)
        best = t;
    }
  return best;
}

static void
push (GArray *spans, size_t start, size_t end, int32_t id)
{
  BnSpan s = { start, end, id };
  g_array_append_val (spans, s);
}

void
bn_split_added (const BnAddedToken *set, size_t n, const char *text,
                size_t len, GArray *spans)
{
  size_t done = 0; /* end of the last accepted match */
  for (size_t p = 0; p < len;)
    {
      const BnAddedToken *t = longest_at (set, n, text, len, p);
      if (!t)
        {
          p++;
          continue;
        }
      size_t start = p, stop = p + t->len;
      /* The scan resumes after the match even when a rule drops it. */
      p = stop;
      if (t->single_word
          && ((start > 0 && is_word_char (char_before (text, start)))
              || (stop < len && is_word_char (g_utf8_get_char (text + stop)))))
        continue;
      if (t->lstrip)
        {
          size_t s = start;
          while (s > 0 && bn_tok_is_space (char_before (text, s)))
            s = (size_t) (g_utf8_find_prev_char (text, text + s) - text);
          /* Spaces a previous match took stay with it. */
          start = MAX (s, done);
        }
      if (t->rstrip)
        while (stop < len && bn_tok_is_space (g_utf8_get_char (text + stop)))
          stop = (size_t) (g_utf8_next_char (text + stop) - text);
      if (done < start)
        push (spans, done, start, -1);
      /* After an rstrip a later match may start inside the spaces taken;
       * Hugging Face then yields overlapping parts, and so does this. */
      push (spans, start, stop, t->id);
      done = stop;
    }
  /* An empty text is one empty part. */
  if (done != len || len == 0)
    push (spans, done, len, -1);
}
