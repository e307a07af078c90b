/* store.c — the model manifest (data/models.json) and where a model is found:
 * an explicit folder, BONSAI_MODELS, the bundled models, the Hugging Face
 * cache, a download. */
#include "store.h"

#include "download.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------ */

static gboolean
all_chars_in (const char *s, const char *extra)
{
  if (!*s)
    return FALSE;
  for (; *s; s++)
    if (!g_ascii_isalnum (*s) && !strchr (extra, *s))
      return FALSE;
  return TRUE;
}

gboolean
bn_store_is_repo_name (const char *name)
{
  const char *slash = name ? strchr (name, '/') : NULL;
  if (!slash || strchr (slash + 1, '/') || name[0] == '.' || slash[1] == '.')
    return FALSE;
  g_autofree char *org = g_strndup (name, slash - name);
  return all_chars_in (org, "-_.") && all_chars_in (slash + 1, "-_.");
}

gboolean
bn_store_is_commit (const char *revision)
{
  if (!revision || strlen (revision) != 40)
    return FALSE;
  for (const char *p = revision; *p; p++)
    if (!g_ascii_isxdigit (*p) || g_ascii_isupper (*p))
      return FALSE;
  return TRUE;
}

/* A path inside a repository that cannot leave it: relative, '/'-separated,
 * no empty, "." or ".." component, no backslash or control character. */
static gboolean
safe_relative_path (const char *path)
{
  if (!path || !*path || path[0] == '/' || strchr (path, '\\'))
    return FALSE;
  for (const char *p = path; *p; p++)
    if ((unsigned char) *p < 0x20 || *p == 0x7f)
      return FALSE;
  g_auto (GStrv) parts = g_strsplit (path, "/", -1);
  for (char **p = parts; *p; p++)
    if (!**p || !strcmp (*p, ".") || !strcmp (*p, ".."))
      return FALSE;
  return TRUE;
}

static gboolean
is_sha256 (const char *s)
{
  if (strlen (s) != 64)
    return FALSE;
  for (; *s; s++)
    if (!g_ascii_isxdigit (*s))
      return FALSE;
  return TRUE;
}

/* ---- the manifest ------------------------------------------------------------ */

static void
store_file_free (gpointer p)
{
  BnStoreFile *f = p;
  g_free (f->path);
  g_free (f->sha256);
  g_free (f);
}

void
bn_store_model_free (BnStoreModel *model)
{
  if (!model)
    return;
  g_free (model->name);
  g_free (model->repo);
  g_free (model->revision);
  g_free (model->layout);
  g_free (model->description);
  g_ptr_array_unref (model->files);
  g_free (model);
}

BnStoreModel *
bn_store_model_new_repo (const char *repo)
{
  BnStoreModel *m = g_new0 (BnStoreModel, 1);
  m->name = g_strdup (repo);
  m->repo = g_strdup (repo);
  m->revision = g_strdup ("main");
  m->files = g_ptr_array_new_with_free_func (store_file_free);
  return m;
}

void
bn_manifest_free (BnManifest *manifest)
{
  if (!manifest)
    return;
  g_free (manifest->path);
  g_free (manifest->default_name);
  g_ptr_array_unref (manifest->models);
  g_free (manifest);
}

/* The string member `key` of `o`, or NULL when absent; FALSE with error when
 * present but not a string. */
static gboolean
get_string (JsonObject *o, const char *key, const char *origin,
            const char **out, GError **error)
{
  *out = NULL;
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"%s\" is not a string", origin, key);
      return FALSE;
    }
  *out = json_node_get_string (n);
  return TRUE;
}

static BnStoreFile *
parse_file (JsonNode *node, const char *origin, GError **error)
{
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  const char *path = NULL, *sha = NULL;
  if (!o || !get_string (o, "path", origin, &path, error)
      || !get_string (o, "sha256", origin, &sha, error))
    {
      if (error && !*error)
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                     "%s: a file entry is not an object", origin);
      return NULL;
    }
  if (!safe_relative_path (path))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: file path \"%s\" is not a safe relative path",
                   origin, path ? path : "");
      return NULL;
    }
  gint64 size = -1;
  JsonNode *sn = json_object_get_member (o, "size");
  if (sn)
    {
      if (!JSON_NODE_HOLDS_VALUE (sn) || json_node_get_value_type (sn) != G_TYPE_INT64
          || json_node_get_int (sn) < 0)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: %s has a size that is not a byte count", origin, path);
          return NULL;
        }
      size = json_node_get_int (sn);
    }
  if (sha && !is_sha256 (sha))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: %s has a sha256 that is not 64 hex digits", origin, path);
      return NULL;
    }
  BnStoreFile *f = g_new0 (BnStoreFile, 1);
  f->path = g_strdup (path);
  f->size = size;
  f->sha256 = sha ? g_ascii_strdown (sha, -1) : NULL;
  return f;
}

