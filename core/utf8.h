/* utf8.h — UTF-8 checks that report where input goes wrong (internal).
 *
 * GLib's validators stop at U+0000 and its repair replaces every bad byte;
 * the tokenizer needs U+0000 as an ordinary character and the replacement
 * Rust's String::from_utf8_lossy makes (one U+FFFD per maximal invalid
 * part, Unicode §3.9 "U+FFFD substitution of maximal subparts"). */
#ifndef BN_UTF8_H
#define BN_UTF8_H

#include <glib.h>

/* Length (1–4) of the well-formed UTF-8 sequence at s[0..avail), or 0 when
 * none starts there.  U+0000 counts as valid. */
size_t bn_utf8_seq_len (const guint8 *s, size_t avail);

/* The byte offset of the first byte of `s[0..len)` that is not part of a
 * well-formed sequence, or -1 when all of it is valid UTF-8. */
gssize bn_utf8_find_invalid (const char *s, size_t len);

/* Appends `len` bytes to `out`, each maximal invalid part replaced by
 * U+FFFD. */
void bn_utf8_append_lossy (GString *out, const guint8 *s, size_t len);

#endif
