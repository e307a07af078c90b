/* store.h — the model store (internal): the manifest of released models
 * (data/models.json), where a model is found, and what is installed.
 *
 * A model is named by a folder, a short name ("ternary"), or a Hugging Face
 * repository ("prism-ml/bonsai-image-ternary-4B-mlx-2bit", or just its part
 * after the slash).  bn_store_resolve looks, in this order, at:
 *   1. the name as a folder (an explicit path always wins);
 *   2. the folders listed in BONSAI_MODELS (':'-separated), each a folder of
 *      model folders named by short name or repository name;
 *   3. the bundled models (bn_store_bundled_dir: Bonsai Shapes as `shapes`,
 *      `shapes-binary`, `shapes-bf16`), ordinary release folders;
 *   4. the Hugging Face cache as huggingface_hub lays it out — HF_HUB_CACHE,
 *      else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 *      ~/.cache/huggingface/hub; models--ORG--NAME/snapshots/REV/ with
 *      refs/main naming REV and files symlinked into blobs/ — so a model the
 *      Hugging Face tools fetched is reused as it is;
 *   5. a download into that cache (download.h), only when the caller allows.
 * With no name (NULL or ""), the manifest's default model is looked for in
 * 2-4; when it is not there and no download was asked for, the bundled
 * BN_STORE_BUNDLED_DEFAULT is used instead, said once per process (a
 * g_message), so that a fresh machine still draws a real picture offline.
 *
 * Checksums are remembered in a sidecar (.bonsai-verified.json in the model
 * folder, or in models--ORG--NAME/ for the cache) keyed by each file's real
 * path, size and mtime, so listing does not hash gigabytes every time.
 */
#ifndef BN_STORE_H
#define BN_STORE_H

#include "bonsai/bonsai.h"

typedef struct {
  char *path;    /* inside the repository, '/'-separated */
  gint64 size;   /* bytes, or -1 when unknown */
  char *sha256;  /* 64 lower-case hex digits, or NULL when unknown */
} BnStoreFile;

typedef struct {
  char *name;         /* short name ("ternary"); the repository when none */
  char *repo;         /* ORG/NAME */
  char *revision;     /* a 40-hex commit (pinned) or a branch name */
  char *layout;       /* "mlx", "unpacked", "gemlite", or NULL */
  char *description;  /* or NULL */
  gboolean complete;  /* files lists every file; else the Hub lists the rest */
  GPtrArray *files;   /* of BnStoreFile */
} BnStoreModel;

typedef struct {
  char *path;          /* where it was read from */
  char *default_name;  /* the model `download` and an empty name mean */
  GPtrArray *models;   /* of BnStoreModel */
} BnManifest;

/* Reads a manifest.  Every entry is checked (names, repository form, safe
 * relative paths, sizes, sha256 digits); an error names the file and the
 * entry.  Caller owns the result (bn_manifest_free). */
BnManifest *bn_manifest_load (const char *path, GError **error);
/* The installed manifest: models.json in $BONSAI_DATA_DIR, else in
 * ../share/bonsai-image beside the running program, else in the install
 * prefix's data folder, else in the source tree this was built from (so
 * programs and tests run from a build tree find it). */
BnManifest *bn_manifest_load_default (GError **error);
void bn_manifest_free (BnManifest *manifest);

/* Where the data file or folder `name` (a path relative to the data folder:
 * models.json, models, shapes/world.json) may be, in order: only
 * $BONSAI_DATA_DIR/name when that is set (an explicit setting is not
 * second-guessed); else ../share/bonsai-image beside the running program,
 * the install prefix's data folder, then `tree`, the data folder of the tree
 * this was built from.  Caller owns the array of paths. */
GPtrArray *bn_data_candidates (const char *name, const char *tree);

/* The bundled model a missing default falls back to. */
#define BN_STORE_BUNDLED_DEFAULT "shapes"
/* The folder of bundled models: models/ in $BONSAI_DATA_DIR, else beside
 * the running program (../share/bonsai-image/models), else in the install
 * prefix's data folder, else in the build tree this was built from (where
 * data/models/meson.build assembles them): the first that exists, or NULL.
 * Caller owns it. */
char *bn_store_bundled_dir (void);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BnManifest, bn_manifest_free)

/* The entry named `name` (short name, ORG/NAME, or NAME alone), the default
 * entry for NULL or "", or NULL.  Owned by the manifest. */
const BnStoreModel *bn_manifest_lookup (const BnManifest *manifest,
                                        const char *name);
