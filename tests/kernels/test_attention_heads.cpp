// fewstep::attention_heads (multi-head attention on [B, S, C] rows) on CPU
// against a float64 reference, on odd shapes and on the strided chunks of a
// fused qkv projection that the UNet's transformer blocks pass it.
#include <torch/script.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "tests/kernels/attention_reference.h"

namespace fewstep::test {
namespace {

/// The multi-head reference: heads split from the channels, attended in
/// `dtype` (float64 by default), merged back to [B, Sq, C].
at::Tensor reference_heads(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, double scale,
                           at::ScalarType dtype = at::kDouble) {
  auto split = [heads](const at::Tensor& t) {
    return t.reshape({t.size(0), t.size(1), heads, t.size(2) / heads}).transpose(1, 2);
  };
  const at::Tensor o = reference_attention(split(q), split(k), split(v), scale, dtype);
  return o.transpose(1, 2).reshape({q.size(0), q.size(1), q.size(2)});
}

struct HeadsCase {
  int64_t batch, seq_q, seq_k, heads, head_dim;
};

// Batch 1 and 3, single rows and keys, head dims off every vector width
// (5, 12, 36: the embedded model's 144 channels in 4 heads), sequences off
// the kernel's tiles.
const HeadsCase kCases[] = {{1, 1, 1, 1, 5},    {3, 17, 9, 3, 36},  {2, 64, 24, 4, 36},
                            {1, 33, 77, 5, 12}, {3, 70, 70, 2, 32}, {1, 129, 24, 3, 40}};

TEST(AttentionHeads, StridedChunksOfOneProjectionMatchFloat64Reference) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const HeadsCase& c : kCases) {
    SCOPED_TRACE("B " + std::to_string(c.batch) + " Sq " + std::to_string(c.seq_q) + " Sk " + std::to_string(c.seq_k) +
                 " H " + std::to_string(c.heads) + " d " + std::to_string(c.head_dim));
    const int64_t channels = c.heads * c.head_dim;
    // q from a [B, Sq, 3C] projection, k and v from a [B, Sk, 2C] one: row
    // strides 3C and 2C, read in place.
    const std::vector<at::Tensor> qkv = at::randn({c.batch, c.seq_q, 3 * channels}).chunk(3, -1);
    const std::vector<at::Tensor> kv = at::randn({c.batch, c.seq_k, 2 * channels}).chunk(2, -1);
    const at::Tensor& q = qkv[0];
    const at::Tensor& k = kv[0];
    const at::Tensor& v = kv[1];
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    const at::Tensor out = attention_heads(q, k, v, c.heads);
    EXPECT_EQ(out.sizes(), q.sizes());
    EXPECT_TRUE(out.is_contiguous());
    const at::Tensor ref = reference_heads(q, k, v, c.heads, scale);
    const at::Tensor libtorch = reference_heads(q, k, v, c.heads, scale, at::kFloat);
    EXPECT_LE(max_abs_error(out, ref), 2.0 * max_abs_error(libtorch, ref) + rounding_floor(v, at::kFloat));
    // Self-attention on the three chunks of one projection.
    const at::Tensor self = attention_heads(qkv[0], qkv[1], qkv[2], c.heads);
    const at::Tensor self_ref = reference_heads(qkv[0], qkv[1], qkv[2], c.heads, scale);
    EXPECT_LE(max_abs_error(self, self_ref),
              2.0 * max_abs_error(reference_heads(qkv[0], qkv[1], qkv[2], c.heads, scale, at::kFloat), self_ref) +
                  rounding_floor(qkv[2], at::kFloat));
  }
}

TEST(AttentionHeads, ExplicitScaleAndStridedLastDim) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const at::Tensor q = at::randn({2, 11, 24});
  const at::Tensor k = at::randn({2, 24, 13}).transpose(1, 2);  // last dim strided: copied inside
  const at::Tensor v = at::randn({2, 13, 24});
  const at::Tensor out = attention_heads(q, k, v, 3, 0.7);
  const at::Tensor ref = reference_heads(q, k, v, 3, 0.7);
  EXPECT_LE(max_abs_error(out, ref),
            2.0 * max_abs_error(reference_heads(q, k, v, 3, 0.7, at::kFloat), ref) + rounding_floor(v, at::kFloat));
}

