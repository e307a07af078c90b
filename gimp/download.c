/* download.c — a model download on a worker thread (see download.h). */
#include "download.h"

struct BnGimpDownload {
  char *name;
  BnGimpDownloadProgress progress;
  BnGimpDownloadDone done;
  gpointer user_data;
  GMainContext *context;
  GThread *thread;
  gint cancel;           /* read by the engine between pieces */
  gboolean detached;     /* freed by its owner: no more callbacks */
  gboolean finished;     /* `done` has run */
  /* Written by the worker, read in the main context. */
  GMutex lock;
  gint64 done_bytes, total_bytes;
  char *file;
  gboolean progress_queued;
  char *dir;
  GError *error;
};

/* The struct lives until the owner has freed it and no queued callback
 * holds it: an atomic reference count (g_atomic_rc_box). */
static void
download_clear (BnGimpDownload *d)
{
  g_free (d->name);
  g_free (d->file);
  g_free (d->dir);
  g_clear_error (&d->error);
  g_mutex_clear (&d->lock);
  g_main_context_unref (d->context);
}

static void
download_unref (gpointer d)
{
  g_atomic_rc_box_release_full (d, (GDestroyNotify) download_clear);
}

static gboolean
deliver_progress (gpointer data)
{
  BnGimpDownload *d = data;
  g_mutex_lock (&d->lock);
  double fraction = d->total_bytes > 0 ? (double) d->done_bytes / (double) d->total_bytes : 0.0;
  /* TRANSLATORS: a file of the model, then megabytes done and in all. */
  g_autofree char *text = g_strdup_printf (_("Downloading %s: %.0f of %.0f MB"),
                                           d->file ? d->file : "", d->done_bytes / 1e6,
                                           d->total_bytes / 1e6);
  d->progress_queued = FALSE;
  g_mutex_unlock (&d->lock);
  if (!d->detached && !d->finished && d->progress)
    d->progress (fraction, text, d->user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
on_progress (const char *file, gint64 done, gint64 total, gpointer data)
{
  BnGimpDownload *d = data;
  g_mutex_lock (&d->lock);
  d->done_bytes = done;
  d->total_bytes = total;
  g_free (d->file);
  d->file = g_strdup (file);
  /* One queued update at a time: the main loop draws the latest. */
  gboolean queue = !d->progress_queued;
  d->progress_queued = TRUE;
  g_mutex_unlock (&d->lock);
  if (queue)
    g_main_context_invoke_full (d->context, G_PRIORITY_DEFAULT, deliver_progress,
                                g_atomic_rc_box_acquire (d), download_unref);
  return !g_atomic_int_get (&d->cancel);
}

static gboolean
deliver_done (gpointer data)
{
  BnGimpDownload *d = data;
  if (!d->detached && !d->finished)
    {
      d->finished = TRUE;
      if (d->done)
        d->done (d->dir, d->error, d->user_data);
    }
  return G_SOURCE_REMOVE;
}

static gpointer
run (gpointer data)
{
  BnGimpDownload *d = data;
  char *dir = NULL;
  GError *error = NULL;
  bonsai_model_download (d->name, on_progress, d, &d->cancel, &dir, &error);
  g_mutex_lock (&d->lock);
  d->dir = dir;
  d->error = error;
  g_mutex_unlock (&d->lock);
  g_main_context_invoke_full (d->context, G_PRIORITY_DEFAULT, deliver_done,
                              g_atomic_rc_box_acquire (d), download_unref);
  return NULL;
}

BnGimpDownload *
bn_gimp_download_start (const char *name, BnGimpDownloadProgress progress,
                        BnGimpDownloadDone done, gpointer user_data)
{
  BnGimpDownload *d = g_atomic_rc_box_new0 (BnGimpDownload);
  d->name = g_strdup (name);
  d->progress = progress;
  d->done = done;
  d->user_data = user_data;
  d->context = g_main_context_ref_thread_default ();
  g_mutex_init (&d->lock);
  d->thread = g_thread_new ("bonsai-download", run, g_atomic_rc_box_acquire (d));
  return d;
}

void
bn_gimp_download_cancel (BnGimpDownload *d)
{
  g_atomic_int_set (&d->cancel, 1);
}

gboolean
bn_gimp_download_finished (const BnGimpDownload *d)
{
  return d->finished;
}

void
bn_gimp_download_free (BnGimpDownload *d)
{
  if (!d)
    return;
  d->detached = TRUE;
  g_atomic_int_set (&d->cancel, 1);
  g_thread_join (d->thread);
  download_unref (d);  /* the worker's reference */
  download_unref (d);  /* the owner's */
}
