// linear_lowbit.cu — y = x·Wᵀ straight from MLX packs on bf16 tensor cores.
//
// A block computes a 128 × 128 tile of y.  For each 32-wide slice of K it
// copies 128 rows of x (already bf16) into shared memory and decodes the
// matching 128 × 32 codes of W to bf16 (scale·q + bias in fp32, rounded
// once): the release's ternary and binary packs give ±scale, 0 and
// ±scale/2, which bf16 holds exactly when the scale is bf16.  Eight warps
// then run WMMA 16×16×16 products with fp32 accumulators (each warp a
// 32 × 64 sub-tile).  K slices never straddle a group (32 divides the
// group size), so a slice needs one scale and one bias per row.
#include "kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

using namespace nvcuda;

namespace {

constexpr int BM = 128, BN = 128, BK = 32;
constexpr int LDS = BK + 8; // bf16 elements a shared row: 80 bytes, keeps
                            // 16-byte stores aligned and spreads banks
constexpr int THREADS = 256;

__device__ __forceinline__ float
load_scale (const void *p, int type, int64_t i)
{
  switch (type)
    {
    case BNC_BF16: return __bfloat162float (((const __nv_bfloat16 *) p)[i]);
    case BNC_F16: return __half2float (((const __half *) p)[i]);
    default: return ((const float *) p)[i];
    }
}

template <int BITS>
__global__ void __launch_bounds__ (THREADS)
linear_packed_kernel (const __nv_bfloat16 *__restrict__ xb, int64_t m,
                      int64_t k, const uint32_t *__restrict__ codes,
                      const void *scales, const void *biases, int scale_type,
                      int group, int64_t n, const float *__restrict__ bias,
                      float *__restrict__ y, int64_t ldy)
{
  __shared__ __align__ (128) __nv_bfloat16 As[BM * LDS];
  __shared__ __align__ (128) __nv_bfloat16 Bs[BN * LDS];
  __shared__ __align__ (128) float Cs[THREADS / 32][16 * 16];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 2, wn = warp % 2; // 4 × 2 warps of 32 × 64
  const int64_t m0 = (int64_t) blockIdx.y * BM, n0 = (int64_t) blockIdx.x * BN;
  const int64_t words_per_row = k * BITS / 32, groups_per_row = k / group;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][4];
  #pragma unroll
  for (int i = 0; i < 2; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++)
      wmma::fill_fragment (acc[i][j], 0.0f);

  // Decoding: two threads a row of W, 16 codes each.
  const int drow = tid / 2, dhalf = tid % 2;
  const int64_t wrow = n0 + drow;

  for (int64_t k0 = 0; k0 < k; k0 += BK)
    {
      // x: 128 rows × 32 bf16 = 512 chunks of 16 bytes, two a thread.
      for (int c = tid; c < BM * BK / 8; c += THREADS)
        {
          int r = c / (BK / 8), col = (c % (BK / 8)) * 8;
          uint4 v = make_uint4 (0, 0, 0, 0);
          if (m0 + r < m)
            v = *(const uint4 *) (xb + (m0 + r) * k + k0 + col);
          *(uint4 *) (As + r * LDS + col) = v;
        }
      // W: 16 codes of row wrow from k0 + 16·dhalf.
      {
        __align__ (16) __nv_bfloat16 w16[16];
        if (wrow < n)
          {
            int64_t bit = (k0 + 16 * dhalf) * BITS;
            const uint32_t *wp = codes + wrow * words_per_row + bit / 32;
            int shift = (int) (bit % 32);
            int64_t g = wrow * groups_per_row + k0 / group;
            float s = load_scale (scales, scale_type, g);
            float b = load_scale (biases, scale_type, g);
            const uint32_t mask = (1u << BITS) - 1u;
            #pragma unroll
            for (int i = 0; i < 16; i++)
              {
                int pos = shift + i * BITS;
                uint32_t q = (wp[pos / 32] >> (pos % 32)) & mask;
                w16[i] = __float2bfloat16_rn (fmaf (s, (float) q, b));
              }
          }
        else
          #pragma unroll
          for (int i = 0; i < 16; i++)
            w16[i] = __float2bfloat16_rn (0.0f);
        uint4 *dst = (uint4 *) (Bs + drow * LDS + 16 * dhalf);
        dst[0] = ((const uint4 *) w16)[0];
        dst[1] = ((const uint4 *) w16)[1];
      }
      __syncthreads ();

      #pragma unroll

      for (int kk = 0; kk < BK; kk += 16)
        {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16,
                         wmma::row_major> a[2];
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16,
                         wmma::col_major> b[4];
          #pragma unroll
          for (int i = 0; i < 2; i++)
            wmma::load_matrix_sync (a[i], As + (wm * 32 + i * 16) * LDS + kk,
                                    LDS);
          // Bs holds W row-major, that is Wᵀ (K × N) column-major.
          #pragma unroll
          for (int j = 0; j < 4; j++)
            wmma::load_matrix_sync (b[j], Bs + (wn * 64 + j * 16) * LDS + kk,
                                    LDS);
          #pragma unroll
          for (int i = 0; i < 2; i++)
            #pragma unroll
            for (int j = 0; j < 4; j++)
              wmma::mma_sync (acc[i][j], a[i], b[j], acc[i][j]);
        }
      __syncthreads ();
    }

  // Each fragment goes through this warp's staging tile so that edges are
  // checked and the bias added element by element.
  float *cs = Cs[warp];
  #pragma unroll
  for (int i = 0; i < 2; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++)
      {
        wmma::store_matrix_sync (cs, acc[i][j], 16, wmma::mem_row_major);
        __syncwarp ();
        for (int e = lane; e < 256; e += 32)
          {
            int64_t row = m0 + wm * 32 + i * 16 + e / 16;
            int64_t col = n0 + wn * 64 + j * 16 + e % 16;
            if (row < m && col < n)
              y[row * ldy + col] = cs[e] + (bias ? bias[col] : 0.0f);
          }
        __syncwarp ();
      }
}

} // namespace

extern "C" cudaError_t
bnc_linear_packed (cudaStream_t stream, const uint16_t *xb, int64_t m,
                   int64_t k, const uint32_t *codes, const void *scales,
                   const void *biases, int scale_type, int bits, int group,
                   int64_t n, const float *bias, float *y, int64_t ldy)
{
  if (k % BK != 0 || group % BK != 0 || m <= 0 || n <= 0)
    return cudaErrorInvalidValue;
  dim3 grid ((unsigned) ((n + BN - 1) / BN), (unsigned) ((m + BM - 1) / BM));
  const __nv_bfloat16 *x = (const __nv_bfloat16 *) xb;
  switch (bits)
    {
    case 1:
      linear_packed_kernel<1><<<grid, THREADS, 0, stream>>> (
          x, m, k, codes, scales, biases, scale_type, group, n, bias, y, ldy);
      break;
    case 2:
      linear_packed_kernel<2><<<grid, THREADS, 0, stream>>> (
          x, m, k, codes, scales, biases, scale_type, group, n, bias, y, ldy);
      break;
    case 4:
      linear_packed_kernel<4><<<grid, THREADS, 0, stream>>> (
          x, m, k, codes, scales, biases, scale_type, group, n, bias, y, ldy);
      break;
    default:
      return cudaErrorInvalidValue;
    }
  return cudaGetLastError ();
}
