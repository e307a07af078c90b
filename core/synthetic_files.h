/* synthetic_files.h — the JSON and text files of a synthetic model
 * (internal to synthetic_model.c; `add-tokenizer` writes the tokenizer files).
 *
 * Keys and their order follow the released files as far as they are known
 * (research/bonsai_release.md §1; FLUX.2-klein-4B's diffusers configs):
 * diffusers and transformers write configs with sorted keys.  Values that
 * describe shapes come from the spec; the rest are the release's. */
#ifndef BN_SYNTHETIC_FILES_H
#define BN_SYNTHETIC_FILES_H

#include "synthetic_model.h"

/* Writes `len` bytes of `text` (len < 0: NUL-terminated) to dir/name
 * atomically.  FALSE with IO naming the file. */
gboolean bn_synth_write_text (const char *dir, const char *name,
                              const char *text, gssize len, GError **error);
/* Creates `path` and its parents.  FALSE with IO. */
gboolean bn_synth_make_dir (const char *path, GError **error);

/* Config texts; each returns a new string owned by the caller. */
/* The transformer's config.json (the unpacked layout adds its training
 * tool's keys). */
char *bn_synth_transformer_config (const BnSynthSpec *spec,
                                   BnSynthLayout layout);
/* quantization_config.json of the MLX pack; `quantized` lists the packed
 * linears' names (const char *). */
char *bn_synth_quantization_config (const BnSynthSpec *spec,
                                    const GPtrArray *quantized);
char *bn_synth_vae_config (const BnSynthSpec *spec);
/* The text encoder's config.json: MLX's carries "quantization". */
char *bn_synth_text_encoder_config (const BnSynthSpec *spec,
                                    BnSynthLayout layout, int group_size);
/* model.safetensors.index.json mapping each of `names` (const char *) to
 * the shard at the same position of `shards`. */
char *bn_synth_weight_index (const GPtrArray *names, const GPtrArray *shards,
                             guint64 total_size);

/* The release's top-level files: model_index.json, manifest.json,
 * README.md, LICENSE and (MLX) NOTICE.md, for `bits` 1, 2 or 16 (dense,
 * unquantized); `trained` for an exported model rather than a synthetic
 * one.  FALSE with IO. */
gboolean bn_synth_write_release_notes (const char *dir, int bits,
                                       BnSynthLayout layout, gboolean trained,
                                       GError **error);
/* Every file of a release folder but the weights and their configs:
 * model_index.json, scheduler/, tokenizer/ (and the MLX text encoder's
 * copy of the tokenizer files, the unpacked one's generation_config.json),
 * manifest.json, README.md, LICENSE, NOTICE.md.  The tokenizer files
 * are derived from `tokenizer_json`.  FALSE with NOT_FOUND, FORMAT or IO. */
gboolean bn_synth_write_release_files (const char *dir,
                                       const BnSynthSpec *spec,
                                       BnSynthLayout layout,
                                       const char *tokenizer_json,
                                       GError **error);

/* The tokenizer files of release folder `dir`: tokenizer/ and, when the
 * folder has an MLX text encoder, text_encoder-mlx-4bit/'s copy — exactly
 * what bn_synth_write_release_files writes, derived from `tokenizer_json`
 * (for release folders kept without them, such as the bundled models).
 * FALSE with NOT_FOUND, FORMAT or IO. */
gboolean bn_synth_write_tokenizer (const char *dir, const char *tokenizer_json,
                                   GError **error);

#endif
