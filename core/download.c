/* download.c — fetching a model's files into the Hugging Face cache with
 * libcurl: resume, retries, checksums, atomic renames (see download.h). */
#include "download.h"
#include "safetensors.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define MAX_ATTEMPTS 5
#define MAX_WAIT_MS 60000
#define API_MAX_BYTES (16 << 20)

/* ---- one file of the model ------------------------------------------------------ */

typedef struct {
  char *path;      /* in the repository */
  gint64 size;     /* -1 while unknown */
  char *sha256;    /* expected, or NULL */
  char *git_sha1;  /* the git blob id expected when sha256 is unknown */
  char *blob;      /* its name in blobs/ */
  gboolean fetch;  /* its blob must be downloaded */
} Item;

static void
item_free (gpointer p)
{
  Item *it = p;
  g_free (it->path);
  g_free (it->sha256);
  g_free (it->git_sha1);
  g_free (it->blob);
  g_free (it);
}

typedef struct {
  const BnStoreModel *model;
  char *endpoint;
  char *token;
  char *commit;
  char *repo_dir, *blobs_dir, *snap_dir;
  GPtrArray *items;  /* of Item */
  gint64 done, total;
  BonsaiDownloadFunc progress;
  gpointer user_data;
  const gint *cancel;
  gboolean stopped;  /* cancelled by *cancel or the progress callback */
  int backoff_ms;
  CURL *curl;
} Job;

/* ---- HTTP ------------------------------------------------------------------------- */

/* Headers of the final response, and the Hub's own headers from any response
 * of a redirect chain (the CDN's do not carry them). */
typedef struct {
  char *etag, *content_range, *retry_after, *location;
  gint64 content_length;
  char *linked_etag, *repo_commit;
  gint64 linked_size;
} Headers;

static void
headers_clear (Headers *h)
{
  g_free (h->etag);
  g_free (h->content_range);
  g_free (h->retry_after);
  g_free (h->location);
  g_free (h->linked_etag);
  g_free (h->repo_commit);
  memset (h, 0, sizeof *h);
  h->content_length = h->linked_size = -1;
}

static void
set_once (char **slot, const char *value)
{
  if (!*slot)
    *slot = g_strdup (value);
}

static size_t
header_cb (char *data, size_t size, size_t n, void *user)
{
  Headers *h = user;
  size_t len = size * n;
  g_autofree char *line = g_strndup (data, len);
  g_strstrip (line);
  if (g_str_has_prefix (line, "HTTP/"))
    {
      /* A new response of the chain: its own headers start afresh. */
      g_clear_pointer (&h->etag, g_free);
      g_clear_pointer (&h->content_range, g_free);
      g_clear_pointer (&h->retry_after, g_free);
      g_clear_pointer (&h->location, g_free);
      h->content_length = -1;
      return len;
    }
  char *colon = strchr (line, ':');
  if (!colon)
    return len;
  *colon = '\0';
  char *value = g_strstrip (colon + 1);
  const char *key = line;
  if (!g_ascii_strcasecmp (key, "ETag"))
    set_once (&h->etag, value);
  else if (!g_ascii_strcasecmp (key, "Content-Range"))
    set_once (&h->content_range, value);
  else if (!g_ascii_strcasecmp (key, "Retry-After"))
    set_once (&h->retry_after, value);
  else if (!g_ascii_strcasecmp (key, "Location"))
    set_once (&h->location, value);
  else if (!g_ascii_strcasecmp (key, "Content-Length"))
    h->content_length = g_ascii_strtoll (value, NULL, 10);
  else if (!g_ascii_strcasecmp (key, "X-Linked-Etag"))
    set_once (&h->linked_etag, value);
  else if (!g_ascii_strcasecmp (key, "X-Linked-Size"))
    h->linked_size = g_ascii_strtoll (value, NULL, 10);
  else if (!g_ascii_strcasecmp (key, "X-Repo-Commit"))
    set_once (&h->repo_commit, value);
  return len;
}

static void
curl_init_once (void)
{
  static gsize done = 0;
  /* libcurl's global state; set up once for the process, never torn down
   * (other threads may still use it). */
  if (g_once_init_enter (&done))
    {
      curl_global_init (CURL_GLOBAL_DEFAULT);
      g_once_init_leave (&done, 1);
    }
}

static int
xferinfo_cb (void *user, curl_off_t dltotal, curl_off_t dlnow,
             curl_off_t ultotal, curl_off_t ulnow)
{
  Job *job = user;
  if (job->cancel && g_atomic_int_get (job->cancel))
    job->stopped = TRUE;
  return job->stopped;
}

