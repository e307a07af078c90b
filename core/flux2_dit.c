/* flux2_dit.c — the FLUX.2 transformer's forward pass
 * (flux2_klein_spec.md §2.2–2.5): timestep embedding and shared
 * modulations, input projections, RoPE tables, double-stream blocks,
 * single-stream blocks and the final layer.
 *
 * Memory: the residual stream h holds the text tokens then the image tokens
 * ([S, dim], S = n_txt + n_img), so the joint sequence needs no copying.
 * Besides h, only what attention needs whole is kept for all S tokens: q|k|v
 * ([S, 3·dim]) and the attention output ([S, dim]).  Every other activation
 * lives in chunk buffers of a few tokens.  The single block runs linear1 in
 * two passes over its rows: q|k|v for all tokens before attention, then the
 * MLP rows chunk by chunk after it, straight into linear2 — so the 18432
 * MLP features of klein never exist for all tokens.  The default chunk,
 * BN_FLUX2_CHUNK_ROWS, has enough rows that the linear kernels reuse each
 * decoded weight tile many times (at 128 rows, decoding the bf16 path's
 * weight panels took 7 % of a step's profile, at 512 rows 3 %), and few
 * enough that the chunk buffers stay under 80 MB for klein.
 *
 * Element-wise work is done in passes over rows that fuse what a row needs
 * (LayerNorm with modulation; gate with residual; QK RMSNorm with RoPE), in
 * parallel over rows, so results are independent of the thread count. */
#include "flux2_dit.h"

#include "bonsai/bonsai.h"
#include "kernels/kernels.h"
#include "ops.h"

#include <math.h>
#include <string.h>

/* Bound on tokens per forward, so workspace sizes stay far from overflow. */
#define MAX_TOKENS (1 << 24)

/* The workspace: offsets in floats. */
typedef struct {
  guint64 h, qkv, att, xr, ur, cr, yr, cos_t, sin_t;
  guint64 temb, hid, svec, mod_img, mod_txt, mod_single, mod_final;
  guint64 total;
} Layout;

static int64_t
chunk_of (int64_t chunk_rows)
{
  /* A chunk longer than any sequence is the whole sequence. */
  return chunk_rows > 0 ? MIN (chunk_rows, MAX_TOKENS) : BN_FLUX2_CHUNK_ROWS;
}

static gboolean
layout_for (const BnFlux2Config *c, int64_t n_tok, int64_t chunk, Layout *l)
{
  if (n_tok < 1 || n_tok > MAX_TOKENS || chunk < 1)
    return FALSE;
  guint64 s = (guint64) n_tok, d = (guint64) c->dim, m = (guint64) c->mlp_hidden;
  guint64 r = MIN (s, (guint64) chunk);
  guint64 half = (guint64) c->head_dim / 2;
  guint64 at = 0;
#define TAKE(field, n) (l->field = at, at += (n))
  TAKE (h, s * d);
  TAKE (qkv, s * 3 * d);
  TAKE (att, s * d);
  TAKE (xr, r * d);
  TAKE (ur, r * 2 * m);
  TAKE (cr, r * (d + m));
  TAKE (yr, r * d);
  TAKE (cos_t, s * half);
  TAKE (sin_t, s * half);
  TAKE (temb, (guint64) c->time_channels);
  TAKE (hid, d);
  TAKE (svec, d);
  TAKE (mod_img, 6 * d);
  TAKE (mod_txt, 6 * d);
  TAKE (mod_single, 3 * d);
  TAKE (mod_final, 2 * d);
#undef TAKE
  l->total = at;
  /* Config bounds (flux2_dit_load.c) keep `at` below 2^46 floats. */
  return at <= G_MAXSIZE / sizeof (float);
}

size_t
bn_flux2_workspace_bytes (const BnFlux2Config *cfg, int64_t n_tokens,
                          int64_t chunk_rows)
{
  Layout l;
  return layout_for (cfg, n_tokens, chunk_of (chunk_rows), &l)
           ? (size_t) l.total * sizeof (float) : 0;
}

/* Everything one forward works on. */
typedef struct {
  const BnFlux2Config *c;
  BnThreadPool *pool;
  int64_t n_txt, n_tok;
  int64_t chunk;  /* tokens per chunk */
  BnActPrecision act; /* of the blocks' linears */
  int64_t ld_qkv;
  float *h;       /* [n_tok, dim] residual stream: text, then image tokens */
  float *qkv;     /* [n_tok, 3·dim] q, k, v after QK norm and RoPE */
  float *att;     /* [n_tok, dim] attention output */
  float *xr;      /* [chunk, dim] modulated LayerNorm of a chunk */
  float *ur;      /* [chunk, 2·mlp_hidden] SwiGLU inputs: gate, up */
  float *cr;      /* [chunk, dim + mlp_hidden] single-block linear2 input */
  float *yr;      /* [chunk, dim] projections before gating */
  float *cos_t, *sin_t; /* [n_tok, head_dim/2] RoPE tables */
} Fwd;

