// fewstep attention, CUDA: declarations of the per-group launchers (defined
// and explicitly instantiated in flash_fwd_hdim*.cu) and of the fp32 launcher.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/attention_params.h"

namespace fewstep::cuda {

/// Launches the tensor-core kernel for Element ∈ {__half, __nv_bfloat16} and
/// head-dim group kGroup ∈ kHeadDimGroups (kernel_traits.cuh).
template <typename Element, int kGroup>
cudaError_t run_flash_fwd(const AttentionParams& p, cudaStream_t stream);

/// Launches the fp32 kernel (CUDA cores), attention_fp32.cu.
cudaError_t run_attention_fp32(const AttentionParams& p, cudaStream_t stream);

}  // namespace fewstep::cuda
