/* flux2_vae_run.c — the FLUX.2 VAE's forward passes: decoder and encoder
 * mean, whole or in blended tiles, on pixel-major activations (conv2d.h).
 *
 * Buffers are planned so that a level holds at most its input, one
 * intermediate and a few MB of convolution workspace per thread:
 * - a resnet computes h = conv1(swish(norm1(x))), turns x into its shortcut
 *   in place, then adds conv2(swish(norm2(h))) into x;
 * - norms and swish are applied on the fly by the convolutions;
 * - upsampling is folded into the convolution that follows it.
 * bn_vae_decode_peak_bytes replays the same plan without computing.
 */
#include "flux2_vae_weights.h"

#include "bonsai/bonsai.h"
#include "conv2d.h"
#include "ops.h"

#include <math.h>

/* The largest image side accepted, in pixels; keeps every size product far
 * from overflow (an image this big fails its allocation cleanly). */
#define MAX_SIDE (1 << 16)
/* Group norm epsilon of every norm in the VAE (diffusers' resnet_eps). */
#define NORM_EPS 1e-6f
/* Floats of the staging buffer of an in-place 1×1 shortcut. */
#define SHORTCUT_FLOATS (512 * 1024)
/* Bytes bn_attention allocates for its packed copies of K and V (n keys of
 * c), as counted in the peak. */
#define ATTENTION_PACK(n, c) ((size_t) (2 * (n) * (c)) * sizeof (float))

typedef struct {
  BnThreadPool *pool;
  int n_threads;
  const gint *cancel;
  BnActPrecision act; /* of the 3×3 convolutions */
  int groups;
  size_t live, peak; /* bytes of activations and workspace held */
  float *scale, *shift; /* a folded group norm, widest level */
} Run;

typedef struct {
  float *d; /* [h·w, c] */
  int64_t h, w, c;
} Act;

static void
run_note (Run *r, size_t extra)
{
  r->peak = MAX (r->peak, r->live + extra);
}

static float *
run_alloc (Run *r, int64_t n, GError **error)
{
  float *p = NULL;
  if (n >= 0 && (uint64_t) n <= G_MAXSIZE / sizeof (float))
    p = g_try_malloc ((size_t) MAX (n, 1) * sizeof (float));
  if (!p)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "VAE: cannot allocate %" G_GINT64_FORMAT " floats", n);
      return NULL;
    }
  r->live += (size_t) n * sizeof (float);
  run_note (r, 0);
  return p;
}

static void
run_free (Run *r, float *p, int64_t n)
{
  if (!p)
    return;
  g_free (p);
  r->live -= (size_t) n * sizeof (float);
}

static void
act_free (Run *r, Act *a)
{
  run_free (r, a->d, a->h * a->w * a->c);
  a->d = NULL;
}

static gboolean
act_alloc (Run *r, Act *a, int64_t h, int64_t w, int64_t c, GError **error)
{
  a->h = h;
  a->w = w;
  a->c = c;
  a->d = run_alloc (r, h * w * c, error);
  return a->d != NULL;
}

static gboolean
cancelled (const Run *r, GError **error)
{
  if (!r->cancel || !g_atomic_int_get (r->cancel))
    return FALSE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED,
               "VAE: cancelled");
  return TRUE;
}

/* Folds norm `n` over x into r->scale, r->shift. */
static gboolean
fold_norm (Run *r, const Act *x, const BnVaeNorm *n, GError **error)
{
  return bn_group_norm_fold (r->pool, x->d, x->h * x->w, x->c, r->groups,
                             n->gamma, n->beta, NORM_EPS, r->scale,
                             r->shift, error);
}

static gboolean
run_conv (Run *r, const BnConv3x3 *c, const Act *x, float *y, GError **error)
{
  run_note (r, bn_conv3x3_workspace (c->mode, c->pre_scale != NULL, x->c,
                                     c->weight->shape[0], x->h, x->w,
                                     r->n_threads));
  return bn_conv3x3 (r->pool, c, x->d, x->h, x->w, y, error);
}

