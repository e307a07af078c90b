/* test-store.c — the model manifest (data/models.json and damaged ones), the
 * Hugging Face cache location, resolution order (explicit folder, then
 * BONSAI_MODELS, then the bundled models, then the cache, reused as the
 * Hugging Face tools lay it out, with no network), the bundled fallback for
 * a default model that is not installed, errors, and verification with its
 * sidecar.  The tests' BONSAI_DATA_DIR holds the source's models.json and
 * bundled models of their own, so the build's bundled models do not count. */
#include "release-fixture.h"
#include "store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TERNARY_REPO "prism-ml/bonsai-image-ternary-4B-mlx-2bit"
#define TERNARY_COMMIT "2c24c81b934a658ba5590cf39088ba929985b4a8"
#define OTHER_COMMIT "abcdefabcdefabcdefabcdefabcdefabcdefabcd"

static void
write_file (const char *path, const char *text)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

static char *
fresh_dir (const char *name)
{
  char *dir = g_build_filename (fixture_tmp, name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  return dir;
}

/* BONSAI_DATA_DIR of the tests: models.json copied from the source, and a
 * models/ folder of bundled models the tests make. */
static char *data_dir;

static void
make_data_dir (void)
{
  data_dir = g_build_filename (fixture_tmp, "data", NULL);
  g_autofree char *bundled = g_build_filename (data_dir, "models", NULL);
  g_assert_cmpint (g_mkdir_with_parents (bundled, 0755), ==, 0);
  g_autofree char *text = NULL;
  gsize len;
  /* g_test_get_filename works only inside a test case; meson sets this. */
  const char *srcdir = g_getenv ("G_TEST_SRCDIR");
  g_assert_nonnull (srcdir);
  g_autofree char *source = g_build_filename (srcdir, "..", "data", "models.json", NULL);
  g_assert_true (g_file_get_contents (source, &text, &len, NULL));
  g_autofree char *path = g_build_filename (data_dir, "models.json", NULL);
  g_assert_true (g_file_set_contents (path, text, (gssize) len, NULL));
  g_setenv ("BONSAI_DATA_DIR", data_dir, TRUE);
}

static BnManifest *
default_manifest (void)
{
  GError *error = NULL;
  BnManifest *m = bn_manifest_load_default (&error);
  g_assert_no_error (error);
  return m;
}

static gint64
total_size (const BnStoreModel *m)
{
  gint64 t = 0;
  for (guint i = 0; i < m->files->len; i++)
    t += ((BnStoreFile *) m->files->pdata[i])->size;
  return t;
}

static const BnStoreFile *
find_file (const BnStoreModel *m, const char *path)
{
  for (guint i = 0; i < m->files->len; i++)
    if (!strcmp (((BnStoreFile *) m->files->pdata[i])->path, path))
      return m->files->pdata[i];
  return NULL;
}

/* ---- the manifest ------------------------------------------------------------ */

static void
test_default_manifest (void)
{
  g_autoptr (BnManifest) m = default_manifest ();
  g_assert_cmpuint (m->models->len, ==, 6);
  static const char *const repos[] = {
    "prism-ml/bonsai-image-ternary-4B-mlx-2bit", "prism-ml/bonsai-image-binary-4B-mlx-1bit",
    "prism-ml/bonsai-image-ternary-4B-unpacked", "prism-ml/bonsai-image-binary-4B-unpacked",
    "prism-ml/bonsai-image-ternary-4B-gemlite-2bit", "prism-ml/bonsai-image-binary-4B-gemlite-1bit",
  };
  for (guint i = 0; i < G_N_ELEMENTS (repos); i++)
    g_assert_nonnull (bn_manifest_lookup (m, repos[i]));

  /* The default and the short names are the MLX packs. */
  const BnStoreModel *t = bn_manifest_lookup (m, NULL);
  g_assert_cmpstr (t->name, ==, "ternary");
  g_assert_cmpstr (t->repo, ==, TERNARY_REPO);
  g_assert_cmpstr (t->layout, ==, "mlx");
  g_assert_true (t->complete);
  g_assert_true (bn_store_is_commit (t->revision));
  const BnStoreModel *b = bn_manifest_lookup (m, "binary");
  g_assert_cmpstr (b->repo, ==, "prism-ml/bonsai-image-binary-4B-mlx-1bit");
  g_assert_true (bn_manifest_lookup (m, "bonsai-image-binary-4b-mlx-1bit") == b);
  g_assert_true (bn_manifest_lookup (m, "PRISM-ML/bonsai-image-binary-4B-mlx-1bit") == b);
  g_assert_null (bn_manifest_lookup (m, "quaternary"));

  /* The pinned lists add up to the release's published sizes
   * (bonsai_release.md §1.1: 3.88 GB ternary; 3,428,210,775 B binary
   * without manifest.json and model_index.json). */
  g_assert_cmpint (total_size (t), ==, 3888279258);
  g_assert_cmpint (total_size (b) - 4617 - 81, ==, 3428210775);
  const BnStoreFile *dit = find_file (t, "transformer-packed-mflux/diffusion_pytorch_model.safetensors");
  g_assert_cmpint (dit->size, ==, 1425271472);
  g_assert_true (g_str_has_prefix (dit->sha256, "b21737bd"));
  const BnStoreFile *tok = find_file (b, "tokenizer/tokenizer.json");
  g_assert_true (g_str_has_prefix (tok->sha256, "aeb13307"));
  g_assert_nonnull (find_file (t, "transformer-packed-mflux/quantization_config.json"));

  /* Partial lists: only what is known, the Hub lists the rest. */
  const BnStoreModel *u = bn_manifest_lookup (m, "ternary-unpacked");
  g_assert_false (u->complete);
  g_assert_cmpstr (u->layout, ==, "unpacked");
  const BnStoreFile *ud = find_file (u, "transformer/diffusion_pytorch_model.safetensors");
  g_assert_cmpint (ud->size, ==, 7751109712);
  g_assert_true (g_str_has_prefix (ud->sha256, "fa5fd182"));
  const BnStoreModel *g = bn_manifest_lookup (m, "binary-gemlite");
  g_assert_null (find_file (g, "transformer-gemlite-int1/state_dict.pt")->sha256);
  g_assert_cmpint (find_file (g, "transformer-gemlite-int1/state_dict.pt")->size, ==, -1);
}

static void
test_manifest_location (void)
{
  g_autofree char *dir = fresh_dir ("data-dir");
  g_autofree char *path = g_build_filename (dir, "models.json", NULL);
  write_file (path, "{\"models\": [{\"name\": \"only\", \"repo\": \"a/b\"}]}");
  g_setenv ("BONSAI_DATA_DIR", dir, TRUE);
  GError *error = NULL;
  g_autoptr (BnManifest) m = bn_manifest_load_default (&error);
  g_assert_no_error (error);
  g_assert_cmpstr (m->path, ==, path);
  g_assert_nonnull (bn_manifest_lookup (m, "only"));
  g_assert_null (bn_manifest_lookup (m, NULL));

  /* An explicit folder is not second-guessed. */
  g_autofree char *none = g_build_filename (fixture_tmp, "no-such-dir", NULL);
  g_setenv ("BONSAI_DATA_DIR", none, TRUE);
  g_assert_null (bn_manifest_load_default (&error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, none));
  g_clear_error (&error);
  g_setenv ("BONSAI_DATA_DIR", data_dir, TRUE);
}

static void
test_manifest_errors (void)
{
  static const struct {
    const char *json, *words;
  } cases[] = {
    { "{\"models\": [", "model manifest" },
    { "[]", "no \"models\" list" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"nope\"}]}", "repo ORG/NAME" },
    { "{\"models\": [{\"name\": \"a b\", \"repo\": \"a/b\"}]}", "needs a name" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\", \"revision\": \"../x\"}]}", "plain revision" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\", \"files\": [{\"path\": \"../etc/passwd\"}]}]}",
      "not a safe relative path" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\", \"files\": [{\"path\": \"/abs\"}]}]}",
      "not a safe relative path" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\", \"files\": [{\"path\": \"a//b\"}]}]}",
      "not a safe relative path" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\", \"files\": [{\"path\": \"f\", \"size\": -1}]}]}",
      "not a byte count" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\", \"files\": [{\"path\": \"f\", \"sha256\": \"abc\"}]}]}",
      "64 hex digits" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\", \"files\": [{\"path\": \"f\"}, {\"path\": \"f\"}]}]}",
      "lists f twice" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\"}, {\"name\": \"x\", \"repo\": \"a/c\"}]}",
      "names x twice" },
    { "{\"default\": \"y\", \"models\": [{\"name\": \"x\", \"repo\": \"a/b\"}]}",
      "is not one of its models" },
    { "{\"models\": [{\"name\": 3, \"repo\": \"a/b\"}]}", "is not a string" },
    { "{\"models\": [{\"name\": \"x\", \"repo\": \"a/b\", \"complete\": 1}]}", "true or false" },
  };
  g_autofree char *path = g_build_filename (fixture_tmp, "bad.json", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      write_file (path, cases[i].json);
      GError *error = NULL;
      g_assert_null (bn_manifest_load (path, &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, path));
      g_assert_nonnull (strstr (error->message, cases[i].words));
      g_clear_error (&error);
    }
}

/* ---- the Hugging Face cache ------------------------------------------------------- */

static void
test_hub_dir (void)
{
  g_setenv ("HF_HUB_CACHE", "/a/hub", TRUE);
  g_setenv ("HF_HOME", "/b", TRUE);
  g_setenv ("XDG_CACHE_HOME", "/c", TRUE);
  g_autofree char *h1 = bn_store_hub_dir ();
  g_unsetenv ("HF_HUB_CACHE");
  g_autofree char *h2 = bn_store_hub_dir ();
  g_unsetenv ("HF_HOME");
  g_autofree char *h3 = bn_store_hub_dir ();
  g_unsetenv ("XDG_CACHE_HOME");
  g_autofree char *h4 = bn_store_hub_dir ();
  g_assert_cmpstr (h1, ==, "/a/hub");
  g_assert_cmpstr (h2, ==, "/b/hub");
  g_assert_cmpstr (h3, ==, "/c/huggingface/hub");
  g_autofree char *home = g_build_filename (g_get_home_dir (), ".cache", "huggingface", "hub", NULL);
  g_assert_cmpstr (h4, ==, home);
  g_autofree char *repo = bn_store_repo_dir ("/h", TERNARY_REPO);
  g_assert_cmpstr (repo, ==, "/h/models--prism-ml--bonsai-image-ternary-4B-mlx-2bit");

  g_assert_true (bn_store_is_repo_name ("org/name-1.2_x"));
  g_assert_false (bn_store_is_repo_name ("name"));
  g_assert_false (bn_store_is_repo_name ("./x"));
  g_assert_false (bn_store_is_repo_name ("a/b/c"));
  g_assert_false (bn_store_is_repo_name ("a/.."));
  g_assert_false (bn_store_is_repo_name ("/abs"));
}

/* Lays out `model` in hub as huggingface_hub does: blobs named by sha256,
 * snapshots/<commit>/ of relative links, refs/main when `main`.  A file's
 * content is its path, so the blobs differ. */
static char *
fake_cache (const char *hub, const BnStoreModel *model, const char *commit,
            gboolean main, const char *skip)
{
  g_autofree char *repo = bn_store_repo_dir (hub, model->repo);
  char *snap = g_build_filename (repo, "snapshots", commit, NULL);
  for (guint i = 0; i < model->files->len; i++)
    {
      const BnStoreFile *f = model->files->pdata[i];
      if (skip && !strcmp (f->path, skip))
        continue;
      g_autofree char *sha = g_compute_checksum_for_string (G_CHECKSUM_SHA256, f->path, -1);
      g_autofree char *blob = g_build_filename (repo, "blobs", sha, NULL);
      write_file (blob, f->path);
      g_autofree char *link = g_build_filename (snap, f->path, NULL);
      g_autofree char *parent = g_path_get_dirname (link);
      g_mkdir_with_parents (parent, 0755);
      GString *target = g_string_new ("../../");
      for (const char *p = f->path; *p; p++)
        if (*p == '/')
          g_string_append (target, "../");
      g_string_append_printf (target, "blobs/%s", sha);
      g_assert_cmpint (symlink (target->str, link), ==, 0);
      g_string_free (target, TRUE);
    }
  if (main)
    {
      g_autofree char *ref = g_build_filename (repo, "refs", "main", NULL);
      write_file (ref, commit);
    }
  return snap;
}

static gboolean
resolve (const BnManifest *m, const char *name, gboolean download, char **dir,
         GError **error)
{
  BnStoreOptions o = { .manifest = m, .download = download };
  return bn_store_resolve (name, &o, dir, error);
}

/* What `hf download prism-ml/…` left (main at another commit, no pinned
 * snapshot) is found with downloads allowed and no server to ask. */
static void
test_hf_cache_reused (void)
{
  g_autoptr (BnManifest) m = default_manifest ();
  const BnStoreModel *t = bn_manifest_lookup (m, "ternary");
  g_autofree char *hub = fresh_dir ("hf-reuse");
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  g_setenv ("HF_ENDPOINT", "http://127.0.0.1:9", TRUE);  /* discard: nobody answers */
  g_autofree char *snap = fake_cache (hub, t, OTHER_COMMIT, TRUE, NULL);
  GError *error = NULL;
  g_autofree char *dir = NULL;
  g_assert_true (resolve (m, "ternary", TRUE, &dir, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (dir, ==, snap);
  g_clear_pointer (&dir, g_free);
  g_assert_true (resolve (m, TERNARY_REPO, FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, snap);
  g_clear_pointer (&dir, g_free);

  /* The pinned commit's snapshot wins over main's when both are complete. */
  g_autofree char *pinned = fake_cache (hub, t, TERNARY_COMMIT, FALSE, NULL);
  g_assert_true (resolve (m, NULL, FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, pinned);
  g_clear_pointer (&dir, g_free);

  /* A repository outside the manifest resolves through refs/main. */
  g_autoptr (BnStoreModel) other = bn_store_model_new_repo ("someone/else");
  BnStoreFile *f = g_new0 (BnStoreFile, 1);
  f->path = g_strdup ("model_index.json");
  g_ptr_array_add (other->files, f);
  g_autofree char *osnap = fake_cache (hub, other, OTHER_COMMIT, TRUE, NULL);
  g_assert_true (resolve (m, "someone/else", FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, osnap);
  g_unsetenv ("HF_ENDPOINT");
}

static void
test_resolution_order (void)
{
  g_autoptr (BnManifest) m = default_manifest ();
  const BnStoreModel *t = bn_manifest_lookup (m, "ternary");
  g_autofree char *hub = fresh_dir ("order-hub");
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  g_autofree char *snap = fake_cache (hub, t, TERNARY_COMMIT, FALSE, NULL);
  g_autofree char *a = fresh_dir ("order-a");
  g_autofree char *b = fresh_dir ("order-b");
  g_autofree char *models = g_strconcat (a, ":", b, NULL);
  g_setenv ("BONSAI_MODELS", models, TRUE);
  GError *error = NULL;
  g_autofree char *dir = NULL;

  /* The cache, while BONSAI_MODELS has nothing. */
  g_assert_true (resolve (m, "ternary", FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, snap);
  g_clear_pointer (&dir, g_free);

  /* BONSAI_MODELS beats the cache: by repository name in the second
   * folder, then by short name in the first. */
  g_autofree char *by_repo = g_build_filename (b, "bonsai-image-ternary-4B-mlx-2bit", NULL);
  g_mkdir_with_parents (by_repo, 0755);
  g_assert_true (resolve (m, "ternary", FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, by_repo);
  g_clear_pointer (&dir, g_free);
  g_autofree char *by_name = g_build_filename (a, "ternary", NULL);
  g_mkdir_with_parents (by_name, 0755);
  g_assert_true (resolve (m, TERNARY_REPO, FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, by_name);
  g_clear_pointer (&dir, g_free);

  /* A name the manifest does not know, in BONSAI_MODELS. */
  g_autofree char *mini = g_build_filename (b, "mini", NULL);
  g_mkdir_with_parents (mini, 0755);
  g_assert_true (resolve (m, "mini", FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, mini);
  g_clear_pointer (&dir, g_free);

  /* An explicit folder beats everything, even one named like a model. */
  g_assert_true (resolve (m, snap, FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, snap);
  g_clear_pointer (&dir, g_free);
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *local = fresh_dir ("order-cwd/ternary");
  g_autofree char *local_parent = g_path_get_dirname (local);
  g_assert_cmpint (chdir (local_parent), ==, 0);
  gboolean ok = resolve (m, "ternary", FALSE, &dir, &error);
  g_assert_cmpint (chdir (cwd), ==, 0);
  g_assert_true (ok);
  g_assert_cmpstr (dir, ==, "ternary");
  g_unsetenv ("BONSAI_MODELS");
}

static void
test_resolution_errors (void)
{
  g_autoptr (BnManifest) m = default_manifest ();
  const BnStoreModel *b = bn_manifest_lookup (m, "binary");
  g_autofree char *hub = fresh_dir ("errors-hub");
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  GError *error = NULL;
  g_autofree char *dir = NULL;

  g_assert_false (resolve (m, "quaternary", FALSE, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "quaternary"));
  g_assert_nonnull (strstr (error->message, "no such folder"));
  g_clear_error (&error);

  g_assert_false (resolve (m, "./no/such/folder", FALSE, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "model folder ./no/such/folder does not exist"));
  g_clear_error (&error);

  g_assert_false (resolve (m, "binary", FALSE, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "not installed"));
  g_assert_nonnull (strstr (error->message, hub));
  g_assert_nonnull (strstr (error->message, "bonsai-image download binary"));
  g_clear_error (&error);

  /* A snapshot that lacks a file is named with the file. */
  const char *gone = "transformer-packed-mflux/quantization_config.json";
  g_autofree char *snap = fake_cache (hub, b, OTHER_COMMIT, TRUE, gone);
  g_assert_false (resolve (m, "binary", FALSE, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, snap));
  g_assert_nonnull (strstr (error->message, gone));
  g_clear_error (&error);
  g_assert_null (dir);
}

/* ---- verification and listing ------------------------------------------------------ */

static BnStoreModel *
model_of (const char *repo, const char *const *paths, const char *const *texts)
{
  BnStoreModel *m = bn_store_model_new_repo (repo);
  for (; *paths; paths++, texts++)
    {
      BnStoreFile *f = g_new0 (BnStoreFile, 1);
      f->path = g_strdup (*paths);
      f->size = strlen (*texts);
      f->sha256 = g_compute_checksum_for_string (G_CHECKSUM_SHA256, *texts, -1);
      g_ptr_array_add (m->files, f);
    }
  return m;
}

static BnStoreEntry
verify (const char *dir, const BnStoreModel *m, gboolean hash)
{
  BnStoreEntry e = { 0 };
  GError *error = NULL;
  g_assert_true (bn_store_verify (dir, m, hash, NULL, &e, &error));
  g_assert_no_error (error);
  return e;
}

static void
test_verify (void)
{
  static const char *const paths[] = { "a.json", "sub/b.bin", NULL };
  static const char *const texts[] = { "{\"a\": 1}", "bbbbbbbb", NULL };
  g_autoptr (BnStoreModel) m = model_of ("t/v", paths, texts);
  g_autofree char *dir = fresh_dir ("verify");
  g_autofree char *a = g_build_filename (dir, paths[0], NULL);
  g_autofree char *b = g_build_filename (dir, paths[1], NULL);
  write_file (a, texts[0]);
  write_file (b, texts[1]);

  /* A damaged sidecar is only a cache: ignored, then rewritten. */
  g_autofree char *sidecar = g_build_filename (dir, ".bonsai-verified.json", NULL);
  g_autofree char *real_b = realpath (b, NULL);
  g_autofree char *junk = g_strdup_printf ("{\"files\": {\"/x\": [], \"%s\": "
                                           "{\"sha256\": 5, \"size\": {}}}}", real_b);
  write_file (sidecar, junk);
  BnStoreEntry e = verify (dir, m, FALSE);
  g_assert_cmpuint (e.n_files, ==, 2);
  g_assert_cmpuint (e.n_unchecked, ==, 2);
  g_assert_cmpint (e.size, ==, (gint64) (strlen (texts[0]) + strlen (texts[1])));
  e = verify (dir, m, TRUE);
  g_assert_cmpuint (e.n_ok, ==, 2);
  g_assert_true (g_file_test (sidecar, G_FILE_TEST_IS_REGULAR));
  /* Remembered: a listing without hashing knows. */
  e = verify (dir, m, FALSE);
  g_assert_cmpuint (e.n_ok, ==, 2);

  /* Same size, other bytes, new mtime: not trusted until hashed, then bad. */
  write_file (b, "bbbbXbbb");
  struct stat st;
  g_assert_cmpint (stat (b, &st), ==, 0);
  struct timespec later[2] = { st.st_atim, { st.st_mtim.tv_sec + 5, 0 } };
  g_assert_cmpint (utimensat (AT_FDCWD, b, later, 0), ==, 0);
  e = verify (dir, m, FALSE);
  g_assert_cmpuint (e.n_ok, ==, 1);
  g_assert_cmpuint (e.n_unchecked, ==, 1);
  e = verify (dir, m, TRUE);
  g_assert_cmpuint (e.n_bad, ==, 1);
  g_assert_cmpstr (e.bad_file, ==, paths[1]);
  g_free (e.bad_file);

  /* A wrong size is bad without hashing; a missing file is counted. */
  write_file (b, "short");
  g_unlink (a);
  e = verify (dir, m, FALSE);
  g_assert_cmpuint (e.n_bad, ==, 1);
  g_assert_cmpuint (e.n_missing, ==, 1);
  g_free (e.bad_file);

  /* Without a manifest entry, a Hugging Face blob's sha256 name is the
   * checksum; the sidecar lives beside snapshots/. */
  g_autofree char *hub = fresh_dir ("verify-hub");
  g_autofree char *snap = fake_cache (hub, m, OTHER_COMMIT, TRUE, NULL);
  e = verify (snap, NULL, TRUE);
  g_assert_cmpuint (e.n_ok, ==, 2);
  g_autofree char *repo = bn_store_repo_dir (hub, "t/v");
  g_autofree char *side2 = g_build_filename (repo, ".bonsai-verified.json", NULL);
  g_assert_true (g_file_test (side2, G_FILE_TEST_IS_REGULAR));
}

static void
test_list (void)
{
  g_autoptr (BnManifest) m = default_manifest ();
  g_autofree char *models = fresh_dir ("list-models");
  g_autofree char *hub = fresh_dir ("list-hub");
  g_setenv ("BONSAI_MODELS", models, TRUE);
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  static const char *const made[] = {
    "mini-mlx/transformer-packed-mflux/config.json", "mini-dense/transformer/config.json",
    "mini-dense/model_index.json", "notes/readme.txt", "binary/model_index.json",
  };
  for (guint i = 0; i < G_N_ELEMENTS (made); i++)
    {
      g_autofree char *p = g_build_filename (models, made[i], NULL);
      write_file (p, "{}");
    }
  g_autofree char *snap = fake_cache (hub, bn_manifest_lookup (m, "ternary"), TERNARY_COMMIT,
                                      FALSE, NULL);
  GError *error = NULL;
  g_autoptr (GPtrArray) list = bn_store_list (m, FALSE, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (list->len, ==, 4);
  const BnStoreEntry *e0 = list->pdata[0], *e1 = list->pdata[1], *e2 = list->pdata[2],
                     *e3 = list->pdata[3];
  /* A folder named for a manifest model is checked against it. */
  g_assert_cmpstr (e0->name, ==, "binary");
  g_assert_cmpstr (e0->layout, ==, "mlx");
  g_assert_cmpuint (e0->n_missing, ==, bn_manifest_lookup (m, "binary")->files->len - 1);
  g_assert_cmpstr (e1->name, ==, "mini-dense");
  g_assert_cmpstr (e1->layout, ==, "unpacked");
  g_assert_cmpstr (e1->where, ==, "BONSAI_MODELS");
  g_assert_cmpstr (e2->name, ==, "mini-mlx");
  g_assert_cmpstr (e2->layout, ==, "mlx");
  g_assert_cmpstr (e3->name, ==, "ternary");
  g_assert_cmpstr (e3->dir, ==, snap);
  g_assert_cmpstr (e3->where, ==, "Hugging Face cache");
  g_assert_cmpuint (e3->n_missing, ==, 0);
  /* The fake blobs hold their paths, not the release: hashing tells. */
  g_assert_cmpuint (e3->n_bad, >, 0);
  g_unsetenv ("BONSAI_MODELS");
}

/* Sums the sizes of the regular files under `dir`. */
static gint64
du (const char *dir)
{
  gint64 total = 0;
  GDir *d = g_dir_open (dir, 0, NULL);
  for (const char *n; d && (n = g_dir_read_name (d));)
    {
      g_autofree char *p = g_build_filename (dir, n, NULL);
      struct stat st;
      g_assert_cmpint (lstat (p, &st), ==, 0);
      total += S_ISDIR (st.st_mode) ? du (p) : n[0] == '.' ? 0 : st.st_size;
    }
  if (d)
    g_dir_close (d);
  return total;
}

/* Synthetic release folders of both layouts in BONSAI_MODELS: listed with
 * their layout and size, and opened by name; a model that is not installed
 * is refused by bonsai_model_open, which never downloads. */
static void
test_open_by_name (void)
{
  g_autofree char *tok = fixture_tokenizer ();
  if (!tok)
    return;
  g_autofree char *models = fresh_dir ("by-name");
  g_autofree char *hub = fresh_dir ("by-name-hub");
  g_setenv ("BONSAI_MODELS", models, TRUE);
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  g_setenv ("HF_ENDPOINT", "http://127.0.0.1:9", TRUE);
  static const struct { const char *name, *layout; BnSynthLayout kind; } made[] = {
    { "mini-mlx", "mlx", BN_SYNTH_LAYOUT_MLX },
    { "mini-unpacked", "unpacked", BN_SYNTH_LAYOUT_UNPACKED },
  };
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  GError *error = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (made); i++)
    {
      g_autofree char *dir = g_build_filename (models, made[i].name, NULL);
      g_assert_true (bn_synthetic_release_write (dir, &spec, made[i].kind, tok, 7, &error));
      g_assert_no_error (error);
    }

  g_autoptr (BnManifest) m = default_manifest ();
  g_autoptr (GPtrArray) list = bn_store_list (m, TRUE, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (list->len, ==, G_N_ELEMENTS (made));
  for (guint i = 0; i < G_N_ELEMENTS (made); i++)
    {
      const BnStoreEntry *e = list->pdata[i];
      g_autofree char *dir = g_build_filename (models, made[i].name, NULL);
      g_assert_cmpstr (e->name, ==, made[i].name);
      g_assert_cmpstr (e->layout, ==, made[i].layout);
      g_assert_cmpstr (e->dir, ==, dir);
      g_assert_cmpint (e->size, ==, du (dir));
      g_assert_cmpuint (e->n_files, >, 10);
      g_assert_cmpuint (e->n_bad + e->n_missing, ==, 0);

      BonsaiModel *model = bonsai_model_open (made[i].name, &error);
      g_assert_no_error (error);
      g_assert_cmpint (bonsai_model_size_multiple (model), >, 0);
      bonsai_model_unref (model);
    }

  g_assert_null (bonsai_model_open ("ternary", &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "bonsai-image download ternary"));
  g_clear_error (&error);
  g_assert_null (bonsai_model_open ("/no/such/model", &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "/no/such/model does not exist"));
  g_clear_error (&error);
  g_unsetenv ("BONSAI_MODELS");
  g_unsetenv ("HF_ENDPOINT");
}

/* ---- bundled models ---------------------------------------------------------------- */

static int n_fallback_messages;

static void
count_fallback (const char *domain, GLogLevelFlags level, const char *message,
                gpointer data)
{
  if (strstr (message, "bundled Bonsai Shapes model"))
    n_fallback_messages++;
}

/* The bundled folder is models/ beside models.json; a bundled model is
 * found by name after BONSAI_MODELS, listed as "bundled", and stands in for
 * the default model when that is not installed (said once), but never for a
 * named model nor when a download was asked for. */
static void
test_bundled (void)
{
  g_autofree char *tok = fixture_tokenizer ();
  if (!tok)
    return;
  g_autofree char *bundled = g_build_filename (data_dir, "models", NULL);
  g_autofree char *found = bn_store_bundled_dir ();
  g_assert_cmpstr (found, ==, bundled);
  g_autofree char *shapes = g_build_filename (bundled, "shapes", NULL);
  BnSynthSpec spec;
  bn_synth_spec_tiny (&spec, 2);
  GError *error = NULL;
  g_assert_true (bn_synthetic_release_write (shapes, &spec, BN_SYNTH_LAYOUT_MLX, tok, 7, &error));
  g_assert_no_error (error);
  g_autofree char *models = fresh_dir ("bundled-models");
  g_autofree char *hub = fresh_dir ("bundled-hub");
  g_setenv ("BONSAI_MODELS", models, TRUE);
  g_setenv ("HF_HUB_CACHE", hub, TRUE);
  g_setenv ("HF_ENDPOINT", "http://127.0.0.1:9", TRUE);
  guint handler = g_log_set_handler ("bonsai", G_LOG_LEVEL_MESSAGE, count_fallback, NULL);
  g_autoptr (BnManifest) m = default_manifest ();
  g_autofree char *dir = NULL;

  /* By name; BONSAI_MODELS comes first. */
  g_assert_true (resolve (m, "shapes", FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, shapes);
  g_clear_pointer (&dir, g_free);
  g_autofree char *mine = g_build_filename (models, "shapes", NULL);
  g_mkdir_with_parents (mine, 0755);
  g_assert_true (resolve (m, "shapes", FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, mine);
  g_clear_pointer (&dir, g_free);
  g_assert_cmpint (g_rmdir (mine), ==, 0);

  /* Listed, and opened through the ordinary path. */
  g_autoptr (GPtrArray) list = bn_store_list (m, FALSE, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (list->len, ==, 1);
  const BnStoreEntry *e = list->pdata[0];
  g_assert_cmpstr (e->name, ==, "shapes");
  g_assert_cmpstr (e->where, ==, "bundled");
  g_assert_cmpstr (e->dir, ==, shapes);
  g_assert_cmpstr (e->layout, ==, "mlx");

  /* No name: the default is not installed, so the bundled model, said once. */
  g_assert_cmpint (n_fallback_messages, ==, 0);
  g_assert_true (resolve (m, NULL, FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, shapes);
  g_clear_pointer (&dir, g_free);
  g_assert_true (resolve (m, "", FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, shapes);
  g_clear_pointer (&dir, g_free);
  BonsaiModel *model = bonsai_model_open (NULL, &error);
  g_assert_no_error (error);
  bonsai_model_unref (model);
  g_assert_cmpint (n_fallback_messages, ==, 1);
  g_autofree char *def = bonsai_model_default_name ();
  g_assert_cmpstr (def, ==, "shapes");

  /* Never in place of a model that is named, nor of a download. */
  g_assert_false (resolve (m, "ternary", FALSE, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_setenv ("HF_HUB_OFFLINE", "1", TRUE);
  g_assert_false (resolve (m, NULL, TRUE, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_null (strstr (error->message, "shapes"));
  g_clear_error (&error);
  g_unsetenv ("HF_HUB_OFFLINE");

  /* The real default, once installed, comes first. */
  g_autofree char *snap = fake_cache (hub, bn_manifest_lookup (m, "ternary"), TERNARY_COMMIT,
                                      FALSE, NULL);
  g_assert_true (resolve (m, NULL, FALSE, &dir, &error));
  g_assert_cmpstr (dir, ==, snap);
  g_clear_pointer (&dir, g_free);
  g_autofree char *def2 = bonsai_model_default_name ();
  g_assert_cmpstr (def2, ==, "ternary");
  g_autofree char *cache_dir = bn_store_repo_dir (hub, TERNARY_REPO);
  fixture_rm_tree (cache_dir);

  /* Without bundled models the missing default is an error again. */
  fixture_rm_tree (shapes);
  g_assert_false (resolve (m, NULL, FALSE, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "bonsai-image download ternary"));
  g_clear_error (&error);
  g_autofree char *def3 = bonsai_model_default_name ();
  g_assert_cmpstr (def3, ==, "ternary");
  g_assert_cmpint (n_fallback_messages, ==, 1);

  g_log_remove_handler ("bonsai", handler);
  g_unsetenv ("BONSAI_MODELS");
  g_unsetenv ("HF_ENDPOINT");
}

/* Without BONSAI_DATA_DIR, the build tree's bundled models are found (when
 * the build assembled them: it needs the npm tokenizer). */
static void
test_bundled_build_tree (void)
{
  g_unsetenv ("BONSAI_DATA_DIR");
  g_autofree char *dir = bn_store_bundled_dir ();
  g_setenv ("BONSAI_DATA_DIR", data_dir, TRUE);
  if (!dir)
    {
      g_test_skip ("the build made no bundled models (no tokenizer.json)");
      return;
    }
  g_autofree char *index = g_build_filename (dir, "shapes", "model_index.json", NULL);
  g_autofree char *tok = g_build_filename (dir, "shapes", "tokenizer", "tokenizer.json", NULL);
  if (!g_file_test (index, G_FILE_TEST_IS_REGULAR))
    {
      g_test_skip ("no bundled shapes model in this build");
      return;
    }
  g_assert_true (g_file_test (tok, G_FILE_TEST_IS_REGULAR));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  fixture_init ("store");
  make_data_dir ();
  g_unsetenv ("BONSAI_MODELS");
  g_unsetenv ("HF_HUB_OFFLINE");

  g_test_add_func ("/store/default-manifest", test_default_manifest);
  g_test_add_func ("/store/manifest-location", test_manifest_location);
  g_test_add_func ("/store/manifest-errors", test_manifest_errors);
  g_test_add_func ("/store/hub-dir", test_hub_dir);
  g_test_add_func ("/store/hf-cache-reused", test_hf_cache_reused);
  g_test_add_func ("/store/resolution-order", test_resolution_order);
  g_test_add_func ("/store/resolution-errors", test_resolution_errors);
  g_test_add_func ("/store/verify", test_verify);
  g_test_add_func ("/store/list", test_list);
  g_test_add_func ("/store/open-by-name", test_open_by_name);
  g_test_add_func ("/store/bundled", test_bundled);
  g_test_add_func ("/store/bundled-build-tree", test_bundled_build_tree);
  int rc = g_test_run ();
  fixture_done ();
  g_free (data_dir);
  return rc;
}
