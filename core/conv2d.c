/* conv2d.c — im2col convolutions and group normalisation on HWC fp32
 * activations.  See conv2d.h for the layout and the chunking. */
#include "conv2d.h"

#include "bonsai/bonsai.h"
#include "kernels/kernels.h"
#include "ops.h"

#include <math.h>

/* Per-thread budgets, in floats, for the im2col rows and the GEMM output of
 * one chunk: 2 MB each keeps the working set near the L2/L3 boundary while
 * leaving a few hundred rows per bn_linear call. */
#define IM2COL_FLOATS (512 * 1024)
#define OUT_FLOATS (512 * 1024)
/* Pixels per block of the group-norm reduction and of the affine pass. */
#define PIXEL_BLOCK 1024

int64_t
bn_conv_out_size (BnConvMode mode, int64_t n)
{
  switch (mode)
    {
    case BN_CONV_SAME:
      return n;
    case BN_CONV_UP2:
      return 2 * n;
    case BN_CONV_DOWN2:
      return n >= 2 ? n / 2 : 0;
    }
  return 0;
}

/* Input rows [*a, *b) that output rows oy0..oy1 (inclusive) read. */
static void
input_rows (BnConvMode mode, int64_t h, int64_t oy0, int64_t oy1, int64_t *a,
            int64_t *b)
{
  switch (mode)
    {
    case BN_CONV_SAME:
      *a = MAX (oy0 - 1, 0);
      *b = MIN (oy1 + 2, h);
      return;
    case BN_CONV_UP2:
      *a = MAX (oy0 - 1, 0) / 2;
      *b = MIN (oy1 + 1, 2 * h - 1) / 2 + 1;
      return;
    case BN_CONV_DOWN2:
      *a = 2 * oy0;
      *b = MIN (2 * oy1 + 3, h);
      return;
    }
}

typedef struct {
  const BnConv3x3 *conv;
  const float *x;
  float *y;
  int64_t h, w, ci, co, ho, wo, k;
  int64_t chunk;     /* output pixels per chunk */
  int64_t ring_rows; /* normalised input rows kept per thread; 0: no pre-op */
  float *ws;         /* per-thread workspaces, `per_thread` floats apart */
  size_t per_thread;
  const float *zeros; /* ci zeros: the source of padding taps */
} ConvJob;

static void
conv_geometry (ConvJob *j, BnConvMode mode, gboolean pre, int64_t ci,
               int64_t co, int64_t h, int64_t w)
{
  j->h = h;
  j->w = w;
  j->ci = ci;
  j->co = co;
  j->k = ci * 9;
  j->ho = bn_conv_out_size (mode, h);
  j->wo = bn_conv_out_size (mode, w);
  int64_t npix = j->ho * j->wo;
  j->chunk = MIN (IM2COL_FLOATS / j->k, OUT_FLOATS / co);
  j->chunk = CLAMP (j->chunk, 1, MAX (npix, 1));
  j->ring_rows = 0;
  if (pre)
    {
      /* Output rows one chunk can touch, then the input rows they read. */
      int64_t ro = (j->chunk + j->wo - 2) / j->wo + 1;
      int64_t r = mode == BN_CONV_SAME ? ro + 2
                  : mode == BN_CONV_UP2 ? ro / 2 + 3
                                        : 2 * ro + 1;
      j->ring_rows = MIN (r, h);
    }
  j->per_thread = (size_t) (j->ring_rows * w * ci + j->chunk * j->k
                            + j->chunk * co);
}

size_t
bn_conv3x3_workspace (BnConvMode mode, gboolean pre, int64_t ci, int64_t co,
                      int64_t h, int64_t w, int n_threads)
{
  ConvJob j;
  conv_geometry (&j, mode, pre, ci, co, h, w);
  return ((size_t) MAX (n_threads, 1) * j.per_thread + (size_t) ci)
         * sizeof (float);
}

/* Normalised input row r of a thread's ring. */
static void
normalise_row (const ConvJob *j, int64_t r, float *dst)
{
  const float *src = j->x + r * j->w * j->ci;
  const float *s = j->conv->pre_scale, *t = j->conv->pre_shift;
  for (int64_t x = 0; x < j->w; x++)
    for (int64_t c = 0; c < j->ci; c++)
      dst[x * j->ci + c] = src[x * j->ci + c] * s[c] + t[c];
  bn_silu (dst, j->w * j->ci);
}

