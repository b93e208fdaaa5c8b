// `fewstep profile`: the trace is Chrome-trace JSON with events; the stage
// table's exclusive times nest correctly and add up to at most the total.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "pipeline/profile.h"

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
  const std::vector<ProfiledEvent> events = {ev("sampler", 0, 100), ev("unet", 10, 60), ev("attention", 20, 30, false),
                                             ev("aten::scaled_dot_product_attention", 21, 29, false),
                                             ev("aten::mm", 40, 50, false), ev("vae_decoder", 100, 120)};
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

TEST(Profile, BlockUnetTraceAndStages) {
  ProfileOptions o;
  o.model = std::string(FEWSTEP_TEST_MODELS) + "/tiny-blocks";
  if (!fs::exists(o.model)) GTEST_SKIP() << "test model missing: " << o.model;
  o.prompt = "a red apple";
  o.rt.threads = 1;
  o.steps = 2;
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
  for (const char* want : {"text_encoder", "sampler", "unet.input_blocks.0", "unet.middle_block", "unet.output_blocks.0"})
    EXPECT_TRUE(names.count(want)) << want;
  ASSERT_FALSE(r.ops.empty());
  EXPECT_EQ(r.ops.front().device, "CPU");
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