/* Sets the options every request shares; the caller adds the rest. */
static void
setup (Job *job, const char *url, struct curl_slist *headers, Headers *h,
       char *errbuf)
{
  CURL *c = job->curl;
  curl_easy_reset (c);
  curl_easy_setopt (c, CURLOPT_URL, url);
  curl_easy_setopt (c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt (c, CURLOPT_USERAGENT, "bonsai-image/" BONSAI_VERSION_STRING);
  curl_easy_setopt (c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt (c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT, 30L);
  /* A connection that stalls (under 1 KB/s for a minute) is retried. */
  curl_easy_setopt (c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt (c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt (c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt (c, CURLOPT_HEADERDATA, h);
  curl_easy_setopt (c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt (c, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
  curl_easy_setopt (c, CURLOPT_XFERINFODATA, job);
  curl_easy_setopt (c, CURLOPT_ERRORBUFFER, errbuf);
  errbuf[0] = '\0';
  headers_clear (h);
}

static struct curl_slist *
auth_headers (const Job *job)
{
  if (!job->token)
    return NULL;
  g_autofree char *auth = g_strdup_printf ("Authorization: Bearer %s", job->token);
  /* libcurl does not pass a custom Authorization header on to another host
   * when it follows a redirect, so the token never reaches the CDN. */
  return curl_slist_append (NULL, auth);
}

/* Adds to the end of an error's message. */
static void G_GNUC_PRINTF (2, 3)
append_error (GError *error, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *tail = g_strdup_vprintf (format, ap);
  va_end (ap);
  char *message = g_strconcat (error->message, tail, NULL);
  g_free (error->message);
  error->message = message;
}

typedef enum { DONE, TRANSIENT, FATAL } Outcome;

/* Classifies a finished request; on TRANSIENT and FATAL sets error naming
 * `what` (a file or the repository), the status and the URL. */
static Outcome
classify (Job *job, CURLcode res, const char *what, const char *url,
          const char *errbuf, GError **error)
{
  long status = 0;
  curl_easy_getinfo (job->curl, CURLINFO_RESPONSE_CODE, &status);
  if (res == CURLE_OK)
    return DONE;
  if (res == CURLE_HTTP_RETURNED_ERROR)
    {
      if (status == 404)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                       "%s: not found (HTTP 404) at %s", what, url);
          return FATAL;
        }
      if (status == 401 || status == 403)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NETWORK,
                       "%s: access denied (HTTP %ld) at %s: %s", what, status, url,
                       job->token ? "the token in HF_TOKEN has no access to "
                                    "this repository"
                                  : "the repository needs a Hugging Face token "
                                    "with access (set HF_TOKEN)");
          return FATAL;
        }
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NETWORK,
                   "%s: %s (HTTP %ld) at %s", what,
                   status >= 500 ? "server error" : status == 429 ? "too many requests"
                                                  : "refused",
                   status, url);
      return status >= 500 || status == 429 ? TRANSIENT : FATAL;
    }
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NETWORK, "%s: %s (%s)", what,
               errbuf[0] ? errbuf : curl_easy_strerror (res), url);
  switch (res)
    {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return TRANSIENT;
    default:
      return FATAL;
    }
}

static gboolean
cancelled_error (Job *job, const char *what, GError **error)
{
  if (!job->stopped)
    return FALSE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED,
               "download of %s cancelled", what);
  return TRUE;
}

/* Waits before retry `attempt` (1-based): the backoff doubled each time, or
 * longer when the server asked (Retry-After), in slices so a cancel is seen. */
static void
wait_before_retry (Job *job, int attempt, const Headers *h)
{
  gint64 ms = (gint64) job->backoff_ms << (attempt - 1);
  if (h->retry_after)
    ms = MAX (ms, g_ascii_strtoll (h->retry_after, NULL, 10) * 1000);
  ms = MIN (ms, MAX_WAIT_MS);
  for (gint64 t = 0; t < ms && !job->stopped; t += 50)
    {
      g_usleep (MIN (50, ms - t) * 1000);
      if (job->cancel && g_atomic_int_get (job->cancel))
        job->stopped = TRUE;
    }
}

static size_t
body_cb (char *data, size_t size, size_t n, void *user)
{
  GString *body = user;
  if (body->len + size * n > API_MAX_BYTES)
    return 0;
  g_string_append_len (body, data, size * n);
  return size * n;
}