/* x = conv(x), through swish(norm(x)) when `pre` is given. */
static gboolean
conv_replace (Run *r, const BnVaeConv *cv, BnConvMode mode,
              const BnVaeNorm *pre, Act *x, GError **error)
{
  BnConv3x3 c = { mode, &cv->w, cv->b, NULL, NULL, FALSE, r->act };
  if (pre)
    {
      if (!fold_norm (r, x, pre, error))
        return FALSE;
      c.pre_scale = r->scale;
      c.pre_shift = r->shift;
    }
  Act y;
  if (!act_alloc (r, &y, bn_conv_out_size (mode, x->h),
                  bn_conv_out_size (mode, x->w), cv->w.shape[0], error))
    return FALSE;
  if (!run_conv (r, &c, x, y.d, error))
    {
      act_free (r, &y);
      return FALSE;
    }
  act_free (r, x);
  *x = y;
  return TRUE;
}

/* x = x·Wᵀ + b, a 1×1 convolution into a new buffer. */
static gboolean
linear_replace (Run *r, const BnVaeConv *cv, Act *x, GError **error)
{
  Act y;
  if (!act_alloc (r, &y, x->h, x->w, cv->w.shape[0], error))
    return FALSE;
  bn_conv1x1 (r->pool, &cv->w, cv->b, x->d, x->h * x->w, y.d);
  act_free (r, x);
  *x = y;
  return TRUE;
}

/* x [n, ci] → shortcut(x) [n, co] in x's own memory.  Pixel p's output only
 * needs pixel p's input, so chunks go through a small staging buffer in the
 * order that never overwrites input still to be read: forwards when the
 * rows shrink, backwards (after growing the buffer) when they widen. */
static gboolean
shortcut_in_place (Run *r, const BnVaeConv *sc, Act *x, GError **error)
{
  int64_t n = x->h * x->w, ci = x->c, co = sc->w.shape[0];
  int64_t chunk = MIN (MAX (SHORTCUT_FLOATS / co, 1), n);
  float *tmp = run_alloc (r, chunk * co, error);
  if (!tmp)
    return FALSE;
  if (co > ci)
    {
      float *grown = g_try_realloc (x->d, (size_t) (n * co) * sizeof (float));
      if (!grown)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                       "VAE: cannot grow an activation to %" G_GINT64_FORMAT
                       " floats", n * co);
          run_free (r, tmp, chunk * co);
          return FALSE;
        }
      x->d = grown;
      r->live += (size_t) (n * (co - ci)) * sizeof (float);
      run_note (r, 0);
    }
  int64_t n_chunks = (n + chunk - 1) / chunk;
  for (int64_t k = 0; k < n_chunks; k++)
    {
      int64_t p0 = (co > ci ? n_chunks - 1 - k : k) * chunk;
      int64_t m = MIN (chunk, n - p0);
      bn_conv1x1 (r->pool, &sc->w, sc->b, x->d + p0 * ci, m, tmp);
      memcpy (x->d + p0 * co, tmp, (size_t) (m * co) * sizeof (float));
    }
  if (co < ci)
    {
      /* A failed shrink leaves the larger block, which stays valid. */
      float *shrunk = g_try_realloc (x->d, (size_t) (n * co) * sizeof (float));
      if (shrunk)
        x->d = shrunk;
      r->live -= (size_t) (n * (ci - co)) * sizeof (float);
    }
  x->c = co;
  run_free (r, tmp, chunk * co);
  return TRUE;
}

static gboolean
resnet_forward (Run *r, const BnVaeResnet *rn, Act *x, GError **error)
{
  if (cancelled (r, error) || !fold_norm (r, x, &rn->norm1, error))
    return FALSE;
  Act h;
  if (!act_alloc (r, &h, x->h, x->w, rn->co, error))
    return FALSE;
  BnConv3x3 c1 = { BN_CONV_SAME, &rn->conv1.w, rn->conv1.b, r->scale,
                   r->shift, FALSE, r->act };
  BnConv3x3 c2 = { BN_CONV_SAME, &rn->conv2.w, rn->conv2.b, r->scale,
                   r->shift, TRUE, r->act };
  gboolean ok = run_conv (r, &c1, x, h.d, error)
                && (!rn->has_shortcut
                    || shortcut_in_place (r, &rn->shortcut, x, error))
                && fold_norm (r, &h, &rn->norm2, error)
                && run_conv (r, &c2, &h, x->d, error);
  act_free (r, &h);
  return ok;
}

