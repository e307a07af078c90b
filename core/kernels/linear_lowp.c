/* linear_lowp.c — the low-precision activation paths' driver (see
 * linear_lowp.h): prepares x (bf16, or int8 with scales and sums), decodes
 * panels of W once per K block, runs the micro-kernels, and holds the
 * scalar oracles of the same arithmetic.
 *
 * Loop nest per thread, over its share of the N panels:
 *   panel of ≤ the path's panel columns
 *     K block of the path's kc: decode the panel's micro-panels (L2)
 *       mr rows of x: copy (L1)
 *         nr columns: micro-kernel
 */
#include "linear_lowp.h"
#include "linear_tile.h"

#include <math.h>
#include <string.h>

/* Binary and ternary packs for both formats; dense bf16 (exact in bf16,
 * so only x is rounded) for BF16, whose pairs need an even K. */
static gboolean
weights_apply (BnActPrecision act, const BnTensor *w)
{
  if (w == NULL || w->ndim != 2)
    return FALSE;
  if (w->dtype == BN_DTYPE_BF16)
    return act == BN_ACT_BF16 && w->shape[1] % 2 == 0;
  if (act == BN_ACT_LUT)
    return w->dtype == BN_DTYPE_Q1 && w->group_size >= 32 && 128 % w->group_size == 0
           && w->shape[1] % 128 == 0;
  return (w->dtype == BN_DTYPE_Q1 || w->dtype == BN_DTYPE_Q2)
         && w->group_size > 0 && 128 % w->group_size == 0
         && w->shape[1] % 128 == 0;
}

gboolean
bn_linear_lowp_applies (BnIsa isa, BnActPrecision act, const BnTensor *w)
{
  return bn_lowp_path (isa, act) != NULL && weights_apply (act, w);
}

/* ---- activations ---------------------------------------------------------- */

/* One row's groups: the scale, the int8 codes and the exact sum.  The
 * reciprocal is rounded to float once, so every path and the oracle round
 * the same products. */
static void
quantize_row (const float *x, int64_t k, int group, int8_t *q, float *scale,
              float *sum)
{
  for (int64_t g0 = 0, gi = 0; g0 < k; g0 += group, gi++)
    {
      float amax = 0.0f, s = 0.0f;
      for (int t = 0; t < group; t++)
        {
          amax = fmaxf (amax, fabsf (x[g0 + t]));
          s += x[g0 + t];
        }
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      for (int t = 0; t < group; t++)
        q[g0 + t] = (int8_t) lrintf (x[g0 + t] * inv);
      scale[gi] = amax / 127.0f;
      sum[gi] = s;
    }
}

static void
bf16_row (const float *x, int64_t k, uint16_t *out)
{
  for (int64_t i = 0; i < k; i++)
    out[i] = bn_f32_to_bf16 (x[i]);
}

typedef struct {
  const BnLowpPath *path;
  const float *x;
  int64_t ldx, k;
  int group;
  void *out;
  float *scale, *sum;
} PrepJob;

static void
prepare_rows (void *ctx, int64_t begin, int64_t end, int thread_index)
{
  (void) thread_index;
  const PrepJob *j = ctx;
  const BnLowpPath *path = j->path;
  const int64_t groups = j->k / j->group;
  guint8 *out = j->out;
  for (int64_t i = begin; i < end; i++)
    if (path->prepare_row)
      path->prepare_row (j->x + i * j->ldx, j->k, j->group, out + (size_t) (i * j->k) * path->x_bytes,
                         j->scale + i * groups, j->sum + i * groups);
    else if (path->act == BN_ACT_BF16)
      bf16_row (j->x + i * j->ldx, j->k, (uint16_t *) out + i * j->k);
    else
      quantize_row (j->x + i * j->ldx, j->k, j->group, (int8_t *) out + i * j->k,
                    j->scale + i * groups, j->sum + i * groups);
}

/* Bytes of the prepared x (a multiple of 64): codes or tables, then the
 * groups' scales and sums, *xbytes of them the former. */
static size_t
prepared_bytes (const BnLowpPath *path, const BnTensor *w, int64_t m, size_t *xbytes)
{
  const int64_t k = w->shape[1];
  const int64_t groups = path->act != BN_ACT_BF16 ? k / w->group_size : 0;
  *xbytes = ((size_t) (m * k) * path->x_bytes + 63) & ~(size_t) 63;
  return *xbytes + ((2 * (size_t) (m * groups) * sizeof (float) + 63) & ~(size_t) 63);
}

/* Prepares x into `block` (prepared_bytes of it, 64-byte aligned; the
 * scales and sums start xbytes in). */
