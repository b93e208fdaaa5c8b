// fewstep attention: the CPU implementation of fewstep::attention and
// fewstep::attention.out. Work items (batch × heads × query blocks) are spread
// over LibTorch's intra-op threads; each runs the torch-free tiled kernel.
#include <torch/library.h>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include "kernels/attention_checks.h"
#include "kernels/cpu/flash_attention_cpu.h"

namespace fewstep {
namespace {

void launch_cpu(const AttentionParams& params) {
  at::parallel_for(0, cpu::flash_attention_work_items(params), 1,
                   [&](int64_t begin, int64_t end) { cpu::flash_attention_forward(params, begin, end); });
}

at::Tensor attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  RECORD_FUNCTION("attention", std::vector<c10::IValue>({q, k, v}));
  return detail::attention_impl(q, k, v, scale, detail::AttentionBackend::cpu, launch_cpu);
}

at::Tensor& attention_out_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                              at::Tensor& out) {
  RECORD_FUNCTION("attention", std::vector<c10::IValue>({q, k, v}));
  return detail::attention_out_impl(q, k, v, scale, out, detail::AttentionBackend::cpu, launch_cpu);
}

}  // namespace
}  // namespace fewstep

TORCH_LIBRARY_IMPL(fewstep, CPU, m) {
  m.impl("attention", &fewstep::attention_cpu);
  m.impl("attention.out", &fewstep::attention_out_cpu);
}