/* x += out(attention(q, k, v)) over all h·w positions, one head of c. */
static gboolean
attention_forward (Run *r, const BnVaeAttention *a, Act *x, GError **error)
{
  if (cancelled (r, error))
    return FALSE;
  int64_t n = x->h * x->w, c = x->c;
  Act t = { 0 }, q = { 0 }, k = { 0 }, v = { 0 };
  gboolean ok = act_alloc (r, &t, x->h, x->w, c, error)
                && act_alloc (r, &q, x->h, x->w, c, error)
                && act_alloc (r, &k, x->h, x->w, c, error)
                && act_alloc (r, &v, x->h, x->w, c, error)
                && fold_norm (r, x, &a->norm, error);
  if (ok)
    {
      bn_channel_affine (r->pool, x->d, t.d, n, c, r->scale, r->shift);
      bn_conv1x1 (r->pool, &a->q.w, a->q.b, t.d, n, q.d);
      bn_conv1x1 (r->pool, &a->k.w, a->k.b, t.d, n, k.d);
      bn_conv1x1 (r->pool, &a->v.w, a->v.b, t.d, n, v.d);
      BnAttention at = {
        .n_q = n, .n_kv = n, .n_heads = 1, .n_kv_heads = 1,
        .head_dim = (int) c,
        .q = q.d, .ldq = c, .k = k.d, .ldk = c, .v = v.d, .ldv = c,
        .out = t.d, .ldo = c,
        .scale = (float) (1.0 / sqrt ((double) c)),
      };
      run_note (r, ATTENTION_PACK (n, c));
      bn_attention (r->pool, &at);
      bn_conv1x1 (r->pool, &a->out.w, a->out.b, t.d, n, q.d);
      for (int64_t i = 0; i < n * c; i++)
        x->d[i] += q.d[i];
    }
  act_free (r, &v);
  act_free (r, &k);
  act_free (r, &q);
  act_free (r, &t);
  return ok;
}

static gboolean
mid_forward (Run *r, const BnVaeCoder *cd, Act *x, GError **error)
{
  return resnet_forward (r, &cd->mid[0], x, error)
         && (!cd->has_attention
             || attention_forward (r, &cd->attention, x, error))
         && resnet_forward (r, &cd->mid[1], x, error);
}

static gboolean
levels_forward (Run *r, const BnVae *vae, const BnVaeCoder *cd,
                BnConvMode sampling, Act *x, GError **error)
{
  for (int i = 0; i < vae->cfg.n_levels; i++)
    {
      const BnVaeLevel *lv = &cd->levels[i];
      for (int j = 0; j < lv->n_resnets; j++)
        if (!resnet_forward (r, &lv->resnets[j], x, error))
          return FALSE;
      if (lv->has_sampler
          && (cancelled (r, error)
              || !conv_replace (r, &lv->sampler, sampling, NULL, x, error)))
        return FALSE;
    }
  return TRUE;
}

/* image [out, h·s, w·s] = decoder(z [latent, h, w]), untiled. */
static gboolean
decode_whole (Run *r, const BnVae *vae, const float *z, int64_t h, int64_t w,
              float *image, GError **error)
{
  const BnVaeConfig *cfg = &vae->cfg;
  const BnVaeCoder *cd = &vae->dec;
  Act x;
  if (!act_alloc (r, &x, h, w, cfg->latent_channels, error))
    return FALSE;
  bn_latent_to_tokens (z, x.c, h * w, x.d);
  gboolean ok
      = (!cfg->use_post_quant_conv
         || linear_replace (r, &vae->post_quant, &x, error))
        && conv_replace (r, &cd->conv_in, BN_CONV_SAME, NULL, &x, error)
        && mid_forward (r, cd, &x, error)
        && levels_forward (r, vae, cd, BN_CONV_UP2, &x, error)
        && !cancelled (r, error)
        && conv_replace (r, &cd->conv_out, BN_CONV_SAME, &cd->norm_out, &x,
                         error);
  if (ok)
    bn_latent_from_tokens (x.d, x.c, x.h * x.w, image);
  act_free (r, &x);
  return ok;
}

