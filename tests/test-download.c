/* test-download.c — model downloads against a local stand-in for the Hub
 * (http_server.py on 127.0.0.1, with injected faults): resume after a cut,
 * a server that ignores Range, checksum, HTTP errors, token, cancel and
 * resume, a full disk, offline mode, the Hub's file listing, and the CLI's
 * `download` (Ctrl-C, resume) and `models`.
 *
 *   test-download [BONSAI_IMAGE] [GTest options]
 */
#include "download.h"
#include "release-fixture.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define COMMIT "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
#define LISTED_COMMIT "1157ed001157ed001157ed001157ed001157ed00"

static char *log_path;
static char *bonsai_image;
static int port;
static GPid server_pid;
static int server_stdin = -1;
static BnManifest *manifest;

/* The files of repository test/tiny; the two tokenizers are the same bytes. */
typedef struct {
  const char *path;
  gsize size;
  guint32 seed;
  guchar *data;
  char *sha256;
} TFile;

static TFile tiny[] = {
  { "model_index.json", 90, 1, NULL, NULL },
  { "text_encoder/tokenizer.json", 4096, 2, NULL, NULL },
  { "tokenizer/tokenizer.json", 4096, 2, NULL, NULL },
  { "transformer/diffusion_pytorch_model.safetensors", 256 * 1024, 3, NULL, NULL },
  { "vae/diffusion_pytorch_model.safetensors", 64 * 1024, 4, NULL, NULL },
};
enum { BIG = 3, VAE = 4 };

/* ---- set-up ---------------------------------------------------------------- */

static void
write_file (const char *path, const void *data, gsize len)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (path, data, len, NULL));
}

static void
make_repos (const char *srv)
{
  GString *files = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (tiny); i++)
    {
      TFile *f = &tiny[i];
      f->data = g_malloc (f->size);
      GRand *r = g_rand_new_with_seed (f->seed);
      for (gsize j = 0; j < f->size; j++)
        f->data[j] = (guchar) g_rand_int (r);
      g_rand_free (r);
      if (f->seed == 1)
        memset (f->data, ' ', f->size);  /* a small text file */
      f->sha256 = g_compute_checksum_for_data (G_CHECKSUM_SHA256, f->data, f->size);
      g_autofree char *p = g_build_filename (srv, "test", "tiny", f->path, NULL);
      write_file (p, f->data, f->size);
      g_string_append_printf (files, "%s{\"path\": \"%s\", \"size\": %zu, \"sha256\": \"%s\"}",
                              i ? ", " : "", f->path, f->size, f->sha256);
    }
  g_autofree char *c1 = g_build_filename (srv, "test", "tiny.commit", NULL);
  write_file (c1, COMMIT, 40);

  /* test/listed: the manifest names one file; the Hub lists three. */
  static const char notes[] = "notes, not in the manifest\n";
  g_autofree char *weights = g_malloc0 (32768);
  g_autofree char *w = g_build_filename (srv, "test", "listed", "weights.safetensors", NULL);
  g_autofree char *n = g_build_filename (srv, "test", "listed", "extra", "notes.txt", NULL);
  g_autofree char *m = g_build_filename (srv, "test", "listed", "model_index.json", NULL);
  g_autofree char *c2 = g_build_filename (srv, "test", "listed.commit", NULL);
  write_file (w, weights, 32768);
  write_file (n, notes, strlen (notes));
  write_file (m, "{}", 2);
  write_file (c2, LISTED_COMMIT, 40);

  g_autofree char *json = g_strdup_printf (
    "{\"default\": \"tiny\", \"models\": ["
    "{\"name\": \"tiny\", \"repo\": \"test/tiny\", \"revision\": \"" COMMIT "\","
    " \"layout\": \"mlx\", \"complete\": true, \"files\": [%s]},"
    "{\"name\": \"listed\", \"repo\": \"test/listed\", \"complete\": false,"
    " \"files\": [{\"path\": \"weights.safetensors\"}]}]}", files->str);
  g_string_free (files, TRUE);
  g_autofree char *mpath = g_build_filename (fixture_tmp, "data", "models.json", NULL);
  write_file (mpath, json, strlen (json));
  GError *error = NULL;
  manifest = bn_manifest_load (mpath, &error);
  g_assert_no_error (error);
}

