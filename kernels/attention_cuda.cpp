// fewstep attention: the CUDA implementation of fewstep::attention and
// fewstep::attention.out. Launches the torch-free kernels on the current
// stream of the inputs' device.
#include <torch/library.h>

#include <ATen/cuda/CUDAContext.h>
#include <ATen/record_function.h>
#include <c10/cuda/CUDAGuard.h>

#include <string>

#include "kernels/attention.h"
#include "kernels/attention_checks.h"
#include "kernels/cuda/flash_attention.h"

namespace fewstep {
namespace {

void launch_cuda(const AttentionParams& params) {
  const cudaError_t err = cuda::flash_attention_forward(params, at::cuda::getCurrentCUDAStream());
  if (err != cudaSuccess) {
    throw AttentionError(std::string("fewstep::attention: CUDA launch failed: ") + cudaGetErrorString(err));
  }
}

at::Tensor attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  RECORD_FUNCTION("attention", std::vector<c10::IValue>({q, k, v}));
  detail::check_attention_inputs(q, k, v, detail::AttentionBackend::cuda);  // before the guard needs a CUDA q
  const c10::cuda::OptionalCUDAGuard device_guard(q.device());
  return detail::attention_impl(q, k, v, scale, detail::AttentionBackend::cuda, launch_cuda);
}

at::Tensor& attention_out_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                               at::Tensor& out) {
  RECORD_FUNCTION("attention", std::vector<c10::IValue>({q, k, v}));
  detail::check_attention_inputs(q, k, v, detail::AttentionBackend::cuda);  // before the guard needs a CUDA q
  const c10::cuda::OptionalCUDAGuard device_guard(q.device());
  return detail::attention_out_impl(q, k, v, scale, out, detail::AttentionBackend::cuda, launch_cuda);
}

}  // namespace
}  // namespace fewstep

TORCH_LIBRARY_IMPL(fewstep, CUDA, m) {
  m.impl("attention", &fewstep::attention_cuda);
  m.impl("attention.out", &fewstep::attention_out_cuda);
}