/* ---- row passes --------------------------------------------------------- */

typedef struct {
  const float *x;
  float *y;
  int64_t n;
  const float *shift, *scale;
  float eps;
} LnModJob;

/* y = (1 + scale)·LayerNorm(x) + shift, per row of n values. */
static void
ln_mod_rows (void *ctx, int64_t begin, int64_t end, int thread)
{
  const LnModJob *j = ctx;
  int64_t n = j->n;
  for (int64_t r = begin; r < end; r++)
    {
      const float *x = j->x + r * n;
      float *y = j->y + r * n;
      /* Two passes in double: the mean and variance torch's LayerNorm gets. */
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < n; i++)
        sum += x[i];
      float mean = (float) (sum / (double) n);
      for (int64_t i = 0; i < n; i++)
        {
          double dv = (double) (x[i] - mean);
          sq += dv * dv;
        }
      float rstd = (float) (1.0 / sqrt (sq / (double) n + j->eps));
      for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] - mean) * rstd * (1.0f + j->scale[i]) + j->shift[i];
    }
}

static void
ln_mod (const Fwd *f, const float *x, int64_t rows, const float *shift,
        const float *scale, float *y)
{
  LnModJob j = { x, y, f->c->dim, shift, scale, f->c->eps };
  bn_parallel_for (f->pool, rows, ln_mod_rows, &j);
}

typedef struct {
  float *h;
  const float *y;
  const float *gate;
  int64_t n;
} GateJob;

/* h += gate·y, per row. */
static void
gate_rows (void *ctx, int64_t begin, int64_t end, int thread)
{
  const GateJob *j = ctx;
  for (int64_t r = begin; r < end; r++)
    for (int64_t i = 0; i < j->n; i++)
      j->h[r * j->n + i] += j->gate[i] * j->y[r * j->n + i];
}

static void
gate_residual (const Fwd *f, float *h, int64_t rows, const float *gate)
{
  GateJob j = { h, f->yr, gate, f->c->dim };
  bn_parallel_for (f->pool, rows, gate_rows, &j);
}

typedef struct {
  float *u;         /* rows of [gate | up], 2·m values each */
  int64_t m;
} SwigluJob;

/* gate = silu(gate)·up in place, per row; the next linear reads the first
 * m values of each row. */
static void
swiglu_rows (void *ctx, int64_t begin, int64_t end, int thread)
{
  const SwigluJob *j = ctx;
  for (int64_t r = begin; r < end; r++)
    {
      float *u = j->u + r * 2 * j->m;
      bn_swiglu (u, u + j->m, u, j->m);
    }
}

typedef struct {
  const Fwd *f;
  int64_t row0;     /* first token of the chunk */
  const float *q_norm, *k_norm;
} QkvJob;

/* Finishes q and k of tokens row0 + [begin, end): RMS-normalises every
 * head, then rotates it. */
static void
qkv_rows (void *ctx, int64_t begin, int64_t end, int thread)
{
  const QkvJob *j = ctx;
  const Fwd *f = j->f;
  const BnFlux2Config *c = f->c;
  int64_t d = c->dim;
  for (int64_t r = begin; r < end; r++)
    {
      float *row = f->qkv + (j->row0 + r) * f->ld_qkv;
      bn_rmsnorm_rows (row, c->n_heads, c->head_dim, c->head_dim, j->q_norm, c->eps);
      bn_rmsnorm_rows (row + d, c->n_heads, c->head_dim, c->head_dim, j->k_norm, c->eps);
    }
  int64_t t0 = j->row0 + begin, half = c->head_dim / 2;
  for (int part = 0; part < 2; part++) /* q, then k */
    bn_rope_interleaved (f->qkv + t0 * f->ld_qkv + part * d, end - begin,
                         f->ld_qkv, c->n_heads, c->head_dim,
                         f->cos_t + t0 * half, f->sin_t + t0 * half);
}

static void
finish_qkv (const Fwd *f, int64_t row0, int64_t rows, const float *q_norm,
            const float *k_norm)
{
  QkvJob j = { f, row0, q_norm, k_norm };
  bn_parallel_for (f->pool, rows, qkv_rows, &j);
}

typedef struct {
  const Fwd *f;
  int64_t row0;
} CatJob;

