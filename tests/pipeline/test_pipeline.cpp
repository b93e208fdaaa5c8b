// End-to-end pipeline runs on the tiny random packages.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>

#include "image/png.h"
#include "io/files.h"
#include "pipeline/tensor_io.h"
#include "pipeline/parameters.h"
#include "pipeline/pipeline.h"
#include "samplers/registry.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

std::string model(const std::string& name) { return (fs::path(FEWSTEP_TEST_MODELS) / name).string(); }

GenerateRequest request(const Pipeline& p, uint64_t seed) {
  GenerateRequest r;
  r.sampler = "ddim";
  r.steps = 4;
  r.cfg_scale = 3.0;
  r.seed = seed;
  r.width = p.manifest().defaults.width;
  r.height = p.manifest().defaults.height;
  return r;
}

TEST(Pipeline, SameSeedIsBitIdenticalAndSeedsDiffer) {
  auto p = Pipeline::load(model("tiny-blocks"), RuntimeOptions{});
  Conditioning c = p->encode("red apple", "");
  GenerateResult a = p->generate(c, request(*p, 7)), b = p->generate(c, request(*p, 7));
  EXPECT_TRUE(at::equal(a.latents, b.latents));
  EXPECT_EQ(a.image.pixels, b.image.pixels);
  auto png_a = encode_png(a.image, "parameters", "x"), png_b = encode_png(b.image, "parameters", "x");
  EXPECT_EQ(png_a, png_b);
  GenerateResult other = p->generate(c, request(*p, 8));
  EXPECT_FALSE(at::equal(a.latents, other.latents));
  EXPECT_EQ(a.image.width, 16);
  EXPECT_EQ(a.image.height, 16);
  EXPECT_TRUE(at::isfinite(a.latents).all().item<bool>());
}

TEST(Pipeline, CfgBatchesCondAndUncondInOneCall) {
  auto p = Pipeline::load(model("tiny-mono"), RuntimeOptions{});
  Conditioning c = p->encode("dog face", "blurry");
  GenerateRequest r = request(*p, 1);
  GenerateResult g = p->generate(c, r);
  // DDIM: one denoiser evaluation per step, each one UNet call on 2 rows.
  EXPECT_EQ(g.stats.nfe, 4);
  EXPECT_EQ(g.stats.unet_calls, 4);
  EXPECT_EQ(g.stats.unet_rows, 8);
  r.cfg_scale = 1.0;
  GenerateResult g1 = p->generate(c, r);
  EXPECT_EQ(g1.stats.unet_calls, 4);
  EXPECT_EQ(g1.stats.unet_rows, 4);  // uncond pass skipped
}

TEST(Pipeline, CfgScaleOneEqualsConditionalOnly) {
  // With scale 1 the guided output uncond + 1·(cond − uncond) equals cond, so the
  // result must not depend on the negative prompt.
  auto p = Pipeline::load(model("tiny-mono"), RuntimeOptions{});
  GenerateRequest r = request(*p, 3);
  r.cfg_scale = 1.0;
  GenerateResult a = p->generate(p->encode("cat", "x"), r), b = p->generate(p->encode("cat", "something else"), r);
  EXPECT_TRUE(at::equal(a.latents, b.latents));
  r.cfg_scale = 4.0;
  GenerateResult c = p->generate(p->encode("cat", "x"), r), d = p->generate(p->encode("cat", "something else"), r);
  EXPECT_FALSE(at::equal(c.latents, d.latents));
}

TEST(Pipeline, BlockwiseAndMonolithicGiveTheSameImage) {
  auto pb = Pipeline::load(model("tiny-blocks"), RuntimeOptions{});
  auto pm = Pipeline::load(model("tiny-mono"), RuntimeOptions{});
  GenerateResult a = pb->generate(pb->encode("red apple", ""), request(*pb, 5));
  GenerateResult b = pm->generate(pm->encode("red apple", ""), request(*pm, 5));
  EXPECT_LE((a.latents - b.latents).abs().max().item<float>(), 1e-4f);
}

TEST(Pipeline, LatentModelDecodesThroughVae) {
  auto p = Pipeline::load(model("tiny-latent"), RuntimeOptions{});
  GenerateRequest r = request(*p, 2);
  EXPECT_EQ(p->sample_shape(r.width, r.height), (std::vector<int64_t>{1, 4, 8, 8}));
  GenerateResult g = p->generate(p->encode("x", ""), r);
  EXPECT_EQ(g.latents.sizes(), (std::vector<int64_t>{1, 4, 8, 8}));
  EXPECT_EQ(g.image.width, 16);
  EXPECT_EQ(g.image.height, 16);
}

TEST(Pipeline, UnconditionalModelIgnoresPrompt) {
  auto p = Pipeline::load(model("tiny-uncond"), RuntimeOptions{});
  EXPECT_FALSE(p->conditional());
  GenerateResult g = p->generate(p->encode("ignored", ""), request(*p, 2));
  EXPECT_EQ(g.stats.unet_rows, 4);
}

TEST(Pipeline, InitNoiseReplacesTheSeed) {
  auto p = Pipeline::load(model("tiny-mono"), RuntimeOptions{});
  GenerateRequest r = request(*p, 11);
  Conditioning c = p->encode("a", "");
  GenerateResult seeded = p->generate(c, r);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  r.init_noise = at::randn({1, 3, 16, 16}, gen, at::TensorOptions().dtype(at::kFloat));
  r.seed = 999;  // ignored for the initial noise when init_noise is given (DDIM eta 0 draws no more)
  GenerateResult given = p->generate(c, r);
  EXPECT_TRUE(at::equal(seeded.latents, given.latents));
}

