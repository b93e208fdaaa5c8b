// `fewstep profile`: the trace is Chrome-trace JSON with events; the stage
// table's exclusive times nest correctly and add up to at most the total.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include "eval/profile.h"

namespace fewstep {
namespace {

namespace fs = std::filesystem;

ProfiledEvent ev(const std::string& name, uint64_t start, uint64_t end, bool user = true) {
  ProfiledEvent e;
  e.name = name;
  e.start_ns = start * 1000000;  // ms -> ns
  e.end_ns = end * 1000000;
  e.user_scope = user;
  e.op = !user;
  return e;
}

// sampler [0, 100] ⊃ unet [10, 60] ⊃ attention [20, 30] ⊃ SDPA [21, 29]
// (the fused op's fallback), and vae_decoder [100, 120]:
// exclusive sampler 100-50 = 50, unet 50-10 = 40, attention 10 (once).
TEST(StageTable, ExclusiveIsInclusiveMinusNestedStages) {
  const std::vector<ProfiledEvent> events = {
      ev("sampler", 0, 100),          ev("unet", 10, 60),
      ev("attention", 20, 30, false), ev("aten::scaled_dot_product_attention", 21, 29, false),
      ev("aten::mm", 40, 50, false),  ev("vae_decoder", 100, 120)};
  const std::vector<StageRow> rows = stage_table(events);
  ASSERT_EQ(rows.size(), 4u);
  std::map<std::string, StageRow> by;
  for (const auto& r : rows) by[r.name] = r;
  EXPECT_DOUBLE_EQ(by["sampler"].inclusive_ms, 100);
  EXPECT_DOUBLE_EQ(by["sampler"].exclusive_ms, 50);
  EXPECT_DOUBLE_EQ(by["unet"].exclusive_ms, 40);
  EXPECT_DOUBLE_EQ(by["attention"].exclusive_ms, 10);
  EXPECT_DOUBLE_EQ(by["attention"].inclusive_ms, 10);
  EXPECT_EQ(by["attention"].calls, 1);
  EXPECT_DOUBLE_EQ(by["vae_decoder"].exclusive_ms, 20);
}

// Self time: attention [20, 30] holds SDPA [21, 29]: self 2 and 8.
TEST(OpTable, SelfTimeExcludesNestedOps) {
  const std::vector<ProfiledEvent> events = {ev("attention", 20, 30, false),
                                             ev("aten::scaled_dot_product_attention", 21, 29, false)};
  const std::vector<OpRow> rows = op_table(events, 10);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].name, "aten::scaled_dot_product_attention");
  EXPECT_DOUBLE_EQ(rows[0].self_ms, 8);
  EXPECT_DOUBLE_EQ(rows[1].self_ms, 2);
  EXPECT_DOUBLE_EQ(rows[1].total_ms, 10);
  EXPECT_DOUBLE_EQ(rows[0].share + rows[1].share, 1.0);
}

ProfiledEvent flop_op(const std::string& name, uint64_t start, uint64_t end, uint64_t flops) {
  ProfiledEvent e = ev(name, start, end, false);
  e.flops = flops;
  return e;
}

// 4·numel(q)·Lk: q [2, 4, 64, 8], k [2, 4, 77, 8] -> 4 · 4096 · 77.
TEST(AttentionFlops, FromInputShapes) {
  EXPECT_EQ(attention_flops({{2, 4, 64, 8}, {2, 4, 77, 8}, {2, 4, 77, 8}}), 4u * 4096u * 77u);
  EXPECT_EQ(attention_flops({{8, 64, 8}, {8, 77, 8}}), 4u * 4096u * 77u);  // [B·H, L, d]
  EXPECT_EQ(attention_flops({{2, 4, 64, 8}}), 0u);                         // no k
  EXPECT_EQ(attention_flops({{2, 4, 64, 8}, {2, 4, 77, 16}}), 0u);         // head dims differ
  EXPECT_EQ(attention_flops({{2, 4, 64, 8}, {3, 4, 77, 8}}), 0u);          // batches differ
  // An extra input recorded before q: [B, L, C], then q, k, v.
  EXPECT_EQ(attention_flops({{2, 64, 32}, {2, 4, 64, 8}, {2, 4, 77, 8}, {2, 4, 77, 8}}), 4u * 4096u * 77u);
  EXPECT_EQ(attention_flops({{}, {2, 64, 32}, {2, 4, 64, 8}, {2, 4, 77, 8}}), 4u * 4096u * 77u);
  EXPECT_EQ(attention_flops({}), 0u);
}

