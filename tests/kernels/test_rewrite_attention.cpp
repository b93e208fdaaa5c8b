// The TorchScript pass rewrite_attention: each module computes attention in
// one of the ways models write it; after the pass the graph calls
// fewstep::attention, the count is right, and the output is unchanged (its
// float64 error stays within 2× the original graph's, plus a rounding floor).
#include <torch/script.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/attention.h"
#include "tests/kernels/attention_reference.h"

namespace fewstep::test {
namespace {

struct RewriteCase {
  const char* name;
  const char* source;  ///< TorchScript of forward(self, q, k, v)
  bool three_d;        ///< [B·H, S, d] inputs instead of [B, H, S, d]
  double scale;        ///< the scale that source applies
  int expected_rewrites;
};

torch::jit::Module make_module(const RewriteCase& c) {
  torch::jit::Module module("Attention");
  module.register_attribute("scale", c10::FloatType::get(), 0.125);
  module.define(c.source);
  return module;
}

std::string forward_graph(torch::jit::Module& module) { return module.get_method("forward").graph()->toString(); }

at::Tensor run(torch::jit::Module& module, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  c10::IValue out = module.forward({q, k, v});
  return out.isTuple() ? out.toTupleRef().elements()[0].toTensor() : out.toTensor();
}

const RewriteCase kCases[] = {
    {"MatmulTimesScale", R"(
def forward(self, q, k, v):
    scores = torch.matmul(q, k.transpose(-2, -1)) * 0.125
    return torch.matmul(torch.softmax(scores, dim=-1), v)
)",
     false, 0.125, 1},
    {"BmmDividedBySqrtD", R"(
def forward(self, q, k, v):
    scores = torch.bmm(q, k.transpose(1, 2)) / 8.0
    return torch.bmm(scores.softmax(-1), v)
)",
     true, 0.125, 1},
    {"BaddbmmWithAlphaAttribute", R"(
def forward(self, q, k, v):
    bias = torch.empty([q.size(0), q.size(1), k.size(1)], dtype=q.dtype)
    scores = torch.baddbmm(bias, q, k.transpose(-1, -2), beta=0, alpha=self.scale)
    return torch.bmm(scores.softmax(dim=-1), v)
)",
     true, 0.125, 1},
    {"UnscaledWithPrescaledQuery", R"(
def forward(self, q, k, v):
    scores = torch.matmul(q * self.scale, k.transpose(-1, -2))
    return torch.matmul(torch.softmax(scores, -1), v)
)",
     false, 0.125, 1},
    {"SdpaDefaultScale", R"(
def forward(self, q, k, v):
    return torch.scaled_dot_product_attention(q, k, v)
)",
     false, 0.125, 1},
    {"SdpaExplicitScaleTwice", R"(
def forward(self, q, k, v):
    a = torch.scaled_dot_product_attention(q, k, v, scale=0.125)
    return torch.scaled_dot_product_attention(a, k, v, None, 0.0, False, scale=self.scale)
)",
     false, 0.125, 2},
    {"SdpaCausalIsLeftAlone", R"(
def forward(self, q, k, v):
    return torch.scaled_dot_product_attention(q, k, v, is_causal=True)
)",
     false, 0.125, 0},
    {"ScoresUsedElsewhereAreLeftAlone", R"(
def forward(self, q, k, v):
    scores = torch.matmul(q, k.transpose(-2, -1)) * 0.125
    return torch.matmul(torch.softmax(scores, dim=-1), v), scores
)",
     false, 0.125, 0},
};

class RewriteAttention : public testing::TestWithParam<RewriteCase> {};

TEST_P(RewriteAttention, SameOutputAndTheOpAppears) {
  const RewriteCase& c = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const at::Tensor q = c.three_d ? at::randn({6, 40, 64}) : at::randn({2, 3, 40, 64});
  const at::Tensor k = c.three_d ? at::randn({6, 50, 64}) : at::randn({2, 3, 50, 64});
  const at::Tensor v = at::randn_like(k);
  // Separate instances: a graph must be rewritten before its first run.
  torch::jit::Module native = make_module(c);
  torch::jit::Module fused = make_module(c);

  EXPECT_EQ(rewrite_attention(fused), c.expected_rewrites);
  const std::string graph = forward_graph(fused);
  if (c.expected_rewrites > 0) {
    EXPECT_NE(graph.find("fewstep::attention"), std::string::npos) << graph;
    EXPECT_EQ(graph.find("aten::softmax"), std::string::npos) << graph;
    EXPECT_EQ(graph.find("aten::scaled_dot_product_attention"), std::string::npos) << graph;
  } else {
    EXPECT_EQ(graph.find("fewstep::attention"), std::string::npos) << graph;
  }

  const at::Tensor before = run(native, q, k, v);
  const at::Tensor after = run(fused, q, k, v);
  const at::Tensor reference = std::string(c.name) == "SdpaExplicitScaleTwice"
                                   ? reference_attention(reference_attention(q, k, v, c.scale), k, v, c.scale)
                                   : reference_attention(q, k, v, c.scale, at::kDouble);
  if (std::string(c.name) == "SdpaCausalIsLeftAlone") {
    EXPECT_TRUE(at::equal(before, after));
    return;
  }
  EXPECT_LE(max_abs_error(after, reference), 2.0 * max_abs_error(before, reference) + rounding_floor(v, at::kFloat));
}

INSTANTIATE_TEST_SUITE_P(Patterns, RewriteAttention, testing::ValuesIn(kCases),
                         [](const testing::TestParamInfo<RewriteCase>& info) { return std::string(info.param.name); });

TEST(RewriteAttentionModule, ReachesSubmoduleMethods) {
  test_seed();
  torch::jit::Module inner("Inner");
  inner.define(R"(
def forward(self, q, k, v):
    return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * 0.125, dim=-1), v)
)");
  torch::jit::Module outer("Outer");
  outer.register_module("attn", inner);
  outer.define(R"(
def forward(self, q, k, v):
    return self.attn.forward(q, k, v) + 1.0
)");
  EXPECT_EQ(rewrite_attention(outer), 1);
  EXPECT_NE(inner.get_method("forward").graph()->toString().find("fewstep::attention"), std::string::npos);
  test_seed();
  const at::Tensor q = at::randn({1, 2, 9, 16});
  const at::Tensor kv = at::randn({1, 2, 11, 16});
  const at::Tensor out = outer.forward({q, kv, kv}).toTensor();
  const at::Tensor reference = reference_attention(q, kv, kv, 0.125) + 1.0;
  EXPECT_LE(max_abs_error(out, reference),
            2.0 * max_abs_error(at::scaled_dot_product_attention(q, kv, kv, {}, 0.0, false, 0.125) + 1.0, reference) +
                rounding_floor(kv, at::kFloat));
}

}  // namespace
}  // namespace fewstep::test
