/* pipeline.c — text (and reference images) to image: request checks, prompt
 * encoding, noise, the denoising loop, decoding (spec §1, §5, §6). */
#include "pipeline.h"

#include "kernels/linear_lowp.h"

#include "cache.h"
#include "image_io.h"
#include "qwen3.h"
#include "rng.h"
#include "sampler.h"
#include "tokenizer.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_SIDE 1024
#define DEFAULT_STEPS 4
/* Longest prompt features accepted (klein's encoder gives 512 rows). */
#define MAX_TEXT_TOKENS 8192

void
bonsai_request_init (BonsaiRequest *request)
{
  memset (request, 0, sizeof *request);
  request->width = BONSAI_SIZE_AUTO;
  request->height = BONSAI_SIZE_AUTO;
  request->steps = DEFAULT_STEPS;
  request->format = BONSAI_PIXEL_RGBA8;
}

gboolean
bonsai_precision_from_string (const char *name, BonsaiPrecision *out)
{
  static const char *const names[] = { "auto", "exact", "bf16", "int8", "lut" };
  for (size_t i = 0; name && i < G_N_ELEMENTS (names); i++)
    if (!strcmp (name, names[i]))
      {
        *out = (BonsaiPrecision) i;
        return TRUE;
      }
  return FALSE;
}

BnActPrecision
bn_act_precision_of (BonsaiPrecision precision)
{
  switch (precision)
    {
    case BONSAI_PRECISION_EXACT: return BN_ACT_EXACT;
    case BONSAI_PRECISION_BF16: return BN_ACT_BF16;
    case BONSAI_PRECISION_INT8: return BN_ACT_INT8;
    case BONSAI_PRECISION_LUT: return BN_ACT_LUT;
    default:
      /* lut: binary linears 2.1-2.6x faster than bf16 at a 512² image's
       * 46 dB PSNR against exact (docs/PERFORMANCE.md); it hands every
       * other weight to bf16.  bf16 rounds x about 6 times less than int8
       * per group and, on the CPUs that have it, runs as fast or faster. */
      if (bn_lowp_path (bn_cpu_isa (), BN_ACT_LUT))
        return BN_ACT_LUT;
      return bn_lowp_path (bn_cpu_isa (), BN_ACT_BF16) ? BN_ACT_BF16 : BN_ACT_EXACT;
    }
}

/* ---- progress and cancellation ---------------------------------------------- */

typedef struct {
  BonsaiProgressFunc progress;
  gpointer user_data;
  gint own_flag;
  gint *cancel;       /* the caller's flag, else &own_flag */
  BnThreadPool *pool;
  BnActPrecision act; /* of the VAE's convolutions: the request's, or
                       * what AUTO resolves to for bonsai_decode */
} Run;

static gboolean
run_init (Run *r, int threads, gint *cancel, BonsaiProgressFunc progress,
          gpointer user_data, GError **error)
{
  memset (r, 0, sizeof *r);
  if (threads < 0)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "threads must be 0 (one per processor) or more, not %d",
                   threads);
      return FALSE;
    }
  r->progress = progress;
  r->user_data = user_data;
  r->cancel = cancel ? cancel : &r->own_flag;
  r->act = bn_act_precision_of (BONSAI_PRECISION_AUTO);
  r->pool = bn_thread_pool_new (threads, error);
  return r->pool != NULL;
}

static void
run_clear (Run *r)
{
  bn_thread_pool_free (r->pool);
}

static gboolean
check_cancel (Run *r, GError **error)
{
  if (!g_atomic_int_get (r->cancel))
    return TRUE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_CANCELLED, "cancelled");
  return FALSE;
}

/* Tells the caller; a FALSE answer raises the cancel flag, so work running
 * on other parts (the VAE between its tiles) stops too. */
static gboolean
report (Run *r, BonsaiStage stage, int done, int total, GError **error)
{
  if (r->progress && !r->progress (stage, done, total, r->user_data))
    g_atomic_int_set (r->cancel, 1);
  return check_cancel (r, error);
}

/* ---- request checks ---------------------------------------------------------- */

static gboolean
check_side (const BonsaiModel *m, const char *what, int v, GError **error)
{
  if (v > 0 && v <= BONSAI_MAX_SIDE && v % m->multiple == 0)
    return TRUE;
  g_autofree char *why = v <= 0 ? g_strdup ("is not positive")
                         : v > BONSAI_MAX_SIDE ? g_strdup ("is too large")
                         : g_strdup_printf ("is not a multiple of %d", m->multiple);
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
               "%s %d %s: it must be a multiple of %d from %d to %d", what, v,
               why, m->multiple, m->multiple, BONSAI_MAX_SIDE);
  return FALSE;
}

