/* cuda_backend.c — libbonsai-cuda: the backend table (backend.h) on one
 * NVIDIA GPU.  Host-side logic lives here in C: device and memory
 * bookkeeping, weight upload, cuBLAS for dense weights, and the checks and
 * errors around the kernels of the .cu files.
 *
 * All work goes to one stream, in order; a lock serialises the callers so
 * that the shared scratch buffer (activations rounded for the tensor cores,
 * im2col rows) is reused safely: a later operation's writes to it are queued
 * after the earlier operation's reads. */
#include "backend.h"
#include "kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <gmodule.h>

/* im2col rows are made in chunks of at most this many bytes. */
#define CONV_CHUNK_BYTES ((size_t) 256 << 20)

struct BnBackendImpl {
  GQuark domain;
  int code_backend, code_oom;
  char name[256];
  cudaStream_t stream;
  cublasHandle_t blas;
  GMutex lock;
  GHashTable *sizes; /* device pointer → its size, for in_use and peak */
  size_t in_use, peak;
  void *scratch;
  size_t scratch_bytes;
};

struct BnBackendWeight {
  int64_t n, k;
  int bits;  /* 0: dense; 1, 2, 4: MLX pack */
  int type;  /* BNC_*: of the dense elements, or of scales and biases */
  int group;
  void *data, *scales, *biases;
};

static gboolean
check (BnBackendImpl *b, cudaError_t err, const char *what, GError **error)
{
  if (err == cudaSuccess)
    return TRUE;
  g_set_error (error, b->domain,
               err == cudaErrorMemoryAllocation ? b->code_oom : b->code_backend,
               "CUDA %s: %s", what, cudaGetErrorString (err));
  return FALSE;
}

static gboolean
check_blas (BnBackendImpl *b, cublasStatus_t st, const char *what,
            GError **error)
{
  if (st == CUBLAS_STATUS_SUCCESS)
    return TRUE;
  g_set_error (error, b->domain,
               st == CUBLAS_STATUS_ALLOC_FAILED ? b->code_oom : b->code_backend,
               "cuBLAS %s: %s", what, cublasGetStatusString (st));
  return FALSE;
}

static gboolean
bnc_type (BnDType d, int *out)
{
  switch (d)
    {
    case BN_DTYPE_F32: *out = BNC_F32; return TRUE;
    case BN_DTYPE_F16: *out = BNC_F16; return TRUE;
    case BN_DTYPE_BF16: *out = BNC_BF16; return TRUE;
    default: return FALSE;
    }
}

/* Bits of a packed dtype, 0 for any other (libbonsai's dtype.c functions
 * are hidden from modules). */
static int
packed_bits (BnDType d)
{
  return d == BN_DTYPE_Q1 ? 1 : d == BN_DTYPE_Q2 ? 2 : d == BN_DTYPE_Q4 ? 4 : 0;
}

static size_t
type_size (int type)
{
  return type == BNC_F32 ? 4 : 2;
}

/* ---- Memory ------------------------------------------------------------ */

static void *
dev_alloc (BnBackendImpl *b, size_t bytes, GError **error)
{
  void *p = NULL;
  cudaError_t err = cudaMalloc (&p, bytes ? bytes : 1);
  if (err != cudaSuccess)
    {
      cudaGetLastError (); /* an allocation failure is not sticky */
      g_set_error (error, b->domain, b->code_oom,
                   "cannot allocate %zu bytes on %s: %s", bytes, b->name,
                   cudaGetErrorString (err));
      return NULL;
    }
  g_hash_table_insert (b->sizes, p, GSIZE_TO_POINTER (bytes));
  b->in_use += bytes;
  b->peak = MAX (b->peak, b->in_use);
  return p;
}

static void
dev_free (BnBackendImpl *b, void *p)
{
  if (!p)
    return;
  b->in_use -= GPOINTER_TO_SIZE (g_hash_table_lookup (b->sizes, p));
  g_hash_table_remove (b->sizes, p);
  cudaFree (p);
}

/* The scratch buffer, grown to at least `bytes`.  cudaFree waits for the
 * device, so no queued kernel still reads the old one. */
static void *
scratch (BnBackendImpl *b, size_t bytes, GError **error)
{
  if (bytes <= b->scratch_bytes)
    return b->scratch;
  dev_free (b, b->scratch);
  b->scratch = NULL;
  b->scratch_bytes = 0;
  b->scratch = dev_alloc (b, bytes, error);
  if (b->scratch)
    b->scratch_bytes = bytes;
  return b->scratch;
}