TEST(AttentionHeads, Bfloat16IsComputedInFloat32AndRoundedOnce) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::vector<at::Tensor> qkv = at::randn({3, 21, 3 * 72}).to(at::kBFloat16).chunk(3, -1);
  const at::Tensor out = attention_heads(qkv[0], qkv[1], qkv[2], 2);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  const at::Tensor ref = reference_heads(qkv[0], qkv[1], qkv[2], 2, 1.0 / 6.0);
  // The inputs are exact in float32: the float32 error plus one bf16 rounding of the output.
  EXPECT_LE(max_abs_error(out, ref), 64 * unit_roundoff(at::kFloat) * qkv[2].abs().max().item<double>() +
                                         unit_roundoff(at::kBFloat16) * ref.abs().max().item<double>());
}

TEST(AttentionHeads, BadShapesRaiseOneLineErrors) {
  const at::Tensor q = at::randn({2, 5, 12});
  const at::Tensor kv = at::randn({2, 7, 12});
  auto message = [&](auto&& call) -> std::string {
    try {
      call();
    } catch (const AttentionError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(message([&] { attention_heads(q, kv, kv, 5); }),
            "fewstep::attention_heads: heads 5 does not divide q's 12 channels");
  EXPECT_EQ(message([&] { attention_heads(q.unsqueeze(0), kv, kv, 2); }),
            "fewstep::attention_heads: q must be 3-D [B, seq, C], got shape [1, 2, 5, 12]");
  EXPECT_EQ(message([&] {
              attention_heads(q, at::randn({2, 7, 8}), kv, 2);
            }),
            "fewstep::attention_heads: k has shape [2, 7, 8] but q has [2, 5, 12]; batch and channels must match");
}

// The rewrite: the multi-head form models write around SDPA, as
// tools/emoji/model.py and tools/export/unet.py write it (with the head-dim
// padding), becomes one fewstep::attention_heads; forms that differ are
// left to the plain attention rewrite.
constexpr const char* kModelForm = R"(
def forward(self, q, k, v):
    heads = self.heads
    b, lq, c = q.shape
    lk = k.shape[1]
    d = c // heads
    q = q.reshape(b, lq, heads, d).transpose(1, 2)
    k = k.reshape(b, lk, heads, d).transpose(1, 2)
    v = v.reshape(b, lk, heads, d).transpose(1, 2)
    pad = (8 - d % 8) % 8
    if pad > 0:
        q = torch.pad(q, [0, pad], "constant", None) * torch.sqrt((d + pad) / d)
        k = torch.pad(k, [0, pad], "constant", None)
        v = torch.pad(v, [0, pad], "constant", None)
    o = torch.scaled_dot_product_attention(q, k, v)
    if pad > 0:
        o = o[..., :d]
    return o.transpose(1, 2).reshape(b, lq, c)
)";

/// The model form with the padded query scaled by √((d + pad + 1)/d): not
/// the factor that makes the padding exact, so the fold must not apply.
const std::string kOtherFactor = [] {
  std::string source = kModelForm;
  const std::string factor = "(d + pad) / d";
  return source.replace(source.find(factor), factor.size(), "(d + pad + 1) / d");
}();

struct FoldCase {
  const char* name;
  const char* source;  ///< forward(self, q [B, Sq, C], k, v [B, Sk, C]) -> [B, Sq, C]
  bool folded;         ///< fewstep::attention_heads expected (else fewstep::attention)
  double q_factor;     ///< when it pads (d = 36), the source's effective scale is q_factor / √d
};

const FoldCase kFoldCases[] = {
    {"ModelFormWithPadding", kModelForm, true, 1.0},
    {"UnpaddedWithExplicitScale", R"(
def forward(self, q, k, v):
    b, lq, c = q.size()
    d = c // self.heads
    q = q.view([b, lq, self.heads, d]).transpose(2, 1)
    k = k.view([k.size(0), k.size(1), self.heads, d]).transpose(1, 2)
    v = v.view([v.size(0), v.size(1), self.heads, d]).transpose(1, 2)
    o = torch.scaled_dot_product_attention(q, k, v, scale=1.0 / torch.sqrt(d))
    return o.transpose(1, 2).reshape(b, lq, c)
)",
     true, 1.0},
    {"PaddingWithAnotherFactorIsNotFolded", kOtherFactor.c_str(), false, std::sqrt(41.0 / 40.0)},
    {"SplitUsedElsewhereIsNotFolded", R"(
def forward(self, q, k, v):
    b, lq, c = q.shape
    d = c // self.heads
    qh = q.reshape(b, lq, self.heads, d).transpose(1, 2)
    k = k.reshape(b, k.shape[1], self.heads, d).transpose(1, 2)
    v = v.reshape(b, v.shape[1], self.heads, d).transpose(1, 2)
    o = torch.scaled_dot_product_attention(qh, k, v)
    return o.transpose(1, 2).reshape(b, lq, c) + 0.0 * qh.sum()
)",
     false, 1.0},
};

