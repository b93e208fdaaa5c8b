// The fewstep binary as users run it: one test per bad-input kind (one-line
// error, non-zero exit, no output file), and end-to-end PNG generation.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <ATen/CPUGeneratorImpl.h>

#include "image/png.h"
#include "io/files.h"
#include "pipeline/tensor_io.h"

namespace fs = std::filesystem;

namespace {

struct Result {
  int code;
  std::string output;  // stdout and stderr
};

Result run(const std::string& args) {
  std::string cmd = std::string(FEWSTEP_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string quote(const fs::path& p) {
  std::string q(1, '\'');  // built by appends: GCC 12 flags "'" + s + "'" with a false -Wrestrict
  q += p.string();
  q += '\'';
  return q;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fewstep-cli-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "out");
    model_ = fs::path(FEWSTEP_TEST_MODELS) / "tiny-mono";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string gen(const std::string& extra, const fs::path& model) {
    return "generate --model " + quote(model) + " --prompt 'red apple' --steps 2 --seed 1 --out " +
           quote(dir_ / "out" / "img.png") + " " + extra;
  }
  std::string gen(const std::string& extra) { return gen(extra, model_); }

  /// A bad input: non-zero exit, exactly one line mentioning `needle`, nothing written.
  void expect_bad(const std::string& args, const std::string& needle) {
    Result r = run(args);
    EXPECT_NE(r.code, 0) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
    std::string body = r.output;
    while (!body.empty() && body.back() == '\n') body.pop_back();
    EXPECT_EQ(body.find('\n'), std::string::npos) << "expected one line, got:\n" << r.output;
    EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::is_empty(dir_ / "out")) << "partial output left behind";
  }

  fs::path copy_model() {
    fs::path m = dir_ / "model";
    fs::copy(model_, m, fs::copy_options::recursive);
    return m;
  }

  fs::path dir_, model_;
};

TEST_F(Cli, GeneratesPngWithParameters) {
  Result r = run(gen("--cfg-scale 2.5 --negative-prompt blurry"));
  ASSERT_EQ(r.code, 0) << r.output;
  fs::path png = dir_ / "out" / "img.png";
  ASSERT_TRUE(fs::exists(png));
  auto text = fewstep::read_png_text(png, "parameters");
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text,
            "red apple\nNegative prompt: blurry\nSteps: 2, Sampler: ddim, CFG scale: 2.5, Seed: 1, Size: 16x16, "
            "Model: tiny-mono");
  Result info = run("info --image " + quote(png));
  EXPECT_EQ(info.code, 0);
  EXPECT_EQ(info.output, *text + "\n");
}

TEST_F(Cli, ExistingOutputIsNotOverwritten) {
  fs::path png = dir_ / "out" / "img.png";
  std::ofstream(png) << "precious";
  Result r = run(gen(""));
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream in(png);
  std::string kept((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(kept, "precious");
  EXPECT_TRUE(fs::exists(dir_ / "out" / "img.1.png"));
  EXPECT_FALSE(fs::exists(dir_ / "out" / "img-1.png"));
  ASSERT_EQ(run(gen("--overwrite")).code, 0);
  EXPECT_TRUE(fewstep::read_png_text(png, "parameters").has_value());
}

TEST_F(Cli, BatchCountNamesFilesBySeedAndSavesLatents) {
  fs::path lat = dir_ / "lat.npy", stats = dir_ / "stats.json";
  Result r = run(gen("--batch-count 2 --save-latents " + quote(lat) + " --stats-json " + quote(stats)));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir_ / "out" / "img-1.png"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "img-2.png"));
  at::Tensor l = fewstep::read_npy_float32(lat);
  EXPECT_EQ(l.sizes(), (std::vector<int64_t>{2, 3, 16, 16}));
  std::ifstream in(stats);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  for (const char* key : {"load_ms", "encode_ms", "sampling_ms", "decode_ms", "total_ms", "\"nfe\": 4",
                          "\"unet_calls\": 4", "\"unet_rows\": 8"})
    EXPECT_NE(s.find(key), std::string::npos) << key << " in " << s;
}

