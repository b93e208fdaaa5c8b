// fewstep attention, CUDA: the FlashAttention-2 forward kernel for fp16/bf16
// (Dao 2023, Algorithm 1), one template per head-dim group.
//
// Block (blockIdx.x, blockIdx.y): query rows [x·kBlockM, (x+1)·kBlockM) of one
// (batch, head) pair; a grid-stride loop over y covers batch·heads beyond
// the 65535 grid limit. Each warp owns 16 query rows. Per tile of kBlockN
// keys (lines 6-10 of Algorithm 1):
//   S = Q Kᵀ on the tensor cores (fp32 accumulators, 16 rows × kBlockN per warp)
//   S ← S·scale·log2(e), keys ≥ seq_k masked to −∞
//   m' = max(m, rowmax S), α = 2^(m − m'), P = 2^(S − m'), l = α·l + rowsum P
//   O ← α·O + P V   (P re-packed from the accumulators into A fragments)
// K and V tiles are double-buffered in shared memory with cp.async, so the
// next tile loads while this one computes. Out-of-range rows and the padded
// head-dim columns [d, ⌈d/16⌉·16) are zero-filled by cp.async, and whole
// 16-column chunks beyond d are skipped at run time, so one template serves
// every head dim of its group. Finally O / l (line 12) goes through the
// warp's own rows of the Q buffer to 16-byte coalesced stores.
#pragma once

#include <cstdint>

#include "kernels/attention_params.h"
#include "kernels/cuda/kernel_traits.cuh"
#include "kernels/cuda/mma_utils.cuh"