static void *
op_alloc (BnBackendImpl *b, size_t bytes, GError **error)
{
  g_mutex_lock (&b->lock);
  void *p = dev_alloc (b, bytes, error);
  g_mutex_unlock (&b->lock);
  return p;
}

static void
op_free (BnBackendImpl *b, void *p)
{
  g_mutex_lock (&b->lock);
  dev_free (b, p);
  g_mutex_unlock (&b->lock);
}

static gboolean
op_upload (BnBackendImpl *b, void *dst, const void *src, size_t bytes,
           GError **error)
{
  g_mutex_lock (&b->lock);
  gboolean ok = check (b, cudaMemcpyAsync (dst, src, bytes,
                                           cudaMemcpyHostToDevice, b->stream),
                       "upload", error)
                && check (b, cudaStreamSynchronize (b->stream), "upload",
                          error);
  g_mutex_unlock (&b->lock);
  return ok;
}

static gboolean
op_download (BnBackendImpl *b, void *dst, const void *src, size_t bytes,
             GError **error)
{
  g_mutex_lock (&b->lock);
  gboolean ok = check (b, cudaMemcpyAsync (dst, src, bytes,
                                           cudaMemcpyDeviceToHost, b->stream),
                       "download", error)
                && check (b, cudaStreamSynchronize (b->stream), "download",
                          error);
  g_mutex_unlock (&b->lock);
  return ok;
}

static gboolean
op_sync (BnBackendImpl *b, GError **error)
{
  return check (b, cudaStreamSynchronize (b->stream), "synchronize", error);
}

static const char *
op_device_name (BnBackendImpl *b)
{
  return b->name;
}

static gboolean
op_memory (BnBackendImpl *b, size_t *free_bytes, size_t *total_bytes,
           GError **error)
{
  return check (b, cudaMemGetInfo (free_bytes, total_bytes), "memory info",
                error);
}

static size_t
op_peak_bytes (BnBackendImpl *b)
{
  g_mutex_lock (&b->lock);
  size_t p = b->peak;
  g_mutex_unlock (&b->lock);
  return p;
}

/* ---- Weights ----------------------------------------------------------- */

static void
weight_free_locked (BnBackendImpl *b, BnBackendWeight *w)
{
  if (!w)
    return;
  dev_free (b, w->data);
  dev_free (b, w->scales);
  dev_free (b, w->biases);
  g_free (w);
}

static void
op_weight_free (BnBackendImpl *b, BnBackendWeight *w)
{
  g_mutex_lock (&b->lock);
  weight_free_locked (b, w);
  g_mutex_unlock (&b->lock);
}

static gboolean
copy_in (BnBackendImpl *b, void **dst, const void *src, size_t bytes,
         GError **error)
{
  *dst = dev_alloc (b, bytes, error);
  return *dst
         && check (b, cudaMemcpy (*dst, src, bytes, cudaMemcpyHostToDevice),
                   "weight upload", error);
}

static BnBackendWeight *
op_weight_new (BnBackendImpl *b, const BnTensor *t, GError **error)
{
  if (t->ndim != 2 || t->shape[0] <= 0 || t->shape[1] <= 0)
    {
      g_set_error (error, b->domain, b->code_backend,
                   "CUDA linear weights are 2-D; got %d dimensions", t->ndim);
      return NULL;
    }
  BnBackendWeight *w = g_new0 (BnBackendWeight, 1);
  w->n = t->shape[0];
  w->k = t->shape[1];
  gboolean ok;
  g_mutex_lock (&b->lock);
  if (packed_bits (t->dtype))
    {
      w->bits = packed_bits (t->dtype);
      w->group = t->group_size;
      if (w->k % 32 != 0 || w->group % 32 != 0 || w->k % w->group != 0
          || !bnc_type (t->scale_dtype, &w->type))
        {
          g_set_error (error, b->domain, b->code_backend,
                       "CUDA packed linears need K and the group size to be "
                       "multiples of 32 (K %" G_GINT64_FORMAT ", group %d)",
                       w->k, w->group);
          ok = FALSE;
        }
      else
        {
          size_t groups = (size_t) (w->n * (w->k / w->group));
          size_t sbytes = groups * type_size (w->type);
          ok = copy_in (b, &w->data, t->data,
                        (size_t) (w->n * w->k / 8 * w->bits), error)
               && copy_in (b, &w->scales, t->scales, sbytes, error)
               && copy_in (b, &w->biases, t->biases, sbytes, error);
        }
    }
  else if (bnc_type (t->dtype, &w->type))
    ok = copy_in (b, &w->data, t->data,
                  (size_t) (w->n * w->k) * type_size (w->type), error);
  else
    {
      g_set_error (error, b->domain, b->code_backend,
                   "CUDA linears take f32, f16, bf16 or packed weights "
                   "(got dtype %d)", (int) t->dtype);
      ok = FALSE;
    }
  if (!ok)
    {
      weight_free_locked (b, w);
      w = NULL;
    }
  g_mutex_unlock (&b->lock);
  return w;
}

