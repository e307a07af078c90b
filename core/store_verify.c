/* store_verify.c — what is installed: model folders and their checksums,
 * remembered in a sidecar so a listing does not hash gigabytes each time. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIDECAR ".bonsai-verified.json"
/* Folders nest this deep at most in a model (symlink loops stop here). */
#define MAX_DEPTH 8

void
bn_store_entry_free (BnStoreEntry *entry)
{
  if (!entry)
    return;
  g_free (entry->name);
  g_free (entry->repo);
  g_free (entry->dir);
  g_free (entry->where);
  g_free (entry->layout);
  g_free (entry->bad_file);
  g_free (entry);
}

/* g_ptr_array_sort hands over pointers to the elements. */
static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* ---- the sidecar ------------------------------------------------------------- */

/* A remembered hash: valid while the file keeps its size and mtime. */
typedef struct {
  gint64 size;
  gint64 mtime_ns;
  char *sha256;
} Known;

static void
known_free (gpointer p)
{
  Known *k = p;
  g_free (k->sha256);
  g_free (k);
}

/* Where the sidecar of model folder `dir` lives: beside snapshots/ for a
 * Hugging Face snapshot (snapshots come and go), else in the folder. */
static char *
sidecar_dir_for (const char *dir)
{
  g_autofree char *parent = g_path_get_dirname (dir);
  g_autofree char *pname = g_path_get_basename (parent);
  g_autofree char *repo = g_path_get_dirname (parent);
  g_autofree char *rname = g_path_get_basename (repo);
  if (!strcmp (pname, "snapshots") && g_str_has_prefix (rname, "models--"))
    return g_steal_pointer (&repo);
  return g_strdup (dir);
}

/* A string member, or NULL when absent or not a string (json-glib's own
 * getters complain about a member of another type, and this JSON comes from
 * a file anyone may have edited). */
static const char *
json_string (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
           ? json_node_get_string (n) : NULL;
}

static gint64
json_int (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_INT64
           ? json_node_get_int (n) : -1;
}

/* The sidecar of `dir` as real path → Known; empty when absent or damaged
 * (it is only a cache). */
static GHashTable *
sidecar_load (const char *dir)
{
  GHashTable *t = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, known_free);
  g_autofree char *path = g_build_filename (dir, SIDECAR, NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, path, NULL))
    return t;
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *fn = o ? json_object_get_member (o, "files") : NULL;
  if (!fn || !JSON_NODE_HOLDS_OBJECT (fn))
    return t;
  JsonObject *files = json_node_get_object (fn);
  g_autoptr (GList) keys = json_object_get_members (files);
  for (GList *l = keys; l; l = l->next)
    {
      JsonNode *en = json_object_get_member (files, l->data);
      JsonObject *e = JSON_NODE_HOLDS_OBJECT (en) ? json_node_get_object (en) : NULL;
      const char *sha = json_string (e, "sha256");
      if (!sha || strlen (sha) != 64)
        continue;
      Known *k = g_new0 (Known, 1);
      k->size = json_int (e, "size");
      k->mtime_ns = json_int (e, "mtime_ns");
      k->sha256 = g_strdup (sha);
      g_hash_table_insert (t, g_strdup (l->data), k);
    }
  return t;
}

static void
sidecar_save (const char *dir, GHashTable *t)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "files");
  json_builder_begin_object (b);
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, t);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      const Known *k = value;
      json_builder_set_member_name (b, key);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "size");
      json_builder_add_int_value (b, k->size);
      json_builder_set_member_name (b, "mtime_ns");
      json_builder_add_int_value (b, k->mtime_ns);
      json_builder_set_member_name (b, "sha256");
      json_builder_add_string_value (b, k->sha256);
      json_builder_end_object (b);
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  g_autofree char *path = g_build_filename (dir, SIDECAR, NULL);
  g_autoptr (GError) error = NULL;
  /* g_file_set_contents writes a temporary file and renames it. */
  if (!g_file_set_contents (path, text, -1, &error))
    g_debug ("checksums not remembered: %s", error->message);
}

static gint64
mtime_ns (const struct stat *st)
{
  return (gint64) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

void
bn_store_remember_sha256 (const char *sidecar_dir, const char *path,
                          const char *sha256)
{
  g_autofree char *real = realpath (path, NULL);
  struct stat st;
  if (!real || stat (real, &st) != 0)
    return;
  g_autoptr (GHashTable) t = sidecar_load (sidecar_dir);
  Known *k = g_new0 (Known, 1);
  k->size = st.st_size;
  k->mtime_ns = mtime_ns (&st);
  k->sha256 = g_strdup (sha256);
  g_hash_table_replace (t, g_steal_pointer (&real), k);
  sidecar_save (sidecar_dir, t);
}

/* ---- hashing ------------------------------------------------------------------ */

static char *
hash_file (const char *path, const gint *cancel, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO,
                   "cannot read %s: %s", path, g_strerror (e));
      return NULL;
    }
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  enum { CHUNK = 1 << 20 };
  g_autofree guchar *buf = g_malloc (CHUNK);
  for (;;)
    {
      if (cancel && g_atomic_int_get (cancel))
        {
          close (fd);
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED,
                       "checking %s cancelled", path);
          return NULL;
        }
      ssize_t n = read (fd, buf, CHUNK);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int e = errno;
          close (fd);
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO,
                       "cannot read %s: %s", path, g_strerror (e));
          return NULL;
        }
      if (n == 0)
        break;
      g_checksum_update (sum, buf, n);
    }
  close (fd);
  return g_strdup (g_checksum_get_string (sum));
}

