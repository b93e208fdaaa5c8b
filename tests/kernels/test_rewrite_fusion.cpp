// The TorchScript pass rewrite_fusion: modules written the way the LDM /
// diffusers UNets are (GroupNorm in a submodule, then SiLU; the timestep
// embedding added before the second GroupNorm, with GroupNorm's own shape
// checks on the sum; GEGLU; GELU after a matrix product), and the embedded
// model's UNet itself. After the pass the graph calls the fused ops, the
// counts are right, the cases that must stay unfused do, and the output is
// unchanged: its float64 error stays within 2× the original graph's in
// float32, plus four roundings (tests/kernels/fused_reference.h).
#include <torch/script.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/fused.h"
#include "tests/kernels/fused_reference.h"

namespace fewstep::test {
namespace {

int occurrences(const std::string& text, const std::string& word) {
  int n = 0;
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) ++n;
  return n;
}

/// A GroupNorm submodule as nn.GroupNorm scripts: its own method, with an
/// input check, 5 groups over 15 channels, eps as an argument.
torch::jit::Module make_norm(double eps) {
  torch::jit::Module norm("Norm");
  norm.register_parameter("weight", at::randn({15}), false);
  norm.register_parameter("bias", at::randn({15}), false);
  norm.define(R"(
def forward(self, x):
    assert x.dim() >= 2, "GroupNorm needs [N, C, *]"
    return torch.group_norm(x, 5, self.weight, self.bias, )" +
              std::to_string(eps) + R"(, True)
)");
  return norm;
}

struct FusionCase {
  const char* name;
  const char* source;  ///< TorchScript of forward(self, x [2,15,6,7], emb [2,15]) -> (Tensor, int)
  FusionCounts expected;
  std::vector<const char*> present, absent;  ///< op names in the rewritten forward graph
};

torch::jit::Module make_block(const FusionCase& c) {
  torch::jit::Module block("Block");
  block.register_module("norm1", make_norm(1e-5));
  block.register_module("norm2", make_norm(1e-6));
  block.register_parameter("w1", at::randn({15, 38}) * 0.3, false);
  block.register_parameter("w2", at::randn({19, 11}) * 0.3, false);
  block.define(c.source);
  return block;
}

const FusionCase kCases[] = {
    {"ResBlockAndFeedForward",
     R"(
def forward(self, x, emb):
    h = torch.silu(self.norm1.forward(x)) * 0.5
    h = h + emb[:, :, None, None]
    batch = h.size(0)
    h = torch.silu(self.norm2.forward(h))
    t = self.norm1.forward(h).flatten(2).transpose(1, 2)
    value, gate = torch.chunk(torch.matmul(t, self.w1), 2, -1)
    y = torch.gelu(torch.matmul(value * torch.gelu(gate), self.w2), approximate="tanh")
    return y, batch
)",
     {.group_norm = 3, .group_norm_silu = 2, .group_norm_shift = 1, .gelu = 1, .geglu = 1},
     {"fewstep::group_norm_silu", "fewstep::group_norm(", "fewstep::geglu", "fewstep::gelu_"},
     {"aten::group_norm", "aten::silu", "aten::gelu", "aten::chunk", "aten::add"}},
    {"SharedIntermediatesStayUnfused",
     R"(
def forward(self, x, emb):
    n = self.norm1.forward(x)
    s = x + emb[:, :, None, None]
    a = torch.silu(self.norm2.forward(s)) + s
    m = torch.matmul(a.flatten(2), torch.ones([42, 3], dtype=a.dtype))
    g = torch.gelu(m) + m
    return n + a + g.sum(), 0
)",
     {.group_norm = 2, .group_norm_silu = 1},
     {"fewstep::group_norm(", "fewstep::group_norm_silu"},
     {"fewstep::gelu_", "aten::group_norm"}},
    {"PerChannelOperandFirst",
     R"(
def forward(self, x, emb):
    return torch.silu(self.norm1.forward(emb[:, :, None, None] + x)), 0
)",
     {.group_norm = 1, .group_norm_silu = 1, .group_norm_shift = 1},
     {"fewstep::group_norm_silu"},
     {"aten::add"}},
};

class RewriteFusion : public testing::TestWithParam<FusionCase> {};

std::vector<c10::IValue> run(torch::jit::Module& m, const at::Tensor& x, const at::Tensor& emb) {
  return m.forward({x, emb}).toTupleRef().elements().vec();
}