/* A GET (body not NULL) or HEAD request of `url` with retries; the final
 * response's headers in h.  A HEAD follows only redirects within the host
 * (a renamed repository), as huggingface_hub does: an LFS file's redirect
 * to its CDN already carries what a HEAD asks for, and the CDN's signed
 * URLs may refuse a HEAD. */
static gboolean
request (Job *job, const char *url, const char *what, GString *body,
         Headers *h, GError **error)
{
  struct curl_slist *hdrs = auth_headers (job);
  char errbuf[CURL_ERROR_SIZE];
  gboolean ok = FALSE;
  g_autofree char *current = g_strdup (url);
  int hops = 0;
  for (int attempt = 1;; attempt++)
    {
      g_clear_error (error);
      setup (job, current, hdrs, h, errbuf);
      if (body)
        {
          g_string_truncate (body, 0);
          curl_easy_setopt (job->curl, CURLOPT_WRITEFUNCTION, body_cb);
          curl_easy_setopt (job->curl, CURLOPT_WRITEDATA, body);
        }
      else
        {
          curl_easy_setopt (job->curl, CURLOPT_NOBODY, 1L);
          curl_easy_setopt (job->curl, CURLOPT_FOLLOWLOCATION, 0L);
        }
      CURLcode res = curl_easy_perform (job->curl);
      if (cancelled_error (job, what, error))
        break;
      Outcome o = classify (job, res, what, current, errbuf, error);
      char *next = NULL;
      if (o == DONE && !body && h->location && h->location[0] == '/'
          && !h->linked_etag && hops++ < 10
          && curl_easy_getinfo (job->curl, CURLINFO_REDIRECT_URL, &next) == CURLE_OK
          && next)
        {
          g_free (current);
          current = g_strdup (next);
          attempt = 0;
          continue;
        }
      if (o == DONE)
        {
          ok = TRUE;
          break;
        }
      if (o == FATAL || attempt == MAX_ATTEMPTS)
        {
          if (o == TRANSIENT)
            append_error (*error, " (after %d attempts)", attempt);
          break;
        }
      g_debug ("attempt %d failed: %s; retrying", attempt, (*error)->message);
      wait_before_retry (job, attempt, h);
      if (cancelled_error (job, what, error))
        break;
    }
  curl_slist_free_all (hdrs);
  return ok;
}

static char *
file_url (const Job *job, const char *path)
{
  g_autofree char *p = g_uri_escape_string (path, "/", FALSE);
  g_autofree char *rev = g_uri_escape_string (job->commit, NULL, FALSE);
  return g_strdup_printf ("%s/%s/resolve/%s/%s", job->endpoint, job->model->repo, rev, p);
}

/* ---- what to fetch ---------------------------------------------------------------- */

/* A string member, or NULL when absent or not a string (json-glib's own
 * getters complain about a member of another type, and this JSON comes from
 * the network). */
static const char *
json_string (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
           ? json_node_get_string (n) : NULL;
}

static Item *
find_item (Job *job, const char *path)
{
  for (guint i = 0; i < job->items->len; i++)
    if (!strcmp (((Item *) job->items->pdata[i])->path, path))
      return job->items->pdata[i];
  return NULL;
}

/* Asks the Hub for the revision's commit and, when the manifest does not
 * list every file, for the file list. */
static gboolean
fetch_repo_info (Job *job, GError **error)
{
  g_autofree char *rev = g_uri_escape_string (job->model->revision, NULL, FALSE);
  g_autofree char *url = g_strdup_printf ("%s/api/models/%s/revision/%s",
                                          job->endpoint, job->model->repo, rev);
  g_autoptr (GString) body = g_string_new (NULL);
  Headers h = { 0 };
  gboolean ok = request (job, url, job->model->repo, body, &h, error);
  headers_clear (&h);
  if (!ok)
    return FALSE;
  g_autoptr (JsonParser) parser = json_parser_new ();
  /* A server's reply is untrusted: the byte checks refuse what could
   * exhaust the recursive parser's stack. */
  JsonNode *root = bn_json_check (url, body->str, (gssize) body->len, NULL)
                     && json_parser_load_from_data (parser, body->str, body->len, NULL)
                     ? json_parser_get_root (parser) : NULL;
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  const char *sha = json_string (o, "sha");
  JsonNode *sib = o ? json_object_get_member (o, "siblings") : NULL;
  if (!bn_store_is_commit (sha) || !sib || !JSON_NODE_HOLDS_ARRAY (sib))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                   "%s: the Hub's answer at %s has no commit and file list",
                   job->model->repo, url);
      return FALSE;
    }
  job->commit = g_strdup (sha);
  if (job->model->complete)
    return TRUE;
  JsonArray *arr = json_node_get_array (sib);
  for (guint i = 0; i < json_array_get_length (arr); i++)
    {
      JsonNode *en = json_array_get_element (arr, i);
      JsonObject *e = JSON_NODE_HOLDS_OBJECT (en) ? json_node_get_object (en) : NULL;
      const char *name = json_string (e, "rfilename");
      g_auto (GStrv) parts = name ? g_strsplit (name, "/", -1) : NULL;
      gboolean safe = name && *name && name[0] != '/' && !strchr (name, '\\');
      for (char **p = parts; safe && *p; p++)
        safe = **p && strcmp (*p, ".") && strcmp (*p, "..");
      if (!safe)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                       "%s: the Hub lists a file with an unsafe name (%s)",
                       job->model->repo, name ? name : "none");
          return FALSE;
        }
      if (!find_item (job, name))
        {
          Item *it = g_new0 (Item, 1);
          it->path = g_strdup (name);
          it->size = -1;
          g_ptr_array_add (job->items, it);
        }
    }
  return TRUE;
}