/* ---- Linear ------------------------------------------------------------ */

/* y = beta·y + xt·Wᵀ on cuBLAS for a dense weight; xt holds m rows of K
 * elements of the weight's type, row stride ldx.  Row-major y[m, N] is the
 * column-major N × m product Wᵀᵀ·xtᵀ, hence op T on W. */
static gboolean
dense_gemm (BnBackendImpl *b, const BnBackendWeight *w, const void *xt,
            int64_t ldx, int64_t m, float beta, float *y, int64_t ldy,
            GError **error)
{
  const float one = 1.0f;
  cudaDataType_t dt = w->type == BNC_F32 ? CUDA_R_32F
                      : w->type == BNC_F16 ? CUDA_R_16F : CUDA_R_16BF;
  return check_blas (b, cublasGemmEx (b->blas, CUBLAS_OP_T, CUBLAS_OP_N,
                                      (int) w->n, (int) m, (int) w->k, &one,
                                      w->data, dt, (int) w->k, xt, dt,
                                      (int) ldx, &beta, y, CUDA_R_32F,
                                      (int) ldy, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT),
                     "GEMM", error);
}

static gboolean
linear_locked (BnBackendImpl *b, const BnBackendWeight *w, const float *x,
               int64_t m, int64_t ldx, const float *bias, float *y,
               int64_t ldy, GError **error)
{
  if (m <= 0 || m > G_MAXINT || w->n > G_MAXINT || w->k > G_MAXINT)
    {
      g_set_error (error, b->domain, b->code_backend,
                   "CUDA linear: %" G_GINT64_FORMAT " rows is out of range", m);
      return FALSE;
    }
  if (w->bits)
    {
      void *xb = scratch (b, (size_t) (m * w->k) * 2, error);
      if (!xb
          || !check (b, bnc_convert_rows (b->stream, x, ldx, m, w->k,
                                          BNC_BF16, xb),
                     "activation rounding", error))
        return FALSE;
      return check (b, bnc_linear_packed (b->stream, xb, m, w->k, w->data,
                                          w->scales, w->biases, w->type,
                                          w->bits, w->group, w->n, bias, y,
                                          ldy),
                    "packed linear", error);
    }
  const void *xt = x;
  int64_t ldt = ldx;
  if (w->type != BNC_F32)
    {
      void *s = scratch (b, (size_t) (m * w->k) * 2, error);
      if (!s
          || !check (b, bnc_convert_rows (b->stream, x, ldx, m, w->k, w->type,
                                          s),
                     "activation rounding", error))
        return FALSE;
      xt = s;
      ldt = w->k;
    }
  return dense_gemm (b, w, xt, ldt, m, 0.0f, y, ldy, error)
         && (!bias
             || check (b, bnc_add_bias (b->stream, y, ldy, m, w->n, bias),
                       "bias", error));
}

static gboolean
op_linear (BnBackendImpl *b, const BnBackendWeight *w, const float *x,
           int64_t m, int64_t ldx, const float *bias, float *y, int64_t ldy,
           GError **error)
{
  g_mutex_lock (&b->lock);
  gboolean ok = linear_locked (b, w, x, m, ldx, bias, y, ldy, error);
  g_mutex_unlock (&b->lock);
  return ok;
}

/* ---- Attention and element-wise operators ------------------------------ */

static gboolean
op_attention (BnBackendImpl *b, const BnBackendAttention *a, GError **error)
{
  if (a->head_dim != 32 && a->head_dim != 64 && a->head_dim != 128)
    {
      g_set_error (error, b->domain, b->code_backend,
                   "CUDA attention needs head_dim 32, 64 or 128 (got %d)",
                   a->head_dim);
      return FALSE;
    }
  BncAttention k = { a->n_q, a->n_kv, a->n_heads, a->n_kv_heads, a->head_dim,
                     a->q, a->k,
                     a->v, a->ldq, a->ldk, a->ldv, a->out, a->ldo, a->scale,
                     a->causal, a->key_mask };
  g_mutex_lock (&b->lock);
  gboolean ok = check (b, bnc_attention (b->stream, &k), "attention", error);
  g_mutex_unlock (&b->lock);
  return ok;
}