static BnStoreModel *
parse_model (JsonNode *node, const char *file, guint index, GError **error)
{
  g_autofree char *origin = g_strdup_printf ("%s: model %u", file, index + 1);
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  const char *name, *repo, *rev, *layout, *desc;
  if (!o)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s is not an object", origin);
      return NULL;
    }
  if (!get_string (o, "name", origin, &name, error)
      || !get_string (o, "repo", origin, &repo, error)
      || !get_string (o, "revision", origin, &rev, error)
      || !get_string (o, "layout", origin, &layout, error)
      || !get_string (o, "description", origin, &desc, error))
    return NULL;
  if (!name || !all_chars_in (name, "-_.") || !bn_store_is_repo_name (repo)
      || (rev && (!safe_relative_path (rev) || !all_chars_in (rev, "-_./"))))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s needs a name (letters, digits, - _ .), a repo ORG/NAME "
                   "and a plain revision", origin);
      return NULL;
    }
  g_autofree char *named = g_strdup_printf ("%s (%s)", origin, name);
  JsonNode *cn = json_object_get_member (o, "complete");
  JsonNode *fn = json_object_get_member (o, "files");
  if ((cn && (!JSON_NODE_HOLDS_VALUE (cn) || json_node_get_value_type (cn) != G_TYPE_BOOLEAN))
      || (fn && !JSON_NODE_HOLDS_ARRAY (fn)))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: \"complete\" must be true or false and \"files\" a list",
                   named);
      return NULL;
    }
  BnStoreModel *m = bn_store_model_new_repo (repo);
  g_free (m->name);
  m->name = g_strdup (name);
  g_free (m->revision);
  m->revision = g_strdup (rev ? rev : "main");
  m->layout = g_strdup (layout);
  m->description = g_strdup (desc);
  m->complete = cn ? json_node_get_boolean (cn) : TRUE;
  JsonArray *files = fn ? json_node_get_array (fn) : NULL;
  for (guint i = 0; files && i < json_array_get_length (files); i++)
    {
      BnStoreFile *f = parse_file (json_array_get_element (files, i), named, error);
      if (!f)
        {
          bn_store_model_free (m);
          return NULL;
        }
      for (guint j = 0; j < m->files->len; j++)
        if (!strcmp (((BnStoreFile *) m->files->pdata[j])->path, f->path))
          {
            g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                         "%s lists %s twice", named, f->path);
            store_file_free (f);
            bn_store_model_free (m);
            return NULL;
          }
      g_ptr_array_add (m->files, f);
    }
  return m;
}

BnManifest *
bn_manifest_load (const char *path, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_mapped_file (parser, path, &local))
    {
      gboolean missing = g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
      g_set_error (error, BONSAI_ERROR,
                   missing ? BONSAI_ERROR_NOT_FOUND : BONSAI_ERROR_FORMAT,
                   "model manifest %s: %s", path, local->message);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *models = o ? json_object_get_member (o, "models") : NULL;
  const char *def = NULL;
  if (!models || !JSON_NODE_HOLDS_ARRAY (models))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "model manifest %s has no \"models\" list", path);
      return NULL;
    }
  if (!get_string (o, "default", path, &def, error))
    return NULL;

  g_autoptr (BnManifest) m = g_new0 (BnManifest, 1);
  m->path = g_strdup (path);
  m->models = g_ptr_array_new_with_free_func ((GDestroyNotify) bn_store_model_free);
  JsonArray *arr = json_node_get_array (models);
  for (guint i = 0; i < json_array_get_length (arr); i++)
    {
      BnStoreModel *sm = parse_model (json_array_get_element (arr, i), path, i, error);
      if (!sm)
        return NULL;
      for (guint j = 0; j < m->models->len; j++)
        {
          const BnStoreModel *other = m->models->pdata[j];
          if (!strcmp (other->name, sm->name) || !g_ascii_strcasecmp (other->repo, sm->repo))
            {
              g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                           "model manifest %s names %s twice", path, sm->name);
              bn_store_model_free (sm);
              return NULL;
            }
        }
      g_ptr_array_add (m->models, sm);
    }
  m->default_name = g_strdup (def);
  if (def && !bn_manifest_lookup (m, def))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "model manifest %s: the default \"%s\" is not one of its models",
                   path, def);
      return NULL;
    }
  return g_steal_pointer (&m);
}

