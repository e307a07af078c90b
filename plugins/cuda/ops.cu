// ops.cu — element-wise and normalisation kernels, im2col for the VAE.
// Reductions accumulate in double as the CPU operators do (ops.c,
// conv2d.c), so the two agree to fp32 rounding.
#include "kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

constexpr int THREADS = 256;

unsigned
blocks_for (int64_t n)
{
  int64_t b = (n + THREADS - 1) / THREADS;
  return (unsigned) (b < 65535 * 16 ? b : 65535 * 16);
}

__device__ __forceinline__ void
store_as (void *dst, int64_t i, int type, float v)
{
  switch (type)
    {
    case BNC_BF16: ((__nv_bfloat16 *) dst)[i] = __float2bfloat16_rn (v); break;
    case BNC_F16: ((__half *) dst)[i] = __float2half_rn (v); break;
    default: ((float *) dst)[i] = v; break;
    }
}

// Sum of a double over the block; every thread gets the result.
__device__ double
block_sum (double v, double *shared)
{
  for (int o = 16; o > 0; o /= 2)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads (); // `shared` may still be read from a previous call
  if (lane == 0)
    shared[warp] = v;
  __syncthreads ();
  double t = 0.0;
  for (int w = 0; w < (int) blockDim.x / 32; w++)
    t += shared[w];
  return t;
}

__global__ void
convert_kernel (const float *src, int64_t ld, int64_t m, int64_t k, int type,
                void *dst)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < m * k;
       i += (int64_t) gridDim.x * blockDim.x)
    store_as (dst, i, type, src[(i / k) * ld + i % k]);
}

__global__ void
bias_kernel (float *y, int64_t ldy, int64_t m, int64_t n, const float *bias)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < m * n;
       i += (int64_t) gridDim.x * blockDim.x)
    y[(i / n) * ldy + i % n] += bias[i % n];
}

// One block a vector: vector j of row r is block r·heads + j.
__global__ void
rmsnorm_kernel (float *x, int heads, int64_t n, int64_t ld,
                const float *weight, float eps)
{
  __shared__ double red[THREADS / 32];
  float *row = x + (blockIdx.x / heads) * ld + (blockIdx.x % heads) * n;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    ss += (double) row[i] * row[i];
  ss = block_sum (ss, red);
  float inv = (float) (1.0 / sqrt (ss / (double) n + eps));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    row[i] = weight ? (row[i] * inv) * weight[i] : row[i] * inv;
}

__global__ void
layernorm_kernel (const float *x, float *y, int64_t n, int64_t ld, float eps,
                  const float *scale, const float *shift)
{
  __shared__ double red[THREADS / 32];
  const float *in = x + blockIdx.x * ld;
  float *out = y + blockIdx.x * ld;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    s += in[i];
  double mean = block_sum (s, red) / (double) n;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    {
      double d = in[i] - mean;
      ss += d * d;
    }
  double inv = 1.0 / sqrt (block_sum (ss, red) / (double) n + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    {
      float v = (float) ((in[i] - mean) * inv);
      out[i] = scale ? v * (1.0f + scale[i]) + shift[i] : v;
    }
}

__global__ void
gate_add_kernel (float *h, int64_t ldh, const float *y, int64_t ldy,
                 const float *gate, int64_t rows, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x;
       i < rows * n; i += (int64_t) gridDim.x * blockDim.x)
    {
      int64_t r = i / n, c = i % n;
      h[r * ldh + c] += gate[c] * y[r * ldy + c];
    }
}

__global__ void
swiglu_kernel (const float *gate, int64_t ldg, const float *up, int64_t ldu,
               float *out, int64_t ldo, int64_t rows, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x;
       i < rows * n; i += (int64_t) gridDim.x * blockDim.x)
    {
      int64_t r = i / n, c = i % n;
      float g = gate[r * ldg + c], u = up[r * ldu + c];
      out[r * ldo + c] = g / (1.0f + expf (-g)) * u;
    }
}

__global__ void
rope_kernel (float *x, int64_t n_tok, int64_t ld, int n_heads, int head_dim,
             const float *cos_t, const float *sin_t, int half)
{
  const int hd2 = head_dim / 2;
  const int64_t total = n_tok * n_heads * hd2;
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < total;
       i += (int64_t) gridDim.x * blockDim.x)
    {
      int64_t t = i / ((int64_t) n_heads * hd2);
      int h = (int) (i / hd2 % n_heads), j = (int) (i % hd2);
      float *p = x + t * ld + (int64_t) h * head_dim;
      float c = cos_t[t * hd2 + j], s = sin_t[t * hd2 + j];
      int ia = half ? j : 2 * j, ib = half ? j + hd2 : 2 * j + 1;
      float a = p[ia], b = p[ib];
      p[ia] = a * c - b * s;
      p[ib] = b * c + a * s;
    }
}

// One block a group: sums over every pixel and channel of the group.
__global__ void
group_norm_kernel (const float *x, int64_t n, int64_t c, int64_t cg,
                   const float *gamma, const float *beta, float eps,
                   float *scale, float *shift)
{
  __shared__ double red[THREADS / 32];
  const int64_t g = blockIdx.x;
  double s = 0.0, ss = 0.0;
  for (int64_t i = threadIdx.x; i < n * cg; i += blockDim.x)
    {
      double v = x[(i / cg) * c + g * cg + i % cg];
      s += v;
      ss += v * v;
    }
  s = block_sum (s, red);
  ss = block_sum (ss, red);
  double count = (double) n * (double) cg;
  double mean = s / count;
  double var = fmax (ss / count - mean * mean, 0.0);
  double rstd = 1.0 / sqrt (var + eps);
  for (int64_t ch = g * cg + threadIdx.x; ch < (g + 1) * cg; ch += blockDim.x)
    {
      double a = (gamma ? gamma[ch] : 1.0) * rstd;
      scale[ch] = (float) a;
      shift[ch] = (float) ((beta ? beta[ch] : 0.0) - mean * a);
    }
}