static void
start_server (const char *srv)
{
  g_autofree char *script = g_test_build_filename (G_TEST_DIST, "http_server.py", NULL);
  const char *argv[] = { "/usr/bin/python3", script, srv, log_path, NULL };
  int out = -1;
  GError *error = NULL;
  g_spawn_async_with_pipes (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                            &server_pid, &server_stdin, &out, NULL, &error);
  g_assert_no_error (error);
  char buf[32] = { 0 };
  for (size_t n = 0; n < sizeof buf - 1;)
    {
      ssize_t r = read (out, buf + n, 1);
      g_assert_cmpint (r, ==, 1);
      if (buf[n++] == '\n')
        break;
    }
  close (out);
  port = atoi (buf);
  g_assert_cmpint (port, >, 0);
}

static void
stop_server (void)
{
  close (server_stdin);  /* the server exits when its input closes */
  int status;
  waitpid (server_pid, &status, 0);
  g_spawn_close_pid (server_pid);
}

/* ---- one case ----------------------------------------------------------------- */

typedef struct {
  char *hub;
  gsize log_from;  /* bytes of the log before this case */
} Case;

static gsize
log_size (void)
{
  struct stat st;
  return stat (log_path, &st) == 0 ? (gsize) st.st_size : 0;
}

/* A fresh cache under `name` and an endpoint with the fault `spec`. */
static Case
case_start (const char *name, const char *spec)
{
  Case c;
  c.hub = g_build_filename (fixture_tmp, name, "hub", NULL);
  fixture_rm_tree (c.hub);
  g_setenv ("HF_HUB_CACHE", c.hub, TRUE);
  g_autofree char *ep = g_strdup_printf ("http://127.0.0.1:%d/f/id=%s%s%s/", port, name,
                                         spec ? "," : "", spec ? spec : "");
  g_setenv ("HF_ENDPOINT", ep, TRUE);
  c.log_from = log_size ();
  return c;
}

/* The requests logged since the case started, one JSON object a line. */
static char *
case_log (const Case *c)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents (log_path, &text, &len, NULL))
    return g_strdup ("");
  return g_strdup (len > c->log_from ? text + c->log_from : "");
}

static guint
count_in (const char *text, const char *needle)
{
  guint n = 0;
  for (const char *p = text; (p = strstr (p, needle)); p++)
    n++;
  return n;
}

static void
case_end (Case *c)
{
  g_free (c->hub);
}

static char *
blob_path (const Case *c, const char *repo_dir_name, const char *blob)
{
  return g_build_filename (c->hub, repo_dir_name, "blobs", blob, NULL);
}

/* ---- downloading ------------------------------------------------------------------ */

typedef struct {
  gint64 done, total;
  guint calls;
  double stop_at;      /* return FALSE (or set cancel) past this fraction; 0: never */
  gboolean use_flag;   /* cancel through the flag instead of the return value */
  gint cancel;
  const char *fill;    /* fill the disk holding this folder at the first call */
  gint64 last_done;
  gboolean monotonic;
} Progress;