namespace fewstep::cuda {

/// Copies rows [0, kRows) × columns [0, cols) of a row-major gmem tile into
/// shared memory (row stride kSmemStride), 16 bytes per cp.async; rows
/// ≥ valid_rows and columns ≥ head_dim are zero-filled. cols is a multiple of 8.
template <typename Traits, int kRows, typename Element>
__device__ __forceinline__ void load_tile_async(Element* smem, const Element* gmem, int64_t row_stride, int valid_rows,
                                                int cols, int head_dim) {
  const int chunks_per_row = cols / 8;
  for (int idx = threadIdx.x; idx < kRows * chunks_per_row; idx += Traits::kThreads) {
    const int row = idx / chunks_per_row;
    const int col = (idx - row * chunks_per_row) * 8;
    const bool inside = row < valid_rows && col < head_dim;
    const Element* src = inside ? gmem + row * row_stride + col : gmem;
    cp_async_16(smem + row * Traits::kSmemStride + col, src, inside ? 16 : 0);
  }
}

template <typename Element, int kGroup>
__global__ void __launch_bounds__(KernelTraits<kGroup>::kThreads) fewstep_flash_attention_fwd(const AttentionParams p) {
  using Traits = KernelTraits<kGroup>;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kStride = Traits::kSmemStride;
  constexpr int kChunksK = Traits::kHeadDim / 16;  // 16-wide chunks of the head dim
  constexpr int kTilesN = kBlockN / 8;             // 8-key n-tiles of S
  constexpr int kTilesD = Traits::kHeadDim / 8;    // 8-column n-tiles of O

  extern __shared__ __align__(16) unsigned char smem_raw[];
  Element* s_q = reinterpret_cast<Element*>(smem_raw);
  Element* s_k = s_q + kBlockM * kStride;      // two buffers of kBlockN rows
  Element* s_v = s_k + 2 * kBlockN * kStride;  // two buffers of kBlockN rows

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;  // fragment row (and row + 8)
  const int t = lane % 4;  // fragment column pair
  const int head_dim = static_cast<int>(p.head_dim);
  const int dim16 = (head_dim + 15) / 16 * 16;
  const int chunks_k = dim16 / 16;   // active 16-column chunks for Q Kᵀ
  const int tiles_d = head_dim / 8;  // active 8-column tiles of O
  const int m0 = blockIdx.x * kBlockM;
  const int rows_q = min(kBlockM, static_cast<int>(p.seq_q) - m0);
  const int seq_k = static_cast<int>(p.seq_k);
  const int n_blocks = (seq_k + kBlockN - 1) / kBlockN;
  const float scale_log2 = p.scale * 1.4426950408889634f;  // log2(e)

  for (int64_t bh = blockIdx.y; bh < p.batch * p.heads; bh += gridDim.y) {
    const int64_t b = bh / p.heads;
    const int64_t h = bh % p.heads;
    const Element* q =
        static_cast<const Element*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride + m0 * p.q_row_stride;
    const Element* k = static_cast<const Element*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
    const Element* v = static_cast<const Element*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
    Element* out =
        static_cast<Element*>(p.out) + b * p.out_batch_stride + h * p.out_head_stride + m0 * p.out_row_stride;

    load_tile_async<Traits, kBlockM>(s_q, q, p.q_row_stride, rows_q, dim16, head_dim);
    load_tile_async<Traits, kBlockN>(s_k, k, p.k_row_stride, min(kBlockN, seq_k), dim16, head_dim);
    load_tile_async<Traits, kBlockN>(s_v, v, p.v_row_stride, min(kBlockN, seq_k), dim16, head_dim);
    cp_async_commit();

    float o_acc[kTilesD][4];
#pragma unroll
    for (int i = 0; i < kTilesD; ++i) o_acc[i][0] = o_acc[i][1] = o_acc[i][2] = o_acc[i][3] = 0.0f;
    float row_max[2] = {-INFINITY, -INFINITY};  // rows g, g+8, base-2 units
    float row_sum[2] = {0.0f, 0.0f};            // this thread's partial sums

    for (int nb = 0; nb < n_blocks; ++nb) {
      cp_async_wait_all();
      __syncthreads();  // tile nb visible to all; everyone is done with tile nb-1's buffer
      if (nb + 1 < n_blocks) {
        const int n1 = (nb + 1) * kBlockN;
        const int buf = (nb + 1) & 1;
        load_tile_async<Traits, kBlockN>(s_k + buf * kBlockN * kStride, k + n1 * p.k_row_stride, p.k_row_stride,
                                         min(kBlockN, seq_k - n1), dim16, head_dim);
        load_tile_async<Traits, kBlockN>(s_v + buf * kBlockN * kStride, v + n1 * p.v_row_stride, p.v_row_stride,
                                         min(kBlockN, seq_k - n1), dim16, head_dim);
      }
      cp_async_commit();
      const Element* k_tile = s_k + (nb & 1) * kBlockN * kStride;
      const Element* v_tile = s_v + (nb & 1) * kBlockN * kStride;

      // S = Q Kᵀ for this warp's 16 rows (line 8).
      float s_acc[kTilesN][4];
#pragma unroll
      for (int i = 0; i < kTilesN; ++i) s_acc[i][0] = s_acc[i][1] = s_acc[i][2] = s_acc[i][3] = 0.0f;
#pragma unroll
      for (int kc = 0; kc < kChunksK; ++kc) {
        if (kc < chunks_k) {
          uint32_t a[4];
          ldmatrix_x4(a, s_q + (warp * 16 + lane % 16) * kStride + kc * 16 + (lane / 16) * 8);
#pragma unroll
          for (int np = 0; np < kTilesN / 2; ++np) {
            uint32_t bk[4];  // b0, b1 of key tiles 2np and 2np+1
            ldmatrix_x4(bk, k_tile + (np * 16 + lane % 8 + (lane / 16) * 8) * kStride + kc * 16 + ((lane / 8) % 2) * 8);
            mma_16816<Element>(s_acc[2 * np], a, bk[0], bk[1]);
            mma_16816<Element>(s_acc[2 * np + 1], a, bk[2], bk[3]);
          }
        }
      }

      // Online softmax (lines 9-10) in base 2; keys ≥ seq_k are masked.
      const int key0 = nb * kBlockN;
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int i = 0; i < kTilesN; ++i) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = key0 + i * 8 + 2 * t + (e & 1);
          s_acc[i][e] = key < seq_k ? s_acc[i][e] * scale_log2 : -INFINITY;
          tile_max[e / 2] = fmaxf(tile_max[e / 2], s_acc[i][e]);
        }
      }
      float alpha[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        // The 4 threads of a quad hold one row's columns.
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
        const float m_new = fmaxf(row_max[r], tile_max[r]);  // finite: every tile has a valid key
        alpha[r] = exp2f(row_max[r] - m_new);
        row_max[r] = m_new;
        row_sum[r] *= alpha[r];
      }
#pragma unroll
      for (int i = 0; i < kTilesN; ++i) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s_acc[i][e] = exp2f(s_acc[i][e] - row_max[e / 2]);
          row_sum[e / 2] += s_acc[i][e];
        }
      }