static void
prepare (BnThreadPool *pool, const BnLowpPath *path, const BnTensor *w,
         const float *x, int64_t m, int64_t ldx, BnLowpX *out, guint8 *block,
         size_t xbytes)
{
  const gboolean grouped = path->act != BN_ACT_BF16;
  const int64_t k = w->shape[1], groups = grouped ? k / w->group_size : 0;
  float *scale = grouped ? (float *) (block + xbytes) : NULL;
  float *sum = scale ? scale + m * groups : NULL;
  PrepJob pj = { path, x, ldx, k, grouped ? w->group_size : 1, block, scale, sum };
  bn_parallel_for (pool, m, prepare_rows, &pj);
  *out = (BnLowpX) { block, scale, sum, k, groups };
}

/* ---- the portable INT8 decoder --------------------------------------------- */

/* 4 codes of `bits` bits (the low 4·bits bits of v) into the 4 bytes of a
 * dword, lowest first.  1-bit: multiplying by 1 + 2^7 + 2^14 + 2^21 moves
 * bit i to bit 8i, and the shifted copies do not overlap, so no carries.
 * 2-bit: fields 0 and 2 (v & 0x33) times 1 + 2^12 land in bytes 0 and 2,
 * fields 1 and 3 likewise in bytes 1 and 3 after a shift by 8; again no
 * copies overlap. */
static inline uint32_t
spread4 (uint32_t v, int bits)
{
  if (bits == 1)
    return (v & 0xfu) * 0x00204081u & 0x01010101u;
  return ((v & 0x33u) * 0x1001u | ((v >> 2) & 0x33u) * 0x1001u << 8) & 0x03030303u;
}

void
bn_lowp_decode_codes (const BnTensor *w, int64_t n0, int nn, int nr,
                      int64_t k0, int kc, uint32_t *dst, float *s, float *b)
{
  const int bits = bn_dtype_bits (w->dtype), per_word = 32 / bits;
  const int quads = per_word / 4, group = w->group_size;
  const int64_t per_row = w->shape[1] / per_word;
  for (int kg = 0; kg < kc; kg += group)
    bn_linear_group_params (w, n0, nn, nr, (k0 + kg) / group,
                            s + (kg / group) * nr, b + (kg / group) * nr);
  for (int j = 0; j < nr; j++)
    {
      if (j >= nn)
        {
          for (int kq = 0; kq < kc / 4; kq++)
            dst[kq * nr + j] = 0;
          continue;
        }
      const uint32_t *codes = (const uint32_t *) w->data + (n0 + j) * per_row + k0 / per_word;
      for (int wi = 0; wi < kc / per_word; wi++)
        {
          uint32_t v = codes[wi];
          for (int c = 0; c < quads; c++, v >>= 4 * bits)
            dst[(wi * quads + c) * nr + j] = spread4 (v, bits);
        }
    }
}

/* ---- the GEMM ------------------------------------------------------------- */

typedef struct {
  const BnLowpPath *path;
  const BnTensor *w;
  BnLowpX x;
  int64_t m;
  float *y;
  int64_t ldy;
  int64_t panel;
  guint8 *scratch;       /* per thread: panel, params, x rows */
  size_t scratch_bytes;  /* per thread, a multiple of 64 */
} LowpJob;

static size_t
panel_bytes (const BnLowpPath *path, int64_t panel)
{
  return (size_t) panel * path->kc / path->k_per_word * 4;
}

static size_t
params_bytes (const BnLowpPath *path, int64_t panel)
{
  /* INT8 and LUT: s and b for every group of a block at the smallest group,
   * 32. */
  return path->act != BN_ACT_BF16 ? 2 * (size_t) panel * (path->kc / 32) * sizeof (float) : 0;
}

