// fewstep attention, CUDA: launch template of the fp16/bf16 kernel. Each
// flash_fwd_hdim*.cu instantiates it for one head-dim group and both element
// types, so the groups compile in parallel.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>

#include "kernels/cuda/flash_fwd_kernel.cuh"

namespace fewstep::cuda {

/// Launches fewstep_flash_attention_fwd<Element, kGroup> for `p` on `stream`.
template <typename Element, int kGroup>
cudaError_t run_flash_fwd(const AttentionParams& p, cudaStream_t stream) {
  using Traits = KernelTraits<kGroup>;
  auto* kernel = &fewstep_flash_attention_fwd<Element, kGroup>;
  // Above 48 KB a block's dynamic shared memory must be opted into. The
  // attribute is per device, so it is set on every launch (a cheap call).
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSmemBytes);
  if (err != cudaSuccess) return err;
  const int64_t bh = p.batch * p.heads;
  const dim3 grid(static_cast<unsigned>((p.seq_q + Traits::kBlockM - 1) / Traits::kBlockM),
                  static_cast<unsigned>(std::min<int64_t>(bh, 65535)));
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace fewstep::cuda