static gboolean
on_progress (const char *file, gint64 done, gint64 total, gpointer user_data)
{
  Progress *p = user_data;
  g_assert_nonnull (file);
  if (done < p->last_done)
    p->monotonic = FALSE;
  p->last_done = p->done = done;
  p->total = total;
  if (p->calls++ == 0 && p->fill)
    {
      g_autofree char *filler = g_build_filename (p->fill, "filler", NULL);
      int fd = open (filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      static char zeros[4096];
      while (fd >= 0 && write (fd, zeros, sizeof zeros) > 0)
        ;
      if (fd >= 0)
        close (fd);
    }
  if (p->stop_at > 0 && done >= p->stop_at * total)
    {
      if (!p->use_flag)
        return FALSE;
      g_atomic_int_set (&p->cancel, 1);
    }
  return TRUE;
}

static gboolean
download (const char *name, Progress *p, char **dir, GError **error)
{
  BnStoreOptions o = { .manifest = manifest, .download = TRUE,
                       .progress = p ? on_progress : NULL, .user_data = p,
                       .cancel = p ? &p->cancel : NULL };
  if (p)
    p->monotonic = TRUE;
  return bn_store_resolve (name, &o, dir, error);
}

/* The snapshot holds every file of test/tiny as a link into blobs/ named by
 * its sha256, with the right bytes. */
static void
assert_complete (const char *dir)
{
  for (guint i = 0; i < G_N_ELEMENTS (tiny); i++)
    {
      g_autofree char *p = g_build_filename (dir, tiny[i].path, NULL);
      g_autofree char *target = g_file_read_link (p, NULL);
      g_assert_nonnull (target);
      g_autoptr (GString) want = g_string_new ("../../");
      for (const char *s = tiny[i].path; *s; s++)
        if (*s == '/')
          g_string_append (want, "../");
      g_string_append_printf (want, "blobs/%s", tiny[i].sha256);
      g_assert_cmpstr (target, ==, want->str);
      g_autofree char *data = NULL;
      gsize len = 0;
      g_assert_true (g_file_get_contents (p, &data, &len, NULL));
      g_assert_cmpmem (data, len, tiny[i].data, tiny[i].size);
    }
}

static gint64
size_of (const char *path)
{
  struct stat st;
  return stat (path, &st) == 0 ? st.st_size : -1;
}

static void
test_complete (void)
{
  Case c = case_start ("complete", NULL);
  Progress p = { 0 };
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_true (download ("tiny", &p, &dir, &error));
  g_assert_no_error (error);
  g_autofree char *want = g_build_filename (c.hub, "models--test--tiny", "snapshots", COMMIT, NULL);
  g_assert_cmpstr (dir, ==, want);
  assert_complete (dir);

  /* One overall progress; the shared tokenizer blob counts once. */
  gint64 unique = 0;
  for (guint i = 0; i < G_N_ELEMENTS (tiny); i++)
    unique += i == 2 ? 0 : (gint64) tiny[i].size;
  g_assert_cmpint (p.total, ==, unique);
  g_assert_cmpint (p.done, ==, unique);
  g_assert_true (p.monotonic);

  /* Nothing partial is left, and the checksums are remembered. */
  g_autofree char *blobs = g_build_filename (c.hub, "models--test--tiny", "blobs", NULL);
  GDir *d = g_dir_open (blobs, 0, NULL);
  guint n = 0;
  for (const char *name; (name = g_dir_read_name (d)); n++)
    g_assert_false (g_str_has_suffix (name, ".incomplete"));
  g_dir_close (d);
  g_assert_cmpuint (n, ==, 4);
  BnStoreEntry e = { 0 };
  g_assert_true (bn_store_verify (dir, bn_manifest_lookup (manifest, "tiny"), FALSE,
                                  NULL, &e, &error));
  g_assert_cmpuint (e.n_ok, ==, G_N_ELEMENTS (tiny));
  g_assert_cmpuint (e.n_unchecked + e.n_bad + e.n_missing, ==, 0);
  g_free (e.bad_file);

  /* A second call finds it in the cache and asks the server nothing. */
  g_autofree char *log1 = case_log (&c);
  g_autofree char *dir2 = NULL;
  g_assert_true (download ("tiny", NULL, &dir2, &error));
  g_assert_cmpstr (dir2, ==, dir);
  g_autofree char *log2 = case_log (&c);
  g_assert_cmpstr (log1, ==, log2);
  case_end (&c);
}

/* The big file's connection drops at `frac` once; the download resumes from
 * where it stopped and completes. */
static void
test_cut (gconstpointer data)
{
  double frac = GPOINTER_TO_INT (data) / 100.0;
  g_autofree char *name = g_strdup_printf ("cut-%d", GPOINTER_TO_INT (data));
  g_autofree char *spec = g_strdup_printf ("cut=%g:1", frac);
  Case c = case_start (name, spec);
  g_setenv ("BONSAI_DOWNLOAD_BACKOFF_MS", "1", TRUE);
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_true (download ("tiny", NULL, &dir, &error));
  g_assert_no_error (error);
  assert_complete (dir);
  g_autofree char *log = case_log (&c);
  g_autofree char *range = g_strdup_printf ("\"range\": \"bytes=%d-\"",
                                            (int) (tiny[BIG].size * frac));
  g_assert_nonnull (strstr (log, range));
  case_end (&c);
}

static void
test_ignored_range (void)
{
  Case c = case_start ("norange", "norange");
  /* A partial file of the wrong bytes: only a clean restart gives the
   * right sha256. */
  g_autofree char *inc_name = g_strconcat (tiny[BIG].sha256, ".incomplete", NULL);
  g_autofree char *inc = blob_path (&c, "models--test--tiny", inc_name);
  g_autofree char *junk = g_malloc0 (tiny[BIG].size * 2 / 5);
  write_file (inc, junk, tiny[BIG].size * 2 / 5);
  Progress p = { 0 };
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_true (download ("tiny", &p, &dir, &error));
  g_assert_no_error (error);
  assert_complete (dir);
  g_assert_cmpint (p.done, ==, p.total);
  g_autofree char *log = case_log (&c);
  g_autofree char *asked = g_strdup_printf ("\"range\": \"bytes=%zu-\"", tiny[BIG].size * 2 / 5);
  g_assert_nonnull (strstr (log, asked));
  g_assert_false (g_file_test (inc, G_FILE_TEST_EXISTS));
  case_end (&c);
}

static void
test_wrong_sha256 (void)
{
  Case c = case_start ("wrong", "wrong");
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_false (download ("tiny", NULL, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CHECKSUM);
  /* The first LFS file (a tokenizer) is refused, named, and discarded. */
  g_assert_nonnull (strstr (error->message, tiny[1].path));
  g_assert_nonnull (strstr (error->message, tiny[1].sha256));
  g_clear_error (&error);
  g_assert_null (dir);
  g_autofree char *blob = blob_path (&c, "models--test--tiny", tiny[1].sha256);
  g_autofree char *inc = g_strconcat (blob, ".incomplete", NULL);
  g_autofree char *pointer = g_build_filename (c.hub, "models--test--tiny", "snapshots",
                                               COMMIT, tiny[1].path, NULL);
  g_assert_false (g_file_test (blob, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (inc, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (pointer, G_FILE_TEST_EXISTS));
  case_end (&c);
}

/* A manifest whose size is not the server's: refused either way, and the
 * partial file is discarded. */
static void
test_wrong_size (void)
{
  for (int delta = -100; delta <= 100; delta += 200)
    {
      g_autofree char *name = g_strdup_printf ("size%+d", delta);
      Case c = case_start (name, NULL);
      g_autoptr (BnStoreModel) m = bn_store_model_new_repo ("test/tiny");
      m->revision = (g_free (m->revision), g_strdup (COMMIT));
      m->complete = TRUE;
      BnStoreFile *f = g_new0 (BnStoreFile, 1);
      f->path = g_strdup (tiny[VAE].path);
      f->size = (gint64) tiny[VAE].size + delta;
      f->sha256 = g_strdup (tiny[VAE].sha256);
      g_ptr_array_add (m->files, f);
      g_autofree char *dir = NULL;
      GError *error = NULL;
      g_assert_false (bn_download_model (m, c.hub, NULL, NULL, NULL, &dir, &error));
      g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CHECKSUM);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, tiny[VAE].path));
      g_assert_nonnull (strstr (error->message, delta < 0 ? "more than" : "expected"));
      g_clear_error (&error);
      g_autofree char *blobs = g_build_filename (c.hub, "models--test--tiny", "blobs", NULL);
      GDir *d = g_dir_open (blobs, 0, NULL);
      g_assert_nonnull (d);
      g_assert_null (g_dir_read_name (d));
      g_dir_close (d);
      g_autofree char *snaps = g_build_filename (c.hub, "models--test--tiny", "snapshots", NULL);
      g_assert_false (g_file_test (snaps, G_FILE_TEST_EXISTS));
      case_end (&c);
    }
}

static void
test_http_errors (void)
{
  g_setenv ("BONSAI_DOWNLOAD_BACKOFF_MS", "1", TRUE);
  static const struct {
    const char *spec;
    int code;
    const char *words;
  } cases[] = {
    { "status=404", BONSAI_ERROR_NOT_FOUND, "not found (HTTP 404)" },
    { "status=401", BONSAI_ERROR_NETWORK, "HTTP 401" },
    { "status=403", BONSAI_ERROR_NETWORK, "HF_TOKEN" },
    { "status=500", BONSAI_ERROR_NETWORK, "server error (HTTP 500)" },
    { "status=400", BONSAI_ERROR_NETWORK, "HTTP 400" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("http-%u", i);
      Case c = case_start (name, cases[i].spec);
      g_autofree char *dir = NULL;
      GError *error = NULL;
      g_assert_false (download ("tiny", NULL, &dir, &error));
      g_assert_error (error, BONSAI_ERROR, cases[i].code);
      g_test_message ("%s: %s", cases[i].spec, error->message);
      g_assert_nonnull (strstr (error->message, tiny[0].path));
      g_assert_nonnull (strstr (error->message, cases[i].words));
      g_autofree char *log = case_log (&c);
      /* Only a server error is tried again: 5 attempts in all. */
      guint want = cases[i].spec[7] == '5' ? 5 : 1;
      g_assert_cmpuint (count_in (log, "\"method\": \"GET\""), ==, want);
      if (want == 5)
        g_assert_nonnull (strstr (error->message, "(after 5 attempts)"));
      /* Nothing is left behind: no partial file worth resuming. */
      g_autofree char *blobs = g_build_filename (c.hub, "models--test--tiny", "blobs", NULL);
      GDir *d = g_dir_open (blobs, 0, NULL);
      g_assert_null (d ? g_dir_read_name (d) : NULL);
      if (d)
        g_dir_close (d);
      g_clear_error (&error);
      case_end (&c);
    }

  /* A server error that passes is ridden out. */
  Case c = case_start ("http-500-once", "status=500:2");
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_true (download ("tiny", NULL, &dir, &error));
  g_assert_no_error (error);
  assert_complete (dir);
  case_end (&c);
}

static void
test_token (void)
{
  Case c = case_start ("token", "auth=s3cret");
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_false (download ("tiny", NULL, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NETWORK);
  g_assert_nonnull (strstr (error->message, "set HF_TOKEN"));
  g_clear_error (&error);

  g_setenv ("HF_TOKEN", "s3cret", TRUE);
  gboolean ok = download ("tiny", NULL, &dir, &error);
  g_unsetenv ("HF_TOKEN");
  g_assert_no_error (error);
  g_assert_true (ok);
  assert_complete (dir);
  g_autofree char *log = case_log (&c);
  g_assert_nonnull (strstr (log, "\"auth\": \"Bearer s3cret\""));
  case_end (&c);
}

/* Cancelling (by return value, then by flag) leaves the file being fetched
 * only as .incomplete; the next call resumes it with a Range request. */
static void
test_cancel_and_resume (gconstpointer data)
{
  gboolean flag = GPOINTER_TO_INT (data);
  const char *name = flag ? "cancel-flag" : "cancel";
  Case c = case_start (name, NULL);
  Progress p = { .stop_at = 0.5, .use_flag = flag };
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_false (download ("tiny", &p, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED);
  g_assert_nonnull (strstr (error->message, tiny[BIG].path));
  g_assert_nonnull (strstr (error->message, "resuming"));
  g_clear_error (&error);

  g_autofree char *blob = blob_path (&c, "models--test--tiny", tiny[BIG].sha256);
  g_autofree char *inc = g_strconcat (blob, ".incomplete", NULL);
  g_autofree char *pointer = g_build_filename (c.hub, "models--test--tiny", "snapshots",
                                               COMMIT, tiny[BIG].path, NULL);
  g_autofree char *vae = blob_path (&c, "models--test--tiny", tiny[VAE].sha256);
  g_autofree char *vae_inc = g_strconcat (vae, ".incomplete", NULL);
  gint64 kept = size_of (inc);
  g_assert_cmpint (kept, >, 0);
  g_assert_cmpint (kept, <, (gint64) tiny[BIG].size);
  g_assert_false (g_file_test (blob, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (pointer, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (vae, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (vae_inc, G_FILE_TEST_EXISTS));

  Progress again = { 0 };
  g_assert_true (download ("tiny", &again, &dir, &error));
  g_assert_no_error (error);
  assert_complete (dir);
  g_assert_cmpint (again.done, ==, again.total);
  g_autofree char *log = case_log (&c);
  g_autofree char *range = g_strdup_printf ("\"range\": \"bytes=%" G_GINT64_FORMAT "-\"", kept);
  g_assert_nonnull (strstr (log, range));
  case_end (&c);
}

static void
test_offline (void)
{
  Case c = case_start ("offline", NULL);
  g_setenv ("HF_HUB_OFFLINE", "1", TRUE);
  g_autofree char *dir = NULL;
  GError *error = NULL;
  gboolean ok = download ("tiny", NULL, &dir, &error);
  g_unsetenv ("HF_HUB_OFFLINE");
  g_assert_false (ok);
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "offline"));
  g_assert_nonnull (strstr (error->message, "not in the cache at"));
  g_assert_nonnull (strstr (error->message, c.hub));
  g_clear_error (&error);
  g_autofree char *log = case_log (&c);
  g_assert_cmpstr (log, ==, "");

  /* Once downloaded, offline finds it. */
  g_assert_true (download ("tiny", NULL, &dir, &error));
  g_free (g_steal_pointer (&dir));
  g_setenv ("HF_HUB_OFFLINE", "1", TRUE);
  ok = download ("tiny", NULL, &dir, &error);
  g_unsetenv ("HF_HUB_OFFLINE");
  g_assert_no_error (error);
  g_assert_true (ok);
  case_end (&c);
}

/* A manifest entry that lists only some files: the Hub's listing gives the
 * commit and the rest; sizes and checksums come from HEAD (X-Linked-Etag for
 * LFS files, the git blob id for small ones); refs/main is written. */
static void
test_hub_listing (void)
{
  Case c = case_start ("listed", NULL);
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_true (download ("listed", NULL, &dir, &error));
  g_assert_no_error (error);
  g_autofree char *want = g_build_filename (c.hub, "models--test--listed", "snapshots",
                                            LISTED_COMMIT, NULL);
  g_assert_cmpstr (dir, ==, want);
  g_autofree char *notes = g_build_filename (dir, "extra", "notes.txt", NULL);
  g_autofree char *weights = g_build_filename (dir, "weights.safetensors", NULL);
  g_assert_cmpint (size_of (weights), ==, 32768);
  g_autofree char *target = g_file_read_link (notes, NULL);
  g_assert_nonnull (target);
  g_assert_true (g_str_has_prefix (target, "../../../blobs/"));
  g_assert_cmpuint (strlen (target), ==, strlen ("../../../blobs/") + 40);
  g_autofree char *ref = g_build_filename (c.hub, "models--test--listed", "refs", "main", NULL);
  g_autofree char *commit = NULL;
  g_assert_true (g_file_get_contents (ref, &commit, NULL, NULL));
  g_assert_cmpstr (commit, ==, LISTED_COMMIT);
  g_autofree char *log = case_log (&c);
  g_assert_nonnull (strstr (log, "/api/models/test/listed/revision/main"));
  g_assert_cmpuint (count_in (log, "\"method\": \"HEAD\""), ==, 3);

  /* Offline, the listed files are enough to find it again. */
  g_setenv ("HF_HUB_OFFLINE", "1", TRUE);
  g_autofree char *again = NULL;
  gboolean ok = bn_store_resolve ("listed", &(BnStoreOptions) { .manifest = manifest },
                                  &again, &error);
  g_unsetenv ("HF_HUB_OFFLINE");
  g_assert_no_error (error);
  g_assert_true (ok);
  g_assert_cmpstr (again, ==, dir);
  case_end (&c);
}

/* ---- a full disk ------------------------------------------------------------------- */

/* Mounts a tmpfs of `size` at `dir` in this process's own mount namespace. */
static gboolean
mount_small (const char *dir, const char *size)
{
  g_mkdir_with_parents (dir, 0755);
  g_autofree char *opts = g_strdup_printf ("size=%s", size);
  return mount ("tmpfs", dir, "tmpfs", 0, opts) == 0;
}

static gboolean
private_namespace (void)
{
  return unshare (CLONE_NEWNS) == 0
         && mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
}

/* Whether this process may make a private mount namespace with a tmpfs
 * (root, or CAP_SYS_ADMIN); tried in a throw-away child. */
static gboolean
can_mount_tmpfs (void)
{
  g_autofree char *dir = g_build_filename (fixture_tmp, "probe", NULL);
  g_mkdir_with_parents (dir, 0755);
  pid_t pid = fork ();
  if (pid == 0)
    _exit (private_namespace () && mount_small (dir, "64k") ? 0 : 1);
  int status = 0;
  return pid > 0 && waitpid (pid, &status, 0) == pid && WIFEXITED (status)
         && WEXITSTATUS (status) == 0;
}

static void
test_full_disk (void)
{
  if (!g_test_subprocess ())
    {
      if (!can_mount_tmpfs ())
        {
          g_test_skip ("cannot mount a small tmpfs: needs root or CAP_SYS_ADMIN "
                       "for a private mount namespace (unshare)");
          return;
        }
      g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
      g_test_trap_assert_passed ();
      return;
    }
  g_assert_true (private_namespace ());

  /* Too small from the start: refused before the first byte. */
  Case c = case_start ("full-small", NULL);
  g_assert_true (mount_small (c.hub, "128k"));
  g_autofree char *dir = NULL;
  GError *error = NULL;
  g_assert_false (download ("tiny", NULL, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_IO);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "not enough free disk space"));
  g_clear_error (&error);
  g_autofree char *log = case_log (&c);
  g_assert_null (strstr (log, "\"method\": \"GET\""));

  /* The disk fills up while the files arrive. */
  Case f = case_start ("full-later", NULL);
  g_assert_true (mount_small (f.hub, "1m"));
  Progress p = { .fill = f.hub };
  g_assert_false (download ("tiny", &p, &dir, &error));
  g_assert_error (error, BONSAI_ERROR, BONSAI_ERROR_IO);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, g_strerror (ENOSPC)));
  g_assert_nonnull (strstr (error->message, ".incomplete"));
  g_clear_error (&error);
  for (guint i = 1; i < G_N_ELEMENTS (tiny); i++)
    {
      g_autofree char *blob = blob_path (&f, "models--test--tiny", tiny[i].sha256);
      g_assert_false (g_file_test (blob, G_FILE_TEST_EXISTS));
    }

  /* Space freed, the next call completes. */
  g_autofree char *filler = g_build_filename (f.hub, "filler", NULL);
  g_unlink (filler);
  g_assert_true (download ("tiny", NULL, &dir, &error));
  g_assert_no_error (error);
  assert_complete (dir);
  umount2 (f.hub, MNT_DETACH);
  umount2 (c.hub, MNT_DETACH);
  case_end (&f);
  case_end (&c);
}

/* ---- the command line --------------------------------------------------------------- */

static char **
cli_env (const char *hub, const char *endpoint)
{
  char **env = g_get_environ ();
  g_autofree char *data = g_build_filename (fixture_tmp, "data", NULL);
  env = g_environ_setenv (env, "BONSAI_DATA_DIR", data, TRUE);
  env = g_environ_setenv (env, "HF_HUB_CACHE", hub, TRUE);
  env = g_environ_setenv (env, "HF_ENDPOINT", endpoint, TRUE);
  return g_environ_unsetenv (env, "BONSAI_MODELS");
}

static void
test_cli (void)
{
  if (!bonsai_image)
    {
      g_test_skip ("no bonsai-image given (test-download BONSAI_IMAGE)");
      return;
    }
  Case c = case_start ("cli", NULL);
  g_autofree char *slow = g_strdup_printf ("http://127.0.0.1:%d/f/id=cli,slow=65536", port);
  g_autofree char *fast = g_strdup_printf ("http://127.0.0.1:%d", port);
  g_auto (GStrv) env = cli_env (c.hub, slow);
  const char *argv[] = { bonsai_image, "download", "tiny", NULL };
  GError *error = NULL;

  /* Ctrl-C during a slow download: exit 130, the partial file stays. */
  GPid pid;
  int err_fd;
  g_assert_true (g_spawn_async_with_pipes (NULL, (char **) argv, env, G_SPAWN_DO_NOT_REAP_CHILD,
                                           NULL, NULL, &pid, NULL, NULL, &err_fd, &error));
  g_autofree char *blob = blob_path (&c, "models--test--tiny", tiny[BIG].sha256);
  g_autofree char *inc = g_strconcat (blob, ".incomplete", NULL);
  for (int i = 0; i < 800 && size_of (inc) <= 0; i++)
    g_usleep (25000);
  g_assert_cmpint (size_of (inc), >, 0);
  kill (pid, SIGINT);
  int status = 0;
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_spawn_close_pid (pid);
  char msg[4096] = { 0 };
  for (size_t n = 0; n < sizeof msg - 1;)
    {
      ssize_t r = read (err_fd, msg + n, sizeof msg - 1 - n);
      if (r <= 0)
        break;
      n += r;
    }
  close (err_fd);
  g_test_message ("%s", msg);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 130);
  g_assert_nonnull (strstr (msg, "cancelled"));
  g_assert_nonnull (strstr (msg, "again to resume"));
  g_assert_cmpint (size_of (inc), >, 0);
  g_assert_false (g_file_test (blob, G_FILE_TEST_EXISTS));

  /* Run again: resumes and prints the folder. */
  g_auto (GStrv) env2 = cli_env (c.hub, fast);
  g_autofree char *out = NULL, *err = NULL;
  g_assert_true (g_spawn_sync (NULL, (char **) argv, env2, G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &err, &status, &error));
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  g_autofree char *want = g_build_filename (c.hub, "models--test--tiny", "snapshots",
                                            COMMIT, NULL);
  g_assert_cmpstr (g_strstrip (out), ==, want);
  assert_complete (want);
  g_assert_nonnull (strstr (err, "downloading transformer/"));

  /* `models` lists it, verified from what the download remembered. */
  const char *list[] = { bonsai_image, "models", NULL };
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);
  g_assert_true (g_spawn_sync (NULL, (char **) list, env2, G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &err, &status, &error));
  g_test_message ("%s", out);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  g_assert_true (g_regex_match_simple ("^  tiny +mlx +[0-9.,]+ kB +verified \\(5 files\\)$",
                                       out, G_REGEX_MULTILINE, 0));
  g_assert_nonnull (strstr (out, want));
  g_assert_nonnull (strstr (out, "Hugging Face cache"));
  g_assert_true (g_regex_match_simple ("^  listed +> ", out, G_REGEX_MULTILINE, 0));
  case_end (&c);
}