/* The single block's linear2 input for tokens row0 + [begin, end): their
 * attention output, then the SwiGLU of their MLP features. */
static void
cat_rows (void *ctx, int64_t begin, int64_t end, int thread)
{
  const CatJob *j = ctx;
  const Fwd *f = j->f;
  int64_t d = f->c->dim, m = f->c->mlp_hidden;
  for (int64_t r = begin; r < end; r++)
    {
      float *row = f->cr + r * (d + m);
      memcpy (row, f->att + (j->row0 + r) * d, (size_t) d * sizeof (float));
      bn_swiglu (f->ur + r * 2 * m, f->ur + r * 2 * m + m, row + d, m);
    }
}

/* Joint attention over all tokens: q|k|v → att. */
static void
attention (const Fwd *f)
{
  const BnFlux2Config *c = f->c;
  BnAttention a = {
    .n_q = f->n_tok, .n_kv = f->n_tok,
    .n_heads = c->n_heads, .n_kv_heads = c->n_heads, .head_dim = c->head_dim,
    .q = f->qkv, .ldq = f->ld_qkv,
    .k = f->qkv + c->dim, .ldk = f->ld_qkv,
    .v = f->qkv + 2 * c->dim, .ldv = f->ld_qkv,
    .out = f->att, .ldo = c->dim,
    .scale = (float) (1.0 / sqrt ((double) c->head_dim)),
    /* lut runs everything but the binary linears as bf16. */
    .bf16 = f->act == BN_ACT_BF16 || f->act == BN_ACT_LUT,
  };
  bn_attention (f->pool, &a);
}

/* ---- double-stream block ------------------------------------------------ */

/* q, k, v of one stream's tokens [begin, end).  mod: shift1, scale1, gate1,
 * shift2, scale2, gate2. */
static void
stream_qkv (const Fwd *f, const BnFlux2Stream *s, const float *mod,
            int64_t begin, int64_t end)
{
  int64_t d = f->c->dim, width = 3 * d / s->n_qkv;
  for (int64_t r0 = begin; r0 < end; r0 += f->chunk)
    {
      int64_t rows = MIN (f->chunk, end - r0);
      ln_mod (f, f->h + r0 * d, rows, mod, mod + d, f->xr);
      for (int j = 0; j < s->n_qkv; j++)
        bn_linear_lowp (f->pool, f->act, &s->qkv[j], f->xr, rows, d,
                   f->qkv + r0 * f->ld_qkv + j * width, f->ld_qkv);
      finish_qkv (f, r0, rows, s->q_norm, s->k_norm);
    }
}

/* After attention: h += gate1·proj(a); h += gate2·MLP(mod2(h)), per chunk. */
static void
stream_update (const Fwd *f, const BnFlux2Stream *s, const float *mod,
               int64_t begin, int64_t end)
{
  int64_t d = f->c->dim, m = f->c->mlp_hidden;
  for (int64_t r0 = begin; r0 < end; r0 += f->chunk)
    {
      int64_t rows = MIN (f->chunk, end - r0);
      float *h = f->h + r0 * d;
      bn_linear_lowp (f->pool, f->act, &s->proj, f->att + r0 * d, rows, d, f->yr, d);
      gate_residual (f, h, rows, mod + 2 * d);
      ln_mod (f, h, rows, mod + 3 * d, mod + 4 * d, f->xr);
      bn_linear_lowp (f->pool, f->act, &s->mlp_in, f->xr, rows, d, f->ur, 2 * m);
      SwigluJob sw = { f->ur, m };
      bn_parallel_for (f->pool, rows, swiglu_rows, &sw);
      bn_linear_lowp (f->pool, f->act, &s->mlp_out, f->ur, rows, 2 * m, f->yr, d);
      gate_residual (f, h, rows, mod + 5 * d);
    }
}

/* The conditioning matrices (time MLP, the three modulations, the final
 * layer's, txt_in: 0.39 GB of the release's 0.97 GB) are read once per
 * forward, not once per block.  Dropping their mapped pages after use keeps
 * them out of the resident set while the blocks run; the next forward maps
 * them back from the page cache at the cost of minor faults. */
static void
drop_once_per_forward (const BnFlux2Dit *dit, const BnTensor *w)
{
  bn_safetensors_drop_range (dit->st, w->data, bn_tensor_nbytes (w));
}

static void
double_block (const Fwd *f, const BnFlux2DoubleBlock *b, const float *mod_img,
              const float *mod_txt)
{
  stream_qkv (f, &b->txt, mod_txt, 0, f->n_txt);
  stream_qkv (f, &b->img, mod_img, f->n_txt, f->n_tok);
  attention (f);
  stream_update (f, &b->txt, mod_txt, 0, f->n_txt);
  stream_update (f, &b->img, mod_img, f->n_txt, f->n_tok);
}