/* What a checked request resolves to. */
typedef struct {
  int width, height;
  int64_t gh, gw, n_img;   /* token grid of the output */
  int64_t ref_tokens;      /* all reference tokens */
  int64_t n_txt;
} Plan;

static gboolean
check_memory (const BonsaiModel *m, const Plan *p, GError **error)
{
  size_t need = bn_flux2_workspace_bytes (&m->dit->cfg, p->n_txt + p->n_img + p->ref_tokens, 0);
  long pages = sysconf (_SC_PHYS_PAGES), page = sysconf (_SC_PAGESIZE);
  double have = pages > 0 && page > 0 ? (double) pages * page : 0;
  if (need && (have == 0 || need < have))
    return TRUE;
  g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
               "a %d×%d image with %" G_GINT64_FORMAT " reference tokens needs "
               "%.1f GB for the transformer's activations, more than this "
               "machine's %.1f GB", p->width, p->height, p->ref_tokens,
               need ? need / 1e9 : INFINITY, have / 1e9);
  return FALSE;
}

static gboolean
check_request (const BonsaiModel *m, const BonsaiRequest *req, Plan *p,
               GError **error)
{
  memset (p, 0, sizeof *p);
  const BnFlux2Config *cfg = &m->dit->cfg;
  if (req->steps < 1 || req->steps > BONSAI_MAX_STEPS)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "steps must be between 1 and %d, not %d", BONSAI_MAX_STEPS,
                   req->steps);
      return FALSE;
    }
  if (req->n_references < 0 || req->n_references > BONSAI_MAX_REFERENCES
      || (req->n_references > 0 && !req->references))
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "between 0 and %d reference images can be given, not %d",
                   BONSAI_MAX_REFERENCES, req->n_references);
      return FALSE;
    }
  p->width = req->width == BONSAI_SIZE_AUTO ? DEFAULT_SIDE : req->width;
  p->height = req->height == BONSAI_SIZE_AUTO ? DEFAULT_SIDE : req->height;
  for (int k = 0; k < req->n_references; k++)
    {
      int w, h;
      if (!bn_ref_check (m, req->references[k], k, &w, &h, error))
        return FALSE;
      p->ref_tokens += (int64_t) (w / m->multiple) * (h / m->multiple);
      if (k == 0 && req->width == BONSAI_SIZE_AUTO)
        p->width = w;
      if (k == 0 && req->height == BONSAI_SIZE_AUTO)
        p->height = h;
    }
  if (!check_side (m, "width", p->width, error)
      || !check_side (m, "height", p->height, error))
    return FALSE;
  p->gh = p->height / m->multiple;
  p->gw = p->width / m->multiple;
  p->n_img = p->gh * p->gw;

  if (req->format != BONSAI_PIXEL_RGBA8 && req->format != BONSAI_PIXEL_RGB_F32)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "unknown output pixel format %d", (int) req->format);
      return FALSE;
    }
  if (!req->prompt == !req->features)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   req->prompt ? "give a prompt or prompt features, not both"
                               : "the request has neither a prompt nor prompt features");
      return FALSE;
    }
  if (req->features)
    {
      const BonsaiTensor *f = req->features;
      if (f->ndim != 2 || !f->data || f->shape[0] < 1
          || f->shape[0] > MAX_TEXT_TOKENS || f->shape[1] != cfg->context_dim)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                       "prompt features must be [L, %d] with 1 <= L <= %d",
                       cfg->context_dim, MAX_TEXT_TOKENS);
          return FALSE;
        }
      p->n_txt = f->shape[0];
    }
  else
    {
      if (!m->text_encoder || !m->tokenizer)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                       "this model has no %s, so it cannot encode a prompt; "
                       "give prompt features instead",
                       m->text_encoder ? "tokenizer" : "text encoder");
          return FALSE;
        }
      p->n_txt = BN_KLEIN_MAX_LENGTH;
    }
  if (req->latents)
    {
      const BonsaiTensor *l = req->latents;
      if (l->ndim != 3 || !l->data || l->shape[0] != cfg->in_channels
          || l->shape[1] != p->gh || l->shape[2] != p->gw)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                       "initial latents for a %d×%d image must be [%d, %"
                       G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", p->width,
                       p->height, cfg->in_channels, p->gh, p->gw);
          return FALSE;
        }
    }
  return check_memory (m, p, error);
}

/* ---- prompt ------------------------------------------------------------------- */