static void
lowp_chunk (void *ctx, int64_t begin, int64_t end, int thread_index)
{
  const LowpJob *job = ctx;
  const BnLowpPath *path = job->path;
  /* Dense weights have no groups: one per block stands in (unused). */
  const int nr = path->nr, mr_max = path->mr;
  const int KC = path->kc;
  const int group = job->w->group_size > 0 ? job->w->group_size : KC;
  const size_t esz = (size_t) path->x_bytes;
  const int kpl = path->k_per_word;
  const int64_t n_out = job->w->shape[0], k_in = job->w->shape[1];
  guint8 *base = job->scratch + (size_t) thread_index * job->scratch_bytes;
  uint32_t *wq = (uint32_t *) base;
  float *params = (float *) (base + panel_bytes (path, job->panel));
  guint8 *xp = base + panel_bytes (path, job->panel) + params_bytes (path, job->panel);
  for (int64_t p = begin; p < end; p++)
    {
      const int64_t n0 = p * job->panel;
      const int nc = (int) MIN (job->panel, n_out - n0);
      for (int64_t k0 = 0; k0 < k_in; k0 += KC)
        {
          const int kc = (int) MIN (KC, k_in - k0);
          const int gpb = (kc + group - 1) / group; /* groups in this block */
          for (int j = 0; j < nc; j += nr)
            {
              float *s = params + (size_t) (j / nr) * 2 * gpb * nr;
              path->decode (job->w, n0 + j, MIN (nr, nc - j), nr, k0, kc,
                            wq + (size_t) j * (kc / kpl), s, s + gpb * nr);
            }
          for (int64_t i0 = 0; i0 < job->m; i0 += mr_max)
            {
              const int mr = (int) MIN (mr_max, job->m - i0);
              const guint8 *src = (const guint8 *) job->x.x + ((size_t) (i0 * job->x.k + k0)) * esz;
              for (int i = 0; i < mr; i++)
                memcpy (xp + (size_t) i * KC * esz, src + (size_t) (i * job->x.k) * esz,
                        (size_t) kc * esz);
              for (int i = mr; i < mr_max; i++)
                memset (xp + (size_t) i * KC * esz, 0, (size_t) kc * esz);
              const float *a = job->x.scale ? job->x.scale + i0 * job->x.groups + k0 / group : NULL;
              const float *sum = job->x.sum ? job->x.sum + i0 * job->x.groups + k0 / group : NULL;
              float *y = job->y + i0 * job->ldy + n0;
              for (int j = 0; j < nc; j += nr)
                {
                  const float *s = params + (size_t) (j / nr) * 2 * gpb * nr;
                  path->tile (xp, wq + (size_t) j * (kc / kpl), s, s + gpb * nr, kc, group,
                              a, sum, job->x.groups, y + j, job->ldy, mr,
                              MIN (nr, nc - j), k0 > 0);
                }
            }
        }
    }
}

void
bn_linear_lowp_isa (BnThreadPool *pool, BnIsa isa, BnActPrecision act,
                    const BnTensor *w, const float *x, int64_t m, int64_t ldx,
                    float *y, int64_t ldy)
{
  /* LUT serves binary weights; the rest go as bf16 where they can. */
  if (act == BN_ACT_LUT && !(bn_lowp_path (isa, act) && weights_apply (act, w)))
    act = BN_ACT_BF16;
  const BnLowpPath *path = bn_lowp_path (isa, act);
  if (!path || !weights_apply (act, w))
    {
      bn_linear_isa (pool, isa, w, x, m, ldx, y, ldy);
      return;
    }
  g_return_if_fail (m >= 0 && ldx >= w->shape[1] && ldy >= w->shape[0]);
  if (m == 0 || w->shape[0] == 0)
    return;
  g_return_if_fail (x != NULL && y != NULL);

  const int threads = bn_thread_pool_size (pool);
  const int64_t n_out = w->shape[0];
  int64_t per_thread = (n_out + threads - 1) / threads;
  int64_t panel = MIN (path->panel, (per_thread + path->nr - 1) / path->nr * path->nr);
  size_t per = panel_bytes (path, panel) + params_bytes (path, panel)
               + (size_t) BN_LOWP_MR_MAX * path->kc * path->x_bytes;
  per = (per + 63) & ~(size_t) 63;
  size_t xbytes;
  const size_t prep = prepared_bytes (path, w, m, &xbytes);
  const size_t total = prep + per * (size_t) threads;
  /* The pool's scratch when there is a pool (a step calls this a few
   * hundred times: fresh blocks would be faulted in every time), else a
   * block of our own. */
  void *own = NULL;
  guint8 *region = pool ? bn_thread_pool_scratch_acquire (pool, total) : NULL;
  if (!region && (own = g_try_malloc (total + 63)))
    region = (guint8 *) (((uintptr_t) own + 63) & ~(uintptr_t) 63);
  if (!region)
    {
      /* Out of memory for the scratch: the exact path needs less. */
      bn_linear_isa (pool, isa, w, x, m, ldx, y, ldy);
      return;
    }
  BnLowpX px;
  prepare (pool, path, w, x, m, ldx, &px, region, xbytes);
  LowpJob job = {
    .path = path, .w = w, .x = px, .m = m, .y = y, .ldy = ldy, .panel = panel,
    .scratch = region + prep, .scratch_bytes = per,
  };
  bn_parallel_for (pool, (n_out + panel - 1) / panel, lowp_chunk, &job);
  if (own)
    g_free (own);
  else
    bn_thread_pool_scratch_release (pool);
}

