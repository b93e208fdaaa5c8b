// fewstep::attention refuses invalid inputs with a one-line AttentionError
// that names the constraint that failed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "kernels/attention.h"
#include "tests/kernels/attention_reference.h"

namespace fewstep::test {
namespace {

/// Expects `f` to throw an AttentionError whose single-line message holds `needle`.
template <typename F>
void expect_attention_error(F&& f, const std::string& needle) {
  const std::string message = attention_error_of(f);
  EXPECT_NE(message.find(needle), std::string::npos) << "message: " << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
}

at::Tensor qkv(at::IntArrayRef shape, at::ScalarType dtype = at::kFloat) { return at::randn(shape, dtype); }

TEST(AttentionErrors, MismatchedShapes) {
  expect_attention_error(
      [] {
        attention(qkv({2, 4, 8}), qkv({2, 4, 8}), qkv({2, 4, 8}).flatten(), 1.0);
      },
      "v must have q's rank 3");
  expect_attention_error([] { attention(qkv({8, 16}), qkv({8, 16}), qkv({8, 16}), 1.0); }, "q must be 3-D");
  expect_attention_error(
      [] {
        attention(qkv({2, 3, 5, 8}), qkv({2, 4, 5, 8}), qkv({2, 4, 5, 8}), 1.0);
      },
      "leading (batch, head) dims must match");
  expect_attention_error(
      [] {
        attention(qkv({2, 5, 16}), qkv({2, 5, 24}), qkv({2, 5, 16}), 1.0);
      },
      "head dim of k is 24 but q's is 16");
  expect_attention_error(
      [] {
        attention(qkv({2, 5, 16}), qkv({2, 6, 16}), qkv({2, 7, 16}), 1.0);
      },
      "v has seq_k 7 but k has 6");
  expect_attention_error([] { attention(qkv({2, 5, 16}), qkv({2, 0, 16}), qkv({2, 0, 16}), 1.0); }, "seq_k is 0");
  expect_attention_error(
      [] {
        at::Tensor out = at::empty({2, 5, 8});
        attention_out(qkv({2, 5, 16}), qkv({2, 6, 16}), qkv({2, 6, 16}), 1.0, out);
      },
      "out has shape [2, 5, 8] but q has [2, 5, 16]");
}

TEST(AttentionErrors, WrongDtypes) {
  expect_attention_error(
      [] {
        attention(qkv({2, 5, 16}, at::kDouble), qkv({2, 5, 16}, at::kDouble), qkv({2, 5, 16}, at::kDouble), 1.0);
      },
      "dtype Double is not supported on CPU (float32, bfloat16)");
  expect_attention_error(
      [] {
        attention(qkv({2, 5, 16}), qkv({2, 5, 16}, at::kHalf), qkv({2, 5, 16}), 1.0);
      },
      "k has dtype Half but q has Float");
  expect_attention_error(
      [] {
        at::Tensor out = at::empty({2, 5, 16}, at::kDouble);
        attention_out(qkv({2, 5, 16}), qkv({2, 5, 16}), qkv({2, 5, 16}), 1.0, out);
      },
      "out has dtype Double but q has Float");
}

TEST(AttentionErrors, NonContiguousLastDim) {
  const at::Tensor k_t = qkv({2, 16, 5}).transpose(-2, -1);  // [2, 5, 16] with stride 5 on the head dim
  expect_attention_error(
      [&] {
        attention(qkv({2, 5, 16}), k_t, qkv({2, 5, 16}), 1.0);
      },
      "k's last dim is not contiguous (stride 5)");
}

TEST(AttentionErrors, HeadDimAboveTheMaximum) {
  expect_attention_error(
      [] {
        attention(qkv({2, 5, 0}), qkv({2, 5, 0}), qkv({2, 5, 0}), 1.0);
      },
      "head dim 0 is not positive");
  expect_attention_error(
      [] {
        attention(qkv({2, 5, 264}), qkv({2, 5, 264}), qkv({2, 5, 264}), 1.0);
      },
      "head dim 264 exceeds the maximum 256");
}

TEST(AttentionErrors, UnsupportedDevice) {
  const at::Tensor meta = at::empty({2, 5, 16}, at::TensorOptions().device(at::kMeta));
  expect_attention_error([&] { attention(meta, meta, meta, 1.0); }, "only CPU and CUDA tensors are supported");
}

TEST(AttentionMode, ParsesNativeAndFused) {
  EXPECT_EQ(parse_attention_mode("native"), AttentionMode::native);
  EXPECT_EQ(parse_attention_mode("fused"), AttentionMode::fused);
  EXPECT_EQ(to_string(parse_attention_mode("fused")), "fused");
  EXPECT_EQ(to_string(parse_attention_mode("native")), "native");
  expect_attention_error([] { parse_attention_mode("flash"); }, "--attention: expected native or fused, got 'flash'");
}

}  // namespace
}  // namespace fewstep::test