static BonsaiTensor *
encode_prompt (BonsaiModel *m, const char *prompt, BnThreadPool *pool,
               GError **error)
{
  if (!m->text_encoder || !m->tokenizer)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_NOT_FOUND,
                   "this model has no %s, so it cannot encode a prompt",
                   m->text_encoder ? "tokenizer" : "text encoder");
      return NULL;
    }
  /* A prompt tried with several seeds is encoded once (cache.c). */
  BonsaiTensor *cached = bn_cache_prompt_lookup (m, prompt, BN_KLEIN_MAX_LENGTH);
  if (cached)
    return cached;
  g_autoptr (BnTokenizer) tok = bn_tokenizer_load (m->tokenizer, error);
  if (!tok)
    return NULL;
  int32_t ids[BN_KLEIN_MAX_LENGTH];
  uint8_t mask[BN_KLEIN_MAX_LENGTH];
  int n_real;
  if (!bn_tokenizer_klein_prompt (tok, prompt, BN_KLEIN_MAX_LENGTH, ids, mask,
                                  &n_real, error))
    return NULL;

  /* Opened for this prompt only: its pages leave memory as layers finish,
   * and the mapping goes with bn_qwen3_free. */
  BnQwen3 *te = bn_qwen3_open (m->text_encoder, NULL, error);
  if (!te)
    return NULL;
  int64_t dim = bn_qwen3_feature_dim (te);
  BnTensor feats = { 0 };
  BonsaiTensor *out = NULL;
  if (dim != m->dit->cfg.context_dim)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_FORMAT,
                 "the text encoder gives %" G_GINT64_FORMAT " features per "
                 "token, the transformer takes %d", dim, m->dit->cfg.context_dim);
  else if (bn_qwen3_encode (te, pool, ids, mask, BN_KLEIN_MAX_LENGTH, &feats, error))
    {
      const gint64 shape[2] = { BN_KLEIN_MAX_LENGTH, dim };
      out = bonsai_tensor_new (2, shape, error);
      if (out)
        memcpy (out->data, feats.data, sizeof (float) * BN_KLEIN_MAX_LENGTH * dim);
    }
  bn_tensor_clear (&feats);
  bn_qwen3_free (te);
  if (out)
    bn_cache_prompt_encoded (m, prompt, BN_KLEIN_MAX_LENGTH, out);
  return out;
}

BonsaiTensor *
bonsai_encode_prompt (BonsaiModel *model, const char *prompt, int threads,
                      GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  if (!prompt)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT, "no prompt given");
      return NULL;
    }
  Run r;
  if (!run_init (&r, threads, NULL, NULL, NULL, error))
    return NULL;
  BonsaiTensor *t = encode_prompt (model, prompt, r.pool, error);
  run_clear (&r);
  return t;
}

/* ---- noise -------------------------------------------------------------------- */

BonsaiTensor *
bonsai_make_noise (BonsaiModel *model, int width, int height, guint64 seed,
                   GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  if (!check_side (model, "width", width, error)
      || !check_side (model, "height", height, error))
    return NULL;
  const gint64 shape[3] = { model->dit->cfg.in_channels, height / model->multiple,
                            width / model->multiple };
  BonsaiTensor *t = bonsai_tensor_new (3, shape, error);
  if (t)
    bn_rng_normal (seed, 0, t->data, shape[0] * shape[1] * shape[2]);
  return t;
}

/* ---- denoising ------------------------------------------------------------------ */

