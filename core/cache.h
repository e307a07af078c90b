/* cache.h — the process-wide model cache and prompt-feature cache
 * (internal).
 *
 * These two tables are the engine's one documented global state
 * (docs/DESIGN.md, "Caches are explicit"); one mutex guards both.
 *
 * Models are keyed by what they were loaded from: the real path, device,
 * inode, size and modification time of every file of their part folders,
 * and the backend.  A file replaced or touched gives a new key, so a
 * changed model is loaded afresh while the old one lives on for whoever
 * still holds it.  A model leaves the table with its last reference.
 *
 * Prompt features are kept in one least-recently-used list for all models
 * (BN_CACHE_PROMPT_CAPACITY entries unless a host sets another capacity),
 * keyed by (model, prompt, maximum token count); a model's entries go when
 * the model does, so the model's address is a safe identity.  Two threads
 * encoding the same new prompt at once both run the encoder.
 */
#ifndef BN_CACHE_H
#define BN_CACHE_H

#include "bonsai/bonsai.h"

#define BN_CACHE_PROMPT_CAPACITY 8

/* The key for a model loaded from `paths` (folders, whose regular files
 * count, or files; NULL entries are skipped; n_paths of them) on
 * `backend`.  Returns a new string owned by the caller, or NULL with
 * NOT_FOUND or IO naming a path that cannot be resolved or read. */
char *bn_cache_model_key (const char *backend, const char *const *paths,
                          int n_paths, GError **error);

/* The model loaded under `key`, with a new reference, waiting while another
 * thread is loading it.  NULL when none is: the key is then reserved for
 * the caller, who loads the model and must call bn_cache_model_done. */
BonsaiModel *bn_cache_model_begin (const char *key);
/* Ends a load reserved by bn_cache_model_begin: `model` (NULL when the load
 * failed) is published under `key` (copied), and waiting threads wake. */
void bn_cache_model_done (const char *key, BonsaiModel *model);
/* Drops one reference of `model`.  TRUE when it was the last: the model
 * has then left the table with its prompt features, and the caller frees
 * it.  No other thread can find it from then on. */
gboolean bn_cache_model_release (BonsaiModel *model);

/* A copy (owned by the caller) of the features cached for `prompt`
 * encoded to `max_length` tokens by `model`, or NULL.  A hit is counted
 * and logged. */
BonsaiTensor *bn_cache_prompt_lookup (const BonsaiModel *model,
                                      const char *prompt, int max_length);
/* Counts one run of the text encoder and keeps a copy of its `features`
 * for `prompt`, evicting the least recently used entry beyond the
 * capacity (nothing is kept when the copy cannot be allocated). */
void bn_cache_prompt_encoded (const BonsaiModel *model, const char *prompt,
                              int max_length, const BonsaiTensor *features);

#endif
