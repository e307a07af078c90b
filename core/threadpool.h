/* threadpool.h — persistent worker threads and a statically partitioned
 * parallel-for (internal).
 *
 * bn_parallel_for(pool, n, fn, ctx) splits [0, n) into pool-size contiguous
 * chunks, chunk i = [n·i/T, n·(i+1)/T), and runs them concurrently, the
 * calling thread taking chunk 0.  Callers make every index's result
 * independent of the chunk it falls in, so output never depends on the
 * thread count.  One pool runs one parallel-for at a time; calls from
 * several host threads are serialised.
 */
#ifndef BN_THREADPOOL_H
#define BN_THREADPOOL_H

#include <glib.h>
#include <stdint.h>

typedef struct BnThreadPool BnThreadPool;

typedef void (*BnParallelFn) (void *ctx, int64_t begin, int64_t end,
                              int thread_index);

/* n_threads <= 0 means one per available processor (BONSAI_THREADS
 * overrides).  Returns a new pool owned by the caller, or NULL with error. */
BnThreadPool *bn_thread_pool_new (int n_threads, GError **error);
void bn_thread_pool_free (BnThreadPool *pool);
int bn_thread_pool_size (const BnThreadPool *pool);
/* pool may be NULL: runs fn(ctx, 0, n, 0) on the calling thread. */
void bn_parallel_for (BnThreadPool *pool, int64_t n, BnParallelFn fn,
                      void *ctx);

/* The pool's scratch memory, so that kernels called many times per step
 * (the low-precision linears' prepared activations) do not allocate and
 * fault in fresh pages on every call: at least `bytes`, 64-byte aligned,
 * owned by the pool and kept (grown as needed) until it is freed.  The
 * caller holds it until bn_thread_pool_scratch_release; a second caller
 * waits.  NULL when it cannot grow (the caller then allocates itself). */
void *bn_thread_pool_scratch_acquire (BnThreadPool *pool, size_t bytes);
void bn_thread_pool_scratch_release (BnThreadPool *pool);

#endif