#pragma unroll
      for (int i = 0; i < kTilesD; ++i) {
        o_acc[i][0] *= alpha[0];
        o_acc[i][1] *= alpha[0];
        o_acc[i][2] *= alpha[1];
        o_acc[i][3] *= alpha[1];
      }

      // O += P V (line 10): the C fragments of key tiles 2c, 2c+1 are the
      // A fragment of key chunk c.
#pragma unroll
      for (int c = 0; c < kBlockN / 16; ++c) {
        uint32_t a[4];
        a[0] = pack2<Element>(s_acc[2 * c][0], s_acc[2 * c][1]);
        a[1] = pack2<Element>(s_acc[2 * c][2], s_acc[2 * c][3]);
        a[2] = pack2<Element>(s_acc[2 * c + 1][0], s_acc[2 * c + 1][1]);
        a[3] = pack2<Element>(s_acc[2 * c + 1][2], s_acc[2 * c + 1][3]);
#pragma unroll
        for (int dp = 0; dp < kTilesD / 2; ++dp) {
          if (2 * dp < tiles_d) {
            uint32_t bv[4];  // b0, b1 of column tiles 2dp and 2dp+1
            ldmatrix_x4_trans(
                bv, v_tile + (c * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride + dp * 16 + (lane / 16) * 8);
            mma_16816<Element>(o_acc[2 * dp], a, bv[0], bv[1]);
            if (2 * dp + 1 < tiles_d) mma_16816<Element>(o_acc[2 * dp + 1], a, bv[2], bv[3]);
          }
        }
      }
    }

    // out = O / l (line 12), staged through this warp's own 16 rows of s_q.
    float inv_sum[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
      inv_sum[r] = 1.0f / row_sum[r];
    }
    __syncwarp();
    Element* s_o = s_q + warp * 16 * kStride;
#pragma unroll
    for (int i = 0; i < kTilesD; ++i) {
      if (i < tiles_d) {
        *reinterpret_cast<uint32_t*>(s_o + g * kStride + i * 8 + 2 * t) =
            pack2<Element>(o_acc[i][0] * inv_sum[0], o_acc[i][1] * inv_sum[0]);
        *reinterpret_cast<uint32_t*>(s_o + (g + 8) * kStride + i * 8 + 2 * t) =
            pack2<Element>(o_acc[i][2] * inv_sum[1], o_acc[i][3] * inv_sum[1]);
      }
    }
    __syncwarp();
    const int chunks_per_row = head_dim / 8;
    for (int idx = lane; idx < 16 * chunks_per_row; idx += 32) {
      const int row = idx / chunks_per_row;
      const int col = (idx - row * chunks_per_row) * 8;
      const int row_q = warp * 16 + row;
      if (row_q < rows_q) {
        *reinterpret_cast<uint4*>(out + row_q * p.out_row_stride + col) =
            *reinterpret_cast<const uint4*>(s_o + row * kStride + col);
      }
    }
    __syncthreads();  // s_q and the K/V buffers are reused by the next (batch, head)
  }
}

}  // namespace fewstep::cuda