class FoldHeads : public testing::TestWithParam<FoldCase> {};

TEST_P(FoldHeads, RewrittenGraphAndOutput) {
  const FoldCase& c = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  // 2 heads of 36 (padded to 40 by the model form) and 3 heads of 16 (no padding).
  for (const auto& [heads, head_dim] : {std::pair<int64_t, int64_t>{2, 36}, std::pair<int64_t, int64_t>{3, 16}}) {
    SCOPED_TRACE("heads " + std::to_string(heads) + " d " + std::to_string(head_dim));
    auto make = [&] {
      torch::jit::Module m("MultiHead");
      m.register_attribute("heads", c10::IntType::get(), heads);
      m.define(c.source);
      return m;
    };
    torch::jit::Module native = make();
    torch::jit::Module fused = make();
    EXPECT_EQ(rewrite_attention(fused), 1);
    const std::string graph = fused.get_method("forward").graph()->toString();
    EXPECT_EQ(graph.find("aten::scaled_dot_product_attention"), std::string::npos) << graph;
    if (c.folded) {
      EXPECT_NE(graph.find("fewstep::attention_heads"), std::string::npos) << graph;
      for (const char* gone :
           {"aten::reshape", "aten::view", "aten::transpose", "aten::pad", "aten::slice", "prim::If"}) {
        EXPECT_EQ(graph.find(gone), std::string::npos) << gone << "\n" << graph;
      }
    } else {
      EXPECT_EQ(graph.find("fewstep::attention_heads"), std::string::npos) << graph;
      EXPECT_NE(graph.find("fewstep::attention"), std::string::npos) << graph;
    }
    const int64_t channels = heads * head_dim;
    const std::vector<at::Tensor> qkv = at::randn({3, 19, 3 * channels}).chunk(3, -1);
    const at::Tensor ctx = at::randn({3, 7, channels});
    for (const auto& [k, v] : {std::pair{qkv[1], qkv[2]}, std::pair{ctx, ctx * 0.5}}) {
      const at::Tensor before = native.forward({qkv[0], k, v}).toTensor();
      const at::Tensor after = fused.forward({qkv[0], k, v}).toTensor();
      const double factor = head_dim % 8 != 0 ? c.q_factor : 1.0;
      const at::Tensor ref = reference_heads(qkv[0], k, v, heads, factor / std::sqrt(static_cast<double>(head_dim)));
      EXPECT_LE(max_abs_error(after, ref), 2.0 * max_abs_error(before, ref) + rounding_floor(v, at::kFloat));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, FoldHeads, testing::ValuesIn(kFoldCases),
                         [](const testing::TestParamInfo<FoldCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace fewstep::test