void
bn_linear_lowp (BnThreadPool *pool, BnActPrecision act, const BnTensor *w,
                const float *x, int64_t m, int64_t ldx, float *y, int64_t ldy)
{
  bn_linear_lowp_isa (pool, bn_cpu_isa (), act, w, x, m, ldx, y, ldy);
}

/* ---- oracles -------------------------------------------------------------- */

void
bn_linear_lowp_ref (BnActPrecision act, const BnTensor *w, const float *x,
                    int64_t m, int64_t ldx, float *y, int64_t ldy)
{
  g_return_if_fail (act != BN_ACT_EXACT && weights_apply (act, w));
  const int64_t n_out = w->shape[0], k = w->shape[1];
  const gboolean dense = w->dtype == BN_DTYPE_BF16;
  const int group = dense ? (int) k : w->group_size;
  const int64_t groups = k / group;
  int8_t *q = g_new (int8_t, k);
  uint16_t *xb = g_new (uint16_t, k);
  float *scale = g_new (float, groups), *sum = g_new (float, groups);
  for (int64_t i = 0; i < m; i++)
    {
      if (act != BN_ACT_BF16)
        quantize_row (x + i * ldx, k, group, q, scale, sum);
      else
        bf16_row (x + i * ldx, k, xb);
      for (int64_t n = 0; n < n_out; n++)
        {
          double acc = 0.0;
          for (int64_t t = 0; dense && t < k; t++)
            acc += (double) bn_bf16_to_f32 (((const uint16_t *) w->data)[n * k + t])
                   * bn_bf16_to_f32 (xb[t]);
          for (int64_t g = 0; !dense && g < groups; g++)
            {
              const float s = bn_packed_scale (w, n, g), b = bn_packed_bias (w, n, g);
              if (act == BN_ACT_INT8)
                {
                  int64_t dot = 0;
                  for (int t = 0; t < group; t++)
                    dot += (int64_t) bn_packed_get_code (w, n, g * group + t) * q[g * group + t];
                  acc += (double) s * scale[g] * (double) dot + (double) b * sum[g];
                }
              else if (act == BN_ACT_LUT)
                {
                  /* Each quad's sum rounded as its table entry is: to a
                   * multiple of 4, halves to even. */
                  int64_t dot = 0;
                  for (int t = 0; t < group; t += 4)
                    {
                      int quad = 0;
                      for (int u = 0; u < 4; u++)
                        quad += (int) bn_packed_get_code (w, n, g * group + t + u) * q[g * group + t + u];
                      dot += (quad + 1 + ((quad >> 2) & 1)) >> 2;
                    }
                  acc += (double) s * (4.0 * scale[g]) * (double) dot + (double) b * sum[g];
                }
              else
                for (int t = 0; t < group; t++)
                  {
                    const float wv = bn_bf16_to_f32 (bn_f32_to_bf16 (
                        s * (float) bn_packed_get_code (w, n, g * group + t) + b));
                    acc += (double) wv * bn_bf16_to_f32 (xb[g * group + t]);
                  }
            }
          y[i * ldy + n] = (float) acc;
        }
    }
  g_free (q);
  g_free (xb);
  g_free (scale);
  g_free (sum);
}

const BnLowpPath *
bn_lowp_path (BnIsa isa, BnActPrecision act)
{
  switch (act)
    {
    case BN_ACT_BF16:
      return isa >= BN_ISA_AVX512 && bn_cpu_has_bf16 () ? &bn_lowp_path_avx512_bf16 : NULL;
    case BN_ACT_INT8:
      if (isa >= BN_ISA_AVX512 && bn_cpu_has_vnni ())
        return &bn_lowp_path_vnni_int8;
      return isa >= BN_ISA_AVX2 ? &bn_lowp_path_avx2_int8 : NULL;
    case BN_ACT_LUT:
      return isa >= BN_ISA_AVX512 && bn_cpu_has_vbmi () && bn_cpu_has_vnni ()
             ? &bn_lowp_path_vbmi_lut : NULL;
    default:
      return NULL;
    }
}

const char *
bn_act_precision_name (BnActPrecision act)
{
  switch (act)
    {
    case BN_ACT_EXACT: return "exact";
    case BN_ACT_BF16: return "bf16";
    case BN_ACT_INT8: return "int8";
    case BN_ACT_LUT: return "lut";
    default: return "invalid";
    }
}
