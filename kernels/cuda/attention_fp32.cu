// fewstep attention, CUDA: the fp32 kernel on CUDA cores (no tensor cores).
//
// The same online softmax as the tensor-core kernel (Dao 2023, Algorithm 1)
// in its simplest form: each warp owns one query row, each block kRows rows
// of one (batch, head). Per tile of 32 keys held in shared memory, lane j
// computes the score of key j, the warp reduces max and sum with shuffles,
// and lane l accumulates output columns l, l+32, …, l+224.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/flash_fwd.h"

namespace fewstep::cuda {
namespace {

constexpr int kRows = 8;   // warps per block, one query row each
constexpr int kKeys = 32;  // keys per tile, one per lane
constexpr int kColsPerLane = kMaxHeadDim / 32;

/// Shared floats for head dim d: q rows [kRows × d], K tile [kKeys × (d+1)]
/// (the odd stride keeps lane j's row reads in distinct banks), V tile [kKeys × d].
constexpr int smem_floats(int d) { return kRows * d + kKeys * (d + 1) + kKeys * d; }

__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

__global__ void __launch_bounds__(32 * kRows) fewstep_attention_fp32_fwd(const AttentionParams p) {
  extern __shared__ float smem[];
  const int d = static_cast<int>(p.head_dim);
  float* s_q = smem;
  float* s_k = s_q + kRows * d;
  float* s_v = s_k + kKeys * (d + 1);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRows + warp;
  const bool row_valid = row < p.seq_q;
  const float scale_log2 = p.scale * 1.4426950408889634f;  // log2(e)

  for (int64_t bh = blockIdx.y; bh < p.batch * p.heads; bh += gridDim.y) {
    const int64_t b = bh / p.heads;
    const int64_t h = bh % p.heads;
    const float* q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const float* k = static_cast<const float*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
    const float* v = static_cast<const float*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
    float* out = static_cast<float*>(p.out) + b * p.out_batch_stride + h * p.out_head_stride;

    for (int c = lane; c < d; c += 32) s_q[warp * d + c] = row_valid ? q[row * p.q_row_stride + c] : 0.0f;
    float o[kColsPerLane];
#pragma unroll
    for (int u = 0; u < kColsPerLane; ++u) o[u] = 0.0f;
    float row_max = -INFINITY;
    float row_sum = 0.0f;

    for (int64_t k0 = 0; k0 < p.seq_k; k0 += kKeys) {
      const int n = static_cast<int>(p.seq_k - k0 < kKeys ? p.seq_k - k0 : kKeys);
      __syncthreads();  // the previous tile is consumed; this warp's q row is written
      for (int idx = threadIdx.x; idx < kKeys * d; idx += 32 * kRows) {
        const int j = idx / d;
        const int c = idx - j * d;
        s_k[j * (d + 1) + c] = j < n ? k[(k0 + j) * p.k_row_stride + c] : 0.0f;
        s_v[j * d + c] = j < n ? v[(k0 + j) * p.v_row_stride + c] : 0.0f;
      }
      __syncthreads();

      float s = 0.0f;
      for (int c = 0; c < d; ++c) s = fmaf(s_q[warp * d + c], s_k[lane * (d + 1) + c], s);
      s = lane < n ? s * scale_log2 : -INFINITY;
      const float m_new = fmaxf(row_max, warp_max(s));
      const float alpha = exp2f(row_max - m_new);
      const float prob = exp2f(s - m_new);
      row_sum = row_sum * alpha + warp_sum(prob);
      row_max = m_new;
#pragma unroll
      for (int u = 0; u < kColsPerLane; ++u) o[u] *= alpha;
      for (int j = 0; j < n; ++j) {
        const float p_j = __shfl_sync(0xffffffffu, prob, j);
#pragma unroll
        for (int u = 0; u < kColsPerLane; ++u) {
          const int c = lane + 32 * u;
          if (c < d) o[u] = fmaf(p_j, s_v[j * d + c], o[u]);
        }
      }
    }

    if (row_valid) {
      const float inv = 1.0f / row_sum;
#pragma unroll
      for (int u = 0; u < kColsPerLane; ++u) {
        const int c = lane + 32 * u;
        if (c < d) out[row * p.out_row_stride + c] = o[u] * inv;
      }
    }
  }
}

}  // namespace

cudaError_t run_attention_fp32(const AttentionParams& p, cudaStream_t stream) {
  const int bytes = smem_floats(static_cast<int>(p.head_dim)) * static_cast<int>(sizeof(float));
  cudaError_t err = cudaFuncSetAttribute(fewstep_attention_fp32_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         smem_floats(static_cast<int>(kMaxHeadDim)) * sizeof(float));
  if (err != cudaSuccess) return err;
  const int64_t bh = p.batch * p.heads;
  const dim3 grid(static_cast<unsigned>((p.seq_q + kRows - 1) / kRows),
                  static_cast<unsigned>(std::min<int64_t>(bh, 65535)));
  fewstep_attention_fp32_fwd<<<grid, 32 * kRows, bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace fewstep::cuda