TEST_F(Cli, InitNoiseRoundTripGivesTheSeedsResult) {
  // The seeded run's noise, saved and fed back, reproduces the same latents bit for bit.
  fs::path a = dir_ / "a.npy", b = dir_ / "b.npy", noise = dir_ / "noise.npy";
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  at::Tensor n = at::randn({1, 3, 16, 16}, g, at::TensorOptions().dtype(at::kFloat));
  fewstep::write_file_atomic(noise, fewstep::encode_npy(n), true);
  ASSERT_EQ(run(gen("--save-latents " + quote(a))).code, 0);
  ASSERT_EQ(run(gen("--overwrite --seed 5 --init-noise " + quote(noise) + " --save-latents " + quote(b))).code, 0);
  EXPECT_TRUE(at::equal(fewstep::read_npy_float32(a), fewstep::read_npy_float32(b)));
}

TEST_F(Cli, BadModelFolder) { expect_bad(gen("", dir_ / "missing"), "model folder not found"); }

TEST_F(Cli, BadManifestField) {
  fs::path m = copy_model();
  std::ofstream(m / "model.json") << R"({"format_version": 1, "name": "x", "kind": "pixel"})";
  expect_bad(gen("", m), "'sample_size'");
}

TEST_F(Cli, BadManifestType) {
  fs::path m = copy_model();
  std::ifstream in(m / "model.json");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  in.close();
  s.replace(s.find("\"in_channels\": 3"), 16, "\"in_channels\": \"3\"");
  std::ofstream(m / "model.json") << s;
  expect_bad(gen("", m), "'in_channels': expected an integer");
}

TEST_F(Cli, CorruptTorchScript) {
  fs::path m = copy_model();
  std::ofstream(m / "unet.pt", std::ios::trunc) << "garbage";
  expect_bad(gen("", m), "not a loadable TorchScript file");
}

TEST_F(Cli, BadDefaultSamplerInManifest) {
  fs::path m = copy_model();
  std::ifstream in(m / "model.json");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  in.close();
  const size_t at = s.find("\"sampler\": \"ddim\"");
  ASSERT_NE(at, std::string::npos) << s;
  s.replace(at, 17, "\"sampler\": \"nope\"");
  std::ofstream(m / "model.json") << s;
  expect_bad(gen("", m), "model.json: field 'defaults.sampler': unknown sampler 'nope'");
}

TEST_F(Cli, UnknownSampler) { expect_bad(gen("--sampler nope"), "--sampler: unknown sampler 'nope' (valid: ddim"); }
TEST_F(Cli, StepsBelowOne) { expect_bad(gen("--steps 0"), "--steps"); }
TEST_F(Cli, StepsAboveTrainingTimesteps) { expect_bad(gen("--steps 100000"), "--steps: 100000 exceeds"); }

// Seeds are never clamped or reinterpreted: -1 means random, 0..2^64-1 are
// seeds, anything else is refused.
TEST_F(Cli, SeedOutsideTheRangeIsRefused) {
  for (const char* seed : {"18446744073709551616", "99999999999999999999", "-5", "1.5", "abc"}) {
    SCOPED_TRACE(seed);
    expect_bad(gen(std::string("--seed ") + seed), "--seed: '" + std::string(seed) + "'");
  }
}

TEST_F(Cli, LargestSeedIsKept) {
  ASSERT_EQ(run(gen("--seed 18446744073709551615")).code, 0);
  auto text = fewstep::read_png_text(dir_ / "out" / "img.png", "parameters");
  ASSERT_TRUE(text.has_value());
  EXPECT_NE(text->find("Seed: 18446744073709551615,"), std::string::npos) << *text;
}

// The parameters chunk records what the run used, under the names A1111's
// readers know: resolved sampler name, "Schedule type" for the sigma spacing.
TEST_F(Cli, ParametersRecordSamplerOptionsAndResolvedNames) {
  Result r =
      run(gen("--sampler DPMSolverMultistepScheduler --sampler-option sigma_spacing=karras "
              "--sampler-option solver_order=3 --timestep-spacing trailing"));
  ASSERT_EQ(r.code, 0) << r.output;
  auto text = fewstep::read_png_text(dir_ / "out" / "img.png", "parameters");
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text,
            "red apple\nSteps: 2, Sampler: dpmpp_2m, Schedule type: Karras, CFG scale: 3, Seed: 1, Size: 16x16, "
            "Model: tiny-mono, Timestep spacing: trailing, Sampler options: solver_order=3");
}

