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

/// bfloat16 operands (a `--dtype bf16` UNet on CPU) are widened to float32
/// exactly, attended by the float32 kernel and the result rounded once.
bool all_bf16(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return q.defined() && k.defined() && v.defined() && q.scalar_type() == at::kBFloat16 &&
         k.scalar_type() == at::kBFloat16 && v.scalar_type() == at::kBFloat16;
}

at::Tensor attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  RECORD_FUNCTION("attention", std::vector<c10::IValue>({q, k, v}));
  if (all_bf16(q, k, v)) {
    return detail::attention_impl(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), scale,
                                  detail::AttentionBackend::cpu, launch_cpu)
        .to(at::kBFloat16);
  }
  return detail::attention_impl(q, k, v, scale, detail::AttentionBackend::cpu, launch_cpu);
}

at::Tensor& attention_out_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                              at::Tensor& out) {
  RECORD_FUNCTION("attention", std::vector<c10::IValue>({q, k, v}));
  if (all_bf16(q, k, v) && out.defined() && out.scalar_type() == at::kBFloat16) {
    out.copy_(attention_cpu(q, k, v, scale));
    return out;
  }
  return detail::attention_out_impl(q, k, v, scale, out, detail::AttentionBackend::cpu, launch_cpu);
}

}  // namespace
}  // namespace fewstep

TORCH_LIBRARY_IMPL(fewstep, CPU, m) {
  m.impl("attention", &fewstep::attention_cpu);
  m.impl("attention.out", &fewstep::attention_out_cpu);
}