/* ---- single-stream block ------------------------------------------------ */

/* h += gate·linear2(attention ⊕ SwiGLU), with q|k|v|gate|up = linear1 of
 * the modulated LayerNorm of h.  mod: shift, scale, gate. */
static void
single_block (const Fwd *f, const BnFlux2SingleBlock *b, const float *mod)
{
  int64_t d = f->c->dim, m = f->c->mlp_hidden;
  for (int64_t r0 = 0; r0 < f->n_tok; r0 += f->chunk)
    {
      int64_t rows = MIN (f->chunk, f->n_tok - r0);
      ln_mod (f, f->h + r0 * d, rows, mod, mod + d, f->xr);
      bn_linear_lowp (f->pool, f->act, &b->linear1_qkv, f->xr, rows, d,
                 f->qkv + r0 * f->ld_qkv, f->ld_qkv);
      finish_qkv (f, r0, rows, b->q_norm, b->k_norm);
    }
  attention (f);
  /* A chunk's LayerNorm is recomputed: h changes only in the chunk's own
   * update, after it. */
  for (int64_t r0 = 0; r0 < f->n_tok; r0 += f->chunk)
    {
      int64_t rows = MIN (f->chunk, f->n_tok - r0);
      ln_mod (f, f->h + r0 * d, rows, mod, mod + d, f->xr);
      bn_linear_lowp (f->pool, f->act, &b->linear1_mlp, f->xr, rows, d, f->ur, 2 * m);
      CatJob cj = { f, r0 };
      bn_parallel_for (f->pool, rows, cat_rows, &cj);
      bn_linear_lowp (f->pool, f->act, &b->linear2, f->cr, rows, d + m, f->yr, d);
      gate_residual (f, f->h + r0 * d, rows, mod + 2 * d);
    }
}

/* ---- embeddings and the forward ----------------------------------------- */

/* diffusers' get_timestep_embedding(1000·t, flip_sin_to_cos=True,
 * downscale_freq_shift=0), rounding to float32 where torch does:
 * out = [cos(s·f_i), sin(s·f_i)], f_i = exp(−ln(10000)·i/half). */
void
bn_flux2_timestep_embedding (float t, int channels, float *out)
{
  int half = channels / 2;
  float s = t * 1000.0f;
  float c = (float) -log (10000.0);
  for (int i = 0; i < half; i++)
    {
      float e = c * (float) i / (float) half;
      float a = s * (float) exp ((double) e);
      out[i] = (float) cos ((double) a);
      out[half + i] = (float) sin ((double) a);
    }
}

gboolean
bn_flux2_check_input (const BnFlux2Dit *dit, const BnFlux2Input *in,
                      const float *out, GError **error)
{
  const char *problem = NULL;
  if (!dit || !in || !out || !in->x || !in->img_ids)
    problem = "missing model, input, output or image tokens";
  else if (in->n_img < 1 || in->n_img > MAX_TOKENS || in->n_txt < 0
           || in->n_txt > MAX_TOKENS - in->n_img)
    problem = "token counts out of range";
  else if (in->n_out < 1 || in->n_out > in->n_img)
    problem = "n_out must be between 1 and the number of image tokens";
  else if (in->n_txt > 0 && (!in->ctx || !in->txt_ids))
    problem = "missing text features or text ids";
  else if (!isfinite (in->t))
    problem = "the timestep is not a finite number";
  else if (in->chunk_rows < 0)
    problem = "chunk_rows must not be negative";
  else if ((unsigned) in->act > BN_ACT_LUT)
    problem = "unknown activation precision";
  if (problem)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "transformer forward: %s", problem);
      return FALSE;
    }
  return TRUE;
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