/* ---- verification ---------------------------------------------------------------- */

typedef struct {
  const BnStoreModel *model;
  gboolean hash;
  const gint *cancel;
  BnStoreEntry *entry;
  GHashTable *known;   /* the sidecar */
  gboolean dirty;      /* known changed */
  GHashTable *seen;    /* "dev:ino" of files counted in size */
} Verify;

/* The checksum a file should have: its manifest entry's, else the sha256 a
 * Hugging Face LFS blob is named by. */
static const char *
expected_sha256 (const Verify *v, const char *rel, const char *path,
                 gint64 *size, char **blob_name)
{
  *size = -1;
  for (guint i = 0; v->model && i < v->model->files->len; i++)
    {
      const BnStoreFile *f = v->model->files->pdata[i];
      if (!strcmp (f->path, rel))
        {
          *size = f->size;
          if (f->sha256)
            return f->sha256;
          break;
        }
    }
  g_autofree char *target = g_file_read_link (path, NULL);
  if (target)
    {
      char *base = g_path_get_basename (target);
      gboolean hex = strlen (base) == 64;
      for (const char *p = base; hex && *p; p++)
        hex = g_ascii_isxdigit (*p) && !g_ascii_isupper (*p);
      if (hex)
        return *blob_name = base;
      g_free (base);
    }
  return NULL;
}

static gboolean
verify_file (Verify *v, const char *rel, const char *path, const struct stat *st,
             GError **error)
{
  BnStoreEntry *e = v->entry;
  e->n_files++;
  char *id = g_strdup_printf ("%ju:%ju", (uintmax_t) st->st_dev, (uintmax_t) st->st_ino);
  if (g_hash_table_add (v->seen, id))
    e->size += st->st_size;

  gint64 want_size;
  g_autofree char *blob_name = NULL;
  const char *want = expected_sha256 (v, rel, path, &want_size, &blob_name);
  if (!want && want_size < 0)
    return TRUE;
  g_autofree char *got = NULL;
  if (want_size >= 0 && st->st_size != want_size)
    got = g_strdup ("size");
  else if (want)
    {
      g_autofree char *real = realpath (path, NULL);
      Known *k = real ? g_hash_table_lookup (v->known, real) : NULL;
      if (k && k->size == st->st_size && k->mtime_ns == mtime_ns (st))
        got = g_strdup (k->sha256);
      else if (v->hash && real)
        {
          if (!(got = hash_file (real, v->cancel, error)))
            return FALSE;
          k = g_new0 (Known, 1);
          k->size = st->st_size;
          k->mtime_ns = mtime_ns (st);
          k->sha256 = g_strdup (got);
          g_hash_table_replace (v->known, g_steal_pointer (&real), k);
          v->dirty = TRUE;
        }
    }
  if (!want && !got)
    return TRUE;  /* only a size was known, and it matches */
  if (!got)
    e->n_unchecked++;
  else if (want && !strcmp (got, want))
    e->n_ok++;
  else
    {
      e->n_bad++;
      if (!e->bad_file)
        e->bad_file = g_strdup (rel);
    }
  return TRUE;
}

static gboolean
walk (Verify *v, const char *dir, const char *rel, int depth, GError **error)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  if (!d || depth > MAX_DEPTH)
    return TRUE;
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *n;
  while ((n = g_dir_read_name (d)))
    g_ptr_array_add (names, g_strdup (n));
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      /* Hidden files (the sidecar, .git) and partial downloads are no part
       * of the model. */
      if (name[0] == '.' || g_str_has_suffix (name, ".incomplete"))
        continue;
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_autofree char *r = rel ? g_strconcat (rel, "/", name, NULL) : g_strdup (name);
      struct stat st;
      if (stat (path, &st) != 0)
        continue;  /* a dangling link: the manifest check names it */
      if (S_ISDIR (st.st_mode))
        {
          if (!walk (v, path, r, depth + 1, error))
            return FALSE;
        }
      else if (S_ISREG (st.st_mode) && !verify_file (v, r, path, &st, error))
        return FALSE;
    }
  return TRUE;
}