// unet.input_blocks.0 [0, 50] holds linear [1, 10] (none) ⊃ addmm [2, 9]
// (1000, counted), attention [20, 30] (500) ⊃ bmm [21, 25] (300, inside
// attention: not counted again) and convolution [31, 32] (7);
// unet.middle_block [50, 60] holds mm [51, 55] (40). A user range's FLOPs
// include its nested stages.
TEST(StageTable, FlopsCountEachOperatorOnce) {
  const std::vector<ProfiledEvent> events = {
      ev("unet.input_blocks.0", 0, 50),  flop_op("aten::linear", 1, 10, 0), flop_op("aten::addmm", 2, 9, 1000),
      flop_op("attention", 20, 30, 500), flop_op("aten::bmm", 21, 25, 300), flop_op("aten::convolution", 31, 32, 7),
      ev("unet.middle_block", 50, 60),   flop_op("aten::mm", 51, 55, 40)};
  std::map<std::string, StageRow> by;
  for (const auto& r : stage_table(events)) by[r.name] = r;
  EXPECT_DOUBLE_EQ(by["unet.input_blocks.0"].gflop, 1507e-9);
  EXPECT_DOUBLE_EQ(by["attention"].gflop, 500e-9);
  EXPECT_DOUBLE_EQ(by["unet.middle_block"].gflop, 40e-9);
}

// 2·n·k·m per batch entry, operands found by shape (TorchScript calls record
// an extra leading input).
TEST(MatmulFlops, FromInputShapes) {
  EXPECT_EQ(matmul_flops("aten::mm", {{4, 5}, {5, 6}}), 2u * 4 * 5 * 6);
  EXPECT_EQ(matmul_flops("aten::addmm", {{6}, {4, 5}, {5, 6}, {}, {}}), 2u * 4 * 5 * 6);
  EXPECT_EQ(matmul_flops("aten::mm", {{}, {4, 5}, {5, 6}}), 2u * 4 * 5 * 6);
  EXPECT_EQ(matmul_flops("aten::bmm", {{3, 4, 5}, {3, 5, 6}}), 2u * 3 * 4 * 5 * 6);
  EXPECT_EQ(matmul_flops("aten::bmm", {{3, 4, 5}, {2, 5, 6}}), 0u);  // batches differ
  EXPECT_EQ(matmul_flops("aten::mm", {{4, 5}, {6, 7}}), 0u);         // inner dims differ
  EXPECT_EQ(op_flops("aten::mm", {{4, 5}, {5, 6}}), 2u * 4 * 5 * 6);
  EXPECT_EQ(op_flops("aten::addmm_", {{8, 6}, {8, 5}, {5, 6}, {}, {}}), 2u * 8 * 5 * 6);  // fewstep::linear_add
  EXPECT_EQ(op_flops("aten::add", {{4, 5}, {4, 5}}), 0u);  // elementwise: not counted
}