TEST(Pipeline, BadRequestsNameTheFlag) {
  auto p = Pipeline::load(model("tiny-mono"), RuntimeOptions{});
  auto msg = [&](GenerateRequest r) -> std::string {
    try {
      p->check(r);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  GenerateRequest r = request(*p, 0);
  EXPECT_EQ(msg(r), "");
  r.steps = 0;
  EXPECT_NE(msg(r).find("--steps"), std::string::npos);
  r = request(*p, 0);
  r.cfg_scale = -1;
  EXPECT_NE(msg(r).find("--cfg-scale"), std::string::npos);
  r.cfg_scale = std::nan("");
  EXPECT_NE(msg(r).find("--cfg-scale"), std::string::npos);
  r = request(*p, 0);
  r.width = 15;
  EXPECT_NE(msg(r).find("--width"), std::string::npos);
  r = request(*p, 0);
  r.height = 1 << 20;
  r.width = 1 << 20;
  EXPECT_NE(msg(r).find("memory"), std::string::npos);
  r = request(*p, 0);
  r.sampler = "no_such_sampler";
  EXPECT_NE(msg(r).find("ddim"), std::string::npos);  // lists the valid names
}

TEST(Pipeline, ParametersTextFollowsTheFrontEndFormat) {
  GenerateRequest r;
  r.sampler = "euler";
  r.steps = 8;
  r.cfg_scale = 5;
  r.seed = 42;
  r.width = 32;
  r.height = 32;
  EXPECT_EQ(format_parameters("red apple", "", r, "emoji"),
            "red apple\nSteps: 8, Sampler: euler, CFG scale: 5, Seed: 42, Size: 32x32, Model: emoji");
  EXPECT_EQ(format_parameters("a", "b", r, "m").substr(0, 21), "a\nNegative prompt: b\n");
  // Aliases resolve; file noise replaces the seed; Picard settings are kept.
  r.sampler = "EulerDiscreteScheduler";
  r.init_noise = at::zeros({1, 3, 4, 4});
  r.picard = PicardOptions{4, 0.01, 2};
  r.sampler_options = {{"sigma_spacing", "exponential"}};
  EXPECT_EQ(format_parameters("p", "", r, "m"),
            "p\nSteps: 8, Sampler: euler, Schedule type: Exponential, CFG scale: 5, Initial noise: from file, "
            "Size: 32x32, Model: m, Parallel: picard window=4 tol=0.01 max_rounds=2");
  // A stochastic sampler's step noise still comes from the seed: it is kept.
  r.picard.reset();
  r.sampler_options.clear();
  r.sampler = "euler_a";
  EXPECT_EQ(format_parameters("p", "", r, "m"),
            "p\nSteps: 8, Sampler: euler_ancestral, CFG scale: 5, Initial noise: from file, Seed: 42, "
            "Size: 32x32, Model: m");
  r.sampler_options = {{"eta", "0"}};  // deterministic: the seed plays no part
  EXPECT_EQ(format_parameters("p", "", r, "m").find("Seed"), std::string::npos);
  r.sampler = "ddim";
  r.sampler_options = {{"eta", "0.5"}};
  EXPECT_NE(format_parameters("p", "", r, "m").find("Initial noise: from file, Seed: 42"), std::string::npos);
}

// One predicate says whether a run draws step noise: the run's eta when the
// sampler has one, else whether the sampler is stochastic.
TEST(Pipeline, DrawsStepNoiseFollowsTheRunsOptions) {
  GenerateRequest r;
  r.sampler = "ddim";
  EXPECT_FALSE(draws_step_noise(r));
  r.sampler_options = {{"eta", "0.5"}};
  EXPECT_TRUE(draws_step_noise(r));
  r.sampler = "euler_a";
  r.sampler_options = {{"eta", "0"}};
  EXPECT_FALSE(draws_step_noise(r));
  r.sampler_options.clear();
  EXPECT_TRUE(draws_step_noise(r));
  r.sampler = "heun";
  EXPECT_FALSE(draws_step_noise(r));
}

}  // namespace

// The whole registry: image k of a batch (`generate -b N`: seeds s, s+1, ...
// on one loaded pipeline) equals the single run with seed s + k on a fresh
// one, so no sampler carries state from one image to the next and each image
// depends on its own seed only (step noise included).
TEST(Pipeline, ImageKOfABatchIsTheSingleRunWithSeedPlusK) {
  RuntimeOptions rt;
  rt.dtype = "fp64";
  rt.threads = 1;
  const std::string spec = "analytic:gmm:k=3,shape=2x4x4";
  auto batch = Pipeline::load(spec, rt);
  const Conditioning none = batch->encode("", "");
  for (const SamplerInfo& info : sampler_registry()) {
    GenerateRequest r = batch->request_with_defaults(info.name, 6, 1.0, std::nullopt, std::nullopt);
    std::vector<at::Tensor> images;
    for (uint64_t k = 0; k < 3; ++k) {
      r.seed = 40 + k;
      images.push_back(batch->generate(none, r).latents);
    }
    for (uint64_t k = 0; k < 3; ++k) {
      auto single = Pipeline::load(spec, rt);
      r.seed = 40 + k;
      EXPECT_TRUE(at::equal(single->generate(none, r).latents, images[k])) << info.name << " image " << k;
    }
    EXPECT_FALSE(at::equal(images[0], images[1])) << info.name;
  }
}