/* An ETag without quotes and weak prefix, lower case. */
static char *
normalise_etag (const char *etag)
{
  if (!etag)
    return NULL;
  if (g_str_has_prefix (etag, "W/"))
    etag += 2;
  char *e = g_ascii_strdown (etag, -1);
  size_t len = strlen (e);
  if (len >= 2 && e[0] == '"' && e[len - 1] == '"')
    {
      memmove (e, e + 1, len - 2);
      e[len - 2] = '\0';
    }
  return e;
}

static gboolean
all_hex (const char *s, size_t len)
{
  if (!s || strlen (s) != len)
    return FALSE;
  for (; *s; s++)
    if (!g_ascii_isxdigit (*s))
      return FALSE;
  return TRUE;
}

/* Size and checksum from a HEAD request, as huggingface_hub reads them:
 * X-Linked-Etag (an LFS file's sha256) and X-Linked-Size, else ETag (a
 * regular file's git blob id) and Content-Length. */
static gboolean
fetch_metadata (Job *job, Item *it, GError **error)
{
  g_autofree char *url = file_url (job, it->path);
  Headers h = { 0 };
  gboolean ok = request (job, url, it->path, NULL, &h, error);
  g_autofree char *linked = normalise_etag (h.linked_etag);
  g_autofree char *etag = normalise_etag (h.etag);
  gint64 size = h.linked_size >= 0 ? h.linked_size : h.content_length;
  headers_clear (&h);
  if (!ok)
    return FALSE;
  if (it->size < 0)
    it->size = size;
  if (!it->sha256 && all_hex (linked, 64))
    it->sha256 = g_steal_pointer (&linked);
  else if (!it->sha256 && !linked && all_hex (etag, 40))
    it->git_sha1 = g_steal_pointer (&etag);
  else if (!it->sha256)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CHECKSUM,
                   "%s: the server gives no checksum for it (no X-Linked-Etag "
                   "sha256 nor git ETag) at %s", it->path, url);
      return FALSE;
    }
  return TRUE;
}

/* ---- files ---------------------------------------------------------------------------- */

static gboolean
io_error (GError **error, const char *what, const char *path)
{
  int e = errno;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot %s %s: %s", what,
               path, g_strerror (e));
  return FALSE;
}

static gboolean
mkdirs (const char *dir, GError **error)
{
  return g_mkdir_with_parents (dir, 0755) == 0 || io_error (error, "create", dir);
}

/* snapshots/<commit>/<path> → ../../blobs/<blob> (one more ../ per folder
 * in path), made under a temporary name and renamed into place. */
static gboolean
link_item (Job *job, const Item *it, GError **error)
{
  g_autofree char *pointer = g_build_filename (job->snap_dir, it->path, NULL);
  g_autofree char *parent = g_path_get_dirname (pointer);
  if (!mkdirs (parent, error))
    return FALSE;
  g_autoptr (GString) target = g_string_new ("../../");
  for (const char *p = it->path; *p; p++)
    if (*p == '/')
      g_string_append (target, "../");
  g_string_append_printf (target, "blobs/%s", it->blob);
  g_autofree char *tmp = g_strdup_printf ("%s.tmp-%d", pointer, (int) getpid ());
  unlink (tmp);
  if (symlink (target->str, tmp) != 0)
    return io_error (error, "create the link", tmp);
  if (rename (tmp, pointer) != 0)
    {
      io_error (error, "rename into place", pointer);
      unlink (tmp);
      return FALSE;
    }
  return TRUE;
}