gboolean
bn_store_verify (const char *dir, const BnStoreModel *model, gboolean hash,
                 const gint *cancel, BnStoreEntry *entry, GError **error)
{
  g_autofree char *side = sidecar_dir_for (dir);
  Verify v = { model, hash, cancel, entry, sidecar_load (side), FALSE,
               g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };
  for (guint i = 0; model && i < model->files->len; i++)
    {
      const BnStoreFile *f = model->files->pdata[i];
      g_autofree char *p = g_build_filename (dir, f->path, NULL);
      if (!g_file_test (p, G_FILE_TEST_IS_REGULAR))
        entry->n_missing++;
    }
  gboolean ok = walk (&v, dir, NULL, 0, error);
  /* What was hashed before a cancel is kept too. */
  if (v.dirty)
    sidecar_save (side, v.known);
  g_hash_table_unref (v.known);
  g_hash_table_unref (v.seen);
  return ok;
}

/* ---- listing ---------------------------------------------------------------------- */

static char *
detect_layout (const char *dir)
{
  static const struct { const char *sub, *layout; } kinds[] = {
    { "transformer-packed-mflux", "mlx" },
    { "transformer", "unpacked" },
    { "transformer-gemlite-int2", "gemlite" },
    { "transformer-gemlite-int1", "gemlite" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (kinds); i++)
    {
      g_autofree char *p = g_build_filename (dir, kinds[i].sub, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        return g_strdup (kinds[i].layout);
    }
  return NULL;
}

static gboolean
add_entry (GPtrArray *out, const char *name, const BnStoreModel *model,
           const char *dir, const char *where, gboolean hash,
           const gint *cancel, GError **error)
{
  BnStoreEntry *e = g_new0 (BnStoreEntry, 1);
  e->name = g_strdup (name);
  e->repo = model ? g_strdup (model->repo) : NULL;
  e->dir = g_strdup (dir);
  e->where = g_strdup (where);
  e->layout = model && model->layout ? g_strdup (model->layout) : detect_layout (dir);
  g_ptr_array_add (out, e);
  return bn_store_verify (dir, model, hash, cancel, e, error);
}

/* The model folders in each of `dirs`, listed as found in `where`. */
static gboolean
list_models_dirs (const BnManifest *manifest, char **dirs, const char *where,
                  gboolean hash, const gint *cancel, GPtrArray *out, GError **error)
{
  for (char **d = dirs; *d; d++)
    {
      g_autoptr (GDir) gd = **d ? g_dir_open (*d, 0, NULL) : NULL;
      if (!gd)
        continue;
      g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
      const char *n;
      while ((n = g_dir_read_name (gd)))
        g_ptr_array_add (names, g_strdup (n));
      g_ptr_array_sort (names, compare_names);
      for (guint i = 0; i < names->len; i++)
        {
          const char *name = g_ptr_array_index (names, i);
          g_autofree char *dir = g_build_filename (*d, name, NULL);
          g_autofree char *index = g_build_filename (dir, "model_index.json", NULL);
          g_autofree char *layout = detect_layout (dir);
          if (name[0] == '.' || (!layout && !g_file_test (index, G_FILE_TEST_IS_REGULAR)))
            continue;
          const BnStoreModel *m = manifest ? bn_manifest_lookup (manifest, name) : NULL;
          if (!add_entry (out, m ? m->name : name, m, dir, where, hash,
                          cancel, error))
            return FALSE;
        }
    }
  return TRUE;
}

GPtrArray *
bn_store_list (const BnManifest *manifest, gboolean hash, const gint *cancel,
               GError **error)
{
  g_autoptr (GPtrArray) out =
    g_ptr_array_new_with_free_func ((GDestroyNotify) bn_store_entry_free);
  const char *env = g_getenv ("BONSAI_MODELS");
  g_auto (GStrv) dirs = g_strsplit (env ? env : "", G_SEARCHPATH_SEPARATOR_S, -1);
  char *bundled[] = { bn_store_bundled_dir (), NULL };
  gboolean ok = list_models_dirs (manifest, dirs, "BONSAI_MODELS", hash, cancel, out, error)
    && (!bundled[0]
        || list_models_dirs (manifest, bundled, "bundled", hash, cancel, out, error));
  g_free (bundled[0]);
  if (!ok)
    return NULL;
  g_autofree char *hub = bn_store_hub_dir ();
  for (guint i = 0; manifest && i < manifest->models->len; i++)
    {
      const BnStoreModel *m = manifest->models->pdata[i];
      gboolean complete;
      g_autofree char *snap = bn_store_find_snapshot (hub, m, &complete, NULL);
      if (snap && !add_entry (out, m->name, m, snap, "Hugging Face cache", hash,
                              cancel, error))
        return NULL;
    }
  return g_steal_pointer (&out);
}
