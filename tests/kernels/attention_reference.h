// Test helpers for fewstep::attention: a reference in higher precision and
// the error budget of the issue ("at most 2× LibTorch's own attention error
// in the same dtype, plus a rounding floor").
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <cstdlib>
#include <cstdint>
#include <string>

#include "kernels/attention.h"

namespace fewstep::test {

/// softmax(scale · q kᵀ) v (Vaswani et al. 2017, eq. 1) with every operand
/// cast to `dtype` (float64 by default) on the inputs' device: the score
/// matrix is materialised, which is what the fused kernels avoid.
inline at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                      at::ScalarType dtype = at::kDouble) {
  const at::Tensor scores = at::matmul(q.to(dtype), k.to(dtype).transpose(-2, -1)) * scale;
  return at::matmul(at::softmax(scores, -1), v.to(dtype));
}

/// max |a − b| in float64; NaN if either holds a NaN.
inline double max_abs_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor diff = (a.to(at::kDouble) - b.to(at::kDouble)).abs();
  if (diff.numel() == 0) return 0.0;
  if (diff.isnan().any().item<bool>()) return NAN;
  return diff.max().item<double>();
}

/// Unit roundoff of a floating dtype (2^-24 for float32, 2^-11 for float16,
/// 2^-8 for bfloat16): half the distance from 1 to the next number.
inline double unit_roundoff(at::ScalarType dtype) {
  switch (dtype) {
    case at::kHalf:
      return std::ldexp(1.0, -11);
    case at::kBFloat16:
      return std::ldexp(1.0, -8);
    case at::kDouble:
      return std::ldexp(1.0, -53);
    default:
      return std::ldexp(1.0, -24);
  }
}

/// Rounding floor of the budget. Every output row is a convex combination
/// of v's rows, so one rounding anywhere in the computation moves it by at
/// most u·max|v|; the floor allows four such roundings.
inline double rounding_floor(const at::Tensor& v, at::ScalarType dtype) {
  return 4.0 * unit_roundoff(dtype) * v.abs().max().item<double>();
}

/// Seeds LibTorch's default generator with a fixed seed per test (a hash of
/// the test's name; FEWSTEP_TEST_SEED overrides it, to reproduce or vary
/// runs), prints it, and returns it for failure messages.
inline uint64_t test_seed() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "";
  uint64_t seed = 20261206;
  for (unsigned char ch : name) seed = seed * 1099511628211ull + ch;  // FNV-style mix of the name
  if (const char* env = std::getenv("FEWSTEP_TEST_SEED"); env && *env) seed = std::strtoull(env, nullptr, 10);
  at::manual_seed(seed);
  std::cout << "[ seed     ] " << name << ": " << seed << " (FEWSTEP_TEST_SEED=" << seed << " reproduces)\n";
  return seed;
}

/// Runs fewstep::attention_out into an output prefilled with NaN, so that
/// any element the kernel does not write shows up as an error.
inline at::Tensor attention_into_nan(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                     at::Tensor out = {}) {
  if (!out.defined()) out = at::empty(q.sizes(), q.options());
  out.fill_(NAN);
  attention_out(q, k, v, scale, out);
  return out;
}

/// The message of the AttentionError that `f` throws, or a marker when it
/// throws nothing or something else.
template <typename F>
std::string attention_error_of(F&& f) {
  try {
    f();
  } catch (const AttentionError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not an AttentionError: ") + e.what() + ">";
  }
  return "<no error>";
}

}  // namespace fewstep::test