static BonsaiTensor *
sample (BonsaiModel *m, const BonsaiRequest *req, Run *r, GError **error)
{
  Plan p;
  if (!check_request (m, req, &p, error))
    return NULL;
  const BnFlux2Config *cfg = &m->dit->cfg;
  const int64_t c = cfg->in_channels;
  const int n_refs = req->n_references;

  BonsaiTensor *encoded = NULL;
  const float *ctx = req->features ? req->features->data : NULL;
  if (!ctx)
    {
      encoded = encode_prompt (m, req->prompt, r->pool, error);
      if (!encoded)
        return NULL;
      ctx = encoded->data;
      if (!report (r, BONSAI_STAGE_ENCODE_PROMPT, 1, 1, error))
        {
          bonsai_tensor_free (encoded);
          return NULL;
        }
    }

  BnRefTokens refs[BONSAI_MAX_REFERENCES] = { { 0 } };
  BonsaiTensor *out = NULL;
  float *x = NULL, *v = NULL, *sigmas = NULL;
  int64_t *img_ids = NULL, *txt_ids = NULL;
  gboolean ok = TRUE;
  for (int k = 0; ok && k < n_refs; k++)
    ok = bn_ref_tokens_prepare (m, req->references[k], k, r->pool, r->cancel,
                                &refs[k], error)
         && report (r, BONSAI_STAGE_ENCODE_IMAGES, k + 1, n_refs, error);
  if (!ok)
    goto out;

  /* Image stream: the output's tokens, then every reference's. */
  int64_t n_all = p.n_img + p.ref_tokens;
  x = g_try_new (float, n_all * c);
  v = g_try_new (float, p.n_img * c);
  img_ids = g_try_new0 (int64_t, n_all * 4);
  txt_ids = g_try_new0 (int64_t, p.n_txt * 4);
  sigmas = g_try_new (float, req->steps + 1);
  out = bonsai_tensor_new (3, (const gint64[3]) { c, p.gh, p.gw }, error);
  if (!out)
    {
      ok = FALSE;
      goto out;
    }
  if (!x || !v || !img_ids || !txt_ids || !sigmas)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                   "no memory for the latents of a %d×%d image", p.width, p.height);
      ok = FALSE;
      goto out;
    }
  /* The noise is drawn (or given) channel-major, [C, h, w], as diffusers. */
  if (req->latents)
    memcpy (out->data, req->latents->data, sizeof (float) * c * p.n_img);
  else
    bn_rng_normal (req->seed, 0, out->data, c * p.n_img);
  bn_latent_to_tokens (out->data, c, p.n_img, x);
  for (int64_t i = 0; i < p.gh; i++)
    for (int64_t j = 0; j < p.gw; j++)
      {
        img_ids[(i * p.gw + j) * 4 + 1] = i;
        img_ids[(i * p.gw + j) * 4 + 2] = j;
      }
  int64_t at = p.n_img;
  for (int k = 0; k < n_refs; k++)
    {
      memcpy (x + at * c, refs[k].tokens, sizeof (float) * refs[k].n * c);
      memcpy (img_ids + at * 4, refs[k].ids, sizeof (int64_t) * refs[k].n * 4);
      at += refs[k].n;
    }
  for (int64_t l = 0; l < p.n_txt; l++)
    txt_ids[l * 4 + 3] = l;

  if (!bn_sampler_sigmas (p.n_img, req->steps, sigmas, error))
    {
      ok = FALSE;
      goto out;
    }
  BnFlux2Input in = {
    .x = x, .img_ids = img_ids, .n_img = n_all, .n_out = p.n_img,
    .ctx = ctx, .txt_ids = txt_ids, .n_txt = p.n_txt, .cancel = r->cancel,
    .act = bn_act_precision_of (req->precision),
  };
  /* The noise above comes from the CPU's generator whichever device runs
   * the transformer, so a seed starts from the same latents on both. */
  BnFlux2DitDevice *dev = NULL;
  ok = bn_model_dit_device (m, &dev, error);
  /* One workspace for every step: nothing is allocated per step but the
   * kernels' small scratch. */
  if (ok && !dev)
    {
      size_t bytes = bn_flux2_workspace_bytes (&m->dit->cfg, p.n_txt + n_all, 0);
      in.workspace = bytes ? g_try_malloc (bytes) : NULL;
      if (!in.workspace)
        {
          g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                       "out of memory for the transformer's workspace (%.1f MB)", bytes / 1e6);
          ok = FALSE;
        }
    }
  for (int i = 0; ok && i < req->steps; i++)
    {
      in.t = bn_sampler_timestep (sigmas[i]);
      ok = dev ? bn_flux2_dit_device_forward (m->dit, dev, r->pool, &in, v, error)
               : bn_flux2_dit_forward (m->dit, r->pool, &in, v, error);
      if (ok)
        {
          /* Only the output's tokens move; references are fed unchanged. */
          bn_sampler_euler_step (x, v, p.n_img * c, sigmas[i], sigmas[i + 1]);
          ok = report (r, BONSAI_STAGE_DENOISE, i + 1, req->steps, error);
        }
    }
  g_free (in.workspace);
  if (ok)
    bn_latent_from_tokens (x, c, p.n_img, out->data);

out:
  for (int k = 0; k < n_refs; k++)
    bn_ref_tokens_clear (&refs[k]);
  bonsai_tensor_free (encoded);
  g_free (x);
  g_free (v);
  g_free (img_ids);
  g_free (txt_ids);
  g_free (sigmas);
  if (!ok)
    g_clear_pointer (&out, bonsai_tensor_free);
  return out;
}

BonsaiTensor *
bonsai_sample (BonsaiModel *model, const BonsaiRequest *request,
               BonsaiProgressFunc progress, gpointer user_data, GError **error)
{
  g_return_val_if_fail (model != NULL && request != NULL, NULL);
  Run r;
  if (!run_init (&r, request->threads, request->cancel, progress, user_data, error))
    return NULL;
  BonsaiTensor *t = sample (model, request, &r, error);
  run_clear (&r);
  return t;
}

