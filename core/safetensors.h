/* safetensors.h — reading and writing safetensors files (internal).
 *
 * Reading: a file is memory-mapped and its JSON header parsed with
 * json-glib after the raw bytes were checked (length, UTF-8, nesting
 * depth).  Every tensor's dtype, shape and data_offsets are checked against
 * the file before any tensor byte is touched: offsets inside the data
 * section, byte count = product(shape)·dtype size, no two tensors
 * overlapping.  A sharded model (`*.safetensors.index.json` with a
 * weight_map) opens as one set.  Errors name the file and the problem.
 *
 * Writing: tensors are added by reference and written at
 * bn_st_writer_write() to `path.tmp-XXXXXX`, then renamed into place, so a
 * failed or interrupted write never leaves a partial file under `path`.
 */
#ifndef BN_SAFETENSORS_H
#define BN_SAFETENSORS_H

#include "tensor.h"

#include <json-glib/json-glib.h>

/* The largest header accepted (real ones are a few hundred KB). */
#define BN_ST_MAX_HEADER (16u << 20)
/* The deepest JSON nesting accepted in a header (real ones use 3). */
#define BN_ST_MAX_DEPTH 32

typedef struct BnSafetensors BnSafetensors;

typedef struct {
  const char *name;  /* owned by the BnSafetensors */
  const char *file;  /* path of the shard holding it; owned likewise */
  BnDType dtype;     /* plain dtype as stored */
  int ndim;
  int64_t shape[BN_MAX_DIMS];
  const void *data;  /* inside the mapping */
  size_t nbytes;
} BnStTensor;

/* Opens `path`: a .safetensors file, a .safetensors.index.json, or a
 * directory holding a model under exactly one of the names model or
 * diffusion_pytorch_model (X.safetensors, else X.safetensors.index.json, as
 * transformers prefers the single file when a folder has both).  Returns a
 * new set owned by the caller (free with bn_safetensors_free), or NULL with
 * error: NOT_FOUND for a missing file or shard, FORMAT for a damaged one, IO
 * when the system refuses to read. */
BnSafetensors *bn_safetensors_open (const char *path, GError **error);
/* Opens a whole safetensors file held in memory; `bytes` stays owned by the
 * caller and must outlive the set.  `origin` names it in error messages. */
BnSafetensors *bn_safetensors_open_bytes (const char *origin,
                                          const void *bytes, size_t len,
                                          GError **error);
/* Parses a header held in memory (the bytes after the 8-byte length);
 * `data_size` is the size of the data section that follows.  The tensors'
 * `data` are NULL.  Exposed for the fuzzer and tests; `origin` names the
 * source in error messages. */
BnSafetensors *bn_safetensors_parse_header (const char *origin,
                                            const char *header, size_t len,
                                            size_t data_size, GError **error);
void bn_safetensors_free (BnSafetensors *st);

/* The file opened: for a directory, the file chosen in it. */
const char *bn_safetensors_path (const BnSafetensors *st);
guint bn_safetensors_n_tensors (const BnSafetensors *st);
/* Tensors in name order; index < n_tensors. */
const BnStTensor *bn_safetensors_nth (const BnSafetensors *st, guint index);
/* NULL when absent. */
const BnStTensor *bn_safetensors_find (const BnSafetensors *st,
                                       const char *name);
/* A `__metadata__` string of the first shard (in file-name order), or NULL. */
const char *bn_safetensors_metadata (const BnSafetensors *st, const char *key);

/* A view of tensor `name` as a BnTensor.  `dtype_mask` is a bit set of
 * accepted dtypes (1u << BN_DTYPE_…; 0 = any); `ndim` < 0 accepts any rank;
 * `shape` may be NULL, and entries < 0 accept any extent.  Errors
 * (NOT_FOUND, FORMAT) name the tensor, the expected and the found value.
 * Data not aligned to its element size (a header not padded as safetensors
 * pads it) is refused with FORMAT rather than read misaligned. */
gboolean bn_safetensors_view (const BnSafetensors *st, const char *name,
                              guint dtype_mask, int ndim, const int64_t *shape,
                              BnTensor *out, GError **error);

/* Tells the kernel that the mapped pages of `t` may leave resident memory
 * (madvise MADV_DONTNEED on the pages wholly inside the tensor).  The data
 * stays valid: it is read back from the file on the next access.  Used to
 * keep peak RSS low, e.g. after a text-encoder layer has run. */
void bn_safetensors_drop_pages (const BnSafetensors *st, const BnStTensor *t);
/* The same for any byte range of tensor data, e.g. a BnTensor view's
 * elements; does nothing unless the range lies inside one of the set's file
 * mappings. */
void bn_safetensors_drop_range (const BnSafetensors *st, const void *data,
                                size_t nbytes);

/* Parses a small JSON file (an index, a config) with the checks a header
 * gets first: at most BN_ST_MAX_HEADER bytes, UTF-8, nesting at most
 * BN_ST_MAX_DEPTH, no duplicate keys.  Returns the root node (free with
 * json_node_unref), or NULL with error naming the file. */
JsonNode *bn_json_load_file (const char *path, GError **error);
/* The byte checks alone (UTF-8, nesting depth) for JSON text about to be
 * parsed, e.g. a config held in a header's metadata or a server's reply;
 * len < 0 means NUL-terminated.  FALSE with a FORMAT error naming `origin`. */
gboolean bn_json_check (const char *origin, const char *text, gssize len,
                        GError **error);

/* ---- writing ----------------------------------------------------------- */

typedef struct BnStWriter BnStWriter;

BnStWriter *bn_st_writer_new (void);
void bn_st_writer_free (BnStWriter *w);
void bn_st_writer_set_metadata (BnStWriter *w, const char *key,
                                const char *value);
/* Adds a plain tensor; `data` (nbytes = numel·size) is not copied and must
 * stay valid until bn_st_writer_write returns. */
gboolean bn_st_writer_add (BnStWriter *w, const char *name, BnDType dtype,
                           int ndim, const int64_t *shape, const void *data,
                           GError **error);
/* Adds a packed tensor as MLX does: `prefix.weight` (U32 [N, K·bits/32]),
 * `prefix.scales` and `prefix.biases` ([N, K/group]).  Data not copied. */
gboolean bn_st_writer_add_packed (BnStWriter *w, const char *prefix,
                                  const BnTensor *t, GError **error);
/* Writes the file atomically (temporary file + rename).  Tensors are laid
 * out by element size, largest first, so every tensor stays aligned to its
 * element size.  On failure (BONSAI_ERROR_IO naming the file and the
 * reason, e.g. no space left) the temporary file is removed. */
gboolean bn_st_writer_write (BnStWriter *w, const char *path, GError **error);

#endif
