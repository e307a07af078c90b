/* tokenizer_pretok.c — the Qwen2 pre-tokenizer pattern, matched by hand:
 *
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 *
 * with the semantics of Oniguruma, the engine Hugging Face's Split runs it
 * on: alternatives tried in order at each position, quantifiers greedy with
 * backtracking.  Every character starts some alternative, so the matches
 * tile the text and a match is searched only where the last one ended. */
#include "tokenizer_priv.h"

enum {
  CL_L = 1,  /* \p{L}: Lu Ll Lt Lm Lo */
  CL_N = 2,  /* \p{N}: Nd Nl No */
  CL_S = 4,  /* \s */
  CL_NL = 8, /* \r or \n (also CL_S) */
};

typedef struct {
  gunichar cp;
  guint8 cls;
} Char;

bool
bn_tok_is_space (gunichar c)
{
  if ((c >= 0x09 && c <= 0x0D) || c == 0x85)
    return true;
  GUnicodeType t = g_unichar_type (c);
  return t == G_UNICODE_SPACE_SEPARATOR || t == G_UNICODE_LINE_SEPARATOR
         || t == G_UNICODE_PARAGRAPH_SEPARATOR;
}

static guint8
char_class (gunichar c)
{
  if (c < 0x80)
    {
      if (g_ascii_isalpha ((char) c))
        return CL_L;
      if (g_ascii_isdigit ((char) c))
        return CL_N;
      if (c == '\r' || c == '\n')
        return CL_S | CL_NL;
      return (c == ' ' || (c >= 0x09 && c <= 0x0D)) ? CL_S : 0;
    }
  /* g_unichar_isalpha is exactly Lu Ll Lt Lm Lo. */
  if (g_unichar_isalpha (c))
    return CL_L;
  switch (g_unichar_type (c))
    {
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
      return CL_N;
    default:
      return bn_tok_is_space (c) ? CL_S : 0;
    }
}

/* Case folding as far as the contractions need it: under (?i) Oniguruma
 * also matches U+017F LATIN SMALL LETTER LONG S for 's' (CaseFolding.txt:
 * 017F → 0073); no other character folds to s, t, r, e, v, m, l or d. */
static gunichar
fold (gunichar c)
{
  if (c >= 'A' && c <= 'Z')
    return c + ('a' - 'A');
  return c == 0x17F ? 's' : c;
}

static bool
is_other (const Char *c)
{
  return (c->cls & (CL_L | CL_N | CL_S)) == 0;
}

/* The end of the match that starts at c[i] (i < n). */
static size_t
match_end (const Char *c, size_t n, size_t i)
{
  /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
  if (c[i].cp == '\'' && i + 1 < n)
    {
      gunichar a = fold (c[i + 1].cp);
      if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return i + 2;
      gunichar b = i + 2 < n ? fold (c[i + 2].cp) : 0;
      if (((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l'))
        return i + 3;
    }
  /* [^\r\n\p{L}\p{N}]?\p{L}+ — the optional character is tried first. */
  size_t j = i;
  if (!(c[i].cls & (CL_L | CL_N | CL_NL)) && i + 1 < n && (c[i + 1].cls & CL_L))
    j = i + 1;
  if (c[j].cls & CL_L)
    {
      while (j < n && (c[j].cls & CL_L))
        j++;
      return j;
    }
  /* \p{N} */
  if (c[i].cls & CL_N)
    return i + 1;
  /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
  j = (c[i].cp == ' ' && i + 1 < n && is_other (&c[i + 1])) ? i + 1 : i;
  if (is_other (&c[j]))
    {
      while (j < n && is_other (&c[j]))
        j++;
      while (j < n && (c[j].cls & CL_NL))
        j++;
      return j;
    }
  /* c[i] is white space; take the whole run. */
  size_t end = i, last_nl = 0;
  bool has_nl = false;
  for (; end < n && (c[end].cls & CL_S); end++)
    if (c[end].cls & CL_NL)
      {
        last_nl = end;
        has_nl = true;
      }
  /* \s*[\r\n]+ — \s* backs off until the last newline of the run. */
  if (has_nl)
    return last_nl + 1;
  /* \s+(?!\S) — the whole run at the end, else all but its last space. */
  if (end == n)
    return end;
  if (end - i >= 2)
    return end - 1;
  /* \s+ */
  return end;
}

void
bn_pretokenize (const char *text, size_t len, BnPieceFn fn, void *user)
{
  /* Characters and their byte offsets (offs[n] = len). */
  g_autoptr (GArray) chars = g_array_sized_new (FALSE, FALSE, sizeof (Char), len);
  g_autoptr (GArray) offs = g_array_sized_new (FALSE, FALSE, sizeof (size_t), len + 1);
  for (size_t p = 0; p < len; p = g_utf8_next_char (text + p) - text)
    {
      gunichar cp = g_utf8_get_char (text + p);
      Char ch = { cp, char_class (cp) };
      g_array_append_val (chars, ch);
      g_array_append_val (offs, p);
    }
  g_array_append_val (offs, len);

  const Char *c = (const Char *) (void *) chars->data;
  const size_t *off = (const size_t *) (void *) offs->data;
  size_t n = chars->len;
  for (size_t i = 0; i < n;)
    {
      size_t e = match_end (c, n, i);
      fn (text + off[i], off[e] - off[i], user);
      i = e;
    }
}
