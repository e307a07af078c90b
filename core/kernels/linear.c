/* linear.c — the blocked GEMM driver shared by every instruction-set path,
 * and dispatch.
 *
 * Loop nest, per thread, over its share of the N panels:
 *   panel of ≤ BN_LINEAR_PANEL columns of W
 *     K block of BN_LINEAR_KC: decode the panel once into fp32 (L2)
 *       mr rows of x: copy them (L1)
 *         nr columns: micro-kernel
 * Decoding once per block and reusing it for all M rows is what makes the
 * packed formats cost about what dense f32 does when M is large.
 */
#include "linear_tile.h"

#include <string.h>

/* Columns per panel: the decoded panel (PANEL·KC floats, 768 KiB) stays in
 * a 1 MiB L2 while all of M streams past it, and each copy of x serves 512
 * columns.  Measured best of 128 … 768 on Zen 4. */
#define BN_LINEAR_PANEL 512

typedef struct {
  const BnLinearPath *path;
  BnDecodeFn decode;
  const BnTensor *w;
  const float *x;
  int64_t m, ldx;
  float *y;
  int64_t ldy;
  int64_t panel;          /* columns per panel, a multiple of path->nr */
  float *scratch;         /* per thread: panel·KC + mr_max·KC floats, or NULL */
  size_t scratch_floats;  /* per thread, a multiple of 16 (64 bytes) */
} LinearJob;

static inline void
prefetch_rows (const float *p, int64_t ld, int rows, int cols)
{
  for (int i = 0; i < rows; i++)
    for (int c = 0; c < cols; c += 16) /* one 64-byte line */
      __builtin_prefetch (p + i * ld + c, 0, 2);
}

static void
run_panels (const LinearJob *job, int64_t p_begin, int64_t p_end, float *wp,
            float *xp)
{
  const BnLinearPath *path = job->path;
  const int64_t n_out = job->w->shape[0], k_in = job->w->shape[1];
  const int mr_max = path->mr, nr = path->nr;
  for (int64_t p = p_begin; p < p_end; p++)
    {
      const int64_t n0 = p * job->panel;
      const int nc = (int) MIN (job->panel, n_out - n0);
      for (int64_t k0 = 0; k0 < k_in; k0 += BN_LINEAR_KC)
        {
          const int kc = (int) MIN (BN_LINEAR_KC, k_in - k0);
          for (int j = 0; j < nc; j += nr)
            job->decode (job->w, n0 + j, MIN (nr, nc - j), k0, kc,
                         wp + (size_t) j * kc);
          for (int64_t i0 = 0; i0 < job->m; i0 += mr_max)
            {
              const int mr = (int) MIN (mr_max, job->m - i0);
              for (int i = 0; i < mr; i++)
                memcpy (xp + i * BN_LINEAR_KC, job->x + (i0 + i) * job->ldx + k0,
                        (size_t) kc * sizeof *xp);
              for (int i = mr; i < mr_max; i++)
                memset (xp + i * BN_LINEAR_KC, 0, (size_t) kc * sizeof *xp);
              /* x and y come from L3 or memory: while these rows run, ask
               * for what the next rows will read, a slice per micro-tile so
               * that the requests do not queue up all at once. */
              const int next = (int) CLAMP (job->m - (i0 + mr_max), 0, mr_max);
              const int tiles = (nc + nr - 1) / nr;
              float *y = job->y + i0 * job->ldy + n0;
              for (int j = 0, t = 0; j < nc; j += nr, t++)
                {
                  const int nn = MIN (nr, nc - j);
                  if (next > 0)
                    {
                      const int r0 = next * t / tiles, r1 = next * (t + 1) / tiles;
                      prefetch_rows (job->x + (i0 + mr_max + r0) * job->ldx + k0, job->ldx,
                                     r1 - r0, kc);
                      if (k0 > 0)
                        prefetch_rows (y + mr_max * job->ldy + j, job->ldy, next, nn);
                    }
                  path->tile (xp, wp + (size_t) j * kc, kc, y + j, job->ldy, mr, nn, k0 > 0);
                }
            }
        }
    }
}

