/* test-threadpool.c — static partitioning covers every index exactly once,
 * chunk boundaries follow the documented formula, and the pool survives many
 * back-to-back calls, and its scratch memory is kept, grown and held by one
 * caller at a time. */
#include "threadpool.h"

#include <string.h>

typedef struct {
  gint *hits;
  int64_t *first; /* per thread: the first index it received */
  int64_t *last;
} Ctx;

static void
mark (void *data, int64_t begin, int64_t end, int thread)
{
  Ctx *ctx = data;
  ctx->first[thread] = begin;
  ctx->last[thread] = end;
  for (int64_t i = begin; i < end; i++)
    g_atomic_int_inc (&ctx->hits[i]);
}

static void
test_partition (void)
{
  for (int threads = 1; threads <= 5; threads++)
    {
      BnThreadPool *pool = bn_thread_pool_new (threads, NULL);
      g_assert_nonnull (pool);
      g_assert_cmpint (bn_thread_pool_size (pool), ==, threads);
      const int64_t sizes[] = { 1, 2, 3, 7, 64, 1000, 1537 };
      for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
        {
          int64_t n = sizes[s];
          Ctx ctx = { g_new0 (gint, n), g_new0 (int64_t, threads), g_new0 (int64_t, threads) };
          for (int t = 0; t < threads; t++)
            ctx.first[t] = ctx.last[t] = -1;
          bn_parallel_for (pool, n, mark, &ctx);
          for (int64_t i = 0; i < n; i++)
            g_assert_cmpint (ctx.hits[i], ==, 1);
          if (n > 1)
            for (int t = 0; t < threads; t++)
              if (n * t / threads < n * (t + 1) / threads)
                {
                  g_assert_cmpint (ctx.first[t], ==, n * t / threads);
                  g_assert_cmpint (ctx.last[t], ==, n * (t + 1) / threads);
                }
          g_free (ctx.hits);
          g_free (ctx.first);
          g_free (ctx.last);
        }
      bn_thread_pool_free (pool);
    }
}

static void
add_one (void *data, int64_t begin, int64_t end, int thread)
{
  gint *counter = data;
  g_atomic_int_add (counter, (gint) (end - begin));
}

static void
test_many_calls (void)
{
  BnThreadPool *pool = bn_thread_pool_new (3, NULL);
  gint counter = 0;
  for (int i = 0; i < 20000; i++)
    bn_parallel_for (pool, 10, add_one, &counter);
  g_assert_cmpint (counter, ==, 200000);
  bn_parallel_for (NULL, 5, add_one, &counter);
  g_assert_cmpint (counter, ==, 200005);
  bn_thread_pool_free (pool);
}

/* The pool's scratch: 64-byte aligned, kept while big enough, grown when
 * not; a second host thread waits while the first holds it. */
typedef struct {
  BnThreadPool *pool;
  gint acquired;
} ScratchWait;

static gpointer
scratch_waiter (gpointer data)
{
  ScratchWait *sw = data;
  bn_thread_pool_scratch_acquire (sw->pool, 16);
  g_atomic_int_set (&sw->acquired, 1);
  bn_thread_pool_scratch_release (sw->pool);
  return NULL;
}

static void
test_scratch (void)
{
  GError *error = NULL;
  BnThreadPool *pool = bn_thread_pool_new (2, &error);
  g_assert_no_error (error);
  guint8 *a = bn_thread_pool_scratch_acquire (pool, 1000);
  g_assert_nonnull (a);
  g_assert_cmpuint ((uintptr_t) a % 64, ==, 0);
  memset (a, 1, 1000);
  bn_thread_pool_scratch_release (pool);
  guint8 *b = bn_thread_pool_scratch_acquire (pool, 500);
  g_assert_true (a == b);
  bn_thread_pool_scratch_release (pool);
  guint8 *c = bn_thread_pool_scratch_acquire (pool, 1 << 20);
  g_assert_nonnull (c);
  g_assert_cmpuint ((uintptr_t) c % 64, ==, 0);
  memset (c, 2, 1 << 20);
  ScratchWait sw = { pool, 0 };
  GThread *t = g_thread_new ("waiter", scratch_waiter, &sw);
  g_usleep (50000);
  g_assert_cmpint (g_atomic_int_get (&sw.acquired), ==, 0);
  bn_thread_pool_scratch_release (pool);
  g_thread_join (t);
  g_assert_cmpint (g_atomic_int_get (&sw.acquired), ==, 1);
  bn_thread_pool_free (pool);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/threadpool/partition", test_partition);
  g_test_add_func ("/threadpool/many-calls", test_many_calls);
  g_test_add_func ("/threadpool/scratch", test_scratch);
  return g_test_run ();
}