/* mean [latent, ho, wo] = encoder mean of image [in, h, w], untiled (the
 * caller checked that h and w survive the downsamplings). */
static gboolean
encode_whole (Run *r, const BnVae *vae, const float *image, int64_t h,
              int64_t w, float *mean, GError **error)
{
  const BnVaeConfig *cfg = &vae->cfg;
  const BnVaeCoder *cd = &vae->enc;
  Act x;
  if (!act_alloc (r, &x, h, w, cfg->in_channels, error))
    return FALSE;
  bn_latent_to_tokens (image, x.c, h * w, x.d);
  /* Without quant_conv the mean rows of conv_out are all that is needed;
   * with it, all of conv_out feeds quant_conv's mean rows. */
  const BnVaeConv *last = cfg->use_quant_conv ? &cd->conv_out : &vae->mean_out;
  gboolean ok
      = conv_replace (r, &cd->conv_in, BN_CONV_SAME, NULL, &x, error)
        && levels_forward (r, vae, cd, BN_CONV_DOWN2, &x, error)
        && mid_forward (r, cd, &x, error)
        && !cancelled (r, error)
        && conv_replace (r, last, BN_CONV_SAME, &cd->norm_out, &x, error)
        && (!cfg->use_quant_conv
            || linear_replace (r, &vae->mean_out, &x, error));
  if (ok)
    bn_latent_from_tokens (x.d, x.c, x.h * x.w, mean);
  act_free (r, &x);
  return ok;
}

/* A whole pass: `in` [.., ih, iw] → `out`. */
typedef gboolean (*Pass) (Run *r, const BnVae *vae, const float *in,
                          int64_t ih, int64_t iw, float *out, GError **error);

/* ---- tiles ------------------------------------------------------------- */

/* Tiles along one latent axis of `len`: n tiles of `size` at `start[i]`,
 * and for each the blend weight of its size·s pixels. */
typedef struct {
  int64_t n, size;
  int64_t *start;
  float *weight; /* [n][size·s] */
} TileAxis;

/* Equal tiles of at most `tile`, the fewest that overlap by at least
 * `overlap`, spread evenly from one end to the other. */
static void
tile_count (int64_t len, int tile, int overlap, int64_t *n, int64_t *size)
{
  if (tile <= 0 || len <= tile)
    {
      *n = 1;
      *size = len;
      return;
    }
  int64_t step = tile - overlap;
  *n = (len - overlap + step - 1) / step;
  *size = (len + (*n - 1) * overlap + *n - 1) / *n;
}

/* Each tile's weight ramps linearly across its overlaps with its
 * neighbours (as diffusers' tiled decode blends); weights are then divided
 * by their sum per pixel, so they add to 1 even where three tiles meet. */
static void
tile_axis (int64_t len, int tile, int overlap, int s, TileAxis *ax)
{
  tile_count (len, tile, overlap, &ax->n, &ax->size);
  ax->start = g_new (int64_t, ax->n);
  for (int64_t i = 0; i < ax->n; i++)
    ax->start[i] = ax->n == 1 ? 0 : i * (len - ax->size) / (ax->n - 1);
  int64_t px = ax->size * s;
  ax->weight = g_new (float, ax->n * px);
  double *sum = g_new0 (double, len * s);
  for (int64_t i = 0; i < ax->n; i++)
    {
      double left = i > 0 ? (double) ((ax->start[i - 1] + ax->size
                                       - ax->start[i]) * s)
                          : 0;
      double right = i + 1 < ax->n ? (double) ((ax->start[i] + ax->size
                                                - ax->start[i + 1]) * s)
                                   : 0;
      for (int64_t q = 0; q < px; q++)
        {
          double wq = 1.0;
          if (left > 0)
            wq = MIN (wq, (q + 0.5) / left);
          if (right > 0)
            wq = MIN (wq, (px - q - 0.5) / right);
          ax->weight[i * px + q] = (float) wq;
          sum[ax->start[i] * s + q] += wq;
        }
    }
  for (int64_t i = 0; i < ax->n; i++)
    for (int64_t q = 0; q < px; q++)
      ax->weight[i * px + q]
          = (float) (ax->weight[i * px + q] / sum[ax->start[i] * s + q]);
  g_free (sum);
}