static gint64
file_size (const char *path)
{
  struct stat st;
  return stat (path, &st) == 0 && S_ISREG (st.st_mode) ? st.st_size : -1;
}

/* ---- one blob --------------------------------------------------------------------------- */

typedef struct {
  Job *job;
  Item *it;
  int fd;
  const char *incomplete;
  gint64 have;          /* bytes in the .incomplete file */
  gint64 start;         /* the Range asked for starts here */
  gboolean checked;     /* the response's status was looked at */
  gboolean too_long;    /* the server sent more than the file's size */
  gboolean bad_range;   /* a 206 answer for another range than asked */
  gboolean discard;     /* the bytes are wrong: delete the partial file */
  int write_errno;
  GChecksum *sha256, *git;
} Xfer;

static void
checksums_reset (Xfer *x)
{
  g_checksum_reset (x->sha256);
  if (x->git)
    {
      g_checksum_reset (x->git);
      g_autofree char *head = g_strdup_printf ("blob %" G_GINT64_FORMAT, x->it->size);
      /* The git blob id hashes "blob <size>\0" and then the content. */
      g_checksum_update (x->git, (const guchar *) head, strlen (head) + 1);
    }
}

static gboolean
write_all (int fd, const char *data, size_t n)
{
  while (n > 0)
    {
      ssize_t w = write (fd, data, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        {
          if (w == 0)
            errno = ENOSPC;
          return FALSE;
        }
      data += w;
      n -= (size_t) w;
    }
  return TRUE;
}

/* Starts the file afresh: the server sends it from its first byte. */
static gboolean
restart_file (Xfer *x)
{
  if (ftruncate (x->fd, 0) != 0 || lseek (x->fd, 0, SEEK_SET) != 0)
    {
      x->write_errno = errno;
      return FALSE;
    }
  x->job->done -= x->have;
  x->have = 0;
  checksums_reset (x);
  return TRUE;
}

static size_t
blob_write_cb (char *data, size_t size, size_t n, void *user)
{
  Xfer *x = user;
  size_t len = size * n;
  if (!x->checked)
    {
      long status = 0;
      curl_easy_getinfo (x->job->curl, CURLINFO_RESPONSE_CODE, &status);
      x->checked = TRUE;
      if (status == 200 && x->start > 0)
        {
          g_debug ("%s: the server ignored the range; fetching it whole", x->it->path);
          if (!restart_file (x))
            return 0;
        }
      else if (status == 206 && x->start != x->have)
        {
          x->bad_range = TRUE;
          return 0;
        }
    }
  /* A cancel stops before the next byte lands (the transfer may outrun
   * libcurl's progress calls). */
  if (x->job->cancel && g_atomic_int_get (x->job->cancel))
    {
      x->job->stopped = TRUE;
      return 0;
    }
  if (x->it->size >= 0 && x->have + (gint64) len > x->it->size)
    {
      x->too_long = TRUE;
      return 0;
    }
  if (!write_all (x->fd, data, len))
    {
      x->write_errno = errno;
      return 0;
    }
  g_checksum_update (x->sha256, (const guchar *) data, len);
  if (x->git)
    g_checksum_update (x->git, (const guchar *) data, len);
  x->have += len;
  x->job->done += len;
  Job *job = x->job;
  if (job->progress && !job->progress (x->it->path, job->done, job->total, job->user_data))
    job->stopped = TRUE;
  return job->stopped ? 0 : len;
}

/* Hashes the bytes already in the .incomplete file (a resumed download). */
static gboolean
hash_existing (Xfer *x, GError **error)
{
  checksums_reset (x);
  if (lseek (x->fd, 0, SEEK_SET) != 0)
    return io_error (error, "read", x->incomplete);
  enum { CHUNK = 1 << 20 };
  g_autofree char *buf = g_malloc (CHUNK);
  gint64 total = 0;
  for (;;)
    {
      ssize_t r = read (x->fd, buf, CHUNK);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return io_error (error, "read", x->incomplete);
      if (r == 0)
        break;
      g_checksum_update (x->sha256, (guchar *) buf, r);
      if (x->git)
        g_checksum_update (x->git, (guchar *) buf, r);
      total += r;
    }
  x->have = total;
  return TRUE;
}

static gboolean
cancelled_blob (Xfer *x, GError **error)
{
  if (!x->job->stopped)
    return FALSE;
  g_clear_error (error);
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED,
               "download of %s cancelled; %" G_GINT64_FORMAT " bytes kept in %s "
               "for resuming", x->it->path, x->have, x->incomplete);
  return TRUE;
}