/* Runs one launcher under the lock; `what` names it in errors. */
#define LAUNCH(b, what, call, error)                                         \
  G_STMT_START {                                                             \
    g_mutex_lock (&(b)->lock);                                               \
    gboolean ok_ = check ((b), (call), (what), (error));                     \
    g_mutex_unlock (&(b)->lock);                                             \
    return ok_;                                                              \
  } G_STMT_END

static gboolean
op_rmsnorm (BnBackendImpl *b, float *x, int64_t rows, int heads, int64_t n,
            int64_t ld, const float *weight, float eps, GError **error)
{
  LAUNCH (b, "RMSNorm",
          bnc_rmsnorm (b->stream, x, rows, heads, n, ld, weight, eps), error);
}

static gboolean
op_gate_add (BnBackendImpl *b, float *h, int64_t ldh, const float *y,
             int64_t ldy, const float *gate, int64_t rows, int64_t n,
             GError **error)
{
  LAUNCH (b, "gated residual",
          bnc_gate_add (b->stream, h, ldh, y, ldy, gate, rows, n), error);
}

static gboolean
op_copy_rows (BnBackendImpl *b, float *dst, int64_t ldd, const float *src,
              int64_t lds, int64_t rows, int64_t n, GError **error)
{
  LAUNCH (b, "row copy",
          cudaMemcpy2DAsync (dst, (size_t) ldd * 4, src, (size_t) lds * 4,
                             (size_t) n * 4, (size_t) rows,
                             cudaMemcpyDeviceToDevice, b->stream),
          error);
}

static gboolean
op_layernorm (BnBackendImpl *b, const float *x, float *y, int64_t rows,
              int64_t n, int64_t ld, float eps, const float *scale,
              const float *shift, GError **error)
{
  LAUNCH (b, "LayerNorm",
          bnc_layernorm (b->stream, x, y, rows, n, ld, eps, scale, shift),
          error);
}

static gboolean
op_swiglu (BnBackendImpl *b, const float *gate, int64_t ldg, const float *up,
           int64_t ldu, float *out, int64_t ldo, int64_t rows, int64_t n,
           GError **error)
{
  LAUNCH (b, "SwiGLU",
          bnc_swiglu (b->stream, gate, ldg, up, ldu, out, ldo, rows, n),
          error);
}

static gboolean
op_rope (BnBackendImpl *b, float *x, int64_t n_tok, int64_t ld, int n_heads,
         int head_dim, const float *cos_t, const float *sin_t, gboolean half,
         GError **error)
{
  LAUNCH (b, "RoPE",
          bnc_rope (b->stream, x, n_tok, ld, n_heads, head_dim, cos_t, sin_t,
                    half ? 1 : 0),
          error);
}

static gboolean
op_group_norm_fold (BnBackendImpl *b, const float *x, int64_t n, int64_t c,
                    int groups, const float *gamma, const float *beta,
                    float eps, float *scale, float *shift, GError **error)
{
  LAUNCH (b, "GroupNorm",
          bnc_group_norm_fold (b->stream, x, n, c, groups, gamma, beta, eps,
                               scale, shift),
          error);
}

static gboolean
conv_locked (BnBackendImpl *b, const BnBackendConv3x3 *c, const float *x,
             int64_t h, int64_t w, float *y, GError **error)
{
  const BnBackendWeight *wt = c->weight;
  if (wt->bits || wt->k % 9 != 0 || c->mode < 0 || c->mode > 2)
    {
      g_set_error (error, b->domain, b->code_backend,
                   "CUDA 3×3 convolution needs a dense [co, ci·9] weight");
      return FALSE;
    }
  int64_t ho = c->mode == 1 ? 2 * h : c->mode == 2 ? h / 2 : h;
  int64_t wo = c->mode == 1 ? 2 * w : c->mode == 2 ? w / 2 : w;
  int64_t pixels = ho * wo, ci = wt->k / 9;
  size_t row_bytes = (size_t) wt->k * type_size (wt->type);
  int64_t chunk = (int64_t) MAX (CONV_CHUNK_BYTES / row_bytes, 1);
  chunk = MIN (chunk, pixels);
  void *cols = scratch (b, (size_t) chunk * row_bytes, error);
  if (!cols)
    return FALSE;
  for (int64_t p0 = 0; p0 < pixels; p0 += chunk)
    {
      int64_t rows = MIN (chunk, pixels - p0);
      float *yp = y + p0 * wt->n;
      if (!check (b, bnc_im2col3x3 (b->stream, x, h, w, ci, c->mode, p0, rows,
                                    c->pre_scale, c->pre_shift, wt->type,
                                    cols),
                  "im2col", error)
          || !dense_gemm (b, wt, cols, wt->k, rows,
                          c->accumulate ? 1.0f : 0.0f, yp, wt->n, error)
          || (c->bias
              && !check (b, bnc_add_bias (b->stream, yp, wt->n, rows, wt->n,
                                          c->bias),
                         "bias", error)))
        return FALSE;
    }
  return TRUE;
}

