/* download.h — fetching a model into the Hugging Face cache with libcurl
 * (internal).
 *
 * URLs are {HF_ENDPOINT or https://huggingface.co}/{repo}/resolve/{rev}/
 * {path}; HF_TOKEN (else the token file huggingface-cli login writes) adds
 * "Authorization: Bearer"; redirects are followed.  The layout is the one
 * huggingface_hub writes, so either tool reuses what the other fetched:
 *   models--ORG--NAME/blobs/<sha256 or git etag>     the content
 *   models--ORG--NAME/blobs/<blob>.incomplete         a partial download
 *   models--ORG--NAME/snapshots/<commit>/<path>       → ../../blobs/<blob>
 *   models--ORG--NAME/refs/<branch>                   the commit
 * A partial file is resumed with Range (and restarted cleanly when the
 * server ignores Range); transient failures (connection lost, timeouts,
 * HTTP 5xx and 429) are retried with exponential backoff, 4xx answers are
 * not.  Each file's checksum (sha256 from the manifest or the server's
 * X-Linked-Etag, else the git blob sha1 of its ETag) is checked before the
 * file is renamed into place, so nothing incomplete or wrong ever appears
 * under a final name.
 *
 * BONSAI_DOWNLOAD_BACKOFF_MS sets the first wait between attempts (1000 by
 * default, doubled each time) — the tests make it short.
 */
#ifndef BN_DOWNLOAD_H
#define BN_DOWNLOAD_H

#include "store.h"

/* Fetches the files of `model` that are missing from its snapshot in the
 * hub cache folder `hub` and returns the snapshot folder in *out_dir (caller
 * owns it).  Free disk space is checked before the first byte.  `progress`
 * (may be NULL) sees bytes done and total over all the model's files;
 * returning FALSE, or *cancel becoming non-zero, stops with CANCELLED and
 * keeps the .incomplete file for a later call to resume.  Errors name the
 * file: NOT_FOUND (HTTP 404, or offline with HF_HUB_OFFLINE), NETWORK
 * (401/403 asking for HF_TOKEN, other HTTP statuses, connection failures
 * after the retries), CHECKSUM (the partial file is deleted), IO (disk full,
 * not enough space, unwritable cache). */
gboolean bn_download_model (const BnStoreModel *model, const char *hub,
                            BonsaiDownloadFunc progress, gpointer user_data,
                            const gint *cancel, char **out_dir,
                            GError **error);

#endif
