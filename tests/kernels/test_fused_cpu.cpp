// The fused CPU kernels against float64 references on odd shapes: channel
// counts that are not multiples of the vector width or of the favourite
// group counts, 1×1 and long spatial extents, 2-D and 3-D inputs, batch 1
// and 3, contiguous and channels-last, with and without shift, affine
// parameters and SiLU, in float32 and bfloat16. Budget: at most 2× the
// error of LibTorch's unfused ops in the same dtype, plus four roundings of
// the output (tests/kernels/fused_reference.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/fused.h"
#include "tests/kernels/fused_reference.h"

namespace fewstep::test {
namespace {

struct NormShape {
  std::vector<int64_t> sizes;
  int64_t groups;
};

// Channels per group: 2, 5, 3, 5, 1, 5, 6, 8, 11, 2; spatial 1600
// exceeds one float block of the kernel's sums (1024 elements).
const NormShape kNormShapes[] = {
    {{1, 6, 5, 7}, 3}, {{3, 10, 1, 1}, 2}, {{3, 12, 9, 11}, 4}, {{1, 40, 3, 3}, 8},   {{2, 7, 4, 4}, 7},
    {{3, 20, 17}, 4},  {{2, 36}, 6},       {{1, 80, 6, 5}, 10}, {{3, 33, 19, 18}, 3}, {{1, 4, 40, 40}, 2},
};

enum class Shift { none, per_sample, broadcast_batch };

std::string describe(const NormShape& s, bool channels_last, Shift shift, bool affine, bool silu) {
  std::string out = "x [";
  for (size_t i = 0; i < s.sizes.size(); ++i) out += (i ? "," : "") + std::to_string(s.sizes[i]);
  return out + "] groups " + std::to_string(s.groups) + (channels_last ? " channels-last" : "") +
         (shift == Shift::per_sample        ? " shift[N,C]"
          : shift == Shift::broadcast_batch ? " shift[1,C]"
                                            : "") +
         (affine ? " affine" : "") + (silu ? " silu" : "");
}

class FusedGroupNorm : public testing::TestWithParam<at::ScalarType> {};

TEST_P(FusedGroupNorm, MatchesFloat64) {
  const at::ScalarType dtype = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const double eps = 1e-5;
  for (const NormShape& s : kNormShapes) {
    const at::Tensor x = (at::randn(s.sizes) * 2.0 + 0.5).to(dtype);
    const int64_t c = s.sizes[1];
    for (const bool channels_last : {false, true}) {
      if (channels_last && s.sizes.size() != 4) continue;
      const at::Tensor input = channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
      for (const Shift shift_kind : {Shift::none, Shift::per_sample, Shift::broadcast_batch}) {
        std::vector<int64_t> shift_shape = channel_view(x);
        if (shift_kind == Shift::per_sample) shift_shape[0] = x.size(0);
        const at::Tensor shift = shift_kind == Shift::none ? at::Tensor() : at::randn(shift_shape).to(dtype);
        for (const bool affine : {false, true}) {
          const at::Tensor weight = affine ? at::randn({c}).to(dtype) : at::Tensor();
          const at::Tensor bias = affine ? at::randn({c}).to(dtype) : at::Tensor();
          for (const bool silu : {false, true}) {
            SCOPED_TRACE(describe(s, channels_last, shift_kind, affine, silu));
            const at::Tensor out = fewstep::group_norm(input, s.groups, weight, bias, eps, shift, silu);
            const at::Tensor ref = reference_group_norm(x, s.groups, weight, bias, eps, shift, silu);
            at::Tensor libtorch = at::group_norm(shift.defined() ? x + shift : x, s.groups, weight, bias, eps);
            if (silu) libtorch = at::silu(libtorch);
            ASSERT_EQ(out.sizes(), x.sizes());
            ASSERT_EQ(out.scalar_type(), dtype);
            if (channels_last) EXPECT_TRUE(out.is_contiguous(at::MemoryFormat::ChannelsLast));
            EXPECT_LE(max_abs_error(out, ref), fused_budget(max_abs_error(libtorch, ref), ref, dtype));
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedGroupNorm, testing::Values(at::kFloat, at::kBFloat16),
                         [](const testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

TEST(FusedGroupNormCases, ShiftFirstIsSwappedAndOtherShiftsFallBack) {
  test_seed();
  const at::Tensor x = at::randn({3, 12, 5, 6});
  const at::Tensor per_channel = at::randn({3, 12, 1, 1});
  // `temb + h`: the per-channel operand first (the op takes the add's operands in order).
  const at::Tensor swapped = fewstep::group_norm(per_channel, 4, {}, {}, 1e-6, x, true);
  const at::Tensor ref = reference_group_norm(x, 4, {}, {}, 1e-6, per_channel, true);
  const at::Tensor libtorch = at::silu(at::group_norm(x + per_channel, 4, {}, {}, 1e-6));
  EXPECT_LE(max_abs_error(swapped, ref), fused_budget(max_abs_error(libtorch, ref), ref, at::kFloat));
  // A full-size shift is no per-channel shift: LibTorch adds it, bit for bit as unfused.
  const at::Tensor full = at::randn({3, 12, 5, 6});
  EXPECT_TRUE(
      at::equal(fewstep::group_norm(x, 4, {}, {}, 1e-6, full, false), at::group_norm(x + full, 4, {}, {}, 1e-6)));
  // A float32 shift on a bfloat16 x promotes to float32, as LibTorch's add does.
  const at::Tensor promoted = fewstep::group_norm(x.to(at::kBFloat16), 4, {}, {}, 1e-6, per_channel, false);
  EXPECT_EQ(promoted.scalar_type(), at::kFloat);
  // float64 (no kernel) runs LibTorch's group_norm.
  const at::Tensor xd = x.to(at::kDouble);
  EXPECT_TRUE(at::equal(fewstep::group_norm(xd, 3, {}, {}, 1e-6, {}, false), at::group_norm(xd, 3, {}, {}, 1e-6)));
}

TEST(FusedGroupNormCases, BadArgumentsNameTheOp) {
  const at::Tensor x = at::randn({2, 6, 3, 3});
  EXPECT_EQ(error_of([&] { fewstep::group_norm(x, 4, {}, {}, 1e-5, {}, true); }),
            "fewstep::group_norm_silu: num_groups 4 does not divide the 6 channels");
  EXPECT_EQ(error_of([&] { fewstep::group_norm(x, 3, at::ones({5}), {}, 1e-5, {}, false); }),
            "fewstep::group_norm: weight has 5 elements, expected 6 (the channels)");
  EXPECT_EQ(error_of([&] { fewstep::group_norm(at::randn({6}), 3, {}, {}, 1e-5, {}, false); }),
            "fewstep::group_norm: x must be [N, C, *], got 1 dims");
  at::Tensor y = at::randn({4});
  EXPECT_EQ(error_of([&] { fewstep::gelu_(y, "fast"); }),
            "fewstep::gelu_: approximate must be 'none' or 'tanh', got 'fast'");
  EXPECT_EQ(error_of([] { parse_fusion_mode("some"); }), "--fusion: expected none, kernels or all, got 'some'");
}

TEST(FusedConv, MatchesFloat64AndSeesWeightChanges) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  struct Case {
    std::vector<int64_t> x, w;
    int64_t stride;
  };
  // Odd channel counts, 1×1 spatial with a 3×3 kernel, batch 1 and 3, stride 2.
  const Case cases[] = {
      {{3, 5, 7, 6}, {7, 5, 3, 3}, 1}, {{1, 13, 1, 1}, {4, 13, 3, 3}, 1}, {{3, 8, 9, 9}, {6, 8, 3, 3}, 2}};
  const auto cl = at::MemoryFormat::ChannelsLast;
  for (const Case& c : cases) {
    const at::Tensor x = at::randn(c.x).contiguous(cl);
    at::Tensor w = at::randn(c.w).contiguous(cl);
    const at::Tensor b = at::randn({c.w[0]});
    const std::vector<int64_t> stride{c.stride, c.stride}, padding{1, 1}, dilation{1, 1};
    for (int round = 0; round < 2; ++round) {
      SCOPED_TRACE("x " + std::to_string(c.x[1]) + " channels, round " + std::to_string(round));
      const at::Tensor out = fewstep::conv2d(x, w, b, stride, padding, dilation, 1);
      const at::Tensor ref = at::conv2d(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble), stride, padding);
      const at::Tensor libtorch = at::conv2d(x.contiguous(), w.contiguous(), b, stride, padding);
      EXPECT_TRUE(out.is_contiguous(cl));
      EXPECT_LE(max_abs_error(out, ref), fused_budget(max_abs_error(libtorch, ref), ref, at::kFloat));
      w.mul_(-0.5);  // in place: the cached, reordered weight must not be served again
    }
  }
  // Channels-first input runs aten::conv2d itself.
  const at::Tensor x = at::randn({2, 4, 5, 5}), w = at::randn({3, 4, 3, 3});
  EXPECT_TRUE(at::equal(fewstep::conv2d(x, w, {}, {1, 1}, {1, 1}, {1, 1}, 1), at::conv2d(x, w, {}, 1, 1)));
}

struct GeluCase {
  std::vector<int64_t> sizes;  ///< of the gelu input; GEGLU doubles the last dim
};

// Rows of 37, 1, 16 and 1000 elements (vector tails, a single element, an
// exact vector, several parallel chunks), 1-D to 3-D.
const GeluCase kGeluCases[] = {{{3, 5, 37}}, {{1, 1}}, {{2, 16}}, {{4, 1000}}, {{7}}};

class FusedGelu : public testing::TestWithParam<at::ScalarType> {};

TEST_P(FusedGelu, GeluAndGegluMatchFloat64) {
  const at::ScalarType dtype = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const GeluCase& c : kGeluCases) {
    for (const std::string approximate : {"none", "tanh"}) {
      SCOPED_TRACE(std::to_string(c.sizes.back()) + " columns, approximate " + approximate);
      const at::Tensor x = (at::randn(c.sizes) * 3.0).to(dtype);
      at::Tensor in_place = x.clone();
      fewstep::gelu_(in_place, approximate);
      const at::Tensor ref = reference_gelu(x, approximate);
      const at::Tensor libtorch = at::gelu(x, approximate);
      EXPECT_LE(max_abs_error(in_place, ref), fused_budget(max_abs_error(libtorch, ref), ref, dtype));

      std::vector<int64_t> doubled = c.sizes;
      doubled.back() *= 2;
      const at::Tensor pair = (at::randn(doubled) * 3.0).to(dtype);
      const at::Tensor gated = fewstep::geglu(pair, approximate);
      const at::Tensor gated_ref = reference_geglu(pair, approximate);
      const std::vector<at::Tensor> parts = pair.chunk(2, -1);
      const at::Tensor gated_libtorch = parts[0] * at::gelu(parts[1], approximate);
      ASSERT_EQ(gated.sizes(), x.sizes());
      EXPECT_LE(max_abs_error(gated, gated_ref),
                fused_budget(max_abs_error(gated_libtorch, gated_ref), gated_ref, dtype));
    }
  }
  // Strided inputs: GEGLU copies to rows, in-place GELU of a view runs LibTorch's.
  const at::Tensor wide = at::randn({6, 8}).to(dtype);
  const at::Tensor rows = wide.t();
  EXPECT_LE(
      max_abs_error(fewstep::geglu(rows, "none"), reference_geglu(rows, "none")),
      fused_budget(max_abs_error(rows.chunk(2, -1)[0] * at::gelu(rows.chunk(2, -1)[1]), reference_geglu(rows, "none")),
                   reference_geglu(rows, "none"), dtype));
  at::Tensor view = wide.clone().t();
  const at::Tensor view_ref = at::gelu(view);
  fewstep::gelu_(view, "none");
  EXPECT_TRUE(at::equal(view, view_ref));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedGelu, testing::Values(at::kFloat, at::kBFloat16),
                         [](const testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

}  // namespace
}  // namespace fewstep::test