/* ---- decoding ------------------------------------------------------------------- */

BonsaiTensor *
bn_pipeline_unpack_latents (const BonsaiModel *m, const BonsaiTensor *packed,
                            GError **error)
{
  const int ph = m->patch[0], pw = m->patch[1];
  const int64_t c = m->dit->cfg.in_channels;
  if (!packed || packed->ndim != 3 || !packed->data || packed->shape[0] != c
      || packed->shape[1] < 1 || packed->shape[2] < 1
      || packed->shape[1] * m->multiple > BONSAI_MAX_SIDE
      || packed->shape[2] * m->multiple > BONSAI_MAX_SIDE)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "latents must be [%" G_GINT64_FORMAT ", H/%d, W/%d] for an "
                   "image of at most %d×%d", c, m->multiple, m->multiple,
                   BONSAI_MAX_SIDE, BONSAI_MAX_SIDE);
      return NULL;
    }
  int64_t gh = packed->shape[1], gw = packed->shape[2], n = gh * gw;
  g_autofree float *zp = g_try_new (float, c * n);
  const gint64 shape[3] = { c / (ph * pw), gh * ph, gw * pw };
  BonsaiTensor *z = zp ? bonsai_tensor_new (3, shape, error) : NULL;
  if (!z)
    {
      if (!zp)
        g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                     "no memory for the latents");
      return NULL;
    }
  memcpy (zp, packed->data, sizeof (float) * c * n);
  bn_vae_bn_denormalize (m->vae, zp, n);
  bn_latent_unpatchify (zp, shape[0], shape[1], shape[2], ph, pw, z->data);
  return z;
}

/* After each VAE tile; a cancel raised here stops the VAE at its next
 * check, and decode() reports it. */
static void
on_tile (int done, int total, gpointer data)
{
  report (data, BONSAI_STAGE_DECODE, done, total, NULL);
}

static BonsaiImage *
decode (BonsaiModel *m, const BonsaiTensor *packed, BonsaiPixelFormat format,
        Run *r, GError **error)
{
  if (format != BONSAI_PIXEL_RGBA8 && format != BONSAI_PIXEL_RGB_F32)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "unknown output pixel format %d", (int) format);
      return NULL;
    }
  BonsaiTensor *z = bn_pipeline_unpack_latents (m, packed, error);
  if (!z)
    return NULL;
  int64_t h = z->shape[1] * m->scale, w = z->shape[2] * m->scale;
  float *chw = g_try_new (float, 3 * h * w);
  BonsaiImage *image = NULL;
  if (!chw)
    g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_OUT_OF_MEMORY,
                 "no memory to decode a %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT
                 " image", w, h);
  else
    {
      /* The transformer is done: let its pages go before the VAE's
       * activations, the largest of the decode, are allocated. */
      bn_model_drop_transformer_pages (m);
      BnVaeOptions opt = BN_VAE_OPTIONS_INIT;
      opt.pool = r->pool;
      opt.cancel = r->cancel;
      opt.act = r->act;
      opt.progress = on_tile;
      opt.progress_data = r;
      if (bn_vae_decode (m->vae, z->data, z->shape[1], z->shape[2], chw, &opt, error)
          && check_cancel (r, error))
        image = bn_image_from_chw (chw, (int) w, (int) h, format, error);
    }
  g_free (chw);
  bonsai_tensor_free (z);
  return image;
}

BonsaiImage *
bonsai_decode (BonsaiModel *model, const BonsaiTensor *latents,
               BonsaiPixelFormat format, int threads,
               BonsaiProgressFunc progress, gpointer user_data, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  Run r;
  if (!run_init (&r, threads, NULL, progress, user_data, error))
    return NULL;
  BonsaiImage *image = decode (model, latents, format, &r, error);
  run_clear (&r);
  return image;
}

gboolean
bonsai_generate (BonsaiModel *model, const BonsaiRequest *request,
                 BonsaiProgressFunc progress, gpointer user_data,
                 BonsaiImage **out, GError **error)
{
  g_return_val_if_fail (model != NULL && request != NULL && out != NULL, FALSE);
  *out = NULL;
  Run r;
  if (!run_init (&r, request->threads, request->cancel, progress, user_data, error))
    return FALSE;
  r.act = bn_act_precision_of (request->precision);
  BonsaiTensor *latents = sample (model, request, &r, error);
  if (latents)
    *out = decode (model, latents, request->format, &r, error);
  bonsai_tensor_free (latents);
  run_clear (&r);
  return *out != NULL;
}