// 2·N·(output positions)·numel(weight); output size
// floor((S + 2p − d(k − 1) − 1)/s) + 1, or the input positions when transposed.
TEST(ConvFlops, FromShapesAndArguments) {
  // 3x3, pad 1, 3 -> 16 channels at 16x16, batch 2: 256 positions.
  EXPECT_EQ(conv_flops({{2, 3, 16, 16}, {16, 3, 3, 3}, {16}}, {1, 1}, {1, 1}, {1, 1}, false), 2u * 2 * 256 * 432);
  // stride 2: 16 -> 8.
  EXPECT_EQ(conv_flops({{2, 16, 16, 16}, {16, 16, 3, 3}}, {2}, {1}, {1}, false), 2u * 2 * 64 * 2304);
  // dilation 2, no padding: 10 -> (10 - 4 - 1) + 1 = 6 per dim.
  EXPECT_EQ(conv_flops({{1, 1, 10, 10}, {1, 1, 3, 3}}, {1, 1}, {0, 0}, {2, 2}, false), 2u * 36 * 9);
  // transposed, weight [Cin 8, Cout/g 4, 2, 2] over a 4x4 input.
  EXPECT_EQ(conv_flops({{1, 8, 4, 4}, {8, 4, 2, 2}}, {2, 2}, {0, 0}, {1, 1}, true), 2u * 16 * 128);
  // 1-D.
  EXPECT_EQ(conv_flops({{1, 2, 10}, {3, 2, 3}}, {1}, {0}, {1}, false), 2u * 8 * 18);
  EXPECT_EQ(conv_flops({{2, 3, 16, 16}}, {1}, {1}, {1}, false), 0u);  // no weight
}

std::string tiny_blocks() { return std::string(FEWSTEP_TEST_MODELS) + "/tiny-blocks"; }

// Per-row UNet FLOPs do not depend on the CFG batch (1 or 2 rows per call)
// nor on the attention path (fused op or LibTorch's SDPA: same 4·numel(q)·Lk).
TEST(Profile, UnetFlopsPerRowIsBatchAndPathIndependent) {
  ASSERT_TRUE(fs::exists(tiny_blocks())) << "the build makes this test model: " << tiny_blocks();
  RuntimeOptions rt;
  rt.threads = 1;
  auto per_row = [&](const std::string& attention, double cfg) {
    rt.attention = attention;
    std::unique_ptr<Pipeline> pipe = Pipeline::load(tiny_blocks(), rt);
    GenerateRequest req = pipe->request_with_defaults("ddim", 1, cfg, 16, 16);
    std::optional<double> f = unet_flops_per_row(*pipe, pipe->encode("a red apple", ""), req);
    return f.value_or(-1.0);
  };
  const double fused_cfg = per_row("fused", 3.0);
  EXPECT_GT(fused_cfg, 1e6);
  // Equal up to the few FLOPs of batch-independent ops (the time embedding's frequencies).
  EXPECT_NEAR(per_row("fused", 1.0), fused_cfg, 1e-6 * fused_cfg);
  EXPECT_NEAR(per_row("native", 3.0), fused_cfg, 1e-6 * fused_cfg);

  RuntimeOptions rta;
  rta.threads = 1;
  std::unique_ptr<Pipeline> analytic = Pipeline::load("analytic:gaussian", rta);
  GenerateRequest req = analytic->request_with_defaults("ddim", 1, std::nullopt, std::nullopt, std::nullopt);
  EXPECT_FALSE(unet_flops_per_row(*analytic, analytic->encode("", ""), req).has_value());
}

