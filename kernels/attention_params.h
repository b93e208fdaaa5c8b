// fewstep attention: the torch-free description of one attention call.
//
// Both kernels (kernels/cpu/flash_attention_cpu.h, kernels/cuda/flash_attention.h)
// take only this struct: raw pointers, element strides and sizes. The op
// wrapper (kernels/attention_op.cpp) is the single place that checks tensors
// and fills it.
#pragma once

#include <cstdint>

namespace fewstep {

/// Element type of q, k, v and out (all four share it).
enum class AttentionDtype { f32, f16, bf16 };

/// Pointers, strides and sizes of one batched attention call
///   out[b, h, i, :] = softmax_j(scale · q[b, h, i, :] · k[b, h, j, :]) · v[b, h, j, :]
/// (Vaswani et al. 2017, eq. 1), computed as FlashAttention-2's forward pass
/// (Dao 2023, Algorithm 1).
///
/// Shapes: q and out [batch, heads, seq_q, head_dim]; k and v
/// [batch, heads, seq_k, head_dim]. A 3-D call [B·H, S, d] is described with
/// heads = 1. Strides are in elements; the last dimension of every tensor is
/// contiguous (stride 1), which the op checks before filling this struct.
struct AttentionParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;

  int64_t batch = 0;
  int64_t heads = 0;
  int64_t seq_q = 0;
  int64_t seq_k = 0;
  int64_t head_dim = 0;  ///< at most kMaxHeadDim; a multiple of 8 for the CUDA kernels (any for the CPU one)

  int64_t q_batch_stride = 0, q_head_stride = 0, q_row_stride = 0;
  int64_t k_batch_stride = 0, k_head_stride = 0, k_row_stride = 0;
  int64_t v_batch_stride = 0, v_head_stride = 0, v_row_stride = 0;
  int64_t out_batch_stride = 0, out_head_stride = 0, out_row_stride = 0;

  float scale = 1.0f;  ///< multiplies q·k before the softmax (usually 1/√head_dim)
  AttentionDtype dtype = AttentionDtype::f32;
};

/// Largest head dim the kernels accept.
inline constexpr int64_t kMaxHeadDim = 256;
/// CUDA head dims must be a multiple of this (16-byte rows for fp16/bf16 vector loads).
inline constexpr int64_t kHeadDimMultiple = 8;

}  // namespace fewstep
