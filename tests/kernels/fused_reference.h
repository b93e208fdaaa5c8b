// Test helpers for the fused ops: float64 references written from the
// papers' formulas (not LibTorch's kernels), and the error budget of the
// attention tests: at most 2× LibTorch's own error in the same dtype (its
// unfused ops), plus a rounding floor.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "tests/kernels/attention_reference.h"

namespace fewstep::test {

/// [1, C, 1, …] view shape for a per-channel vector against x.
inline std::vector<int64_t> channel_view(const at::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = x.size(1);
  return shape;
}

/// act(GroupNorm(x + shift)) in float64 (Wu & He 2018, eq. 1-2: mean and
/// biased variance over each group's channels and positions, then the
/// per-channel affine), SiLU (Elfwing et al. 2018) x·σ(x).
inline at::Tensor reference_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                       const at::Tensor& bias, double eps, const at::Tensor& shift, bool silu) {
  at::Tensor v = x.to(at::kDouble);
  if (shift.defined()) v = v + shift.to(at::kDouble);
  const at::Tensor grouped = v.reshape({v.size(0), groups, -1});
  const at::Tensor mean = grouped.mean(-1, true);
  const at::Tensor var = (grouped - mean).pow(2).mean(-1, true);
  at::Tensor y = ((grouped - mean) / (var + eps).sqrt()).reshape(v.sizes());
  if (weight.defined()) y = y * weight.to(at::kDouble).reshape(channel_view(x));
  if (bias.defined()) y = y + bias.to(at::kDouble).reshape(channel_view(x));
  return silu ? y / (1.0 + (-y).exp()) : y;
}

/// GELU (Hendrycks & Gimpel 2016) in float64: x·Φ(x) = x(1 + erf(x/√2))/2,
/// or the tanh form x(1 + tanh(√(2/π)(x + 0.044715x³)))/2.
inline at::Tensor reference_gelu(const at::Tensor& x, const std::string& approximate) {
  const at::Tensor d = x.to(at::kDouble);
  if (approximate == "tanh") return 0.5 * d * (1.0 + (std::sqrt(2.0 / M_PI) * (d + 0.044715 * d.pow(3))).tanh());
  return 0.5 * d * (1.0 + (d * M_SQRT1_2).erf());
}

/// GEGLU (Shazeer 2020, eq. 6) in float64: value · gelu(gate) for x = [value, gate] on the last dim.
inline at::Tensor reference_geglu(const at::Tensor& x, const std::string& approximate) {
  const int64_t n = x.size(-1) / 2;
  return x.narrow(-1, 0, n).to(at::kDouble) * reference_gelu(x.narrow(-1, n, n), approximate);
}

/// The budget: 2 × (LibTorch's error in `dtype`) + 4 roundings of the
/// largest reference value.
inline double fused_budget(double libtorch_error, const at::Tensor& reference, at::ScalarType dtype) {
  return 2.0 * libtorch_error + 4.0 * unit_roundoff(dtype) * reference.abs().max().item<double>();
}

/// The message of the std::exception that `f` throws, or a marker when it throws nothing.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace fewstep::test