/* Used only when the per-call scratch could not be allocated: panels are
 * then one micro-panel wide, which changes speed but not a single bit of
 * the result. */
static G_NO_INLINE void
run_panels_on_stack (const LinearJob *job, int64_t p_begin, int64_t p_end)
{
  float wp[BN_LINEAR_NR_MAX * BN_LINEAR_KC] __attribute__ ((aligned (64)));
  float xp[BN_LINEAR_MR_MAX * BN_LINEAR_KC] __attribute__ ((aligned (64)));
  run_panels (job, p_begin, p_end, wp, xp);
}

static void
linear_chunk (void *ctx, int64_t begin, int64_t end, int thread_index)
{
  const LinearJob *job = ctx;
  if (!job->scratch)
    {
      run_panels_on_stack (job, begin, end);
      return;
    }
  float *wp = job->scratch + (size_t) thread_index * job->scratch_floats;
  run_panels (job, begin, end, wp, wp + job->panel * BN_LINEAR_KC);
}

void
bn_linear_isa (BnThreadPool *pool, BnIsa isa, const BnTensor *w,
               const float *x, int64_t m, int64_t ldx, float *y, int64_t ldy)
{
  g_return_if_fail (bn_cpu_supports (isa));
  g_return_if_fail (w != NULL && w->ndim == 2 && w->dtype <= BN_DTYPE_Q4);
  /* Packed blocks of BN_LINEAR_KC must hold whole groups and code words. */
  g_return_if_fail (!bn_dtype_is_packed (w->dtype)
                    || (w->group_size > 0 && w->group_size % 32 == 0
                        && BN_LINEAR_KC % w->group_size == 0
                        && w->shape[1] % w->group_size == 0));
  g_return_if_fail (m >= 0);
  g_return_if_fail (ldx >= w->shape[1]);
  g_return_if_fail (ldy >= w->shape[0]);
  const int64_t n_out = w->shape[0];
  if (m == 0 || n_out == 0)
    return;
  g_return_if_fail (x != NULL && y != NULL);
  if (w->shape[1] == 0)
    {
      /* Empty sums: no K block would run to write them. */
      for (int64_t i = 0; i < m; i++)
        memset (y + i * ldy, 0, (size_t) n_out * sizeof *y);
      return;
    }

  const BnLinearPath *path = bn_linear_path (isa);
  const int threads = bn_thread_pool_size (pool);
  /* Enough panels for every thread when N is small, at most
   * BN_LINEAR_PANEL columns each. */
  int64_t per_thread = (n_out + threads - 1) / threads;
  int64_t panel = MIN (BN_LINEAR_PANEL, (per_thread + path->nr - 1) / path->nr * path->nr);
  size_t floats = (size_t) (panel + path->mr) * BN_LINEAR_KC;
  floats = (floats + 15) & ~(size_t) 15;
  void *block = g_try_malloc (floats * sizeof (float) * (size_t) threads + 64);

  LinearJob job = {
    .path = path,
    .decode = path->decode[w->dtype],
    .w = w, .x = x, .m = m, .ldx = ldx, .y = y, .ldy = ldy,
    .panel = block ? panel : path->nr,
    .scratch = block ? (float *) (((uintptr_t) block + 63) & ~(uintptr_t) 63) : NULL,
    .scratch_floats = floats,
  };
  bn_parallel_for (pool, (n_out + job.panel - 1) / job.panel, linear_chunk, &job);
  g_free (block);
}

void
bn_linear (BnThreadPool *pool, const BnTensor *w, const float *x, int64_t m,
           int64_t ldx, float *y, int64_t ldy)
{
  bn_linear_isa (pool, bn_cpu_isa (), w, x, m, ldx, y, ldy);
}

const BnLinearPath *
bn_linear_path (BnIsa isa)
{
  switch (isa)
    {
    case BN_ISA_AVX512: return &bn_linear_path_avx512;
    case BN_ISA_AVX2: return &bn_linear_path_avx2;
    default: return &bn_linear_path_scalar;
    }
}
