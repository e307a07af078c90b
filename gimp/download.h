/* download.h — a model download for the plug-ins' dialogs (libgimp-free):
 * bonsai_model_download runs on a worker thread while the dialog's main
 * loop keeps drawing; its progress and its end arrive in that loop. */
#ifndef BN_GIMP_DOWNLOAD_H
#define BN_GIMP_DOWNLOAD_H

#include "common.h"

typedef struct BnGimpDownload BnGimpDownload;

/* Progress: the fraction of all the model's bytes, and a line naming the
 * file and the megabytes so far. */
typedef void (*BnGimpDownloadProgress) (double fraction, const char *text,
                                        gpointer user_data);
/* The end: the model's folder, or NULL and the error (CANCELLED after
 * bn_gimp_download_cancel). */
typedef void (*BnGimpDownloadDone) (const char *dir, const GError *error,
                                    gpointer user_data);

/* Starts fetching model `name` (see bonsai_model_download).  The callbacks
 * run in the thread-default main context of the caller, `done` exactly
 * once unless the download is freed first.  Caller owns the download. */
BnGimpDownload *bn_gimp_download_start (const char *name,
                                        BnGimpDownloadProgress progress,
                                        BnGimpDownloadDone done,
                                        gpointer user_data);
/* Asks the download to stop; `done` follows with CANCELLED (the partial
 * file stays for the next try). */
void bn_gimp_download_cancel (BnGimpDownload *download);
/* Whether `done` has been called. */
gboolean bn_gimp_download_finished (const BnGimpDownload *download);
/* Stops a running download and waits for its thread; no callback runs
 * afterwards.  NULL is accepted. */
void bn_gimp_download_free (BnGimpDownload *download);

#endif