/* One GET from x->have to the end; DONE, TRANSIENT or FATAL with error. */
static Outcome
get_once (Xfer *x, const char *url, struct curl_slist *hdrs, Headers *h,
          GError **error)
{
  Job *job = x->job;
  char errbuf[CURL_ERROR_SIZE];
  setup (job, url, hdrs, h, errbuf);
  curl_easy_setopt (job->curl, CURLOPT_WRITEFUNCTION, blob_write_cb);
  curl_easy_setopt (job->curl, CURLOPT_WRITEDATA, x);
  x->checked = FALSE;
  x->start = x->have;
  if (x->have > 0)
    {
      g_autofree char *range = g_strdup_printf ("%" G_GINT64_FORMAT "-", x->have);
      curl_easy_setopt (job->curl, CURLOPT_RANGE, range);
    }
  CURLcode res = curl_easy_perform (job->curl);
  if (cancelled_blob (x, error))
    return FATAL;
  if (x->write_errno)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "cannot write %s (%s): %s",
                   x->incomplete, x->it->path, g_strerror (x->write_errno));
      return FATAL;
    }
  if (x->too_long)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CHECKSUM,
                   "%s: the server sent more than its %" G_GINT64_FORMAT
                   " bytes (%s); the download was discarded", x->it->path,
                   x->it->size, url);
      x->discard = TRUE;
      return FATAL;
    }
  if (x->bad_range)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NETWORK,
                   "%s: the server answered another range (%s) than bytes %"
                   G_GINT64_FORMAT "- (%s)", x->it->path,
                   h->content_range ? h->content_range : "none", x->start, url);
      x->bad_range = FALSE;
      /* Fetched whole on the next attempt. */
      return restart_file (x) ? TRANSIENT : FATAL;
    }
  Outcome o = classify (job, res, x->it->path, url, errbuf, error);
  if (o == DONE && x->it->size >= 0 && x->have != x->it->size)
    {
      /* The whole answer arrived (a cut one is a curl error): the server's
       * file is not the one expected. */
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CHECKSUM,
                   "%s: the server's file has %" G_GINT64_FORMAT " bytes, "
                   "expected %" G_GINT64_FORMAT " (%s); the download was discarded",
                   x->it->path, x->have, x->it->size, url);
      x->discard = TRUE;
      return FATAL;
    }
  return o;
}

/* Checks the finished .incomplete file against the expected checksum. */
static gboolean
check_sum (Xfer *x, GError **error)
{
  const char *got = g_checksum_get_string (x->sha256);
  const char *want = x->it->sha256;
  if (!want)
    {
      got = g_checksum_get_string (x->git);
      want = x->it->git_sha1;
    }
  if (!strcmp (got, want))
    return TRUE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CHECKSUM,
               "%s: the download's %s is %s, expected %s; it was discarded",
               x->it->path, x->it->sha256 ? "sha256" : "git blob id", got, want);
  return FALSE;
}