/* The im2col row of output pixel (oy, ox): col[c·9 + tap]. */
static void
im2col_pixel (const ConvJob *j, const float *ring, int64_t oy, int64_t ox,
              float *col)
{
  const float *src[9];
  for (int t = 0; t < 9; t++)
    {
      int64_t dy = t / 3, dx = t % 3, iy, ix;
      gboolean inside;
      switch (j->conv->mode)
        {
        case BN_CONV_UP2:
          iy = oy + dy - 1;
          ix = ox + dx - 1;
          inside = iy >= 0 && iy < j->ho && ix >= 0 && ix < j->wo;
          iy /= 2;
          ix /= 2;
          break;
        case BN_CONV_DOWN2:
          iy = 2 * oy + dy;
          ix = 2 * ox + dx;
          inside = iy < j->h && ix < j->w;
          break;
        default:
          iy = oy + dy - 1;
          ix = ox + dx - 1;
          inside = iy >= 0 && iy < j->h && ix >= 0 && ix < j->w;
          break;
        }
      if (!inside)
        src[t] = j->zeros;
      else if (ring)
        src[t] = ring + (iy % j->ring_rows) * j->w * j->ci + ix * j->ci;
      else
        src[t] = j->x + (iy * j->w + ix) * j->ci;
    }
  for (int64_t c = 0; c < j->ci; c++)
    for (int t = 0; t < 9; t++)
      col[c * 9 + t] = src[t][c];
}

static void
conv_chunks (void *ctx, int64_t begin, int64_t end, int thread)
{
  const ConvJob *j = ctx;
  float *ring = j->ws + (size_t) thread * j->per_thread;
  float *col = ring + j->ring_rows * j->w * j->ci;
  float *out = col + j->chunk * j->k;
  const float *bias = j->conv->bias;
  int64_t npix = j->ho * j->wo;
  int64_t have_end = 0; /* the ring holds input rows [.., have_end) */
  for (int64_t ch = begin; ch < end; ch++)
    {
      int64_t p0 = ch * j->chunk, p1 = MIN (p0 + j->chunk, npix);
      if (j->ring_rows)
        {
          int64_t a = 0, b = 0;
          input_rows (j->conv->mode, j->h, p0 / j->wo, (p1 - 1) / j->wo, &a,
                      &b);
          /* Rows advance monotonically within a thread's range, and the
           * ring is sized so that [a, b) always fits: rows below `a` are
           * the only ones overwritten. */
          for (int64_t r = MAX (a, have_end); r < b; r++)
            normalise_row (j, r, ring + (r % j->ring_rows) * j->w * j->ci);
          have_end = MAX (have_end, b);
        }
      for (int64_t p = p0; p < p1; p++)
        im2col_pixel (j, j->ring_rows ? ring : NULL, p / j->wo, p % j->wo,
                      col + (p - p0) * j->k);
      bn_linear_lowp (NULL, j->conv->act, j->conv->weight, col, p1 - p0, j->k, out, j->co);
      for (int64_t p = p0; p < p1; p++)
        {
          float *yr = j->y + p * j->co;
          const float *o = out + (p - p0) * j->co;
          for (int64_t c = 0; c < j->co; c++)
            {
              float v = o[c] + (bias ? bias[c] : 0.0f);
              yr[c] = j->conv->accumulate ? yr[c] + v : v;
            }
        }
    }
}

gboolean
bn_conv3x3 (BnThreadPool *pool, const BnConv3x3 *conv, const float *x,
            int64_t h, int64_t w, float *y, GError **error)
{
  ConvJob j;
  gboolean pre = conv->pre_scale != NULL;
  int64_t ci = conv->weight->shape[1] / 9, co = conv->weight->shape[0];
  conv_geometry (&j, conv->mode, pre, ci, co, h, w);
  j.conv = conv;
  j.x = x;
  j.y = y;
  int n_threads = pool ? bn_thread_pool_size (pool) : 1;
  size_t bytes = bn_conv3x3_workspace (conv->mode, pre, ci, co, h, w,
                                       n_threads);
  float *ws = g_try_malloc (bytes);
  if (!ws)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "cannot allocate %zu bytes of convolution workspace",
                   bytes);
      return FALSE;
    }
  float *zeros = ws + (size_t) n_threads * j.per_thread;
  memset (zeros, 0, (size_t) j.ci * sizeof (float));
  j.ws = ws;
  j.zeros = zeros;
  int64_t n_chunks = (j.ho * j.wo + j.chunk - 1) / j.chunk;
  bn_parallel_for (pool, n_chunks, conv_chunks, &j);
  g_free (ws);
  return TRUE;
}

