// fewstep attention, CUDA: the one place where run-time dtype and head dim
// become template parameters.
#include "kernels/cuda/flash_attention.h"
#include "kernels/cuda/flash_fwd.h"
#include "kernels/cuda/kernel_traits.cuh"

namespace fewstep::cuda {
namespace {

template <typename Element>
cudaError_t run_group(const AttentionParams& p, cudaStream_t stream) {
  switch (head_dim_group(p.head_dim)) {
    case 48:
      return run_flash_fwd<Element, 48>(p, stream);
    case 64:
      return run_flash_fwd<Element, 64>(p, stream);
    case 80:
      return run_flash_fwd<Element, 80>(p, stream);
    case 128:
      return run_flash_fwd<Element, 128>(p, stream);
    case 160:
      return run_flash_fwd<Element, 160>(p, stream);
    case 256:
      return run_flash_fwd<Element, 256>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t flash_attention_forward(const AttentionParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case AttentionDtype::f16:
      return run_group<__half>(p, stream);
    case AttentionDtype::bf16:
      return run_group<__nv_bfloat16>(p, stream);
    case AttentionDtype::f32:
      return run_attention_fp32(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace fewstep::cuda