static gboolean
fetch_blob (Job *job, Item *it, GError **error)
{
  g_autofree char *blob = g_build_filename (job->blobs_dir, it->blob, NULL);
  g_autofree char *incomplete = g_strconcat (blob, ".incomplete", NULL);
  g_autofree char *url = file_url (job, it->path);
  int fd = open (incomplete, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return io_error (error, "create", incomplete);
  /* Two downloads of one blob would interleave their bytes. */
  if (flock (fd, LOCK_EX | LOCK_NB) != 0)
    {
      close (fd);
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO,
                   "%s is being downloaded by another process (%s)", it->path,
                   incomplete);
      return FALSE;
    }
  Xfer x = { .job = job, .it = it, .fd = fd, .incomplete = incomplete,
             .sha256 = g_checksum_new (G_CHECKSUM_SHA256),
             .git = it->sha256 ? NULL : g_checksum_new (G_CHECKSUM_SHA1) };
  gboolean ok = hash_existing (&x, error);
  if (ok)
    job->done += x.have;
  if (ok && it->size >= 0 && x.have > it->size)
    ok = restart_file (&x) || io_error (error, "truncate", incomplete);

  struct curl_slist *hdrs = auth_headers (job);
  Headers h = { 0 };
  for (int attempt = 1; ok && !(it->size >= 0 && x.have == it->size); attempt++)
    {
      gint64 before = x.have;
      g_clear_error (error);
      Outcome o = get_once (&x, url, hdrs, &h, error);
      if (o == DONE)
        break;
      /* A connection that delivered something starts the count afresh. */
      if (x.have > before)
        attempt = 1;
      if (o == FATAL || attempt >= MAX_ATTEMPTS)
        {
          if (o == TRANSIENT)
            append_error (*error, " (after %d attempts%s)", attempt,
                          x.have ? "; the part received is kept for resuming" : "");
          ok = FALSE;
          break;
        }
      g_debug ("%s; resuming from byte %" G_GINT64_FORMAT, (*error)->message, x.have);
      wait_before_retry (job, attempt, &h);
      if (cancelled_blob (&x, error))
        ok = FALSE;
    }
  headers_clear (&h);
  curl_slist_free_all (hdrs);

  if (ok && !check_sum (&x, error))
    {
      unlink (incomplete);
      ok = FALSE;
    }
  else if (!ok && (x.have == 0 || x.discard))
    unlink (incomplete);  /* nothing worth resuming */
  if (ok && fsync (fd) != 0)
    ok = io_error (error, "write", incomplete);
  if (ok && rename (incomplete, blob) != 0)
    ok = io_error (error, "rename into place", blob);
  if (ok)
    bn_store_remember_sha256 (job->repo_dir, blob, g_checksum_get_string (x.sha256));
  g_checksum_free (x.sha256);
  if (x.git)
    g_checksum_free (x.git);
  close (fd);
  return ok;
}

/* ---- the model -------------------------------------------------------------------------- */

static gboolean
check_space (Job *job, GError **error)
{
  gint64 need = 0;
  g_autoptr (GHashTable) counted = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < job->items->len; i++)
    {
      Item *it = job->items->pdata[i];
      if (!it->fetch || it->size < 0 || !g_hash_table_add (counted, it->blob))
        continue;
      g_autofree char *inc = g_strdup_printf ("%s/%s.incomplete", job->blobs_dir, it->blob);
      need += it->size - CLAMP (file_size (inc), 0, it->size);
    }
  struct statvfs vfs;
  if (statvfs (job->blobs_dir, &vfs) != 0)
    return io_error (error, "check the free space of", job->blobs_dir);
  gint64 avail = (gint64) vfs.f_bavail * (gint64) vfs.f_frsize;
  if (need <= avail)
    return TRUE;
  g_autofree char *n = g_format_size (need);
  g_autofree char *a = g_format_size (avail);
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO,
               "not enough free disk space for %s in %s: it needs %s more, "
               "%s is free", job->model->name, job->blobs_dir, n, a);
  return FALSE;
}

/* Decides per file: present in the snapshot, its blob already there (link
 * it), or to fetch; and counts the bytes done and in total, each blob once. */
static gboolean
plan (Job *job, GError **error)
{
  g_autoptr (GHashTable) counted = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < job->items->len; i++)
    {
      Item *it = job->items->pdata[i];
      g_autofree char *pointer = g_build_filename (job->snap_dir, it->path, NULL);
      gint64 have = file_size (pointer);
      if (have >= 0 && (it->size < 0 || have == it->size))
        {
          job->total += have;
          job->done += have;
          continue;
        }
      if ((!it->sha256 || it->size < 0) && !fetch_metadata (job, it, error))
        return FALSE;
      it->blob = g_strdup (it->sha256 ? it->sha256 : it->git_sha1);
      g_autofree char *blob = g_build_filename (job->blobs_dir, it->blob, NULL);
      gint64 bsize = file_size (blob);
      gboolean first = g_hash_table_add (counted, it->blob);
      if (bsize >= 0 && (it->size < 0 || bsize == it->size))
        {
          if (!link_item (job, it, error))
            return FALSE;
          job->total += first ? bsize : 0;
          job->done += first ? bsize : 0;
          continue;
        }
      it->fetch = first;
      job->total += first ? MAX (it->size, 0) : 0;
    }
  return check_space (job, error);
}