TEST_P(RewriteFusion, SameOutputAndTheOpsAppear) {
  const FusionCase& c = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  torch::jit::Module native = make_block(c);
  torch::jit::Module fused = native.deepcopy();  // same weights; a graph is rewritten before its first run
  const FusionCounts counts = rewrite_fusion(fused);
  const std::string graph = fused.get_method("forward").graph()->toString();
  // rewrite_fusion also rewrites the submodules' own methods: count the forward graph's ops.
  EXPECT_EQ(occurrences(graph, "fewstep::group_norm"), c.expected.group_norm) << graph;
  EXPECT_EQ(occurrences(graph, "fewstep::group_norm_silu"), c.expected.group_norm_silu) << graph;
  EXPECT_EQ(occurrences(graph, "fewstep::gelu_"), c.expected.gelu) << graph;
  EXPECT_EQ(occurrences(graph, "fewstep::geglu"), c.expected.geglu) << graph;
  EXPECT_GE(counts.group_norm_shift, c.expected.group_norm_shift);
  for (const char* op : c.present) EXPECT_NE(graph.find(op), std::string::npos) << op << "\n" << graph;
  for (const char* op : c.absent) EXPECT_EQ(graph.find(op), std::string::npos) << op << "\n" << graph;

  const at::Tensor x = at::randn({2, 15, 6, 7}) * 2.0 + 0.5;
  const at::Tensor emb = at::randn({2, 15});
  const std::vector<c10::IValue> before = run(native, x, emb);
  const std::vector<c10::IValue> after = run(fused, x, emb);
  torch::jit::Module reference = native.deepcopy();
  reference.to(at::kDouble);
  const std::vector<c10::IValue> ref = run(reference, x.to(at::kDouble), emb.to(at::kDouble));
  const at::Tensor r = ref[0].toTensor();
  EXPECT_LE(max_abs_error(after[0].toTensor(), r), fused_budget(max_abs_error(before[0].toTensor(), r), r, at::kFloat));
  EXPECT_EQ(after[1].toInt(), before[1].toInt());
}

INSTANTIATE_TEST_SUITE_P(Patterns, RewriteFusion, testing::ValuesIn(kCases),
                         [](const testing::TestParamInfo<FusionCase>& info) { return std::string(info.param.name); });

/// The embedded model's UNet, rewritten as a package loads (fusion, then
/// attention) and run channels-last as the pipeline runs it on the CPU:
/// every GroupNorm is fused (23 with their SiLU, 11 of those with the
/// timestep shift), every GELU runs in place, every convolution through
/// fewstep::conv2d, and the prediction matches the unrewritten UNet within
/// the float32 budget. LibTorch's own error is taken as the larger of its
/// NCHW and channels-last runs: oneDNN sums in a different order per layout.
TEST(RewriteFusionModel, EmbeddedUnet) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::string file = std::string(FEWSTEP_MODELS_DIR) + "/emoji/unet.pt";
  torch::jit::Module native = torch::jit::load(file);
  native.eval();
  native.to(at::kFloat);
  torch::jit::Module fused = torch::jit::load(file);
  fused.eval();
  const FusionCounts counts = rewrite_fusion(fused);
  EXPECT_GT(rewrite_attention(fused), 0);
  fused.to(at::kFloat);
  for (const at::Tensor& p : fused.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  EXPECT_GT(counts.group_norm_shift, 0);
  const std::string graph = fused.get_method("forward").graph()->toString();
  EXPECT_EQ(occurrences(graph, "fewstep::group_norm_silu"), 23) << graph;
  EXPECT_EQ(occurrences(graph, "fewstep::group_norm("), 7) << graph;
  EXPECT_EQ(occurrences(graph, "aten::group_norm"), 0) << graph;
  EXPECT_EQ(occurrences(graph, "fewstep::gelu_"), 7) << graph;
  EXPECT_EQ(occurrences(graph, "aten::gelu"), 0) << graph;
  EXPECT_EQ(occurrences(graph, "fewstep::conv2d"), 36) << graph;
  EXPECT_EQ(occurrences(graph, "aten::conv2d"), 0) << graph;

  const at::Tensor x = at::randn({1, 3, 32, 32});  // batch 1: the float64 reference is the test's cost
  const at::Tensor t = at::tensor({124.0f});
  const at::Tensor ctx = at::randn({1, 24, 192});
  at::NoGradGuard no_grad;
  const at::Tensor before = native.forward({x, t, ctx}).toTensor();
  for (const at::Tensor& p : native.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  const at::Tensor before_cl = native.forward({x.contiguous(at::MemoryFormat::ChannelsLast), t, ctx}).toTensor();
  const at::Tensor after = fused.forward({x.contiguous(at::MemoryFormat::ChannelsLast), t, ctx}).toTensor();
  native.to(at::kDouble);
  const at::Tensor ref = native.forward({x.to(at::kDouble), t, ctx.to(at::kDouble)}).toTensor();
  const double libtorch_error = std::max(max_abs_error(before, ref), max_abs_error(before_cl, ref));
  EXPECT_LE(max_abs_error(after, ref), fused_budget(libtorch_error, ref, at::kFloat));
}

}  // namespace
}  // namespace fewstep::test
