/* flux2_dit_device.c — the transformer's forward on a backend device.
 *
 * The same steps as flux2_dit.c, in the same order, on device buffers: the
 * residual stream h [S, dim] (text tokens, then image tokens), q|k|v
 * [S, 3·dim], the attention output [S, dim], and chunk buffers for the
 * row-wise work.  Chunks are larger than on the CPU (DEVICE_CHUNK tokens):
 * the tensor-core kernels want many rows, and device memory is not the
 * CPU's cache. */
#include "flux2_dit_device.h"

#include "ops.h"

#include <math.h>
#include <string.h>

/* Tokens per chunk: every sequence up to 2048² pixels is one chunk, and the
 * chunk buffers stay under 1.4 GB for klein. */
#define DEVICE_CHUNK 8192

typedef struct {
  BnBackendWeight *qkv[3], *proj, *mlp_in, *mlp_out;
  float *q_norm, *k_norm;
} DevStream;

typedef struct {
  BnBackendWeight *linear1_qkv, *linear1_mlp, *linear2;
  float *q_norm, *k_norm;
} DevSingle;

struct BnFlux2DitDevice {
  BnBackend *be;
  GMutex lock;               /* one forward at a time: the buffers below */
  BnBackendWeight *img_in, *txt_in, *final_out;
  DevStream *txt, *img;      /* [num_layers] each */
  DevSingle *singles;        /* [num_single_layers] */
  int n_layers, n_singles;
  size_t weight_bytes;
  /* The activation buffers, for the largest forward so far. */
  float *ws;
  int64_t ws_floats;
};

/* Offsets (floats) of the activation buffers for s tokens. */
typedef struct {
  int64_t h, qkv, att, xr, ur, cr, yr, cos_t, sin_t, mods, x, out;
  int64_t total;
} DevLayout;

static void
dev_layout (const BnFlux2Config *c, int64_t s, int64_t chunk, DevLayout *l)
{
  int64_t d = c->dim, m = c->mlp_hidden, r = MIN (s, chunk);
  int64_t at = 0;
#define TAKE(field, n) (l->field = at, at += (n))
  TAKE (h, s * d);
  TAKE (qkv, s * 3 * d);
  TAKE (att, s * d);
  TAKE (xr, r * d);
  TAKE (ur, r * 2 * m);
  TAKE (cr, r * (d + m));
  TAKE (yr, r * d);
  TAKE (cos_t, s * (c->head_dim / 2));
  TAKE (sin_t, s * (c->head_dim / 2));
  TAKE (mods, 17 * d); /* img 6·dim, txt 6·dim, single 3·dim, final 2·dim */
  /* Staging for the text features, then the image tokens. */
  TAKE (x, s * MAX (c->in_channels, c->context_dim));
  TAKE (out, s * c->out_channels);
#undef TAKE
  l->total = at;
}

static BnBackendWeight *
upload_weight (BnFlux2DitDevice *dev, const BnTensor *t, GError **error)
{
  BnBackendWeight *w = dev->be->ops->weight_new (dev->be->impl, t, error);
  if (w)
    dev->weight_bytes += bn_tensor_total_bytes (t);
  return w;
}

static float *
upload_floats (BnFlux2DitDevice *dev, const float *v, int64_t n,
               GError **error)
{
  const BnBackendOps *o = dev->be->ops;
  float *d = o->alloc (dev->be->impl, (size_t) n * sizeof (float), error);
  if (d && !o->upload (dev->be->impl, d, v, (size_t) n * sizeof (float), error))
    {
      o->free_ (dev->be->impl, d);
      return NULL;
    }
  dev->weight_bytes += (size_t) n * sizeof (float);
  return d;
}