static gboolean
run (Job *job, const char *hub, char **out_dir, GError **error)
{
  const BnStoreModel *model = job->model;
  if (!bn_store_is_commit (model->revision) || !model->complete)
    {
      if (!fetch_repo_info (job, error))
        return FALSE;
    }
  else
    job->commit = g_strdup (model->revision);

  job->repo_dir = bn_store_repo_dir (hub, model->repo);
  job->blobs_dir = g_build_filename (job->repo_dir, "blobs", NULL);
  job->snap_dir = g_build_filename (job->repo_dir, "snapshots", job->commit, NULL);
  /* The snapshot folder appears with its first file (link_item), so a
   * failed first download leaves no empty snapshot behind. */
  if (!mkdirs (job->blobs_dir, error) || !plan (job, error))
    return FALSE;

  for (guint i = 0; i < job->items->len; i++)
    {
      Item *it = job->items->pdata[i];
      if (!it->fetch)
        continue;
      if (!fetch_blob (job, it, error))
        return FALSE;
      /* Every file with this content (a tokenizer in two folders) links to it. */
      for (guint j = 0; j < job->items->len; j++)
        {
          Item *o = job->items->pdata[j];
          if (o->blob && !strcmp (o->blob, it->blob) && !link_item (job, o, error))
            return FALSE;
        }
    }
  if (!mkdirs (job->snap_dir, error))
    return FALSE;
  if (!bn_store_is_commit (model->revision))
    {
      g_autofree char *ref = g_build_filename (job->repo_dir, "refs", model->revision, NULL);
      g_autofree char *refdir = g_path_get_dirname (ref);
      g_autoptr (GError) local = NULL;
      if (!mkdirs (refdir, error))
        return FALSE;
      if (!g_file_set_contents (ref, job->commit, -1, &local))
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_IO, "%s", local->message);
          return FALSE;
        }
    }
  *out_dir = g_strdup (job->snap_dir);
  return TRUE;
}

/* The token huggingface_hub would use: HF_TOKEN, else the file HF_TOKEN_PATH
 * or HF_HOME/token (what `huggingface-cli login` writes). */
static char *
find_token (void)
{
  const char *env = g_getenv ("HF_TOKEN");
  if (env && *env)
    return g_strdup (env);
  const char *path = g_getenv ("HF_TOKEN_PATH");
  const char *home = g_getenv ("HF_HOME");
  const char *xdg = g_getenv ("XDG_CACHE_HOME");
  g_autofree char *file =
    path && *path ? g_strdup (path)
    : home && *home ? g_build_filename (home, "token", NULL)
    : xdg && *xdg ? g_build_filename (xdg, "huggingface", "token", NULL)
    : g_build_filename (g_get_home_dir (), ".cache", "huggingface", "token", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents (file, &text, NULL, NULL))
    return NULL;
  g_strstrip (text);
  return *text ? g_steal_pointer (&text) : NULL;
}

gboolean
bn_download_model (const BnStoreModel *model, const char *hub,
                   BonsaiDownloadFunc progress, gpointer user_data,
                   const gint *cancel, char **out_dir, GError **error)
{
  *out_dir = NULL;
  if (bn_store_offline ())
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "offline (HF_HUB_OFFLINE is set): model %s (%s) is not in the "
                   "cache at %s", model->name, model->repo, hub);
      return FALSE;
    }
  curl_init_once ();
  Job job = { .model = model, .progress = progress, .user_data = user_data,
              .cancel = cancel, .backoff_ms = 1000 };
  const char *endpoint = g_getenv ("HF_ENDPOINT");
  job.endpoint = g_strdup (endpoint && *endpoint ? endpoint : DEFAULT_ENDPOINT);
  while (g_str_has_suffix (job.endpoint, "/"))
    job.endpoint[strlen (job.endpoint) - 1] = '\0';
  const char *backoff = g_getenv ("BONSAI_DOWNLOAD_BACKOFF_MS");
  if (backoff && *backoff)
    job.backoff_ms = (int) CLAMP (g_ascii_strtoll (backoff, NULL, 10), 0, MAX_WAIT_MS);
  job.token = find_token ();
  job.items = g_ptr_array_new_with_free_func (item_free);
  for (guint i = 0; i < model->files->len; i++)
    {
      const BnStoreFile *f = model->files->pdata[i];
      Item *it = g_new0 (Item, 1);
      it->path = g_strdup (f->path);
      it->size = f->size;
      it->sha256 = g_strdup (f->sha256);
      g_ptr_array_add (job.items, it);
    }
  job.curl = curl_easy_init ();
  gboolean ok = job.curl != NULL;
  if (!ok)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                 "cannot start a download (libcurl)");
  else
    ok = run (&job, hub, out_dir, error);
  if (job.curl)
    curl_easy_cleanup (job.curl);
  g_ptr_array_unref (job.items);
  g_free (job.endpoint);
  g_free (job.token);
  g_free (job.commit);
  g_free (job.repo_dir);
  g_free (job.blobs_dir);
  g_free (job.snap_dir);
  return ok;
}