static gboolean
op_conv3x3 (BnBackendImpl *b, const BnBackendConv3x3 *c, const float *x,
            int64_t h, int64_t w, float *y, GError **error)
{
  g_mutex_lock (&b->lock);
  gboolean ok = conv_locked (b, c, x, h, w, y, error);
  g_mutex_unlock (&b->lock);
  return ok;
}

/* ---- Opening and closing ----------------------------------------------- */

static void
op_close (BnBackendImpl *b)
{
  if (!b)
    return;
  dev_free (b, b->scratch);
  if (b->blas)
    cublasDestroy (b->blas);
  if (b->stream)
    cudaStreamDestroy (b->stream);
  g_hash_table_unref (b->sizes);
  g_mutex_clear (&b->lock);
  g_free (b);
}

static const BnBackendOps cuda_ops = {
  .abi = BN_BACKEND_ABI,
  .name = "cuda",
  .close = op_close,
  .device_name = op_device_name,
  .memory = op_memory,
  .peak_bytes = op_peak_bytes,
  .alloc = op_alloc,
  .free_ = op_free,
  .upload = op_upload,
  .download = op_download,
  .sync = op_sync,
  .weight_new = op_weight_new,
  .weight_free = op_weight_free,
  .linear = op_linear,
  .attention = op_attention,
  .rmsnorm = op_rmsnorm,
  .layernorm = op_layernorm,
  .gate_add = op_gate_add,
  .copy_rows = op_copy_rows,
  .swiglu = op_swiglu,
  .rope = op_rope,
  .group_norm_fold = op_group_norm_fold,
  .conv3x3 = op_conv3x3,
};

G_MODULE_EXPORT gboolean
bn_backend_module_init (int abi, GQuark domain, int code_backend,
                        int code_oom, const BnBackendOps **ops,
                        BnBackendImpl **impl, GError **error)
{
  if (abi != BN_BACKEND_ABI)
    {
      g_set_error (error, domain, code_backend,
                   "CUDA module built for backend interface %d, engine has %d",
                   BN_BACKEND_ABI, abi);
      return FALSE;
    }
  int count = 0;
  cudaError_t err = cudaGetDeviceCount (&count);
  if (err != cudaSuccess || count == 0)
    {
      g_set_error (error, domain, code_backend, "no CUDA device (%s)",
                   err != cudaSuccess ? cudaGetErrorString (err)
                                      : "the driver sees no GPU");
      return FALSE;
    }
  BnBackendImpl *b = g_new0 (BnBackendImpl, 1);
  b->domain = domain;
  b->code_backend = code_backend;
  b->code_oom = code_oom;
  g_mutex_init (&b->lock);
  b->sizes = g_hash_table_new (g_direct_hash, g_direct_equal);
  struct cudaDeviceProp prop;
  if (!check (b, cudaSetDevice (0), "device 0", error)
      || !check (b, cudaGetDeviceProperties (&prop, 0), "device 0", error))
    {
      op_close (b);
      return FALSE;
    }
  /* The kernels are built for sm_90 (and PTX for newer GPUs). */
  if (prop.major < 9)
    {
      g_set_error (error, domain, code_backend,
                   "%s (compute capability %d.%d) is not supported: the "
                   "CUDA module is built for 9.0 (Hopper) and newer",
                   prop.name, prop.major, prop.minor);
      op_close (b);
      return FALSE;
    }
  g_strlcpy (b->name, prop.name, sizeof b->name);
  if (!check (b, cudaStreamCreateWithFlags (&b->stream, cudaStreamNonBlocking),
              "stream", error)
      || !check_blas (b, cublasCreate (&b->blas), "handle", error)
      || !check_blas (b, cublasSetStream (b->blas, b->stream), "stream",
                      error))
    {
      op_close (b);
      return FALSE;
    }
  *ops = &cuda_ops;
  *impl = b;
  return TRUE;
}
