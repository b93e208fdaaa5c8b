// fewstep fused ops: their schemas, the C++ entry points (through the
// dispatcher), the argument checks, and the LibTorch computation that
// serves every device without a fewstep kernel. The CPU kernels register in
// kernels/fused_cpu.cpp.
#include <torch/library.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <string>

#include "kernels/fused.h"
#include "kernels/fused_checks.h"

TORCH_LIBRARY_FRAGMENT(fewstep, m) {
  m.def("group_norm(Tensor x, int num_groups, Tensor? weight, Tensor? bias, float eps, Tensor? shift=None) -> Tensor");
  m.def(
      "group_norm_silu(Tensor x, int num_groups, Tensor? weight, Tensor? bias, float eps, Tensor? shift=None) -> "
      "Tensor");
  m.def("gelu_(Tensor(a!) x, str approximate=\"none\") -> Tensor(a!)");
  m.def("geglu(Tensor x, str approximate=\"none\") -> Tensor");
}

namespace fewstep {
namespace detail {
namespace {

[[noreturn]] void fail(const char* op, const std::string& constraint) {
  throw FusedOpError(std::string("fewstep::") + op + ": " + constraint);
}

}  // namespace

void check_group_norm_args(const char* op, const at::Tensor& x, int64_t num_groups,
                           const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, double eps) {
  if (!x.defined()) fail(op, "x is an undefined tensor");
  if (x.dim() < 2) fail(op, "x must be [N, C, *], got " + std::to_string(x.dim()) + " dims");
  const int64_t channels = x.size(1);
  if (num_groups < 1 || channels % num_groups != 0) {
    fail(op,
         "num_groups " + std::to_string(num_groups) + " does not divide the " + std::to_string(channels) + " channels");
  }
  for (const auto& [t, name] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (t->has_value() && (*t)->defined() && (*t)->numel() != channels) {
      fail(op, std::string(name) + " has " + std::to_string((*t)->numel()) + " elements, expected " +
                   std::to_string(channels) + " (the channels)");
    }
  }
  if (!(eps >= 0.0)) fail(op, "eps must be >= 0");
}

GeluApproximation parse_gelu_approximation(const char* op, std::string_view approximate) {
  if (approximate == "none") return GeluApproximation::none;
  if (approximate == "tanh") return GeluApproximation::tanh;
  fail(op, "approximate must be 'none' or 'tanh', got '" + std::string(approximate) + "'");
}

at::Tensor group_norm_reference(const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
                                const std::optional<at::Tensor>& bias, double eps,
                                const std::optional<at::Tensor>& shift, bool silu) {
  const at::Tensor input = shift.has_value() && shift->defined() ? at::add(x, *shift) : x;
  at::Tensor out = at::group_norm(input, num_groups, weight, bias, eps);
  return silu ? at::silu_(out) : out;
}

at::Tensor& gelu_reference_(at::Tensor& x, std::string_view approximate) { return x.copy_(at::gelu(x, approximate)); }

at::Tensor geglu_reference(const at::Tensor& x, std::string_view approximate) {
  const std::vector<at::Tensor> parts = at::chunk(x, 2, -1);
  return at::mul(parts.at(0), at::gelu(parts.at(1), approximate));
}

}  // namespace detail

namespace {

at::Tensor group_norm_any(const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
                          const std::optional<at::Tensor>& bias, double eps, const std::optional<at::Tensor>& shift) {
  detail::check_group_norm_args("group_norm", x, num_groups, weight, bias, eps);
  return detail::group_norm_reference(x, num_groups, weight, bias, eps, shift, false);
}

at::Tensor group_norm_silu_any(const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& bias, double eps,
                               const std::optional<at::Tensor>& shift) {
  detail::check_group_norm_args("group_norm_silu", x, num_groups, weight, bias, eps);
  return detail::group_norm_reference(x, num_groups, weight, bias, eps, shift, true);
}

at::Tensor& gelu_any_(at::Tensor& x, std::string_view approximate) {
  detail::parse_gelu_approximation("gelu_", approximate);
  return detail::gelu_reference_(x, approximate);
}

at::Tensor geglu_any(const at::Tensor& x, std::string_view approximate) {
  detail::parse_gelu_approximation("geglu", approximate);
  return detail::geglu_reference(x, approximate);
}

}  // namespace

at::Tensor group_norm(const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
                      const std::optional<at::Tensor>& bias, double eps, const std::optional<at::Tensor>& shift,
                      bool silu) {
  detail::check_group_norm_args(silu ? "group_norm_silu" : "group_norm", x, num_groups, weight, bias, eps);
  using Sig = at::Tensor(const at::Tensor&, int64_t, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                         double, const std::optional<at::Tensor>&);
  static const auto plain = c10::Dispatcher::singleton().findSchemaOrThrow("fewstep::group_norm", "").typed<Sig>();
  static const auto fused = c10::Dispatcher::singleton().findSchemaOrThrow("fewstep::group_norm_silu", "").typed<Sig>();
  return (silu ? fused : plain).call(x, num_groups, weight, bias, eps, shift);
}

at::Tensor& gelu_(at::Tensor& x, std::string_view approximate) {
  detail::parse_gelu_approximation("gelu_", approximate);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fewstep::gelu_", "")
                             .typed<at::Tensor&(at::Tensor&, std::string_view)>();
  return op.call(x, approximate);
}

at::Tensor geglu(const at::Tensor& x, std::string_view approximate) {
  detail::parse_gelu_approximation("geglu", approximate);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fewstep::geglu", "")
                             .typed<at::Tensor(const at::Tensor&, std::string_view)>();
  return op.call(x, approximate);
}

FusionMode parse_fusion_mode(std::string_view text) {
  if (text == "all") return FusionMode::all;
  if (text == "kernels") return FusionMode::kernels;
  if (text == "none") return FusionMode::none;
  throw FusedOpError("--fusion: expected none, kernels or all, got '" + std::string(text) + "'");
}

std::string to_string(FusionMode mode) {
  return mode == FusionMode::all ? "all" : mode == FusionMode::kernels ? "kernels" : "none";
}

}  // namespace fewstep

// Every device without a fewstep kernel (CUDA, and CPU tensors the kernels do
// not take are handled inside fused_cpu.cpp) computes with LibTorch's ops.
TORCH_LIBRARY_IMPL(fewstep, CompositeExplicitAutograd, m) {
  m.impl("group_norm", &fewstep::group_norm_any);
  m.impl("group_norm_silu", &fewstep::group_norm_silu_any);
  m.impl("gelu_", &fewstep::gelu_any_);
  m.impl("geglu", &fewstep::geglu_any);
}
