// fewstep::attention on CUDA (fp16, bf16, fp32) against a float64 reference
// and LibTorch's SDPA. Built always; skipped when no GPU is present.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/attention.h"
#include "tests/kernels/attention_cases.h"
#include "tests/kernels/attention_reference.h"

namespace fewstep::test {
namespace {

#define FEWSTEP_SKIP_WITHOUT_GPU() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: the CUDA kernels are built but cannot run here"

// One test per dtype, each over all 48 shapes (every failure names its shape).
class AttentionCudaSweep : public testing::TestWithParam<at::ScalarType> {};

TEST_P(AttentionCudaSweep, MatchesFloat64ReferenceWithinLibTorchBudget) {
  FEWSTEP_SKIP_WITHOUT_GPU();
  for (const AttentionCase& c : sweep_cases(GetParam())) check_attention_case(c, at::kCUDA);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AttentionCudaSweep, testing::Values(at::kHalf, at::kBFloat16, at::kFloat),
                         [](const testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

// The SD 1.5 and SDXL shapes of the benchmark at batch 1, against an fp32
// reference (FlashAttention-2's test practice for fp16/bf16 kernels); the
// fp32 kernel needs a float64 one.
TEST(AttentionCuda, LongSequencesMatchHigherPrecisionReferenceWithinLibTorchBudget) {
  FEWSTEP_SKIP_WITHOUT_GPU();
  for (const AttentionCase& c :
       {AttentionCase{at::kHalf, 1, 8, 4096, 4096, 40, true}, AttentionCase{at::kHalf, 1, 8, 4096, 77, 40, true},
        AttentionCase{at::kBFloat16, 1, 10, 4096, 4096, 64, false},
        AttentionCase{at::kHalf, 1, 8, 1024, 1024, 80, false}, AttentionCase{at::kHalf, 1, 8, 256, 4096, 160, true},
        AttentionCase{at::kFloat, 1, 2, 4096, 4096, 64, false}}) {
    check_attention_case(c, at::kCUDA, c.dtype == at::kFloat ? at::kDouble : at::kFloat);
  }
}

TEST(AttentionCuda, MisalignedRowsGoThroughACopy) {
  FEWSTEP_SKIP_WITHOUT_GPU();
  test_seed();
  // Offset by one element: rows no longer start on 16-byte boundaries.
  const auto options = at::TensorOptions().dtype(at::kHalf).device(at::kCUDA);
  const at::Tensor q = at::randn({2 * 3 * 50 * 40 + 1}, options).narrow(0, 1, 2 * 3 * 50 * 40).view({2, 3, 50, 40});
  const at::Tensor k = at::randn({2, 3, 61, 40}, options);
  const at::Tensor v = at::randn({2, 3, 61, 40}, options);
  const at::Tensor reference = reference_attention(q, k, v, 0.15);
  const at::Tensor fused = attention_into_nan(q, k, v, 0.15);
  const at::Tensor libtorch = at::scaled_dot_product_attention(q, k, v, {}, 0.0, false, 0.15);
  EXPECT_LE(max_abs_error(fused, reference), 2.0 * max_abs_error(libtorch, reference) + rounding_floor(v, at::kHalf));
}

TEST(AttentionCuda, RefusesDoubleAndMixedDevices) {
  FEWSTEP_SKIP_WITHOUT_GPU();
  const at::Tensor d = at::randn({2, 5, 16}, at::TensorOptions().dtype(at::kDouble).device(at::kCUDA));
  EXPECT_NE(attention_error_of([&] { attention(d, d, d, 1.0); }).find("not supported on CUDA"), std::string::npos);
  const at::Tensor gpu = at::randn({2, 5, 16}, at::TensorOptions().device(at::kCUDA));
  const at::Tensor cpu = at::randn({2, 5, 16});
  EXPECT_NE(attention_error_of([&] { attention(cpu, gpu, gpu, 1.0); }).find("must be on one device"),
            std::string::npos);
}

}  // namespace
}  // namespace fewstep::test
