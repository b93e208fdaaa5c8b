// `fewstep sweep` on analytic:gaussian, whose probability-flow ODE has an
// exact solution: every deterministic ODE sampler's error against it must
// fall as steps grow. Also the summary's selections and the bad-argument errors.
#include <gtest/gtest.h>

#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <sstream>

#include "image/contact_sheet.h"
#include "image/png.h"
#include "io/files.h"
#include "pipeline/tensor_io.h"
#include "eval/sweep.h"
#include "eval/sweep_internal.h"
#include "samplers/registry.h"

namespace fewstep {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("fewstep_test_sweep_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

std::vector<std::vector<std::string>> read_csv(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream s(line);
    for (std::string c; std::getline(s, c, ',');) cells.push_back(c);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    rows.push_back(cells);
  }
  return rows;
}

// The deterministic ODE samplers of the registry (stochastic ones and lcm,
// a consistency sampler, are not ODE solvers).
std::vector<std::string> ode_samplers() {
  std::vector<std::string> out;
  for (const SamplerInfo& s : sampler_registry())
    if (!s.stochastic && s.name != "lcm") out.push_back(s.name);
  return out;
}

// `trailing` spacing starts every sampler at timestep T-1, the point the
// exact reference starts from; fp64 keeps rounding far below the errors.
TEST(SweepGaussian, ErrorFallsWithStepsForEveryOdeSampler) {
  SweepOptions o;
  o.model = "analytic:gaussian:shape=3x8x8";
  o.samplers = ode_samplers();
  o.steps = {1, 2, 4, 8, 16};
  o.seeds = {3};
  o.timestep_spacing = "trailing";
  o.rt.dtype = "fp64";
  o.rt.threads = 1;  // small tensors; avoids OpenMP spin-waits on a busy machine
  o.out = fresh_dir("gaussian");
  int64_t last_done = 0, total = 0;
  const SweepResult r = run_sweep(o, [&](int64_t done, int64_t all) {
    EXPECT_EQ(done, last_done + 1);
    last_done = done;
    total = all;
  });
  EXPECT_EQ(total, int64_t(o.samplers.size() * 5 + 1));
  EXPECT_EQ(last_done, total);
  EXPECT_EQ(r.reference.describe(), "exact ODE solution");

  const auto csv = read_csv(o.out / "results.csv");
  ASSERT_EQ(csv.size(), 1 + o.samplers.size() * 5);
  const std::vector<std::string> header = {"prompt",     "sampler",    "steps",   "seed",        "nfe",
                                           "unet_calls", "unet_flops", "wall_ms", "rmse_latent", "rmse",
                                           "psnr_db",    "ssim",       "rank"};
  EXPECT_EQ(csv[0], header);
  std::map<std::string, std::vector<std::pair<int64_t, double>>> err;
  for (size_t i = 1; i < csv.size(); ++i) {
    ASSERT_EQ(csv[i].size(), header.size());
    EXPECT_EQ(csv[i][3], "3");
    EXPECT_EQ(csv[i][6], "") << "an analytic model has no UNet FLOPs";
    err[csv[i][1]].emplace_back(std::stoll(csv[i][2]), std::stod(csv[i][8]));
  }
  for (const std::string& s : o.samplers) {
    const auto& e = err[s];
    ASSERT_EQ(e.size(), 5u) << s;
    for (size_t k = 1; k < e.size(); ++k)
      EXPECT_LT(e[k].second, e[k - 1].second)
          << s << ": error at " << e[k].first << " steps is not below " << e[k - 1].first << " steps";
  }
  for (const char* f : {"grid.png", "quality.png", "summary.md"}) EXPECT_TRUE(fs::exists(o.out / f)) << f;

  // grid.png: rows = samplers, columns = steps + the reference.
  std::vector<std::string> cols;
  for (int64_t s : o.steps) cols.push_back(std::to_string(s));
  cols.push_back("ref");
  int w = 0, h = 0, ch = 0;
  unsigned char* px = stbi_load((o.out / "grid.png").c_str(), &w, &h, &ch, 3);
  ASSERT_NE(px, nullptr);
  stbi_image_free(px);
  const ContactSheetLayout l = contact_sheet_layout(o.samplers, cols, 8, 8, "x");
  EXPECT_EQ(w, l.width);
  EXPECT_EQ(h, l.height);
  EXPECT_EQ(l.cols, int(o.steps.size()) + 1);
  EXPECT_EQ(l.rows, int(o.samplers.size()));
  fs::remove_all(o.out);
}

// Several seeds: one sheet per seed; every combination of a seed starts from
// the same noise, so two samplers that coincide at 1 step (DDIM and Euler
// both take one first-order exponential/Euler step to sigma 0, which returns
// the denoised start) agree exactly.
TEST(SweepGaussian, SameNoisePerSeedAcrossCombinations) {
  SweepOptions o;
  o.model = "analytic:gaussian:shape=1x4x4";
  o.samplers = {"ddim", "euler"};
  o.steps = {1};
  o.seeds = {0, 1};
  o.timestep_spacing = "trailing";
  o.rt.dtype = "fp64";
  o.rt.threads = 1;  // small tensors; avoids OpenMP spin-waits on a busy machine
  o.out = fresh_dir("seeds");
  const SweepResult r = run_sweep(o);
  ASSERT_EQ(r.rows.size(), 4u);
  EXPECT_NEAR(r.rows[0].rmse_latent, r.rows[1].rmse_latent, 1e-12);  // seed 0: ddim, euler
  EXPECT_NE(r.rows[0].rmse_latent, r.rows[2].rmse_latent);           // seed 1 differs
  EXPECT_TRUE(fs::exists(o.out / "grid-p0-s0.png"));
  EXPECT_TRUE(fs::exists(o.out / "grid-p0-s1.png"));
  fs::remove_all(o.out);
}

// unet_flops on a real UNet: every NFE is one CFG call of 2 rows, so a
// row's FLOPs are NFE × (the 1-step DDIM row's FLOPs), whatever the sampler.
TEST(SweepTinyUnet, UnetFlopsFollowTheModelCalls) {
  SweepOptions o;
  o.model = std::string(FEWSTEP_TEST_MODELS) + "/tiny-blocks";
  ASSERT_TRUE(fs::exists(o.model)) << "the build makes this test model: " << o.model;
  o.prompts = {"a red apple"};
  o.samplers = {"ddim", "heun"};
  o.steps = {1, 2};
  o.cfg_scale = 3.0;
  o.width = o.height = 16;
  o.reference = "ddim:4";
  o.rt.threads = 1;
  o.out = fresh_dir("tiny");
  const SweepResult r = run_sweep(o);
  ASSERT_EQ(r.rows.size(), 4u);
  ASSERT_TRUE(r.rows[0].unet_flops.has_value());
  const double one = *r.rows[0].unet_flops;  // ddim, 1 step: 1 call of 2 rows
  EXPECT_EQ(r.rows[0].nfe, 1);
  EXPECT_GT(one, 1e6);
  for (const SweepRow& row : r.rows) {
    ASSERT_TRUE(row.unet_flops.has_value()) << row.sampler;
    EXPECT_DOUBLE_EQ(*row.unet_flops, double(row.nfe) * one) << row.sampler << " " << row.steps;
  }
  EXPECT_EQ(r.rows[3].nfe, 3);  // heun, 2 steps: 2 Heun evaluations + the final Euler one
  const auto csv = read_csv(o.out / "results.csv");
  ASSERT_EQ(csv.size(), 5u);
  EXPECT_EQ(csv[0][6], "unet_flops");
  char want[32];
  std::snprintf(want, sizeof(want), "%.0f", one);
  EXPECT_EQ(csv[1][6], want);
  fs::remove_all(o.out);
}

SweepRow row(const std::string& sampler, int64_t steps, double nfe, double rmse, double wall) {
  SweepRow r;
  r.sampler = sampler;
  r.steps = steps;
  r.nfe = int64_t(nfe);
  r.rmse = rmse;
  r.wall_ms = wall;
  return r;
}

// PSNR = -20·log10(rmse): rmse 0.1 -> 20 dB, 0.01 -> 40 dB, 0.02 -> 33.98 dB.
TEST(SweepSummary, ParetoFrontAndSelections) {
  const std::vector<SweepRow> rows = {row("a", 4, 4, 0.1, 5), row("a", 8, 8, 0.02, 9), row("a", 16, 16, 0.018, 17),
                                      row("b", 4, 8, 0.2, 4), row("b", 8, 16, 0.01, 30)};
  const std::vector<SweepSetting> front = pareto_front(aggregate_settings(rows));
  // b@4 (NFE 8, 14 dB) is beaten by a@8 (NFE 8, 34 dB); a@16 (NFE 16,
  // 34.9 dB) by b@8 (NFE 16, 40 dB).
  ASSERT_EQ(front.size(), 3u);
  EXPECT_EQ(front[0].sampler + std::to_string(front[0].steps), "a4");
  EXPECT_EQ(front[1].sampler + std::to_string(front[1].steps), "a8");
  EXPECT_EQ(front[2].sampler + std::to_string(front[2].steps), "b8");
  const std::string md = format_summary_md(rows, {"unipc", 250}, "m");
  // a's best is 34.89 dB at 16 steps; 8 steps (33.98 dB) is within 1 dB.
  EXPECT_NE(md.find("| a | 34.89 | 16 | 8 | 33.98 |"), std::string::npos) << md;
  // Cheapest at >= 30 dB: a@8 (NFE 8) beats a@16 and b@8 (NFE 16).
  EXPECT_NE(md.find("`a` at 8 steps"), std::string::npos) << md;
  // No choice depends on wall time (it differs between runs and ranks):
  // other wall times change only the wall figures.
  std::vector<SweepRow> slow = rows;
  for (SweepRow& r : slow) r.wall_ms = 1000.0 - r.wall_ms;
  auto without_wall = [](const std::string& text) {  // the Pareto table's last column and the "N ms"
    return std::regex_replace(std::regex_replace(text, std::regex(R"(\| [0-9.]+ \|\n)"), "|\n"),
                              std::regex(R"(, [0-9.]+ ms\.)"), ".");
  };
  EXPECT_EQ(without_wall(format_summary_md(slow, {"unipc", 250}, "m")), without_wall(md));
  EXPECT_EQ(md.find("stochastic"), std::string::npos) << md;  // "a" and "b" are no samplers at all
  // Runs that drew step noise are named once in a note: their error has no
  // reason to fall with steps. The flag is the run's (draws_step_noise with
  // its options), not the sampler's kind: here ddim ran with eta > 0.
  std::vector<SweepRow> noisy = {row("ddim", 4, 4, 0.1, 5), row("lcm", 4, 4, 0.3, 5), row("lcm", 8, 8, 0.3, 9),
                                 row("euler_ancestral", 4, 4, 0.3, 5), row("dpmpp_2m", 4, 4, 0.1, 5)};
  for (size_t i = 0; i < 4; ++i) noisy[i].stochastic = true;
  const std::string with_sde = format_summary_md(noisy, {"unipc", 250}, "m");
  EXPECT_NE(with_sde.find("the stochastic samplers in this sweep (`ddim`, `lcm`, `euler_ancestral`)"),
            std::string::npos)
      << with_sde;
}

// RFC 4180: a field with a comma or a quote is quoted, quotes doubled.
TEST(SweepCsv, QuotesPromptsAndWritesInfinitePsnr) {
  SweepRow r = row("ddim", 4, 4, 0.0, 1.5);
  r.prompt = "a \"red\", apple";
  r.psnr_db = std::numeric_limits<double>::infinity();
  r.ssim = 1;
  const std::string csv = format_results_csv({r});
  EXPECT_EQ(csv.substr(csv.find('\n') + 1), "\"a \"\"red\"\", apple\",ddim,4,0,4,0,,1.5,0,0,inf,1,0\n");
  r.unet_flops = 123456789012.0;
  const std::string with_flops = format_results_csv({r});
  EXPECT_NE(with_flops.find(",0,123456789012,1.5,"), std::string::npos) << with_flops;
}

std::string error_of(SweepOptions o) {
  try {
    check_sweep_options(o);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

SweepOptions valid_options() {
  SweepOptions o;
  o.samplers = {"ddim"};
  o.steps = {1, 2};
  o.out = fresh_dir("args");
  return o;
}

TEST(SweepArguments, BadArgumentsGetOneLineErrorsNamingTheFlag) {
  EXPECT_THROW(parse_list("--samplers", " , "), std::invalid_argument);
  EXPECT_EQ(std::string(error_of([] {
              auto o = valid_options();
              o.samplers.clear();
              return o;
            }())),
            "--samplers: the list is empty");
  const std::string unknown = error_of([] {
    auto o = valid_options();
    o.samplers = {"ddim", "nope"};
    return o;
  }());
  EXPECT_EQ(unknown.rfind("--samplers: unknown sampler 'nope'", 0), 0u) << unknown;
  EXPECT_EQ(error_of([] {
              auto o = valid_options();
              o.steps = {4, 0};
              return o;
            }()),
            "--steps: must be at least 1, got 0");
  // A regular file where the folder should be: nothing can be created under it.
  const fs::path file = fresh_dir("file");
  std::ofstream(file) << "x";
  const std::string bad_out = error_of([&] {
    auto o = valid_options();
    o.out = file / "out";
    return o;
  }());
  EXPECT_EQ(bad_out.rfind("--out: cannot create folder", 0), 0u) << bad_out;
  EXPECT_EQ(error_of(valid_options()), "");
  EXPECT_THROW(parse_reference("unipc"), std::invalid_argument);
  EXPECT_THROW(parse_reference("unipc:0"), std::invalid_argument);
  EXPECT_EQ(parse_reference("UniPCMultistepScheduler:50").describe(), "unipc:50");
  for (const std::string& s : {error_of(valid_options()), unknown, bad_out}) EXPECT_EQ(s.find('\n'), std::string::npos);
  fs::remove(file);
  fs::remove_all(valid_options().out);
}

TEST(SweepArguments, EmptyItemsAreRefusedAndRepeatsDropped) {
  EXPECT_EQ(parse_list("--samplers", " ddim , euler ").size(), 2u);
  for (const char* text : {"ddim,,euler", "ddim,", ",ddim", "ddim, ,euler"}) {
    try {
      parse_list("--samplers", text);
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), std::string("--samplers: empty item in '") + text + "'");
    }
  }
  SweepOptions o = valid_options();
  o.samplers = {"ddim", "euler", "DDIMScheduler", "ddim"};
  o.steps = {2, 1, 2};
  o.seeds = {3, 3, 0};
  check_sweep_options(o);
  EXPECT_EQ(o.samplers, (std::vector<std::string>{"ddim", "euler"}));
  EXPECT_EQ(o.steps, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(o.seeds, (std::vector<uint64_t>{3, 0}));
  fs::remove_all(o.out);
}

// A sweep or profile that fails leaves no output folder it created behind
// (and never removes one that existed).
TEST(SweepArguments, FailedCommandsLeaveNoNewFolder) {
  const fs::path fresh = fresh_dir("failed_new"), existing = fresh_dir("failed_existing");
  fs::create_directories(existing);
  const std::string bin = FEWSTEP_BIN;
  for (const std::string& cmd : {bin + " sweep --model /nonexistent-fewstep-model --samplers ddim --steps 1 --out ",
                                 bin + " sweep --model analytic:gaussian --samplers ddim --steps 1,2000 --out ",
                                 bin + " profile --model /nonexistent-fewstep-model --prompt x --steps 1 --out "}) {
    for (const fs::path& dir : {fresh, existing}) {
      const int status = std::system((cmd + "'" + dir.string() + "' >/dev/null 2>&1").c_str());
      EXPECT_EQ(WEXITSTATUS(status), 1) << cmd << dir;
      EXPECT_EQ(fs::exists(dir), dir == existing) << cmd << dir;
    }
  }
  fs::remove_all(existing);
}

// The command line: exit status 1 and one line on stderr, before any model loads.
TEST(SweepArguments, CommandLineErrors) {
  const std::string bin = FEWSTEP_BIN;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--samplers ''", "--samplers: the list is empty"},
      {"--samplers ddim,bogus", "--samplers: unknown sampler 'bogus'"},
      {"--samplers ddim --steps 2,-1", "--steps: must be at least 1"},
      {"--samplers ddim", "--out: cannot create folder /dev/null/x"},
  };
  for (const auto& [args, want] : cases) {
    const std::string cmd = bin + " sweep --model analytic:gaussian --steps 1 " + args + " --out /dev/null/x 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof(buf), p)) out += buf;
    const int status = pclose(p);
    EXPECT_EQ(WEXITSTATUS(status), 1) << cmd;
    EXPECT_NE(out.find(want), std::string::npos) << cmd << "\n" << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  }
}

}  // namespace
}  // namespace fewstep