static gboolean
upload_stream (BnFlux2DitDevice *dev, const BnFlux2Stream *s, int head_dim,
               DevStream *out, GError **error)
{
  for (int j = 0; j < s->n_qkv; j++)
    if (!(out->qkv[j] = upload_weight (dev, &s->qkv[j], error)))
      return FALSE;
  return (out->proj = upload_weight (dev, &s->proj, error))
         && (out->mlp_in = upload_weight (dev, &s->mlp_in, error))
         && (out->mlp_out = upload_weight (dev, &s->mlp_out, error))
         && (out->q_norm = upload_floats (dev, s->q_norm, head_dim, error))
         && (out->k_norm = upload_floats (dev, s->k_norm, head_dim, error));
}

static void
free_stream (BnFlux2DitDevice *dev, DevStream *s)
{
  const BnBackendOps *o = dev->be->ops;
  for (int j = 0; j < 3; j++)
    o->weight_free (dev->be->impl, s->qkv[j]);
  o->weight_free (dev->be->impl, s->proj);
  o->weight_free (dev->be->impl, s->mlp_in);
  o->weight_free (dev->be->impl, s->mlp_out);
  o->free_ (dev->be->impl, s->q_norm);
  o->free_ (dev->be->impl, s->k_norm);
}

void
bn_flux2_dit_device_free (BnFlux2DitDevice *dev)
{
  if (!dev)
    return;
  const BnBackendOps *o = dev->be->ops;
  BnBackendImpl *impl = dev->be->impl;
  o->weight_free (impl, dev->img_in);
  o->weight_free (impl, dev->txt_in);
  o->weight_free (impl, dev->final_out);
  for (int i = 0; i < dev->n_layers; i++)
    {
      free_stream (dev, &dev->txt[i]);
      free_stream (dev, &dev->img[i]);
    }
  for (int i = 0; i < dev->n_singles; i++)
    {
      DevSingle *s = &dev->singles[i];
      o->weight_free (impl, s->linear1_qkv);
      o->weight_free (impl, s->linear1_mlp);
      o->weight_free (impl, s->linear2);
      o->free_ (impl, s->q_norm);
      o->free_ (impl, s->k_norm);
    }
  o->free_ (impl, dev->ws);
  g_free (dev->txt);
  g_free (dev->img);
  g_free (dev->singles);
  g_mutex_clear (&dev->lock);
  g_free (dev);
}

BnFlux2DitDevice *
bn_flux2_dit_device_new (const BnFlux2Dit *dit, BnBackend *be, GError **error)
{
  const BnFlux2Config *c = &dit->cfg;
  if (c->head_dim != 32 && c->head_dim != 64 && c->head_dim != 128)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_BACKEND,
                   "the %s attention needs head_dim 32, 64 or 128, not %d",
                   be->ops->name, c->head_dim);
      return NULL;
    }
  BnFlux2DitDevice *dev = g_new0 (BnFlux2DitDevice, 1);
  dev->be = be;
  g_mutex_init (&dev->lock);
  dev->txt = g_new0 (DevStream, c->num_layers);
  dev->img = g_new0 (DevStream, c->num_layers);
  dev->singles = g_new0 (DevSingle, c->num_single_layers);
  dev->n_layers = c->num_layers;
  dev->n_singles = c->num_single_layers;
  gboolean ok = (dev->img_in = upload_weight (dev, &dit->img_in, error))
                && (dev->txt_in = upload_weight (dev, &dit->txt_in, error))
                && (dev->final_out = upload_weight (dev, &dit->final_out, error));
  for (int i = 0; ok && i < c->num_layers; i++)
    ok = upload_stream (dev, &dit->doubles[i].txt, c->head_dim, &dev->txt[i], error)
         && upload_stream (dev, &dit->doubles[i].img, c->head_dim, &dev->img[i], error);
  for (int i = 0; ok && i < c->num_single_layers; i++)
    {
      const BnFlux2SingleBlock *b = &dit->singles[i];
      DevSingle *s = &dev->singles[i];
      ok = (s->linear1_qkv = upload_weight (dev, &b->linear1_qkv, error))
           && (s->linear1_mlp = upload_weight (dev, &b->linear1_mlp, error))
           && (s->linear2 = upload_weight (dev, &b->linear2, error))
           && (s->q_norm = upload_floats (dev, b->q_norm, c->head_dim, error))
           && (s->k_norm = upload_floats (dev, b->k_norm, c->head_dim, error));
    }
  if (!ok)
    {
      bn_flux2_dit_device_free (dev);
      return NULL;
    }
  g_info ("transformer resident on %s: %.2f GB of weights",
          be->ops->device_name (be->impl), dev->weight_bytes / 1e9);
  return dev;
}

