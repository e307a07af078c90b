/* utf8.c — UTF-8 validation with offsets and lossy repair. */
#include "utf8.h"

/* Table 3-7 of the Unicode standard: the lead byte fixes the length and
 * the range of the second byte (which excludes overlong forms, surrogates
 * and code points past U+10FFFF); later bytes are 80..BF.  Returns how
 * many leading bytes of s[0..avail) form a prefix of a well-formed
 * sequence (*need: its full length), 0 when s[0] cannot start one. */
static size_t
valid_prefix (const guint8 *s, size_t avail, size_t *need)
{
  guint8 b = s[0], lo = 0x80, hi = 0xBF;
  if (b < 0x80)
    {
      *need = 1;
      return 1;
    }
  if (b >= 0xC2 && b <= 0xDF)
    *need = 2;
  else if (b >= 0xE0 && b <= 0xEF)
    {
      *need = 3;
      if (b == 0xE0)
        lo = 0xA0;
      else if (b == 0xED)
        hi = 0x9F;
    }
  else if (b >= 0xF0 && b <= 0xF4)
    {
      *need = 4;
      if (b == 0xF0)
        lo = 0x90;
      else if (b == 0xF4)
        hi = 0x8F;
    }
  else
    {
      *need = 1;
      return 0;
    }
  size_t i = 1;
  for (; i < *need && i < avail; i++)
    {
      guint8 c = s[i];
      if (c < lo || c > hi)
        break;
      lo = 0x80;
      hi = 0xBF;
    }
  return i;
}

size_t
bn_utf8_seq_len (const guint8 *s, size_t avail)
{
  size_t need;
  size_t got = valid_prefix (s, avail, &need);
  return got == need ? need : 0;
}

gssize
bn_utf8_find_invalid (const char *s, size_t len)
{
  const guint8 *p = (const guint8 *) s;
  size_t i = 0;
  while (i < len)
    {
      if (p[i] < 0x80)
        {
          i++;
          continue;
        }
      size_t n = bn_utf8_seq_len (p + i, len - i);
      if (n == 0)
        return (gssize) i;
      i += n;
    }
  return -1;
}

void
bn_utf8_append_lossy (GString *out, const guint8 *s, size_t len)
{
  size_t i = 0;
  while (i < len)
    {
      size_t need;
      size_t got = valid_prefix (s + i, len - i, &need);
      if (got == need)
        g_string_append_len (out, (const char *) s + i, (gssize) need);
      else
        g_string_append (out, "\xEF\xBF\xBD");
      /* A bad lead byte is one maximal part; a truncated sequence is its
       * valid prefix, and the byte that broke it starts the next part. */
      i += got ? got : 1;
    }
}