GPtrArray *
bn_data_candidates (const char *name, const char *tree)
{
  GPtrArray *c = g_ptr_array_new_with_free_func (g_free);
  const char *env = g_getenv ("BONSAI_DATA_DIR");
  if (env && *env)
    {
      /* An explicit setting is not second-guessed. */
      g_ptr_array_add (c, g_build_filename (env, name, NULL));
      return c;
    }
  g_autofree char *exe = g_file_read_link ("/proc/self/exe", NULL);
  if (exe)
    {
      g_autofree char *bindir = g_path_get_dirname (exe);
      g_ptr_array_add (c, g_build_filename (bindir, "..", "share", "bonsai-image",
                                            name, NULL));
    }
  g_ptr_array_add (c, g_build_filename (BN_INSTALL_DATADIR, name, NULL));
  g_ptr_array_add (c, g_build_filename (tree, name, NULL));
  return c;
}

char *
bn_store_bundled_dir (void)
{
  /* The build tree rather than the source tree: the committed folders lack
   * their tokenizer files, which the build adds (data/models/meson.build). */
  g_autoptr (GPtrArray) c = bn_data_candidates ("models", BN_BUILD_DATADIR);
  for (guint i = 0; i < c->len; i++)
    if (g_file_test (c->pdata[i], G_FILE_TEST_IS_DIR))
      return g_strdup (c->pdata[i]);
  return NULL;
}

BnManifest *
bn_manifest_load_default (GError **error)
{
  g_autoptr (GPtrArray) c = bn_data_candidates ("models.json", BN_SOURCE_DATADIR);
  for (guint i = 0; i < c->len; i++)
    if (g_file_test (c->pdata[i], G_FILE_TEST_EXISTS))
      return bn_manifest_load (c->pdata[i], error);
  g_ptr_array_add (c, NULL);
  g_autofree char *tried = g_strjoinv (", ", (char **) c->pdata);
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
               "no model manifest: looked for %s (BONSAI_DATA_DIR names "
               "the folder of models.json)", tried);
  return NULL;
}

const BnStoreModel *
bn_manifest_lookup (const BnManifest *manifest, const char *name)
{
  if (!name || !*name)
    name = manifest->default_name;
  if (!name)
    return NULL;
  for (guint i = 0; i < manifest->models->len; i++)
    {
      const BnStoreModel *m = manifest->models->pdata[i];
      const char *base = strchr (m->repo, '/') + 1;
      /* Hub repository names are case-insensitive. */
      if (!strcmp (m->name, name) || !g_ascii_strcasecmp (m->repo, name)
          || !g_ascii_strcasecmp (base, name))
        return m;
    }
  return NULL;
}

/* ---- the Hugging Face cache ----------------------------------------------------- */

char *
bn_store_hub_dir (void)
{
  const char *hub = g_getenv ("HF_HUB_CACHE");
  if (hub && *hub)
    return g_strdup (hub);
  const char *home = g_getenv ("HF_HOME");
  if (home && *home)
    return g_build_filename (home, "hub", NULL);
  const char *xdg = g_getenv ("XDG_CACHE_HOME");
  if (xdg && *xdg)
    return g_build_filename (xdg, "huggingface", "hub", NULL);
  return g_build_filename (g_get_home_dir (), ".cache", "huggingface", "hub", NULL);
}

char *
bn_store_repo_dir (const char *hub, const char *repo)
{
  g_autofree char *flat = g_strdup (repo);
  g_autoptr (GString) s = g_string_new ("models--");
  for (const char *p = flat; *p; p++)
    if (*p == '/')
      g_string_append (s, "--");
    else
      g_string_append_c (s, *p);
  return g_build_filename (hub, s->str, NULL);
}