gboolean
bn_flux2_dit_forward (const BnFlux2Dit *dit, BnThreadPool *pool,
                      const BnFlux2Input *in, float *out, GError **error)
{
  if (!bn_flux2_check_input (dit, in, out, error))
    return FALSE;
  const BnFlux2Config *c = &dit->cfg;
  int64_t n_tok = in->n_txt + in->n_img, d = c->dim, half = c->head_dim / 2;
  Layout l;
  if (!layout_for (c, n_tok, chunk_of (in->chunk_rows), &l))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "transformer forward: %" G_GINT64_FORMAT " tokens need "
                   "more memory than can be addressed", n_tok);
      return FALSE;
    }
  float *own = in->workspace ? NULL : g_try_malloc ((size_t) l.total * sizeof (float));
  float *ws = in->workspace ? in->workspace : own;
  if (!ws)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "out of memory for the transformer's workspace (%"
                   G_GINT64_FORMAT " tokens, %.1f MB)",
                   n_tok, (double) l.total * sizeof (float) / 1e6);
      return FALSE;
    }
  Fwd f = {
    .c = c, .pool = pool, .n_txt = in->n_txt, .n_tok = n_tok,
    .chunk = chunk_of (in->chunk_rows),
    .act = in->act,
    .ld_qkv = 3 * d,
    .h = ws + l.h, .qkv = ws + l.qkv, .att = ws + l.att,
    .xr = ws + l.xr, .ur = ws + l.ur, .cr = ws + l.cr, .yr = ws + l.yr,
    .cos_t = ws + l.cos_t, .sin_t = ws + l.sin_t,
  };

  /* The modulations every block shares, from the conditioning vector,
   * which each of them (and the final layer's) takes through SiLU first. */
  float *temb = ws + l.temb, *hid = ws + l.hid, *svec = ws + l.svec;
  float *mod_img = ws + l.mod_img, *mod_txt = ws + l.mod_txt;
  float *mod_single = ws + l.mod_single, *mod_final = ws + l.mod_final;
  bn_flux2_timestep_embedding (in->t, c->time_channels, temb);
  bn_linear (pool, &dit->time_in, temb, 1, c->time_channels, hid, d);
  bn_silu (hid, d);
  bn_linear (pool, &dit->time_out, hid, 1, d, svec, d);
  bn_silu (svec, d);
  bn_linear (pool, &dit->mod_img, svec, 1, d, mod_img, 6 * d);
  bn_linear (pool, &dit->mod_txt, svec, 1, d, mod_txt, 6 * d);
  bn_linear (pool, &dit->mod_single, svec, 1, d, mod_single, 3 * d);
  bn_linear (pool, &dit->final_mod, svec, 1, d, mod_final, 2 * d);
  drop_once_per_forward (dit, &dit->time_in);
  drop_once_per_forward (dit, &dit->time_out);
  drop_once_per_forward (dit, &dit->mod_img);
  drop_once_per_forward (dit, &dit->mod_txt);
  drop_once_per_forward (dit, &dit->mod_single);
  drop_once_per_forward (dit, &dit->final_mod);

  /* Tokens into the residual stream, text first, and their RoPE tables. */
  if (in->n_txt > 0)
    {
      bn_linear (pool, &dit->txt_in, in->ctx, in->n_txt, c->context_dim, f.h, d);
      drop_once_per_forward (dit, &dit->txt_in);
      bn_rope_table_axes (in->txt_ids, in->n_txt, c->axes_dim, c->n_axes,
                          c->rope_theta, f.cos_t, f.sin_t);
    }
  bn_linear (pool, &dit->img_in, in->x, in->n_img, c->in_channels,
             f.h + in->n_txt * d, d);
  bn_rope_table_axes (in->img_ids, in->n_img, c->axes_dim, c->n_axes,
                      c->rope_theta, f.cos_t + in->n_txt * half,
                      f.sin_t + in->n_txt * half);

  int total = c->num_layers + c->num_single_layers, done = 0;
  for (int i = 0; i < c->num_layers; i++)
    {
      if (cancelled (in, error))
        goto fail;
      double_block (&f, &dit->doubles[i], mod_img, mod_txt);
      if (in->progress)
        in->progress (in->progress_data, ++done, total);
    }
  for (int i = 0; i < c->num_single_layers; i++)
    {
      if (cancelled (in, error))
        goto fail;
      single_block (&f, &dit->singles[i], mod_single);
      if (in->progress)
        in->progress (in->progress_data, ++done, total);
    }
  if (cancelled (in, error))
    goto fail;

  /* Final layer on the wanted image tokens only. */
  const float *shift = dit->final_shift_first ? mod_final : mod_final + d;
  const float *scale = dit->final_shift_first ? mod_final + d : mod_final;
  int64_t end = in->n_txt + in->n_out;
  for (int64_t r0 = in->n_txt; r0 < end; r0 += f.chunk)
    {
      int64_t rows = MIN (f.chunk, end - r0);
      ln_mod (&f, f.h + r0 * d, rows, shift, scale, f.xr);
      bn_linear (pool, &dit->final_out, f.xr, rows, d,
                 out + (r0 - in->n_txt) * c->out_channels, c->out_channels);
    }
  g_free (own);
  return TRUE;

fail:
  g_free (own);
  return FALSE;
}
