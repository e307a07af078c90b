// attention.cu — FlashAttention-style attention for head_dim 32, 64, 128.
//
// A block takes 128 queries of one head; each of its 8 warps owns 16 query
// rows.  Keys and values stream through shared memory 64 at a time (bf16).
// A warp computes its 16 × 64 scores with WMMA, applies the masks and an
// online softmax in fp32 (two lanes a row, running max and sum in
// registers), rescales its fp32 output rows in shared memory and adds
// P·V with WMMA.  No n_q × n_kv matrix exists; the output is divided by the
// softmax sum once at the end, and a query that sees no key gets zeros, as
// on the CPU.
#include "kernels.h"

#include <cuda_bf16.h>
#include <math_constants.h>
#include <mma.h>

using namespace nvcuda;

namespace {

// 128 queries a block halve the times K and V are read against 64 (190 KB
// of shared memory at head_dim 128, one block an SM).
constexpr int BQ = 128, BKV = 64, WARPS = 8;
static_assert (BQ == 16 * WARPS, "a warp owns 16 query rows");
constexpr int LDS = BKV + 4;   // fp32 scores
constexpr int LDP = BKV + 8;   // bf16 probabilities

// Shared memory of the kernel for head_dim D: bf16 Q, K, V rows of D + 8,
// fp32 scores, bf16 probabilities, fp32 output rows of D + 4, row sums.
template <int D> struct Smem {
  static constexpr int LDQ = D + 8, LDO = D + 4;
  static constexpr size_t Q = (size_t) BQ * LDQ * 2, KV = (size_t) BKV * LDQ * 2,
                          S = (size_t) BQ * LDS * 4, P = (size_t) BQ * LDP * 2,
                          O = (size_t) BQ * LDO * 4, L = (size_t) BQ * 4;
  static constexpr size_t total = Q + 2 * KV + S + P + O + L;
};

template <int D>
__global__ void __launch_bounds__ (WARPS * 32)
attention_kernel (BncAttention a)
{
  using M = Smem<D>;
  constexpr int LDQ = M::LDQ, LDO = M::LDO;
  extern __shared__ __align__ (128) unsigned char smem[];
  __nv_bfloat16 *Qs = (__nv_bfloat16 *) smem;
  __nv_bfloat16 *Ks = (__nv_bfloat16 *) (smem + M::Q);
  __nv_bfloat16 *Vs = (__nv_bfloat16 *) (smem + M::Q + M::KV);
  float *Ss = (float *) (smem + M::Q + 2 * M::KV);
  __nv_bfloat16 *Ps = (__nv_bfloat16 *) (smem + M::Q + 2 * M::KV + M::S);
  float *Os = (float *) (smem + M::Q + 2 * M::KV + M::S + M::P);
  float *Ls = (float *) (smem + M::Q + 2 * M::KV + M::S + M::P + M::O);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int head = blockIdx.y;
  const int kv_head = head / (a.n_heads / a.n_kv_heads);
  const int64_t q0 = (int64_t) blockIdx.x * BQ;
  const float log2e_scale = a.scale * 1.4426950408889634f;

  for (int i = tid; i < BQ * D; i += WARPS * 32)
    {
      int r = i / D, d = i % D;
      float v = q0 + r < a.n_q ? a.q[(q0 + r) * a.ldq + (int64_t) head * D + d]
                               : 0.0f;
      Qs[r * LDQ + d] = __float2bfloat16_rn (v);
      Os[r * LDO + d] = 0.0f;
    }

  // Softmax state of row `srow` (two lanes a row, 32 columns each).
  const int srow = warp * 16 + lane / 2, shalf = lane % 2;
  const int64_t qi = q0 + srow;
  float m_run = -CUDART_INF_F, l_run = 0.0f;

  int64_t kv_end = a.n_kv;
  if (a.causal && q0 + BQ < kv_end)
    kv_end = q0 + BQ;

  for (int64_t j0 = 0; j0 < kv_end; j0 += BKV)
    {
      __syncthreads (); // the previous tile's K and V are no longer read
      for (int i = tid; i < BKV * D; i += WARPS * 32)
        {
          int r = i / D, d = i % D;
          float kv = 0.0f, vv = 0.0f;
          if (j0 + r < a.n_kv)
            {
              kv = a.k[(j0 + r) * a.ldk + (int64_t) kv_head * D + d];
              vv = a.v[(j0 + r) * a.ldv + (int64_t) kv_head * D + d];
            }
          Ks[r * LDQ + d] = __float2bfloat16_rn (kv);
          Vs[r * LDQ + d] = __float2bfloat16_rn (vv);
        }
      __syncthreads ();

      // S (16 × 64) = Q_w · Kᵀ; Ks row-major [key][d] is Kᵀ column-major.
      for (int nf = 0; nf < BKV / 16; nf++)
        {
          wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
          wmma::fill_fragment (s, 0.0f);
          for (int kk = 0; kk < D; kk += 16)
            {
              wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16,
                             wmma::row_major> qa;
              wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16,
                             wmma::col_major> kb;
              wmma::load_matrix_sync (qa, Qs + warp * 16 * LDQ + kk, LDQ);
              wmma::load_matrix_sync (kb, Ks + nf * 16 * LDQ + kk, LDQ);
              wmma::mma_sync (s, qa, kb, s);
            }
          wmma::store_matrix_sync (Ss + warp * 16 * LDS + nf * 16, s, LDS,
                                   wmma::mem_row_major);
        }
      __syncwarp ();

      // Online softmax on this lane's 32 scores of row srow.
      float *srow_p = Ss + srow * LDS + shalf * 32;
      float tmax = -CUDART_INF_F;
      for (int c = 0; c < 32; c++)
        {
          int64_t j = j0 + shalf * 32 + c;
          bool visible = j < a.n_kv && (!a.causal || j <= qi)
                         && (!a.key_mask || a.key_mask[j]);
          float s = visible ? srow_p[c] * log2e_scale : -CUDART_INF_F;
          srow_p[c] = s;
          tmax = fmaxf (tmax, s);
        }
      tmax = fmaxf (tmax, __shfl_xor_sync (0xffffffffu, tmax, 1));
      float m_new = fmaxf (m_run, tmax);
      float alpha = 1.0f, psum = 0.0f;
      __nv_bfloat16 *prow = Ps + srow * LDP + shalf * 32;
      if (m_new == -CUDART_INF_F)
        for (int c = 0; c < 32; c++)
          prow[c] = __float2bfloat16_rn (0.0f);
      else
        {
          alpha = exp2f (m_run - m_new); // 0 while m_run is still -inf
          for (int c = 0; c < 32; c++)
            {
              float p = exp2f (srow_p[c] - m_new);
              psum += p;
              prow[c] = __float2bfloat16_rn (p);
            }
        }
      psum += __shfl_xor_sync (0xffffffffu, psum, 1);
      l_run = l_run * alpha + psum;
      m_run = m_new;
      float *orow = Os + srow * LDO + shalf * (D / 2);
      for (int d = 0; d < D / 2; d++)
        orow[d] *= alpha;
      __syncwarp ();

      // O_w (16 × 128) += P_w (16 × 64) · V (64 × 128).
      for (int df = 0; df < D / 16; df++)
        {
          wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
          float *op = Os + warp * 16 * LDO + df * 16;
          wmma::load_matrix_sync (o, op, LDO, wmma::mem_row_major);
          for (int kk = 0; kk < BKV; kk += 16)
            {
              wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16,
                             wmma::row_major> pa;
              wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16,
                             wmma::row_major> vb;
              wmma::load_matrix_sync (pa, Ps + warp * 16 * LDP + kk, LDP);
              wmma::load_matrix_sync (vb, Vs + kk * LDQ + df * 16, LDQ);
              wmma::mma_sync (o, pa, vb, o);
            }
          wmma::store_matrix_sync (op, o, LDO, wmma::mem_row_major);
        }
      __syncwarp ();
    }

  if (shalf == 0)
    Ls[srow] = l_run;
  __syncthreads ();
  for (int i = tid; i < BQ * D; i += WARPS * 32)
    {
      int r = i / D, d = i % D;
      if (q0 + r >= a.n_q)
        continue;
      float l = Ls[r];
      a.out[(q0 + r) * a.ldo + (int64_t) head * D + d]
          = l > 0.0f ? Os[r * LDO + d] / l : 0.0f;
    }
}

} // namespace

template <int D>
cudaError_t
launch (cudaStream_t stream, const BncAttention *a)
{
  cudaError_t err = cudaFuncSetAttribute (
      attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      (int) Smem<D>::total);
  if (err != cudaSuccess)
    return err;
  dim3 grid ((unsigned) ((a->n_q + BQ - 1) / BQ), (unsigned) a->n_heads);
  attention_kernel<D><<<grid, WARPS * 32, Smem<D>::total, stream>>> (*a);
  return cudaGetLastError ();
}

extern "C" cudaError_t
bnc_attention (cudaStream_t stream, const BncAttention *a)
{
  if (a->n_q <= 0 || a->n_kv <= 0 || a->n_kv_heads <= 0
      || a->n_heads % a->n_kv_heads != 0 || a->n_heads > 65535)
    return cudaErrorInvalidValue;
  switch (a->head_dim)
    {
    case 32: return launch<32> (stream, a);
    case 64: return launch<64> (stream, a);
    case 128: return launch<128> (stream, a);
    default: return cudaErrorInvalidValue;
    }
}