void
bn_conv1x1 (BnThreadPool *pool, const BnTensor *w, const float *bias,
            const float *x, int64_t n, float *y)
{
  int64_t co = w->shape[0];
  bn_linear (pool, w, x, n, w->shape[1], y, co);
  if (bias)
    for (int64_t p = 0; p < n; p++)
      for (int64_t c = 0; c < co; c++)
        y[p * co + c] += bias[c];
}

typedef struct {
  const float *x;
  int64_t n, c;
  int groups;
  double *partial; /* [block][group][sum, sum of squares] */
} GroupStats;

static void
group_stats_blocks (void *ctx, int64_t begin, int64_t end, int thread)
{
  const GroupStats *g = ctx;
  int64_t cg = g->c / g->groups;
  for (int64_t blk = begin; blk < end; blk++)
    {
      double *acc = g->partial + blk * g->groups * 2;
      memset (acc, 0, (size_t) g->groups * 2 * sizeof (double));
      int64_t p1 = MIN ((blk + 1) * PIXEL_BLOCK, g->n);
      for (int64_t p = blk * PIXEL_BLOCK; p < p1; p++)
        {
          const float *row = g->x + p * g->c;
          for (int gi = 0; gi < g->groups; gi++)
            {
              double s = 0, ss = 0;
              for (int64_t c = gi * cg; c < (gi + 1) * cg; c++)
                {
                  s += row[c];
                  ss += (double) row[c] * row[c];
                }
              acc[2 * gi] += s;
              acc[2 * gi + 1] += ss;
            }
        }
    }
}

gboolean
bn_group_norm_fold (BnThreadPool *pool, const float *x, int64_t n, int64_t c,
                    int groups, const float *gamma, const float *beta,
                    float eps, float *scale, float *shift, GError **error)
{
  int64_t n_blocks = (n + PIXEL_BLOCK - 1) / PIXEL_BLOCK;
  GroupStats g = { x, n, c, groups, NULL };
  g.partial = g_try_new (double, (gsize) (n_blocks * groups * 2));
  if (!g.partial)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "cannot allocate group-norm statistics for %" G_GINT64_FORMAT
                   " pixels", n);
      return FALSE;
    }
  bn_parallel_for (pool, n_blocks, group_stats_blocks, &g);
  int64_t cg = c / groups;
  double count = (double) n * (double) cg;
  for (int gi = 0; gi < groups; gi++)
    {
      double s = 0, ss = 0;
      for (int64_t b = 0; b < n_blocks; b++)
        {
          s += g.partial[(b * groups + gi) * 2];
          ss += g.partial[(b * groups + gi) * 2 + 1];
        }
      double mean = s / count;
      double var = MAX (ss / count - mean * mean, 0.0);
      double rstd = 1.0 / sqrt (var + eps);
      for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++)
        {
          double a = (gamma ? gamma[ch] : 1.0) * rstd;
          scale[ch] = (float) a;
          shift[ch] = (float) ((beta ? beta[ch] : 0.0) - mean * a);
        }
    }
  g_free (g.partial);
  return TRUE;
}

typedef struct {
  const float *x;
  float *y;
  int64_t n, c;
  const float *scale, *shift;
} Affine;

static void
affine_blocks (void *ctx, int64_t begin, int64_t end, int thread)
{
  const Affine *a = ctx;
  int64_t p1 = MIN (end * PIXEL_BLOCK, a->n);
  for (int64_t p = begin * PIXEL_BLOCK; p < p1; p++)
    for (int64_t c = 0; c < a->c; c++)
      a->y[p * a->c + c] = a->x[p * a->c + c] * a->scale[c] + a->shift[c];
}

void
bn_channel_affine (BnThreadPool *pool, const float *x, float *y, int64_t n,
                   int64_t c, const float *scale, const float *shift)
{
  Affine a = { x, y, n, c, scale, shift };
  bn_parallel_for (pool, (n + PIXEL_BLOCK - 1) / PIXEL_BLOCK, affine_blocks,
                   &a);
}
