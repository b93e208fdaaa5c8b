// fewstep fused ops: the argument checks and the LibTorch reference
// computations that the CPU registration (kernels/fused_cpu.cpp) and the
// other devices' (kernels/fused_op.cpp) share.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string_view>

#include "kernels/fused_params.h"

namespace fewstep::detail {

/// Checks group_norm's arguments (x rank ≥ 2, num_groups ≥ 1 dividing the
/// channels, weight/bias of C elements, eps ≥ 0) and throws FusedOpError
/// naming `op` and the failed constraint.
void check_group_norm_args(const char* op, const at::Tensor& x, int64_t num_groups,
                           const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, double eps);

/// "none" or "tanh" as GeluApproximation; throws FusedOpError naming `op` otherwise.
GeluApproximation parse_gelu_approximation(const char* op, std::string_view approximate);

/// The fused ops computed with LibTorch's ops (any device, any dtype):
/// act(group_norm(x + shift)), x.copy_(gelu(x)), chunk + gelu + mul.
at::Tensor group_norm_reference(const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
                                const std::optional<at::Tensor>& bias, double eps,
                                const std::optional<at::Tensor>& shift, bool silu);
at::Tensor& gelu_reference_(at::Tensor& x, std::string_view approximate);
at::Tensor geglu_reference(const at::Tensor& x, std::string_view approximate);

}  // namespace fewstep::detail