// Modes as BnConvMode: 0 SAME, 1 UP2, 2 DOWN2 (see conv2d.c).
__global__ void
im2col_kernel (const float *x, int64_t h, int64_t w, int64_t ci, int mode,
               int64_t p0, int64_t rows, const float *pre_scale,
               const float *pre_shift, int type, void *cols)
{
  const int64_t wo = mode == 1 ? 2 * w : mode == 2 ? w / 2 : w;
  const int64_t ho = mode == 1 ? 2 * h : h;
  const int64_t kc = ci * 9;
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x;
       i < rows * kc; i += (int64_t) gridDim.x * blockDim.x)
    {
      int64_t p = p0 + i / kc, col = i % kc;
      int64_t ch = col / 9, t = col % 9, dy = t / 3, dx = t % 3;
      int64_t oy = p / wo, ox = p % wo, iy, ix;
      bool inside;
      if (mode == 1)
        {
          iy = oy + dy - 1;
          ix = ox + dx - 1;
          inside = iy >= 0 && iy < ho && ix >= 0 && ix < wo;
          iy /= 2;
          ix /= 2;
        }
      else if (mode == 2)
        {
          iy = 2 * oy + dy;
          ix = 2 * ox + dx;
          inside = iy < h && ix < w;
        }
      else
        {
          iy = oy + dy - 1;
          ix = ox + dx - 1;
          inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
        }
      float v = 0.0f;
      if (inside)
        {
          v = x[(iy * w + ix) * ci + ch];
          if (pre_scale)
            {
              v = v * pre_scale[ch] + pre_shift[ch];
              v = v / (1.0f + expf (-v));
            }
        }
      store_as (cols, i, type, v);
    }
}

} // namespace

extern "C" cudaError_t
bnc_convert_rows (cudaStream_t stream, const float *src, int64_t ld,
                  int64_t m, int64_t k, int type, void *dst)
{
  convert_kernel<<<blocks_for (m * k), THREADS, 0, stream>>> (src, ld, m, k,
                                                              type, dst);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_add_bias (cudaStream_t stream, float *y, int64_t ldy, int64_t m,
              int64_t n, const float *bias)
{
  bias_kernel<<<blocks_for (m * n), THREADS, 0, stream>>> (y, ldy, m, n, bias);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_rmsnorm (cudaStream_t stream, float *x, int64_t rows, int heads,
             int64_t n, int64_t ld, const float *weight, float eps)
{
  if (rows <= 0 || heads <= 0 || rows * heads > 0x7fffffff)
    return cudaErrorInvalidValue;
  rmsnorm_kernel<<<(unsigned) (rows * heads), THREADS, 0, stream>>> (
      x, heads, n, ld, weight, eps);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_gate_add (cudaStream_t stream, float *h, int64_t ldh, const float *y,
              int64_t ldy, const float *gate, int64_t rows, int64_t n)
{
  gate_add_kernel<<<blocks_for (rows * n), THREADS, 0, stream>>> (
      h, ldh, y, ldy, gate, rows, n);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_layernorm (cudaStream_t stream, const float *x, float *y, int64_t rows,
               int64_t n, int64_t ld, float eps, const float *scale,
               const float *shift)
{
  if (rows <= 0 || rows > 0x7fffffff || (!scale) != (!shift))
    return cudaErrorInvalidValue;
  layernorm_kernel<<<(unsigned) rows, THREADS, 0, stream>>> (x, y, n, ld, eps,
                                                             scale, shift);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_swiglu (cudaStream_t stream, const float *gate, int64_t ldg,
            const float *up, int64_t ldu, float *out, int64_t ldo,
            int64_t rows, int64_t n)
{
  swiglu_kernel<<<blocks_for (rows * n), THREADS, 0, stream>>> (
      gate, ldg, up, ldu, out, ldo, rows, n);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_rope (cudaStream_t stream, float *x, int64_t n_tok, int64_t ld,
          int n_heads, int head_dim, const float *cos_t, const float *sin_t,
          int half)
{
  if (head_dim % 2 != 0)
    return cudaErrorInvalidValue;
  rope_kernel<<<blocks_for (n_tok * n_heads * (head_dim / 2)), THREADS, 0,
                stream>>> (x, n_tok, ld, n_heads, head_dim, cos_t, sin_t,
                           half);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_group_norm_fold (cudaStream_t stream, const float *x, int64_t n,
                     int64_t c, int groups, const float *gamma,
                     const float *beta, float eps, float *scale, float *shift)
{
  if (groups <= 0 || c % groups != 0)
    return cudaErrorInvalidValue;
  group_norm_kernel<<<(unsigned) groups, THREADS, 0, stream>>> (
      x, n, c, c / groups, gamma, beta, eps, scale, shift);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_im2col3x3 (cudaStream_t stream, const float *x, int64_t h, int64_t w,
               int64_t ci, int mode, int64_t p0, int64_t rows,
               const float *pre_scale, const float *pre_shift, int type,
               void *cols)
{
  im2col_kernel<<<blocks_for (rows * ci * 9), THREADS, 0, stream>>> (
      x, h, w, ci, mode, p0, rows, pre_scale, pre_shift, type, cols);
  return cudaGetLastError ();
}