static void
tile_axis_clear (TileAxis *ax)
{
  g_free (ax->start);
  g_free (ax->weight);
}

/* Runs `pass` over tiles of the latent grid (h × w latent pixels) and
 * blends the tile outputs into `out` [out_c, h·out_s, w·out_s]; the input
 * is [in_c, h·in_s, w·in_s].  Decoding has in_s 1 and out_s s, encoding the
 * reverse. */
static gboolean
run_tiled (Run *r, const BnVae *vae, Pass pass, const float *in, int64_t in_c,
           int in_s, float *out, int64_t out_c, int out_s, int64_t h,
           int64_t w, const BnVaeOptions *opt, GError **error)
{
  TileAxis ay, ax;
  tile_axis (h, opt->tile, opt->overlap, out_s, &ay);
  tile_axis (w, opt->tile, opt->overlap, out_s, &ax);
  int64_t ih = h * in_s, iw = w * in_s, oh = h * out_s, ow = w * out_s;
  int64_t tih = ay.size * in_s, tiw = ax.size * in_s;
  int64_t toh = ay.size * out_s, tow = ax.size * out_s;
  memset (out, 0, (size_t) (out_c * oh * ow) * sizeof (float));
  float *ti = run_alloc (r, in_c * tih * tiw, error);
  float *to = ti ? run_alloc (r, out_c * toh * tow, error) : NULL;
  gboolean ok = to != NULL;
  int total = (int) (ay.n * ax.n), done = 0;
  for (int64_t i = 0; ok && i < ay.n; i++)
    for (int64_t j = 0; ok && j < ax.n; j++)
      {
        int64_t iy0 = ay.start[i] * in_s, ix0 = ax.start[j] * in_s;
        for (int64_t c = 0; c < in_c; c++)
          for (int64_t y = 0; y < tih; y++)
            memcpy (ti + (c * tih + y) * tiw, in + (c * ih + iy0 + y) * iw + ix0,
                    (size_t) tiw * sizeof (float));
        ok = !cancelled (r, error) && pass (r, vae, ti, tih, tiw, to, error);
        if (!ok)
          break;
        int64_t oy0 = ay.start[i] * out_s, ox0 = ax.start[j] * out_s;
        const float *wy = ay.weight + i * toh, *wx = ax.weight + j * tow;
        for (int64_t c = 0; c < out_c; c++)
          for (int64_t y = 0; y < toh; y++)
            {
              float *dst = out + (c * oh + oy0 + y) * ow + ox0;
              const float *src = to + (c * toh + y) * tow;
              for (int64_t x = 0; x < tow; x++)
                dst[x] += wy[y] * wx[x] * src[x];
            }
        if (opt->progress)
          opt->progress (++done, total, opt->progress_data);
      }
  run_free (r, to, out_c * toh * tow);
  run_free (r, ti, in_c * tih * tiw);
  tile_axis_clear (&ay);
  tile_axis_clear (&ax);
  return ok;
}

/* Whole, or in tiles when the latent exceeds the tile. */
static gboolean
run_pass (Run *r, const BnVae *vae, Pass pass, const float *in, int64_t in_c,
          int in_s, float *out, int64_t out_c, int out_s, int64_t h,
          int64_t w, const BnVaeOptions *opt, GError **error)
{
  if (opt->tile > 0 && (h > opt->tile || w > opt->tile))
    return run_tiled (r, vae, pass, in, in_c, in_s, out, out_c, out_s, h, w,
                      opt, error);
  gboolean ok = !cancelled (r, error)
                && pass (r, vae, in, h * in_s, w * in_s, out, error);
  if (ok && opt->progress)
    opt->progress (1, 1, opt->progress_data);
  return ok;
}

/* ---- entry points ------------------------------------------------------ */