TEST(Profile, BlockUnetTraceAndStages) {
  ProfileOptions o;
  o.model = tiny_blocks();
  ASSERT_TRUE(fs::exists(o.model)) << "the build makes this test model: " << o.model;
  o.prompt = "a red apple";
  o.rt.threads = 1;
  o.sampler = "ddim";
  o.steps = 2;
  o.cfg_scale = 3.0;  // 2 UNet calls of 2 rows (CFG pair)
  o.width = o.height = 16;
  o.out = fs::temp_directory_path() / ("fewstep_test_profile_" + std::to_string(::getpid()));
  const ProfileReport r = run_profile(o);

  std::ifstream in(r.trace);
  const nlohmann::json trace = nlohmann::json::parse(in);  // throws if not JSON
  ASSERT_TRUE(trace.contains("traceEvents"));
  ASSERT_TRUE(trace["traceEvents"].is_array());
  EXPECT_GT(trace["traceEvents"].size(), 10u);

  double exclusive = 0;
  std::set<std::string> names;
  for (const StageRow& s : r.stages) {
    exclusive += s.exclusive_ms;
    names.insert(s.name);
    EXPECT_LE(s.exclusive_ms, s.inclusive_ms + 1e-9) << s.name;
    EXPECT_GE(s.exclusive_ms, 0) << s.name;
  }
  EXPECT_LE(exclusive, r.total_ms);
  for (const char* want :
       {"text_encoder", "sampler", "unet.input_blocks.0", "unet.middle_block", "unet.output_blocks.0"})
    EXPECT_TRUE(names.count(want)) << want;
  ASSERT_FALSE(r.ops.empty());
  EXPECT_EQ(r.ops.front().device, "CPU");
  // Convolution FLOPs 2·Cout·Hout·Wout·Cin·kh·kw per row (bias not counted),
  // 4 rows: input block 0 is a 3x3 conv 3 -> 16 channels at 16x16; block 2 a
  // stride-2 3x3 conv 16 -> 16 channels, out 8x8.
  std::map<std::string, StageRow> by;
  for (const StageRow& s : r.stages) by[s.name] = s;
  EXPECT_DOUBLE_EQ(by["unet.input_blocks.0"].gflop, 4 * 2.0 * 16 * 16 * 16 * 3 * 9 * 1e-9);
  EXPECT_DOUBLE_EQ(by["unet.input_blocks.2"].gflop, 4 * 2.0 * 16 * 8 * 8 * 16 * 9 * 1e-9);
  // Input block 1 at 16x16 (256 tokens), 16 channels, per row: ResBlock
  // (two 3x3 convs 16 -> 16, time-embedding Linear 64 -> 16) and a
  // transformer (self-attention q, k, v, o on 256 tokens; cross-attention q, o
  // on 256 tokens and k, v from 16 text tokens of 32 channels; MLP 16 -> 32 ->
  // 16; attention 4·numel(q)·Lk for Lk = 256 and 16). Every line is 2·n·k·m.
  const double block1 = 2 * (2.0 * 256 * 16 * 16 * 9)                  // conv1, conv2
                        + 2.0 * 64 * 16                                // emb
                        + 4 * (2.0 * 256 * 16 * 16)                    // attn1 q, k, v, o
                        + 2 * (2.0 * 256 * 16 * 16)                    // attn2 q, o
                        + 2 * (2.0 * 16 * 32 * 16)                     // attn2 k, v
                        + 2 * (2.0 * 256 * 16 * 32)                    // MLP
                        + 4.0 * 256 * 16 * 256 + 4.0 * 256 * 16 * 16;  // attention
  EXPECT_DOUBLE_EQ(by["unet.input_blocks.1"].gflop, 4 * block1 * 1e-9);
  // Attention, 4·numel(q)·Lk per call: three transformers at 16x16 with 16
  // channels (self: Lq = Lk = 256; cross: Lk = 16 text tokens) and four at
  // 8x8 with 32 channels (self: 64; cross: 16), times 4 rows.
  const double per_row =
      3 * (4.0 * 256 * 16 * 256 + 4.0 * 256 * 16 * 16) + 4 * (4.0 * 64 * 32 * 64 + 4.0 * 64 * 32 * 16);
  EXPECT_DOUBLE_EQ(by["attention"].gflop, 4 * per_row * 1e-9);
  fs::remove_all(o.out);
}

TEST(Profile, UnwritableOutFolder) {
  ProfileOptions o;
  o.model = "analytic:gaussian";
  o.out = "/dev/null/profile";
  try {
    run_profile(o);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--out: cannot create folder", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace fewstep