size_t
bn_flux2_dit_device_weight_bytes (const BnFlux2DitDevice *dev)
{
  return dev->weight_bytes;
}

/* ---- the forward -------------------------------------------------------- */

typedef struct {
  const BnFlux2Config *c;
  BnBackend *be;
  int64_t n_txt, n_tok, chunk, ld_qkv;
  float *h, *qkv, *att, *xr, *ur, *cr, *yr, *cos_t, *sin_t;
} DevFwd;

/* Chains backend calls: each step runs only while the previous succeeded. */
#define OPS(f) ((f)->be->ops)
#define IMPL(f) ((f)->be->impl)

static gboolean
ln_mod (const DevFwd *f, const float *x, int64_t rows, const float *shift,
        const float *scale, float *y, GError **error)
{
  return OPS (f)->layernorm (IMPL (f), x, y, rows, f->c->dim, f->c->dim,
                             f->c->eps, scale, shift, error);
}

static gboolean
linear (const DevFwd *f, const BnBackendWeight *w, const float *x,
        int64_t rows, int64_t ldx, float *y, int64_t ldy, GError **error)
{
  return OPS (f)->linear (IMPL (f), w, x, rows, ldx, NULL, y, ldy, error);
}

/* QK RMSNorm per head, then RoPE, of tokens [r0, r0 + rows). */
static gboolean
finish_qkv (const DevFwd *f, int64_t r0, int64_t rows, const float *q_norm,
            const float *k_norm, GError **error)
{
  const BnFlux2Config *c = f->c;
  float *q = f->qkv + r0 * f->ld_qkv, *k = q + c->dim;
  int64_t half = c->head_dim / 2;
  return OPS (f)->rmsnorm (IMPL (f), q, rows, c->n_heads, c->head_dim,
                           f->ld_qkv, q_norm, c->eps, error)
         && OPS (f)->rmsnorm (IMPL (f), k, rows, c->n_heads, c->head_dim,
                              f->ld_qkv, k_norm, c->eps, error)
         && OPS (f)->rope (IMPL (f), q, rows, f->ld_qkv, c->n_heads,
                           c->head_dim, f->cos_t + r0 * half,
                           f->sin_t + r0 * half, FALSE, error)
         && OPS (f)->rope (IMPL (f), k, rows, f->ld_qkv, c->n_heads,
                           c->head_dim, f->cos_t + r0 * half,
                           f->sin_t + r0 * half, FALSE, error);
}

static gboolean
attention (const DevFwd *f, GError **error)
{
  const BnFlux2Config *c = f->c;
  BnBackendAttention a = {
    .n_q = f->n_tok, .n_kv = f->n_tok,
    .n_heads = c->n_heads, .n_kv_heads = c->n_heads, .head_dim = c->head_dim,
    .q = f->qkv, .ldq = f->ld_qkv,
    .k = f->qkv + c->dim, .ldk = f->ld_qkv,
    .v = f->qkv + 2 * c->dim, .ldv = f->ld_qkv,
    .out = f->att, .ldo = c->dim,
    .scale = (float) (1.0 / sqrt ((double) c->head_dim)),
  };
  return OPS (f)->attention (IMPL (f), &a, error);
}

