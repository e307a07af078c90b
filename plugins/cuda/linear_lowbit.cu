// linear_lowbit.cu — y = x·Wᵀ straight from MLX packs on bf16 tensor cores.
//
// A block computes a 128 × 128 tile of y.  For each 32-wide slice of K it
// copies 128 rows of x (already bf16) into shared memory and decodes the
// matching 128 × 32 codes of W to bf16 (scale·q + bias in fp32, rounded
// once): the release's ternary and binary packs give ±scale, 0 and
// ±scale/2, which bf16 holds exactly when the scale is bf16.  Eight warps
// then run WMMA 16×16×16 products with fp32 accumulators (each warp a
// 32 × 64 sub-tile), while the next slice is fetched (two stages).  K
// slices never straddle a group (32 divides the group size), so a slice
// needs one scale and one bias per row.
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

// What one thread fetches from global memory for one K slice: two 16-byte
// chunks of x, and the code words, scale and bias of its 16 weights.
template <int BITS> struct Slice {
  uint4 x[2];
  uint32_t w[BITS == 4 ? 2 : 1];
  float s, b;
};

template <int BITS>
__device__ __forceinline__ void
fetch (Slice<BITS> &f, const __nv_bfloat16 *__restrict__ xb, int64_t m,
       int64_t k, int64_t m0, const uint32_t *__restrict__ codes,
       const void *scales, const void *biases, int scale_type, int group,
       int64_t n, int64_t wrow, int dhalf, int tid, int64_t k0)
{
  // x: 128 rows × 32 bf16 = 512 chunks of 16 bytes, two a thread.
  #pragma unroll
  for (int h = 0; h < 2; h++)
    {
      int c = tid + h * THREADS, r = c / (BK / 8), col = (c % (BK / 8)) * 8;
      f.x[h] = m0 + r < m ? *(const uint4 *) (xb + (m0 + r) * k + k0 + col)
                          : make_uint4 (0, 0, 0, 0);
    }
  // W: 16 codes of row wrow from k0 + 16·dhalf, 16·BITS bits from a word
  // boundary for 2 and 4 bits, from bit 16·dhalf of one word for 1 bit.
  if (wrow < n)
    {
      const int64_t words_per_row = k * BITS / 32;
      const uint32_t *wp = codes + wrow * words_per_row + (k0 + 16 * dhalf) * BITS / 32;
      #pragma unroll
      for (int i = 0; i < (BITS == 4 ? 2 : 1); i++)
        f.w[i] = wp[i];
      int64_t g = wrow * (k / group) + k0 / group;
      f.s = load_scale (scales, scale_type, g);
      f.b = load_scale (biases, scale_type, g);
    }
  else
    {
      #pragma unroll
      for (int i = 0; i < (BITS == 4 ? 2 : 1); i++)
        f.w[i] = 0;
      f.s = f.b = 0.0f;
    }
}

// Writes a fetched slice into one shared stage, decoding the weights.
template <int BITS>
__device__ __forceinline__ void
stash (const Slice<BITS> &f, __nv_bfloat16 *As, __nv_bfloat16 *Bs, int drow,
       int dhalf, int tid)
{
  #pragma unroll
  for (int h = 0; h < 2; h++)
    {
      int c = tid + h * THREADS, r = c / (BK / 8), col = (c % (BK / 8)) * 8;
      *(uint4 *) (As + r * LDS + col) = f.x[h];
    }
  __align__ (16) __nv_bfloat16 w16[16];
  const int shift = BITS == 1 ? 16 * dhalf : 0;
  const uint32_t mask = (1u << BITS) - 1u;
  #pragma unroll
  for (int i = 0; i < 16; i++)
    {
      int pos = shift + i * BITS;
      uint32_t q = (f.w[pos / 32] >> (pos % 32)) & mask;
      w16[i] = __float2bfloat16_rn (fmaf (f.s, (float) q, f.b));
    }
  uint4 *dst = (uint4 *) (Bs + drow * LDS + 16 * dhalf);
  dst[0] = ((const uint4 *) w16)[0];
  dst[1] = ((const uint4 *) w16)[1];
}

// Two shared stages: while the warps multiply one K slice, each thread has
// the next one's global loads in flight and stashes them into the other
// stage afterwards, so one barrier a slice suffices.  The output staging
// tiles reuse the first stage once the loop is done.
template <int BITS>
__global__ void __launch_bounds__ (THREADS)
linear_packed_kernel (const __nv_bfloat16 *__restrict__ xb, int64_t m,
                      int64_t k, const uint32_t *__restrict__ codes,
                      const void *scales, const void *biases, int scale_type,
                      int group, int64_t n, const float *__restrict__ bias,
                      float *__restrict__ y, int64_t ldy)
{
  constexpr int STAGE = (BM + BN) * LDS; // bf16 elements of one stage
  static_assert (STAGE * 2 >= (THREADS / 32) * 256 * 4,
                 "the staging tiles fit in one stage");
  __shared__ __align__ (128) __nv_bfloat16 smem[2 * STAGE];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 2, wn = warp % 2; // 4 × 2 warps of 32 × 64
  const int64_t m0 = (int64_t) blockIdx.y * BM, n0 = (int64_t) blockIdx.x * BN;
  // Decoding: two threads a row of W, 16 codes each.
  const int drow = tid / 2, dhalf = tid % 2;
  const int64_t wrow = n0 + drow;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][4];
  #pragma unroll
  for (int i = 0; i < 2; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++)
      wmma::fill_fragment (acc[i][j], 0.0f);

  Slice<BITS> f;
  fetch<BITS> (f, xb, m, k, m0, codes, scales, biases, scale_type, group, n,
               wrow, dhalf, tid, 0);
  stash<BITS> (f, smem, smem + BM * LDS, drow, dhalf, tid);
  __syncthreads ();

  int stage = 0;
  for (int64_t k0 = 0; k0 < k; k0 += BK)
    {
      const bool more = k0 + BK < k;
      if (more)
        fetch<BITS> (f, xb, m, k, m0, codes, scales, biases, scale_type,
                     group, n, wrow, dhalf, tid, k0 + BK);
      const __nv_bfloat16 *As = smem + stage * STAGE, *Bs = As + BM * LDS;
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
      // The other stage was last read before the previous barrier.
      if (more)
        {
          __nv_bfloat16 *next = smem + (stage ^ 1) * STAGE;
          stash<BITS> (f, next, next + BM * LDS, drow, dhalf, tid);
        }
      __syncthreads ();
      stage ^= 1;
    }

  // Each fragment goes through this warp's staging tile so that edges are
  // checked and the bias added element by element.  The last barrier of
  // the loop ended every read of the stages.
  float *cs = (float *) smem + warp * 256;
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
