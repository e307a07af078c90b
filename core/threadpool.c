/* threadpool.c — persistent workers and a statically partitioned
 * parallel-for.  Workers sleep on a condition variable between calls; a
 * call publishes (fn, ctx, n) under a new generation number and waits until
 * every worker has run its chunk. */
#include "threadpool.h"

#include "bonsai/bonsai.h"

#include <stdlib.h>

struct BnThreadPool {
  int n_threads;
  GThread **threads;
  GMutex call_lock; /* serialises callers */
  GMutex lock;
  GCond start;
  GCond done;
  guint64 generation;
  int pending;
  gboolean quit;
  BnParallelFn fn;
  void *ctx;
  int64_t n;
  GMutex scratch_lock; /* held from acquire to release */
  void *scratch;
  size_t scratch_bytes;
};

typedef struct {
  BnThreadPool *pool;
  int index;
} WorkerArg;

static void
run_chunk (BnParallelFn fn, void *ctx, int64_t n, int index, int n_threads)
{
  int64_t begin = n * index / n_threads;
  int64_t end = n * (index + 1) / n_threads;
  if (begin < end)
    fn (ctx, begin, end, index);
}

static gpointer
worker_main (gpointer data)
{
  WorkerArg *arg = data;
  BnThreadPool *pool = arg->pool;
  int index = arg->index;
  g_free (arg);
  guint64 seen = 0;
  for (;;)
    {
      g_mutex_lock (&pool->lock);
      while (pool->generation == seen && !pool->quit)
        g_cond_wait (&pool->start, &pool->lock);
      if (pool->quit)
        {
          g_mutex_unlock (&pool->lock);
          return NULL;
        }
      seen = pool->generation;
      BnParallelFn fn = pool->fn;
      void *ctx = pool->ctx;
      int64_t n = pool->n;
      g_mutex_unlock (&pool->lock);

      run_chunk (fn, ctx, n, index, pool->n_threads);

      g_mutex_lock (&pool->lock);
      if (--pool->pending == 0)
        g_cond_signal (&pool->done);
      g_mutex_unlock (&pool->lock);
    }
}

BnThreadPool *
bn_thread_pool_new (int n_threads, GError **error)
{
  if (n_threads <= 0)
    {
      const char *env = g_getenv ("BONSAI_THREADS");
      n_threads = env ? atoi (env) : 0;
      if (n_threads <= 0)
        n_threads = (int) g_get_num_processors ();
    }
  n_threads = CLAMP (n_threads, 1, 1024);

  BnThreadPool *pool = g_new0 (BnThreadPool, 1);
  pool->n_threads = n_threads;
  pool->threads = g_new0 (GThread *, n_threads);
  g_mutex_init (&pool->call_lock);
  g_mutex_init (&pool->lock);
  g_mutex_init (&pool->scratch_lock);
  g_cond_init (&pool->start);
  g_cond_init (&pool->done);
  for (int i = 1; i < n_threads; i++)
    {
      WorkerArg *arg = g_new (WorkerArg, 1);
      arg->pool = pool;
      arg->index = i;
      GError *local = NULL;
      pool->threads[i] = g_thread_try_new ("bonsai-worker", worker_main, arg, &local);
      if (!pool->threads[i])
        {
          g_free (arg);
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND,
                       "cannot start worker thread %d: %s", i, local->message);
          g_error_free (local);
          pool->n_threads = i; /* only these exist; free joins them */
          bn_thread_pool_free (pool);
          return NULL;
        }
    }
  return pool;
}

void
bn_thread_pool_free (BnThreadPool *pool)
{
  if (!pool)
    return;
  g_mutex_lock (&pool->lock);
  pool->quit = TRUE;
  g_cond_broadcast (&pool->start);
  g_mutex_unlock (&pool->lock);
  for (int i = 1; i < pool->n_threads; i++)
    if (pool->threads[i])
      g_thread_join (pool->threads[i]);
  g_free (pool->threads);
  g_free (pool->scratch);
  g_mutex_clear (&pool->scratch_lock);
  g_mutex_clear (&pool->call_lock);
  g_mutex_clear (&pool->lock);
  g_cond_clear (&pool->start);
  g_cond_clear (&pool->done);
  g_free (pool);
}

int
bn_thread_pool_size (const BnThreadPool *pool)
{
  return pool ? pool->n_threads : 1;
}

void
bn_parallel_for (BnThreadPool *pool, int64_t n, BnParallelFn fn, void *ctx)
{
  if (n <= 0)
    return;
  if (!pool || pool->n_threads == 1 || n == 1)
    {
      fn (ctx, 0, n, 0);
      return;
    }
  g_mutex_lock (&pool->call_lock);
  g_mutex_lock (&pool->lock);
  pool->fn = fn;
  pool->ctx = ctx;
  pool->n = n;
  pool->pending = pool->n_threads - 1;
  pool->generation++;
  g_cond_broadcast (&pool->start);
  g_mutex_unlock (&pool->lock);

  run_chunk (fn, ctx, n, 0, pool->n_threads);

  g_mutex_lock (&pool->lock);
  while (pool->pending > 0)
    g_cond_wait (&pool->done, &pool->lock);
  g_mutex_unlock (&pool->lock);
  g_mutex_unlock (&pool->call_lock);
}

void *
bn_thread_pool_scratch_acquire (BnThreadPool *pool, size_t bytes)
{
  g_return_val_if_fail (pool != NULL, NULL);
  g_mutex_lock (&pool->scratch_lock);
  if (bytes > pool->scratch_bytes)
    {
      /* Replaced, not realloc'd: the old contents need not survive. */
      g_free (pool->scratch);
      pool->scratch = g_try_malloc (bytes + 63);
      pool->scratch_bytes = pool->scratch ? bytes : 0;
      if (!pool->scratch)
        {
          g_mutex_unlock (&pool->scratch_lock);
          return NULL;
        }
    }
  return (void *) (((uintptr_t) pool->scratch + 63) & ~(uintptr_t) 63);
}

void
bn_thread_pool_scratch_release (BnThreadPool *pool)
{
  g_mutex_unlock (&pool->scratch_lock);
}