static void
run_init (Run *r, const BnVae *vae, const BnVaeOptions *opt)
{
  memset (r, 0, sizeof *r);
  r->pool = opt->pool;
  r->n_threads = opt->pool ? bn_thread_pool_size (opt->pool) : 1;
  r->cancel = opt->cancel;
  r->act = opt->act;
  r->groups = vae->cfg.norm_num_groups;
  int widest = 0;
  for (int i = 0; i < vae->cfg.n_levels; i++)
    widest = MAX (widest, vae->cfg.block_out_channels[i]);
  r->scale = g_new (float, widest);
  r->shift = g_new (float, widest);
}

static void
run_clear (Run *r)
{
  g_free (r->scale);
  g_free (r->shift);
}

static gboolean
check_size (const char *what, int64_t h, int64_t w, int64_t max,
            GError **error)
{
  if (h >= 1 && w >= 1 && h <= max && w <= max)
    return TRUE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
               "VAE: %s of %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT
               " is not in 1..%" G_GINT64_FORMAT, what, h, w, max);
  return FALSE;
}

static gboolean
check_tiling (const BnVaeOptions *opt, GError **error)
{
  if (opt->tile >= 0 && opt->overlap >= 0
      && (opt->tile == 0 || opt->overlap < opt->tile))
    return TRUE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
               "VAE: tile %d with overlap %d: need 0 <= overlap < tile (or "
               "tile 0 for no tiling)", opt->tile, opt->overlap);
  return FALSE;
}

gboolean
bn_vae_decode (const BnVae *vae, const float *z, int64_t h, int64_t w,
               float *image, BnVaeOptions *opt, GError **error)
{
  BnVaeOptions defaults = BN_VAE_OPTIONS_INIT;
  if (!opt)
    opt = &defaults;
  const BnVaeConfig *cfg = &vae->cfg;
  int s = bn_vae_scale (cfg);
  if (!check_size ("a latent", h, w, MAX_SIDE / s, error)
      || !check_tiling (opt, error))
    return FALSE;
  Run r;
  run_init (&r, vae, opt);
  gboolean ok = run_pass (&r, vae, decode_whole, z, cfg->latent_channels, 1,
                          image, cfg->out_channels, s, h, w, opt, error);
  opt->peak_bytes = r.peak;
  run_clear (&r);
  return ok;
}

gboolean
bn_vae_encode_mean (const BnVae *vae, const float *image, int64_t h,
                    int64_t w, float *mean, BnVaeOptions *opt, GError **error)
{
  BnVaeOptions defaults = BN_VAE_OPTIONS_INIT;
  if (!opt)
    opt = &defaults;
  const BnVaeConfig *cfg = &vae->cfg;
  int s = bn_vae_scale (cfg);
  int64_t ho, wo;
  if (!check_size ("an image", h, w, MAX_SIDE, error)
      || !check_tiling (opt, error))
    return FALSE;
  if (!bn_vae_encoded_size (cfg, h, w, &ho, &wo))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "VAE: a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT
                   " image is too small for %d downsamplings", h, w,
                   cfg->n_levels - 1);
      return FALSE;
    }
  Run r;
  run_init (&r, vae, opt);
  gboolean ok;
  /* Tiles sit on the latent grid, so only images of whole latent pixels
   * are tiled. */
  if (h == ho * s && w == wo * s)
    ok = run_pass (&r, vae, encode_whole, image, cfg->in_channels, s, mean,
                   cfg->latent_channels, 1, ho, wo, opt, error);
  else
    {
      BnVaeOptions whole = *opt;
      whole.tile = 0;
      ok = run_pass (&r, vae, encode_whole, image, cfg->in_channels, 1, mean,
                     cfg->latent_channels, 1, h, w, &whole, error);
    }
  opt->peak_bytes = r.peak;
  run_clear (&r);
  return ok;
}

/* ---- the buffer plan, replayed ----------------------------------------- */

typedef struct {
  int n_threads;
  size_t live, peak;
} Plan;

static void
plan_alloc (Plan *p, int64_t n)
{
  p->live += (size_t) n * sizeof (float);
  p->peak = MAX (p->peak, p->live);
}

static void
plan_free (Plan *p, int64_t n)
{
  p->live -= (size_t) n * sizeof (float);
}

