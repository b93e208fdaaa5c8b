// The shape sweep shared by the CPU and CUDA attention tests: every head dim
// in {8, 40, 64, 72, 80, 128, 160, 256} meets every sequence length in
// {1, 7, 77, 97, 256, 1025} as seq_q, paired with a different seq_k, across
// several batch × heads layouts, 3-D and 4-D, contiguous and strided.
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

inline std::string case_name(const testing::TestParamInfo<AttentionCase>& info) {
  const AttentionCase& c = info.param;
  std::string name = std::string(c10::toString(c.dtype)) + "_b" + std::to_string(c.batch);
  if (c.heads > 0) name += "h" + std::to_string(c.heads);
  name += "_q" + std::to_string(c.seq_q) + "_k" + std::to_string(c.seq_k) + "_d" + std::to_string(c.head_dim);
  return name + (c.strided ? "_strided" : "");
}

/// 48 shapes per dtype. seq_k is another entry of the length list, chosen
/// by an offset of 1..5 that rotates with the head dim, so seq_q ≠ seq_k
/// and each length also appears as seq_k for many head dims.
inline std::vector<AttentionCase> sweep_cases(const std::vector<at::ScalarType>& dtypes) {
  const int64_t head_dims[] = {8, 40, 64, 72, 80, 128, 160, 256};
  const int64_t lengths[] = {1, 7, 77, 97, 256, 1025};
  struct Layout {
    int64_t batch, heads;
  };
  const Layout layouts[] = {{1, 1}, {2, 3}, {3, 0}, {1, 2}, {2, 0}};
  std::vector<AttentionCase> cases;
  for (at::ScalarType dtype : dtypes) {
    int index = 0;
    for (int i = 0; i < 8; ++i) {
      for (int j = 0; j < 6; ++j, ++index) {
        const Layout layout = layouts[index % 5];
        cases.push_back({dtype, layout.batch, layout.heads, lengths[j], lengths[(j + 1 + i % 5) % 6], head_dims[i],
                         index % 2 == 1});
      }
    }
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
  if (!c.strided) return c.heads == 0 ? at::empty({c.batch, c.seq_q, c.head_dim}, options)
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
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
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