int
main (int argc, char **argv)
{
  /* The CLI to test, when given, comes before GTest's options. */
  if (argc > 1 && argv[1][0] != '-')
    {
      bonsai_image = argv[1];
      argv[1] = argv[0];
      argc--;
      argv++;
    }
  g_test_init (&argc, &argv, NULL);
  fixture_init ("download");
  log_path = g_build_filename (fixture_tmp, "requests.log", NULL);
  g_autofree char *srv = g_build_filename (fixture_tmp, "srv", NULL);
  make_repos (srv);
  start_server (srv);
  /* Nothing from the environment of whoever runs the tests. */
  g_autofree char *no_token = g_build_filename (fixture_tmp, "no-token", NULL);
  g_setenv ("HF_TOKEN_PATH", no_token, TRUE);
  g_unsetenv ("HF_TOKEN");
  g_unsetenv ("HF_HUB_OFFLINE");
  g_unsetenv ("BONSAI_MODELS");

  g_test_add_func ("/download/complete", test_complete);
  g_test_add_data_func ("/download/cut-10", GINT_TO_POINTER (10), test_cut);
  g_test_add_data_func ("/download/cut-50", GINT_TO_POINTER (50), test_cut);
  g_test_add_data_func ("/download/cut-99", GINT_TO_POINTER (99), test_cut);
  g_test_add_func ("/download/ignored-range", test_ignored_range);
  g_test_add_func ("/download/wrong-sha256", test_wrong_sha256);
  g_test_add_func ("/download/wrong-size", test_wrong_size);
  g_test_add_func ("/download/http-errors", test_http_errors);
  g_test_add_func ("/download/token", test_token);
  g_test_add_data_func ("/download/cancel-and-resume", GINT_TO_POINTER (0), test_cancel_and_resume);
  g_test_add_data_func ("/download/cancel-flag-and-resume", GINT_TO_POINTER (1),
                        test_cancel_and_resume);
  g_test_add_func ("/download/offline", test_offline);
  g_test_add_func ("/download/hub-listing", test_hub_listing);
  g_test_add_func ("/download/full-disk", test_full_disk);
  g_test_add_func ("/download/cli", test_cli);
  int rc = g_test_run ();
  stop_server ();
  bn_manifest_free (manifest);
  for (guint i = 0; i < G_N_ELEMENTS (tiny); i++)
    {
      g_free (tiny[i].data);
      g_free (tiny[i].sha256);
    }
  fixture_done ();
  g_free (log_path);
  return rc;
}