static void
plan_conv (Plan *p, BnConvMode mode, gboolean pre, int64_t ci, int64_t co,
           int64_t h, int64_t w)
{
  size_t ws = bn_conv3x3_workspace (mode, pre, ci, co, h, w, p->n_threads);
  p->peak = MAX (p->peak, p->live + ws);
}

static void
plan_conv_replace (Plan *p, BnConvMode mode, gboolean pre, int64_t ci,
                   int64_t co, int64_t h, int64_t w)
{
  plan_alloc (p, bn_conv_out_size (mode, h) * bn_conv_out_size (mode, w) * co);
  plan_conv (p, mode, pre, ci, co, h, w);
  plan_free (p, h * w * ci);
}

static void
plan_resnet (Plan *p, int64_t ci, int64_t co, int64_t h, int64_t w)
{
  int64_t n = h * w;
  plan_alloc (p, n * co);
  plan_conv (p, BN_CONV_SAME, TRUE, ci, co, h, w);
  if (ci != co)
    {
      int64_t chunk = MIN (MAX (SHORTCUT_FLOATS / co, 1), n);
      plan_alloc (p, chunk * co);
      if (co > ci)
        plan_alloc (p, n * (co - ci));
      else
        plan_free (p, n * (ci - co));
      plan_free (p, chunk * co);
    }
  plan_conv (p, BN_CONV_SAME, TRUE, co, co, h, w);
  plan_free (p, n * co);
}

static void
plan_mid (Plan *p, const BnVaeConfig *cfg, int64_t c, int64_t h, int64_t w)
{
  plan_resnet (p, c, c, h, w);
  if (cfg->mid_block_add_attention)
    {
      plan_alloc (p, 4 * h * w * c);
      p->peak = MAX (p->peak, p->live + ATTENTION_PACK (h * w, c));
      plan_free (p, 4 * h * w * c);
    }
  plan_resnet (p, c, c, h, w);
}

static void
plan_decode_whole (Plan *p, const BnVaeConfig *cfg, int64_t h, int64_t w)
{
  int n = cfg->n_levels;
  int64_t lc = cfg->latent_channels, top = cfg->block_out_channels[n - 1];
  plan_alloc (p, h * w * lc);
  if (cfg->use_post_quant_conv)
    {
      plan_alloc (p, h * w * lc);
      plan_free (p, h * w * lc);
    }
  plan_conv_replace (p, BN_CONV_SAME, FALSE, lc, top, h, w);
  plan_mid (p, cfg, top, h, w);
  int64_t c = top;
  for (int i = 0; i < n; i++)
    {
      int64_t co = cfg->block_out_channels[n - 1 - i];
      for (int j = 0; j < cfg->layers_per_block + 1; j++)
        {
          plan_resnet (p, c, co, h, w);
          c = co;
        }
      if (i + 1 < n)
        {
          plan_conv_replace (p, BN_CONV_UP2, FALSE, c, c, h, w);
          h *= 2;
          w *= 2;
        }
    }
  plan_conv_replace (p, BN_CONV_SAME, TRUE, c, cfg->out_channels, h, w);
  plan_free (p, h * w * cfg->out_channels);
}

size_t
bn_vae_decode_peak_bytes (const BnVaeConfig *cfg, int64_t h, int64_t w,
                          int n_threads, int tile, int overlap)
{
  BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
  opt.tile = tile;
  opt.overlap = overlap;
  if (h < 1 || w < 1 || !check_tiling (&opt, NULL))
    return 0;
  Plan p = { MAX (n_threads, 1), 0, 0 };
  int s = bn_vae_scale (cfg);
  if (tile > 0 && (h > tile || w > tile))
    {
      int64_t n, th, tw;
      tile_count (h, tile, overlap, &n, &th);
      tile_count (w, tile, overlap, &n, &tw);
      plan_alloc (&p, cfg->latent_channels * th * tw);
      plan_alloc (&p, cfg->out_channels * th * s * tw * s);
      plan_decode_whole (&p, cfg, th, tw);
    }
  else
    plan_decode_whole (&p, cfg, h, w);
  return p.peak;
}
