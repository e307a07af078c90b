/* tokenizer_bpe.c — the byte alphabet, the merge table and BPE of one word,
 * step for step as Hugging Face's `tokenizers` (bpe/word.rs) merges. */
#include "tokenizer_priv.h"

#include <string.h>

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the other 68 (0x00–0x20, 0x7F–0xA0, 0xAD) become U+0100.. in byte order. */
gunichar
bn_byte_char (guint8 b)
{
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
    return b;
  if (b <= 0x20)
    return 0x100 + b;
  if (b <= 0xA0)
    return 0x100 + 0x21 + (b - 0x7F);
  return 0x100 + 0x21 + 0x22; /* 0xAD */
}

int
bn_char_byte (gunichar c)
{
  if (c < 0x100)
    return bn_byte_char ((guint8) c) == c ? (int) c : -1;
  if (c < 0x100 + 0x21)
    return (int) (c - 0x100);
  if (c < 0x100 + 0x21 + 0x22)
    return (int) (c - 0x100 - 0x21 + 0x7F);
  return c == 0x100 + 0x21 + 0x22 ? 0xAD : -1;
}

/* ---- merge table ---------------------------------------------------------- */

static uint64_t
pair_key (int32_t left, int32_t right)
{
  return (((uint64_t) (uint32_t) left << 32) | (uint32_t) right) + 1;
}

static size_t
slot_of (uint64_t key, size_t mask)
{
  /* splitmix64's finaliser: ids are small and dense, so mix them. */
  key ^= key >> 30;
  key *= 0xbf58476d1ce4e5b9u;
  key ^= key >> 27;
  key *= 0x94d049bb133111ebu;
  key ^= key >> 31;
  return (size_t) key & mask;
}

void
bn_merges_init (BnMergeTable *t, size_t capacity)
{
  size_t size = 16;
  while (size < 2 * capacity)
    size *= 2;
  t->slots = g_new0 (BnMergeSlot, size);
  t->mask = size - 1;
}

void
bn_merges_add (BnMergeTable *t, int32_t left, int32_t right, int32_t rank,
               int32_t new_id)
{
  uint64_t key = pair_key (left, right);
  size_t i = slot_of (key, t->mask);
  while (t->slots[i].key != 0 && t->slots[i].key != key)
    i = (i + 1) & t->mask;
  t->slots[i] = (BnMergeSlot) { key, rank, new_id };
}

static const BnMergeSlot *
merges_find (const BnMergeTable *t, int32_t left, int32_t right)
{
  uint64_t key = pair_key (left, right);
  for (size_t i = slot_of (key, t->mask);; i = (i + 1) & t->mask)
    {
      if (t->slots[i].key == key)
        return &t->slots[i];
      if (t->slots[i].key == 0)
        return NULL;
    }
}

void
bn_merges_clear (BnMergeTable *t)
{
  g_clear_pointer (&t->slots, g_free);
  t->mask = 0;
}

/* ---- BPE of one word ------------------------------------------------------ */

typedef struct {
  int32_t id;
  int32_t prev, next; /* neighbours still alive; -1 at the ends */
  bool alive;
} Symbol;

typedef struct {
  int32_t rank, pos, new_id;
} Candidate;

/* A binary min-heap on (rank, pos): the lowest rank merges first, and of
 * equal ranks the leftmost. */
static bool
before (const Candidate *a, const Candidate *b)
{
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void
heap_push (Candidate *h, size_t *n, Candidate c)
{
  size_t i = (*n)++;
  while (i > 0 && before (&c, &h[(i - 1) / 2]))
    {
      h[i] = h[(i - 1) / 2];
      i = (i - 1) / 2;
    }
  h[i] = c;
}

static Candidate
heap_pop (Candidate *h, size_t *n)
{
  Candidate top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;)
    {
      size_t c = 2 * i + 1;
      if (c >= *n)
        break;
      if (c + 1 < *n && before (&h[c + 1], &h[c]))
        c++;
      if (!before (&h[c], &last))
        break;
      h[i] = h[c];
      i = c;
    }
  if (*n > 0)
    h[i] = last;
  return top;
}

static void
push_pair (const BnMergeTable *t, Candidate *h, size_t *n, const Symbol *s,
           int32_t pos)
{
  const BnMergeSlot *m = merges_find (t, s[pos].id, s[s[pos].next].id);
  if (m)
    heap_push (h, n, (Candidate) { m->rank, pos, m->new_id });
}

/* Looks the whole word up in byte-level form (ignore_merges). */
static int32_t
whole_word_id (const BnTokenizer *tok, const guint8 *word, size_t len)
{
  g_autoptr (GString) s = g_string_sized_new (2 * len);
  for (size_t i = 0; i < len; i++)
    g_string_append_unichar (s, bn_byte_char (word[i]));
  gpointer v = g_hash_table_lookup (tok->vocab, s->str);
  return v ? GPOINTER_TO_INT (v) - 1 : -1;
}

void
bn_bpe_word (const BnTokenizer *tok, const guint8 *word, size_t len,
             GArray *out)
{
  if (len == 0)
    return;
  if (tok->ignore_merges)
    {
      int32_t id = whole_word_id (tok, word, len);
      if (id >= 0)
        {
          g_array_append_val (out, id);
          return;
        }
    }
  /* Each merge pushes at most two candidates: 3·len bounds the heap. */
  enum { SMALL = 64 };
  Symbol small_sym[SMALL];
  Candidate small_heap[3 * SMALL];
  Symbol *sym = len <= SMALL ? small_sym : g_new (Symbol, len);
  Candidate *heap = len <= SMALL ? small_heap : g_new (Candidate, 3 * len);
  size_t n_heap = 0;

  for (size_t i = 0; i < len; i++)
    sym[i] = (Symbol) { tok->byte_id[word[i]], (int32_t) i - 1,
                        i + 1 < len ? (int32_t) i + 1 : -1, true };
  for (size_t i = 0; i + 1 < len; i++)
    push_pair (&tok->merges, heap, &n_heap, sym, (int32_t) i);

  while (n_heap > 0)
    {
      Candidate top = heap_pop (heap, &n_heap);
      Symbol *s = &sym[top.pos];
      if (!s->alive || s->next < 0)
        continue;
      /* A stale candidate: its pair changed since it was queued.  Like
       * Hugging Face, only the merge result is compared. */
      const BnMergeSlot *m = merges_find (&tok->merges, s->id, sym[s->next].id);
      if (!m || m->new_id != top.new_id)
        continue;
      Symbol *right = &sym[s->next];
      s->id = top.new_id;
      s->next = right->next;
      right->alive = false;
      if (s->next >= 0)
        sym[s->next].prev = top.pos;
      if (s->prev >= 0)
        push_pair (&tok->merges, heap, &n_heap, sym, s->prev);
      if (s->next >= 0)
        push_pair (&tok->merges, heap, &n_heap, sym, top.pos);
    }

  for (int32_t i = 0; i >= 0; i = sym[i].next)
    g_array_append_val (out, sym[i].id);
  if (sym != small_sym)
    g_free (sym);
  if (heap != small_heap)
    g_free (heap);
}
