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
 * directory holding exactly one of model.safetensors[.index.json] or
 * diffusion_pytorch_model.safetensors[.index.json].  Returns a new set owned
 * by the caller (free with bn_safetensors_free), or NULL with error. */
BnSafetensors *bn_safetensors_open (const char *path, GError **error);
/* Parses a header held in memory (the bytes after the 8-byte length);
 * `data_size` is the size of the data section that follows.  Exposed for the
 * fuzzer and tests; `origin` names the source in error messages. */
BnSafetensors *bn_safetensors_parse_header (const char *origin,
                                            const char *header, size_t len,
                                            size_t data_size, GError **error);
void bn_safetensors_free (BnSafetensors *st);

const char *bn_safetensors_path (const BnSafetensors *st);
guint bn_safetensors_n_tensors (const BnSafetensors *st);
/* Tensors in name order; index < n_tensors. */
const BnStTensor *bn_safetensors_nth (const BnSafetensors *st, guint index);
/* NULL when absent. */
const BnStTensor *bn_safetensors_find (const BnSafetensors *st,
                                       const char *name);
/* A `__metadata__` string of the first shard, or NULL. */
const char *bn_safetensors_metadata (const BnSafetensors *st, const char *key);

/* A view of tensor `name` as a BnTensor.  `dtype_mask` is a bit set of
 * accepted dtypes (1u << BN_DTYPE_…; 0 = any); `ndim` < 0 accepts any rank;
 * `shape` may be NULL, and entries < 0 accept any extent.  Errors
 * (NOT_FOUND, FORMAT) name the tensor, the expected and the found value. */
gboolean bn_safetensors_view (const BnSafetensors *st, const char *name,
                              guint dtype_mask, int ndim, const int64_t *shape,
                              BnTensor *out, GError **error);

/* Tells the kernel that the mapped pages of `t` may leave resident memory
 * (madvise MADV_DONTNEED on the pages wholly inside the tensor).  The data
 * stays valid: it is read back from the file on the next access.  Used to
 * keep peak RSS low, e.g. after a text-encoder layer has run. */
void bn_safetensors_drop_pages (const BnSafetensors *st, const BnStTensor *t);

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
/* Writes the file atomically (temporary file + rename). */
gboolean bn_st_writer_write (BnStWriter *w, const char *path, GError **error);

#endif