/* A new entry for a repository the manifest does not know: revision main,
 * files listed by the Hub.  Caller owns it (bn_store_model_free). */
BnStoreModel *bn_store_model_new_repo (const char *repo);
void bn_store_model_free (BnStoreModel *model);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BnStoreModel, bn_store_model_free)
/* Whether `name` has the form ORG/NAME of a Hugging Face repository. */
gboolean bn_store_is_repo_name (const char *name);
/* Whether `revision` is a full 40-hex commit. */
gboolean bn_store_is_commit (const char *revision);

/* The Hugging Face hub cache folder (see above).  Caller owns it. */
char *bn_store_hub_dir (void);
/* hub/models--ORG--NAME.  Caller owns it. */
char *bn_store_repo_dir (const char *hub, const char *repo);
/* Whether HF_HUB_OFFLINE asks for no network (1, true, yes, on). */
gboolean bn_store_offline (void);

typedef struct {
  const BnManifest *manifest;  /* NULL: bn_manifest_load_default() */
  gboolean download;           /* fetch into the cache when not found */
  BonsaiDownloadFunc progress; /* for the download, or NULL */
  gpointer user_data;
  const gint *cancel;          /* set non-zero to stop a download, or NULL */
} BnStoreOptions;

/* Finds the folder of `name_or_path` (NULL or "": the default model) in the
 * order above and returns it in *out_dir (caller owns it).  `opts` may be
 * NULL (no download).  Errors: NOT_FOUND naming where it looked (or, with
 * HF_HUB_OFFLINE, that it is offline), INVALID_INPUT for a name that is
 * neither a folder nor a model, and the download's errors. */
gboolean bn_store_resolve (const char *name_or_path,
                           const BnStoreOptions *opts, char **out_dir,
                           GError **error);

/* The snapshot of `model` in the hub cache folder `hub`: the pinned commit's
 * (or the revision's ref's), else refs/main's.  Returns the first that holds
 * every manifest file with *complete TRUE, else the first that exists with
 * *complete FALSE and its first missing file in *missing (when not NULL),
 * else NULL.  Caller owns the strings. */
char *bn_store_find_snapshot (const char *hub, const BnStoreModel *model,
                              gboolean *complete, char **missing);

/* Whether every file of `model` is in `dir`; else the first missing one in
 * *missing (caller owns it) when missing is not NULL. */
gboolean bn_store_dir_has_files (const char *dir, const BnStoreModel *model,
                                 char **missing);

/* ---- what is installed ---------------------------------------------------- */

typedef struct {
  char *name;        /* short name, repository, or folder name */
  char *repo;        /* ORG/NAME when known, else NULL */
  char *dir;         /* the model folder (a snapshot for the cache) */
  char *where;       /* "BONSAI_MODELS", "bundled" or "Hugging Face cache" */
  char *layout;      /* "mlx", "unpacked", "gemlite" or NULL */
  gint64 size;       /* bytes of its files, each file once */
  guint n_files;     /* regular files found */
  guint n_missing;   /* manifest files absent */
  guint n_ok;        /* files whose sha256 matches the expected one */
  guint n_bad;       /* files whose sha256 differs */
  guint n_unchecked; /* files with a known checksum not hashed yet */
  char *bad_file;    /* the first file that differs, or NULL */
} BnStoreEntry;

void bn_store_entry_free (BnStoreEntry *entry);

/* Checks the files of model folder `dir` against the checksums known for
 * them (`model`'s manifest entries, else a Hugging Face blob's sha256 name)
 * and fills the counts of `entry`.  With `hash`, files not yet in the
 * sidecar are hashed (and remembered); without it they count as unchecked.
 * FALSE only with CANCELLED or IO when a file cannot be read while hashing. */
gboolean bn_store_verify (const char *dir, const BnStoreModel *model,
                          gboolean hash, const gint *cancel,
                          BnStoreEntry *entry, GError **error);

/* Every installed model: the model folders in BONSAI_MODELS (folders with
 * model_index.json or a transformer folder), the bundled ones and the
 * manifest's repositories in the Hugging Face cache, checked with
 * bn_store_verify.  Returns an array
 * of BnStoreEntry the caller owns (it frees its entries). */
GPtrArray *bn_store_list (const BnManifest *manifest, gboolean hash,
                          const gint *cancel, GError **error);

/* Records in the sidecar of `sidecar_dir` that the file at `path` (followed
 * to its real file) has `sha256`; failures only log (it is a cache). */
void bn_store_remember_sha256 (const char *sidecar_dir, const char *path,
                               const char *sha256);

#endif
