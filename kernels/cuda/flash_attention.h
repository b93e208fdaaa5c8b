// fewstep attention, CUDA kernels: the torch-free launcher.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/attention_params.h"

namespace fewstep::cuda {

/// Launches attention on `stream`:
///  - f16 / bf16: the tensor-core FlashAttention-2 forward kernel
///    `fewstep_flash_attention_fwd` (Dao 2023, Algorithm 1; mma.sync m16n8k16
///    with fp32 accumulation, sm_80 and later);
///  - f32: `fewstep_attention_fp32_fwd`, the same online softmax on CUDA cores.
/// Preconditions (checked by the op, kernels/attention_op.cpp): params valid,
/// head_dim a multiple of 8 and at most kMaxHeadDim, seq_k ≥ 1, and for f16 /
/// bf16 every row of q, k, v and out starting on a 16-byte boundary.
/// Returns cudaSuccess, or the error of the attribute call or the launch.
cudaError_t flash_attention_forward(const AttentionParams& params, cudaStream_t stream);

}  // namespace fewstep::cuda