gboolean
bn_store_offline (void)
{
  const char *v = g_getenv ("HF_HUB_OFFLINE");
  return v && (!strcmp (v, "1") || !g_ascii_strcasecmp (v, "true")
               || !g_ascii_strcasecmp (v, "yes") || !g_ascii_strcasecmp (v, "on"));
}

gboolean
bn_store_dir_has_files (const char *dir, const BnStoreModel *model, char **missing)
{
  for (guint i = 0; i < model->files->len; i++)
    {
      const BnStoreFile *f = model->files->pdata[i];
      g_autofree char *p = g_build_filename (dir, f->path, NULL);
      /* Follows symlinks, so a dangling one into blobs/ counts as missing. */
      if (!g_file_test (p, G_FILE_TEST_IS_REGULAR))
        {
          if (missing)
            *missing = g_strdup (f->path);
          return FALSE;
        }
    }
  return TRUE;
}

/* The commit a ref file names, or NULL. */
static char *
read_ref (const char *repo_dir, const char *ref)
{
  g_autofree char *path = g_build_filename (repo_dir, "refs", ref, NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  g_strstrip (text);
  return bn_store_is_commit (text) ? g_steal_pointer (&text) : NULL;
}

char *
bn_store_find_snapshot (const char *hub, const BnStoreModel *model,
                        gboolean *complete, char **missing)
{
  g_autofree char *repo_dir = bn_store_repo_dir (hub, model->repo);
  g_autoptr (GPtrArray) revs = g_ptr_array_new_with_free_func (g_free);
  if (bn_store_is_commit (model->revision))
    g_ptr_array_add (revs, g_strdup (model->revision));
  else
    g_ptr_array_add (revs, read_ref (repo_dir, model->revision));
  /* What the Hugging Face tools fetched by default. */
  g_ptr_array_add (revs, read_ref (repo_dir, "main"));

  char *partial = NULL;
  for (guint i = 0; i < revs->len; i++)
    {
      if (!revs->pdata[i])
        continue;
      char *dir = g_build_filename (repo_dir, "snapshots", revs->pdata[i], NULL);
      g_autofree char *miss = NULL;
      if (g_file_test (dir, G_FILE_TEST_IS_DIR)
          && bn_store_dir_has_files (dir, model, &miss))
        {
          g_free (partial);
          *complete = TRUE;
          return dir;
        }
      if (!partial && g_file_test (dir, G_FILE_TEST_IS_DIR))
        {
          partial = dir;
          if (missing)
            *missing = g_steal_pointer (&miss);
        }
      else
        g_free (dir);
    }
  *complete = FALSE;
  return partial;
}

/* ---- resolution ---------------------------------------------------------------- */

/* The first folder named by one of `names` in a BONSAI_MODELS folder. */
static char *
find_in_models_dirs (const char *const *names)
{
  const char *env = g_getenv ("BONSAI_MODELS");
  if (!env || !*env)
    return NULL;
  g_auto (GStrv) dirs = g_strsplit (env, G_SEARCHPATH_SEPARATOR_S, -1);
  for (char **d = dirs; *d; d++)
    for (const char *const *n = names; *d[0] && *n; n++)
      {
        char *p = g_build_filename (*d, *n, NULL);
        if (g_file_test (p, G_FILE_TEST_IS_DIR))
          return p;
        g_free (p);
      }
  return NULL;
}

/* The first folder named by one of `names` among the bundled models. */
static char *
find_bundled (const char *const *names)
{
  g_autofree char *dir = bn_store_bundled_dir ();
  for (const char *const *n = names; dir && *n; n++)
    {
      char *p = g_build_filename (dir, *n, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        return p;
      g_free (p);
    }
  return NULL;
}

/* The bundled Bonsai Shapes model in place of a default model that is not
 * installed, said once per process (a host generating many pictures would
 * otherwise repeat it for each). */
static gboolean
fall_back_to_bundled (char **out_dir)
{
  static gint said;
  const char *names[] = { BN_STORE_BUNDLED_DEFAULT, NULL };
  if (!(*out_dir = find_bundled (names)))
    return FALSE;
  if (g_atomic_int_compare_and_exchange (&said, 0, 1))
    g_message ("the real model is not installed; using the bundled Bonsai Shapes "
               "model (128×128 shapes world). `bonsai-image download` fetches "
               "the real one.");
  return TRUE;
}

gboolean
bn_store_resolve (const char *name_or_path, const BnStoreOptions *opts,
                  char **out_dir, GError **error)
{
  static const BnStoreOptions no_options = { 0 };
  opts = opts ? opts : &no_options;
  const char *name = name_or_path && *name_or_path ? name_or_path : NULL;
  *out_dir = NULL;
  if (name && g_file_test (name, G_FILE_TEST_IS_DIR))
    {
      *out_dir = g_strdup (name);
      return TRUE;
    }
  if (name && !bn_store_is_repo_name (name) && (strchr (name, '/') || name[0] == '.'))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "model folder %s does not exist", name);
      return FALSE;
    }

  /* Without a manifest, folders and repositories still resolve. */
  g_autoptr (BnManifest) owned = NULL;
  g_autoptr (GError) manifest_error = NULL;
  const BnManifest *manifest = opts->manifest;
  if (!manifest)
    manifest = owned = bn_manifest_load_default (&manifest_error);
  const BnStoreModel *model = manifest ? bn_manifest_lookup (manifest, name) : NULL;
  g_autoptr (BnStoreModel) adhoc = NULL;
  if (!model && bn_store_is_repo_name (name))
    model = adhoc = bn_store_model_new_repo (name);
  if (!model && !name)
    {
      if (!opts->download && fall_back_to_bundled (out_dir))
        return TRUE;
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "no default model: %s",
                   manifest_error ? manifest_error->message
                                  : "the manifest names none");
      return FALSE;
    }

  const char *base = model ? strchr (model->repo, '/') + 1 : NULL;
  const char *names[] = { model ? model->name : name, base, model ? model->repo : NULL, NULL };
  if ((*out_dir = find_in_models_dirs (names)) || (*out_dir = find_bundled (names)))
    return TRUE;

  if (!model)
    {
      const char *env = g_getenv ("BONSAI_MODELS");
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "model %s: no such folder, nor a model in BONSAI_MODELS (%s) "
                   "or among the bundled ones, nor a name in the manifest%s%s", name,
                   env && *env ? env : "unset",
                   manifest_error ? ": " : "",
                   manifest_error ? manifest_error->message : "");
      return FALSE;
    }

  g_autofree char *hub = bn_store_hub_dir ();
  gboolean complete = FALSE;
  g_autofree char *missing = NULL;
  g_autofree char *snapshot = bn_store_find_snapshot (hub, model, &complete, &missing);
  if (complete)
    {
      *out_dir = g_steal_pointer (&snapshot);
      return TRUE;
    }
  if (opts->download)
    return bn_download_model (model, hub, opts->progress, opts->user_data,
                              opts->cancel, out_dir, error);
  /* No model named: a picture from the bundled model rather than an error;
   * only an explicit download fetches the real one. */
  if (!name && fall_back_to_bundled (out_dir))
    return TRUE;
  if (snapshot)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                 "model %s in the Hugging Face cache at %s lacks %s; "
                 "`bonsai-image download %s` completes it",
                 model->name, snapshot, missing, model->name);
  else
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                 "model %s (%s) is not installed: not in BONSAI_MODELS nor in the "
                 "Hugging Face cache at %s; `bonsai-image download %s` fetches it",
                 model->name, model->repo, hub, model->name);
  return FALSE;
}

gboolean
bonsai_model_download (const char *name, BonsaiDownloadFunc progress,
                       gpointer user_data, gint *cancel, char **out_dir,
                       GError **error)
{
  BnStoreOptions opts = { .download = TRUE, .progress = progress,
                          .user_data = user_data, .cancel = cancel };
  return bn_store_resolve (name, &opts, out_dir, error);
}

char *
bonsai_model_default_name (void)
{
  g_autoptr (BnManifest) manifest = bn_manifest_load_default (NULL);
  const char *def = manifest ? manifest->default_name : NULL;
  g_autofree char *dir = NULL;
  BnStoreOptions opts = { .manifest = manifest };
  if (def && bn_store_resolve (def, &opts, &dir, NULL))
    return g_strdup (def);
  const char *names[] = { BN_STORE_BUNDLED_DEFAULT, NULL };
  g_autofree char *bundled = find_bundled (names);
  if (bundled)
    return g_strdup (BN_STORE_BUNDLED_DEFAULT);
  return g_strdup (def ? def : BN_STORE_BUNDLED_DEFAULT);
}
