// fewstep fused ops, CPU: fills the kernels' params structs from tensors
// and spreads the work items over LibTorch's intra-op threads. Inputs the
// kernels do not take (dtypes other than float32/bfloat16, layouts other
// than contiguous or channels-last, a shift that is not per channel) run
// the LibTorch reference instead (kernels/fused_checks.h).
#include <torch/library.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "kernels/cpu/gelu_cpu.h"
#include "kernels/cpu/norm_cpu.h"
#include "kernels/fused.h"
#include "kernels/fused_checks.h"

namespace fewstep {
namespace {

/// Elements per parallel chunk (LibTorch's at::internal::GRAIN_SIZE): below
/// this a second thread's start costs more than it saves, and every
/// parallel region is a point where a busy machine can stall a step.
constexpr int64_t kElementwiseGrain = 32768;

std::optional<FusedDtype> kernel_dtype(const at::Tensor& t) {
  if (t.scalar_type() == at::kFloat) return FusedDtype::f32;
  if (t.scalar_type() == at::kBFloat16) return FusedDtype::bf16;
  return std::nullopt;
}

/// A per-channel vector as float32 contiguous, or undefined.
at::Tensor channel_vector(const std::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return {};
  return t->reshape({-1}).to(at::kFloat).contiguous();
}

/// `shift` as float32 [N, C] when x + shift is x's shape with the shift
/// constant over each (n, c) plane (right-aligned broadcasting: shift's
/// shape padded on the left with ones is [N or 1, C or 1, 1, …, 1]) and
/// both share a dtype; else undefined.
at::Tensor per_channel_shift(const at::Tensor& x, const at::Tensor& shift) {
  if (shift.scalar_type() != x.scalar_type() || shift.dim() > x.dim() || x.dim() < 2) return {};
  std::vector<int64_t> padded(static_cast<size_t>(x.dim() - shift.dim()), 1);
  for (int64_t d = 0; d < shift.dim(); ++d) padded.push_back(shift.size(d));
  const int64_t n = x.size(0), c = x.size(1);
  if ((padded[0] != 1 && padded[0] != n) || (padded[1] != 1 && padded[1] != c)) return {};
  for (size_t d = 2; d < padded.size(); ++d) {
    if (padded[d] != 1) return {};
  }
  return shift.reshape({padded[0], padded[1]}).expand({n, c}).to(at::kFloat).contiguous();
}

at::Tensor group_norm_cpu_impl(const char* op, const at::Tensor& x_in, int64_t num_groups,
                               const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                               double eps, const std::optional<at::Tensor>& shift_in, bool silu) {
  detail::check_group_norm_args(op, x_in, num_groups, weight, bias, eps);
  auto reference = [&] { return detail::group_norm_reference(x_in, num_groups, weight, bias, eps, shift_in, silu); };
  at::Tensor x = x_in;
  at::Tensor shift;
  if (shift_in.has_value() && shift_in->defined()) {
    shift = per_channel_shift(x, *shift_in);
    if (!shift.defined() && shift_in->dim() >= 2 && shift_in->size(1) == x.size(1)) {
      // `shift + x` with the per-channel operand first: addition commutes.
      shift = per_channel_shift(*shift_in, x);
      if (shift.defined()) x = *shift_in;
    }
    if (!shift.defined()) return reference();
  }
  const std::optional<FusedDtype> dtype = kernel_dtype(x);
  const bool channels_first = x.is_contiguous();
  const bool channels_last = !channels_first && x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (!dtype || (!channels_first && !channels_last)) return reference();

  const at::Tensor w = channel_vector(weight);
  const at::Tensor b = channel_vector(bias);
  at::Tensor out = at::empty_like(x);
  if (x.numel() == 0) return out;
  GroupNormParams p;
  p.x = x.data_ptr();
  p.out = out.data_ptr();
  p.weight = w.defined() ? w.data_ptr<float>() : nullptr;
  p.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  p.shift = shift.defined() ? shift.data_ptr<float>() : nullptr;
  p.batch = x.size(0);
  p.channels = x.size(1);
  p.groups = num_groups;
  p.spatial = x.numel() / (p.batch * p.channels);
  p.channels_last = channels_last;
  p.eps = static_cast<float>(eps);
  p.activation = silu ? FusedActivation::silu : FusedActivation::none;
  p.dtype = *dtype;
  const int64_t items = cpu::group_norm_work_items(p);
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, x.numel() / items));
  at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) { cpu::group_norm_forward(p, begin, end); });
  return out;
}

at::Tensor group_norm_cpu(const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
                          const std::optional<at::Tensor>& bias, double eps, const std::optional<at::Tensor>& shift) {
  return group_norm_cpu_impl("group_norm", x, num_groups, weight, bias, eps, shift, false);
}

at::Tensor group_norm_silu_cpu(const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& bias, double eps,
                               const std::optional<at::Tensor>& shift) {
  return group_norm_cpu_impl("group_norm_silu", x, num_groups, weight, bias, eps, shift, true);
}

void launch_gelu(const GeluParams& p) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, p.cols));
  at::parallel_for(0, p.rows, grain, [&](int64_t begin, int64_t end) { cpu::gelu_forward(p, begin, end); });
}

at::Tensor& gelu_cpu_(at::Tensor& x, std::string_view approximate) {
  const GeluApproximation approx = detail::parse_gelu_approximation("gelu_", approximate);
  const std::optional<FusedDtype> dtype = kernel_dtype(x);
  if (!dtype || !x.is_contiguous()) return detail::gelu_reference_(x, approximate);
  if (x.numel() == 0) return x;
  GeluParams p;
  p.x = x.data_ptr();
  p.out = x.data_ptr();
  p.cols = x.dim() > 0 ? x.size(-1) : 1;
  p.rows = x.numel() / p.cols;
  p.x_row_stride = p.out_row_stride = p.cols;
  p.approximate = approx;
  p.dtype = *dtype;
  launch_gelu(p);
  return x;
}

at::Tensor geglu_cpu(const at::Tensor& x_in, std::string_view approximate) {
  const GeluApproximation approx = detail::parse_gelu_approximation("geglu", approximate);
  const std::optional<FusedDtype> dtype = kernel_dtype(x_in);
  if (!dtype || x_in.dim() < 1 || x_in.size(-1) % 2 != 0) return detail::geglu_reference(x_in, approximate);
  const at::Tensor x = x_in.contiguous();
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() /= 2;
  at::Tensor out = at::empty(sizes, x.options());
  if (out.numel() == 0) return out;
  GeluParams p;
  p.x = x.data_ptr();
  p.out = out.data_ptr();
  p.cols = sizes.back();
  p.rows = out.numel() / p.cols;
  p.x_row_stride = 2 * p.cols;
  p.out_row_stride = p.cols;
  p.gated = true;
  p.approximate = approx;
  p.dtype = *dtype;
  launch_gelu(p);
  return out;
}

}  // namespace
}  // namespace fewstep

TORCH_LIBRARY_IMPL(fewstep, CPU, m) {
  m.impl("group_norm", &fewstep::group_norm_cpu);
  m.impl("group_norm_silu", &fewstep::group_norm_silu_cpu);
  m.impl("gelu_", &fewstep::gelu_cpu_);
  m.impl("geglu", &fewstep::geglu_cpu);
}
