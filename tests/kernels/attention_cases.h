// The shape sweep shared by the CPU and CUDA attention tests: every head dim
// in {8, 40, 64, 72, 80, 128, 160, 256} meets every sequence length in
// {1, 7, 77, 97, 256, 1025} as seq_q, paired with a different seq_k, across
// several batch × heads layouts, 3-D and 4-D, contiguous and strided.
// Each test loops over several shapes: a test process costs about a second
// to start (LibTorch's libraries and the CUDA probe), so CI runs few of them.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/kernels/attention_reference.h"

namespace fewstep::test {

struct AttentionCase {
  at::ScalarType dtype;
  int64_t batch;
  int64_t heads;  ///< 0: 3-D inputs [batch, seq, d]; else 4-D [batch, heads, seq, d]
  int64_t seq_q;
  int64_t seq_k;
  int64_t head_dim;
  bool strided;  ///< q, k, v as views of projection outputs; out transposed
};

inline std::string case_name(const AttentionCase& c) {
  std::string name = std::string(c10::toString(c.dtype)) + " b" + std::to_string(c.batch);
  if (c.heads > 0) name += " h" + std::to_string(c.heads);
  name += " q" + std::to_string(c.seq_q) + " k" + std::to_string(c.seq_k) + " d" + std::to_string(c.head_dim);
  return name + (c.strided ? " strided" : "");
}

/// One test of the sweep: a dtype and a head dim; it runs the six lengths.
struct SweepParam {
  at::ScalarType dtype;
  int64_t head_dim;
};

inline constexpr int64_t kSweepHeadDims[] = {8, 40, 64, 72, 80, 128, 160, 256};
inline constexpr int64_t kSweepLengths[] = {1, 7, 77, 97, 256, 1025};

inline std::vector<SweepParam> sweep_params(const std::vector<at::ScalarType>& dtypes) {
  std::vector<SweepParam> params;
  for (at::ScalarType dtype : dtypes) {
    for (int64_t d : kSweepHeadDims) params.push_back({dtype, d});
  }
  return params;
}

inline std::string sweep_name(const testing::TestParamInfo<SweepParam>& info) {
  return std::string(c10::toString(info.param.dtype)) + "_d" + std::to_string(info.param.head_dim);
}

/// The six shapes of one sweep test: each length as seq_q, with seq_k another
/// entry of the list chosen by an offset of 1..5 that rotates with the head
/// dim (so seq_q ≠ seq_k and every length is also a seq_k for many head
/// dims), and batch × heads layouts rotating through 3-D and 4-D, half of
/// them strided.
inline std::vector<AttentionCase> sweep_cases(const SweepParam& param) {
  struct Layout {
    int64_t batch, heads;
  };
  const Layout layouts[] = {{1, 1}, {2, 3}, {3, 0}, {1, 2}, {2, 0}};
  int i = 0;
  while (kSweepHeadDims[i] != param.head_dim) ++i;
  std::vector<AttentionCase> cases;
  for (int j = 0; j < 6; ++j) {
    const int index = 6 * i + j;
    const Layout layout = layouts[index % 5];
    cases.push_back({param.dtype, layout.batch, layout.heads, kSweepLengths[j], kSweepLengths[(j + 1 + i % 5) % 6],
                     param.head_dim, index % 2 == 1});
  }
  return cases;
}

/// All 48 shapes of a dtype (every head dim's sweep_cases).
inline std::vector<AttentionCase> sweep_cases(at::ScalarType dtype) {
  std::vector<AttentionCase> cases;
  for (int64_t d : kSweepHeadDims) {
    for (const AttentionCase& c : sweep_cases(SweepParam{dtype, d})) cases.push_back(c);
  }
  return cases;
}

/// [batch, (heads,) seq, d] of `seq` rows. Strided: a view of a
/// [batch, seq, heads, d] tensor (as after a projection, before any copy),
/// or for 3-D a view of [seq, batch, d].
inline at::Tensor make_input(const AttentionCase& c, int64_t seq, const at::TensorOptions& options) {
  if (c.heads == 0) {
    if (!c.strided) return at::randn({c.batch, seq, c.head_dim}, options);
    return at::randn({seq, c.batch, c.head_dim}, options).transpose(0, 1);
  }
  if (!c.strided) return at::randn({c.batch, c.heads, seq, c.head_dim}, options);
  return at::randn({c.batch, seq, c.heads, c.head_dim}, options).transpose(1, 2);
}

/// Output buffer in q's shape; strided cases get a transposed view.
inline at::Tensor make_output(const AttentionCase& c, const at::TensorOptions& options) {
  if (!c.strided)
    return c.heads == 0 ? at::empty({c.batch, c.seq_q, c.head_dim}, options)
                        : at::empty({c.batch, c.heads, c.seq_q, c.head_dim}, options);
  return c.heads == 0 ? at::empty({c.seq_q, c.batch, c.head_dim}, options).transpose(0, 1)
                      : at::empty({c.batch, c.seq_q, c.heads, c.head_dim}, options).transpose(1, 2);
}

/// The accuracy check on fresh random inputs:
///   err(fused) ≤ 2·err(LibTorch SDPA) + floor, both against `reference_dtype`
///   (float64 by default), and |fused − SDPA| ≤ 3·err(SDPA) + floor (the
///   triangle inequality applied to the first bound).
/// The output is prefilled with NaN and written through the .out variant.
inline void check_attention_case(const AttentionCase& c, at::Device device,
                                 at::ScalarType reference_dtype = at::kDouble) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(case_name(c) + ", seed " + std::to_string(seed));
  const at::TensorOptions options = at::TensorOptions().dtype(c.dtype).device(device);
  const at::Tensor q = make_input(c, c.seq_q, options);
  const at::Tensor k = make_input(c, c.seq_k, options);
  const at::Tensor v = make_input(c, c.seq_k, options);
  const double scale = (0.5 + at::rand({1}, at::kDouble).item<double>()) / std::sqrt(static_cast<double>(c.head_dim));

  const at::Tensor reference = reference_attention(q, k, v, scale, reference_dtype);
  const at::Tensor fused = attention_into_nan(q, k, v, scale, make_output(c, options));
  const at::Tensor libtorch = at::scaled_dot_product_attention(q, k, v, {}, 0.0, false, scale);

  ASSERT_TRUE(at::isfinite(fused).all().item<bool>()) << "unwritten (NaN) or non-finite output";
  const double err_fused = max_abs_error(fused, reference);
  const double err_libtorch = max_abs_error(libtorch, reference);
  const double floor = rounding_floor(v, c.dtype);
  EXPECT_LE(err_fused, 2.0 * err_libtorch + floor) << "LibTorch's error " << err_libtorch << ", floor " << floor;
  EXPECT_LE(max_abs_error(fused, libtorch), 3.0 * err_libtorch + floor);
}

}  // namespace fewstep::test