static gboolean
stream_qkv (const DevFwd *f, const BnFlux2Stream *s, const DevStream *ds,
            const float *mod, int64_t begin, int64_t end, GError **error)
{
  int64_t d = f->c->dim, width = 3 * d / s->n_qkv;
  for (int64_t r0 = begin; r0 < end; r0 += f->chunk)
    {
      int64_t rows = MIN (f->chunk, end - r0);
      if (!ln_mod (f, f->h + r0 * d, rows, mod, mod + d, f->xr, error))
        return FALSE;
      for (int j = 0; j < s->n_qkv; j++)
        if (!linear (f, ds->qkv[j], f->xr, rows, d,
                     f->qkv + r0 * f->ld_qkv + j * width, f->ld_qkv, error))
          return FALSE;
      if (!finish_qkv (f, r0, rows, ds->q_norm, ds->k_norm, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
stream_update (const DevFwd *f, const DevStream *ds, const float *mod,
               int64_t begin, int64_t end, GError **error)
{
  int64_t d = f->c->dim, m = f->c->mlp_hidden;
  for (int64_t r0 = begin; r0 < end; r0 += f->chunk)
    {
      int64_t rows = MIN (f->chunk, end - r0);
      float *h = f->h + r0 * d;
      if (!linear (f, ds->proj, f->att + r0 * d, rows, d, f->yr, d, error)
          || !OPS (f)->gate_add (IMPL (f), h, d, f->yr, d, mod + 2 * d, rows,
                                 d, error)
          || !ln_mod (f, h, rows, mod + 3 * d, mod + 4 * d, f->xr, error)
          || !linear (f, ds->mlp_in, f->xr, rows, d, f->ur, 2 * m, error)
          || !OPS (f)->swiglu (IMPL (f), f->ur, 2 * m, f->ur + m, 2 * m, f->ur,
                               2 * m, rows, m, error)
          || !linear (f, ds->mlp_out, f->ur, rows, 2 * m, f->yr, d, error)
          || !OPS (f)->gate_add (IMPL (f), h, d, f->yr, d, mod + 5 * d, rows,
                                 d, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
single_block (const DevFwd *f, const DevSingle *s, const float *mod,
              GError **error)
{
  int64_t d = f->c->dim, m = f->c->mlp_hidden;
  for (int64_t r0 = 0; r0 < f->n_tok; r0 += f->chunk)
    {
      int64_t rows = MIN (f->chunk, f->n_tok - r0);
      if (!ln_mod (f, f->h + r0 * d, rows, mod, mod + d, f->xr, error)
          || !linear (f, s->linear1_qkv, f->xr, rows, d,
                      f->qkv + r0 * f->ld_qkv, f->ld_qkv, error)
          || !finish_qkv (f, r0, rows, s->q_norm, s->k_norm, error))
        return FALSE;
    }
  if (!attention (f, error))
    return FALSE;
  for (int64_t r0 = 0; r0 < f->n_tok; r0 += f->chunk)
    {
      int64_t rows = MIN (f->chunk, f->n_tok - r0);
      if (!ln_mod (f, f->h + r0 * d, rows, mod, mod + d, f->xr, error)
          || !linear (f, s->linear1_mlp, f->xr, rows, d, f->ur, 2 * m, error)
          || !OPS (f)->copy_rows (IMPL (f), f->cr, d + m, f->att + r0 * d, d,
                                  rows, d, error)
          || !OPS (f)->swiglu (IMPL (f), f->ur, 2 * m, f->ur + m, 2 * m,
                               f->cr + d, d + m, rows, m, error)
          || !linear (f, s->linear2, f->cr, rows, d + m, f->yr, d, error)
          || !OPS (f)->gate_add (IMPL (f), f->h + r0 * d, d, f->yr, d,
                                 mod + 2 * d, rows, d, error))
        return FALSE;
    }
  return TRUE;
}

/* The conditioning on the CPU, as bn_flux2_dit_forward computes it:
 * mods = [mod_img 6·dim | mod_txt 6·dim | mod_single 3·dim | final 2·dim]. */
static void
conditioning (const BnFlux2Dit *dit, BnThreadPool *pool, float t, float *mods)
{
  const BnFlux2Config *c = &dit->cfg;
  int64_t d = c->dim;
  float *temb = g_new (float, c->time_channels);
  float *hid = g_new (float, d), *svec = g_new (float, d);
  bn_flux2_timestep_embedding (t, c->time_channels, temb);
  bn_linear (pool, &dit->time_in, temb, 1, c->time_channels, hid, d);
  bn_silu (hid, d);
  bn_linear (pool, &dit->time_out, hid, 1, d, svec, d);
  bn_silu (svec, d);
  bn_linear (pool, &dit->mod_img, svec, 1, d, mods, 6 * d);
  bn_linear (pool, &dit->mod_txt, svec, 1, d, mods + 6 * d, 6 * d);
  bn_linear (pool, &dit->mod_single, svec, 1, d, mods + 12 * d, 3 * d);
  bn_linear (pool, &dit->final_mod, svec, 1, d, mods + 15 * d, 2 * d);
  g_free (temb);
  g_free (hid);
  g_free (svec);
}

static gboolean
cancelled (const BnFlux2Input *in, GError **error)
{
  if (!in->cancel || !g_atomic_int_get (in->cancel))
    return FALSE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED,
               "transformer forward cancelled");
  return TRUE;
}

/* The conditioning and the RoPE tables of one forward, made on the CPU and
 * uploaded. */
static gboolean
upload_tables (const BnFlux2Dit *dit, const DevFwd *f, float *dmods,
               BnThreadPool *pool, const BnFlux2Input *in, GError **error)
{
  const BnFlux2Config *c = &dit->cfg;
  int64_t d = c->dim, half = c->head_dim / 2;
  float *mods = g_new (float, 17 * d);
  float *cos_t = g_new (float, f->n_tok * half);
  float *sin_t = g_new (float, f->n_tok * half);
  conditioning (dit, pool, in->t, mods);
  if (in->n_txt > 0)
    bn_rope_table_axes (in->txt_ids, in->n_txt, c->axes_dim, c->n_axes,
                        c->rope_theta, cos_t, sin_t);
  bn_rope_table_axes (in->img_ids, in->n_img, c->axes_dim, c->n_axes,
                      c->rope_theta, cos_t + in->n_txt * half,
                      sin_t + in->n_txt * half);
  size_t table = (size_t) (f->n_tok * half) * sizeof (float);
  gboolean ok = OPS (f)->upload (IMPL (f), dmods, mods,
                                 (size_t) (17 * d) * sizeof (float), error)
                && OPS (f)->upload (IMPL (f), f->cos_t, cos_t, table, error)
                && OPS (f)->upload (IMPL (f), f->sin_t, sin_t, table, error);
  g_free (mods);
  g_free (cos_t);
  g_free (sin_t);
  return ok;
}

/* The activation buffers for n_tok tokens in chunks of `chunk`, grown when
 * a forward needs more. */
static float *
workspace (BnFlux2DitDevice *dev, const BnFlux2Config *c, int64_t n_tok,
           int64_t chunk, DevLayout *l, GError **error)
{
  dev_layout (c, n_tok, chunk, l);
  if (dev->ws && l->total <= dev->ws_floats)
    return dev->ws;
  dev->be->ops->free_ (dev->be->impl, dev->ws);
  dev->ws_floats = 0;
  dev->ws = dev->be->ops->alloc (dev->be->impl,
                                 (size_t) l->total * sizeof (float), error);
  if (dev->ws)
    dev->ws_floats = l->total;
  return dev->ws;
}

static gboolean
forward_locked (const BnFlux2Dit *dit, BnFlux2DitDevice *dev,
                BnThreadPool *pool, const BnFlux2Input *in, float *out,
                GError **error)
{
  const BnFlux2Config *c = &dit->cfg;
  int64_t n_tok = in->n_txt + in->n_img, d = c->dim;
  int64_t chunk = in->chunk_rows > 0 ? MIN (in->chunk_rows, DEVICE_CHUNK)
                                     : DEVICE_CHUNK;
  DevLayout l;
  float *ws = workspace (dev, c, n_tok, chunk, &l, error);
  if (!ws)
    return FALSE;
  DevFwd f = {
    .c = c, .be = dev->be, .n_txt = in->n_txt, .n_tok = n_tok,
    .chunk = chunk, .ld_qkv = 3 * d,
    .h = ws + l.h, .qkv = ws + l.qkv, .att = ws + l.att, .xr = ws + l.xr,
    .ur = ws + l.ur, .cr = ws + l.cr, .yr = ws + l.yr,
    .cos_t = ws + l.cos_t, .sin_t = ws + l.sin_t,
  };
  float *mods = ws + l.mods;
  float *mod_img = mods, *mod_txt = mods + 6 * d, *mod_single = mods + 12 * d;
  float *mod_final = mods + 15 * d;
  const BnBackendOps *o = dev->be->ops;
  if (!upload_tables (dit, &f, mods, pool, in, error))
    return FALSE;

  /* Tokens into the residual stream, text first, through one staging
   * buffer (the text is projected before the image tokens overwrite it). */
  if (in->n_txt > 0
      && (!o->upload (dev->be->impl, ws + l.x, in->ctx,
                      (size_t) (in->n_txt * c->context_dim) * sizeof (float),
                      error)
          || !linear (&f, dev->txt_in, ws + l.x, in->n_txt, c->context_dim,
                      f.h, d, error)))
    return FALSE;
  if (!o->upload (dev->be->impl, ws + l.x, in->x,
                  (size_t) (in->n_img * c->in_channels) * sizeof (float), error)
      || !linear (&f, dev->img_in, ws + l.x, in->n_img, c->in_channels,
                  f.h + in->n_txt * d, d, error))
    return FALSE;

  int total = c->num_layers + c->num_single_layers, done = 0;
  for (int i = 0; i < c->num_layers; i++)
    {
      const BnFlux2DoubleBlock *b = &dit->doubles[i];
      if (cancelled (in, error)
          || !stream_qkv (&f, &b->txt, &dev->txt[i], mod_txt, 0, f.n_txt, error)
          || !stream_qkv (&f, &b->img, &dev->img[i], mod_img, f.n_txt, n_tok, error)
          || !attention (&f, error)
          || !stream_update (&f, &dev->txt[i], mod_txt, 0, f.n_txt, error)
          || !stream_update (&f, &dev->img[i], mod_img, f.n_txt, n_tok, error))
        return FALSE;
      if (in->progress)
        in->progress (in->progress_data, ++done, total);
    }
  for (int i = 0; i < c->num_single_layers; i++)
    {
      if (cancelled (in, error)
          || !single_block (&f, &dev->singles[i], mod_single, error))
        return FALSE;
      if (in->progress)
        in->progress (in->progress_data, ++done, total);
    }
  if (cancelled (in, error))
    return FALSE;

  /* Final layer on the wanted image tokens only. */
  const float *shift = dit->final_shift_first ? mod_final : mod_final + d;
  const float *scale = dit->final_shift_first ? mod_final + d : mod_final;
  float *dout = ws + l.out;
  for (int64_t r0 = in->n_txt; r0 < in->n_txt + in->n_out; r0 += f.chunk)
    {
      int64_t rows = MIN (f.chunk, in->n_txt + in->n_out - r0);
      if (!ln_mod (&f, f.h + r0 * d, rows, shift, scale, f.xr, error)
          || !linear (&f, dev->final_out, f.xr, rows, d,
                      dout + (r0 - in->n_txt) * c->out_channels,
                      c->out_channels, error))
        return FALSE;
    }
  return o->download (dev->be->impl, out, dout,
                      (size_t) (in->n_out * c->out_channels) * sizeof (float),
                      error);
}

gboolean
bn_flux2_dit_device_forward (const BnFlux2Dit *dit, BnFlux2DitDevice *dev,
                             BnThreadPool *pool, const BnFlux2Input *in,
                             float *out, GError **error)
{
  if (!bn_flux2_check_input (dit, in, out, error))
    return FALSE;
  g_mutex_lock (&dev->lock);
  gboolean ok = forward_locked (dit, dev, pool, in, out, error);
  g_mutex_unlock (&dev->lock);
  return ok;
}