TEST_F(Cli, UnconditionalModelWarnsAndRecordsNoPrompt) {
  Result r = run(gen("--negative-prompt dog --cfg-scale 7", fs::path(FEWSTEP_TEST_MODELS) / "tiny-uncond"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: tiny-uncond is unconditional"), std::string::npos) << r.output;
  auto text = fewstep::read_png_text(dir_ / "out" / "img.png", "parameters");
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(text->rfind("\nSteps: 2, Sampler: ddim, CFG scale: 1, Seed: 1,", 0), 0u) << *text;
}
TEST_F(Cli, EmbeddedGuidanceSaysOnceThatCfgScaleSetsW) {
  const fs::path stats = dir_ / "stats.json";
  Result r = run(gen("-b 2 --cfg-scale 4 --negative-prompt blurry --stats-json " + quote(stats),
                     fs::path(FEWSTEP_TEST_MODELS) / "tiny-lcm"));
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string note = "note: tiny-lcm has embedded guidance (LCM): --cfg-scale sets w = 4";
  const size_t at = r.output.find(note);
  EXPECT_NE(at, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(note, at + 1), std::string::npos) << "said more than once:\n" << r.output;
  EXPECT_NE(r.output.find("warning: tiny-lcm has embedded guidance: --negative-prompt is ignored"), std::string::npos)
      << r.output;
  auto text = fewstep::read_png_text(dir_ / "out" / "img-1.png", "parameters");
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text,
            "red apple\nSteps: 2, Sampler: lcm, CFG scale: 4, Guidance: embedded, Seed: 1, Size: 16x16, "
            "Model: tiny-lcm");
  std::ifstream in(stats);
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"guidance\": \"embedded\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"unet_rows\": 4"), std::string::npos) << json;  // 2 images x 2 steps, one row each
}

TEST_F(Cli, NegativeCfg) { expect_bad(gen("--cfg-scale -1"), "--cfg-scale"); }
TEST_F(Cli, NanCfg) { expect_bad(gen("--cfg-scale nan"), "--cfg-scale"); }
TEST_F(Cli, WidthNotMultiple) { expect_bad(gen("--width 15"), "--width"); }
TEST_F(Cli, SizeOverMemoryEstimate) { expect_bad(gen("--width 400000 --height 400000"), "memory"); }

TEST_F(Cli, UnwritableOutput) {
  Result r = run("generate --model " + quote(model_) + " --steps 1 --out /nonexistent-fewstep/x.png");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("/nonexistent-fewstep/x.png"), std::string::npos) << r.output;
}

TEST_F(Cli, OutputMustBePng) {
  expect_bad(gen("--out " + quote(dir_ / "out" / "img.jpg")), "--out: fewstep writes PNG files");
  ASSERT_EQ(run(gen("--out " + quote(dir_ / "out" / "plain"))).code, 0);
  EXPECT_TRUE(fs::exists(dir_ / "out" / "plain.png"));
}

TEST_F(Cli, VersionFlag) {
  Result r = run("--version");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("fewstep 0.", 0), 0u) << r.output;
}

TEST_F(Cli, NpyWrongShape) {
  fs::path noise = dir_ / "noise.npy";
  fewstep::write_file_atomic(noise, fewstep::encode_npy(at::zeros({1, 3, 8, 8})), true);
  expect_bad(gen("--init-noise " + quote(noise)), "shape must be [1, 3, 16, 16]");
}

TEST_F(Cli, NpyWrongDtype) {
  fs::path noise = dir_ / "noise.npy";
  fewstep::write_file_atomic(noise, fewstep::encode_npy(at::zeros({1, 3, 16, 16}, at::kDouble)), true);
  expect_bad(gen("--init-noise " + quote(noise)), "expected float32");
}

TEST_F(Cli, SamplerOptionUnknownKey) { expect_bad(gen("--sampler-option bogus=1"), "bogus"); }
TEST_F(Cli, SamplerOptionUnparsable) { expect_bad(gen("--sampler-option eta=abc"), "eta"); }
TEST_F(Cli, SamplerOptionWithoutEquals) { expect_bad(gen("--sampler-option eta"), "key=value"); }

TEST_F(Cli, EmptyPromptIsValid) {
  Result r = run("generate --model " + quote(model_) + " --prompt '' --steps 1 --seed 3 --out " +
                 quote(dir_ / "out" / "e.png"));
  EXPECT_EQ(r.code, 0) << r.output;
}

TEST_F(Cli, PrintsTheSeedWhenRandom) {
  Result r = run("generate --model " + quote(model_) + " --steps 1 --out " + quote(dir_ / "out" / "r.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("(seed "), std::string::npos) << r.output;
}

}  // namespace
