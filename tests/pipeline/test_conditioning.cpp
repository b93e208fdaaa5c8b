// The SDXL, LCM and Turbo conditioning through the pipeline: the guidance
// embedding against its formula, the probe packages' UNets (whose output is
// what they were given) reading back time_ids, pooled embeddings, the
// context and timestep_cond, embedded guidance's one row per step, and the
// manifest's scheduler keys (set_alpha_to_one, unknown keys, pad ids).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "pipeline/conditioning.h"
#include "pipeline/model_source.h"
#include "pipeline/pipeline.h"
#include "samplers/schedule.h"
#include "tests/test_env.h"

namespace fs = std::filesystem;
using namespace fewstep;
using nlohmann::json;

namespace {

std::string model(const std::string& name) { return (fs::path(FEWSTEP_TEST_MODELS) / name).string(); }

/// A copy of package `name`'s manifest in a scratch folder, its file paths
/// made absolute, edited by `edit`. Returns the folder.
fs::path edited(const std::string& name, const std::function<void(json&)>& edit) {
  static int n = 0;
  const fs::path src = fs::path(FEWSTEP_TEST_MODELS) / name;
  json m = json::parse(std::ifstream(src / "model.json"));
  for (auto& [key, entry] : m.items())
    if (entry.is_object())
      for (const char* f : {"file", "vocab", "merges"})
        if (entry.contains(f)) entry[f] = (src / entry[f].get<std::string>()).lexically_normal().string();
  edit(m);
  const fs::path dir = test::scratch(name + "-" + std::to_string(n++));
  fs::create_directories(dir);
  std::ofstream(dir / "model.json") << m.dump(2);
  return dir;
}

GenerateRequest one_step(const Pipeline& p, double cfg_scale, int64_t width, int64_t height) {
  GenerateRequest r;
  r.sampler = "ddim";
  r.steps = 1;
  r.cfg_scale = cfg_scale;
  r.seed = 5;
  r.width = width;
  r.height = height;
  return r;
}

/// The probe's output row: t [1], timestep_cond [8], added_cond [14], context [L·D].
struct Probe {
  at::Tensor t, timestep_cond, pooled, time_ids, context;
};
Probe read_probe(const at::Tensor& latents, int64_t context_numel) {
  const at::Tensor row = latents.reshape({-1}).to(at::kFloat);
  return {row.narrow(0, 0, 1), row.narrow(0, 1, 8), row.narrow(0, 9, 8), row.narrow(0, 17, 6),
          row.narrow(0, 23, context_numel)};
}

double max_abs(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

TEST(GuidanceEmbedding, HandDerivedValues) {
  // dim 6: half 3, f = exp(-k·ln(10000)/2) = 1, 0.01, 1e-4. w = 0.001 gives
  // w' = 1, so the arguments are 1, 0.01 and 1e-4.
  const at::Tensor e = guidance_scale_embedding(at::tensor({0.0, 0.001}, at::kDouble), 6);
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(e.scalar_type(), at::kFloat);
  const std::vector<double> w0 = {0, 0, 0, 1, 1, 1};
  const std::vector<double> w1 = {std::sin(1.0), std::sin(0.01), std::sin(1e-4),
                                  std::cos(1.0), std::cos(0.01), std::cos(1e-4)};
  for (int64_t k = 0; k < 6; ++k) {
    EXPECT_EQ(e[0][k].item<float>(), w0[size_t(k)]) << k;
    EXPECT_NEAR(e[1][k].item<float>(), w1[size_t(k)], 2e-7) << k;
  }
  // An odd dim pads one zero column; dim 4: f = 1, 1e-4, w = 2.5 -> w' = 2500.
  const at::Tensor odd = guidance_scale_embedding(at::tensor({0.001}), 7);
  EXPECT_TRUE(at::equal(odd.narrow(1, 0, 6), e.narrow(0, 1, 1)));
  EXPECT_EQ(odd[0][6].item<float>(), 0.0f);
  const at::Tensor four = guidance_scale_embedding(at::tensor({2.5}), 4);
  const std::vector<double> w25 = {std::sin(2500.0), std::sin(0.25), std::cos(2500.0), std::cos(0.25)};
  for (int64_t k = 0; k < 4; ++k) EXPECT_NEAR(four[0][k].item<float>(), w25[size_t(k)], 1e-6) << k;
  EXPECT_THROW(guidance_scale_embedding(at::tensor({1.0}), 3), std::invalid_argument);
}

TEST(GuidanceEmbedding, MatchesTheFloat64FormulaToFloat32Rounding) {
  const int64_t dim = 256, half = 128;
  const std::vector<double> ws = {0.0, 0.5, 1.0, 2.5, 7.5, 14.0};
  const at::Tensor e = guidance_scale_embedding(at::tensor(ws, at::kDouble), dim);
  for (size_t i = 0; i < ws.size(); ++i)
    for (int64_t k = 0; k < half; ++k) {
      const double arg = ws[i] * 1000.0 * std::exp(-double(k) * std::log(10000.0) / double(half - 1));
      // float32 frequencies carry ~k·ln(10000)/(half-1)·2^-24 relative error; |arg| scales it.
      const double tol = 1e-6 + 4e-7 * (1.0 + double(k) * 0.08) * std::abs(arg);
      EXPECT_NEAR(e[int64_t(i)][k].item<float>(), std::sin(arg), tol) << "w " << ws[i] << " k " << k;
      EXPECT_NEAR(e[int64_t(i)][half + k].item<float>(), std::cos(arg), tol) << "w " << ws[i] << " k " << k;
    }
}

TEST(SdxlConditioning, TimeIdsPooledAndContextReachTheUnet) {
  // One DDIM step of a sample-predicting model returns the model's output:
  // the probe's record of what its time_embed and blocks received.
  LoadedModel ref = load_model_source(model("probe-sdxl"), true);  // the pipeline's modules, fused attention
  auto p = Pipeline::load(model("probe-sdxl"), RuntimeOptions{});
  const std::string prompt = "red apple";
  const Conditioning c = p->encode(prompt, "");
  GenerateResult r = p->generate(c, one_step(*p, 1.0, 32, 16));
  EXPECT_EQ(r.stats.unet_rows, 1);
  const Probe got = read_probe(r.latents, 16 * 48);

  // Expected, from the modules themselves: each tokenizer pads with its own id
  // (CLIP-L's end token 513; OpenCLIP's 0 for tokenizer_2).
  std::vector<int64_t> ids = ref.tokenizer->encode(prompt);
  std::vector<int64_t> ids1 = ids, ids2 = ids;
  ids1.resize(16, 513);
  ids2.resize(16, 0);
  EXPECT_EQ(ref.tokenizer->encode_padded(prompt, 16), ids1);
  EXPECT_EQ(ref.tokenizer_2->encode_padded(prompt, 16), ids2);
  at::NoGradGuard ng;
  const TextEmbedding e1 = ref.text_encoder->encode(at::tensor(ids1).view({1, 16}));
  const TextEmbedding e2 = ref.text_encoder_2->encode(at::tensor(ids2).view({1, 16}));
  EXPECT_EQ(got.t.item<float>(), 1.0f);  // leading spacing, 1 step, steps_offset 1
  EXPECT_EQ(got.timestep_cond.abs().max().item<float>(), 0.0f);
  EXPECT_LE(max_abs(got.pooled, e2.pooled.reshape({-1})), 1e-6);
  // time_ids: (orig_h, orig_w, crop_top, crop_left, target_h, target_w) for --width 32 --height 16.
  EXPECT_TRUE(at::equal(got.time_ids, at::tensor({16.0f, 32.0f, 0.0f, 0.0f, 16.0f, 32.0f})));
  EXPECT_LE(max_abs(got.context, at::cat({e1.hidden, e2.hidden}, -1).reshape({-1})), 1e-6);
  // The pad ids matter: padding tokenizer_2 with the end token changes the context.
  std::vector<int64_t> eos_padded = ids;
  eos_padded.resize(16, 513);
  EXPECT_GT(max_abs(ref.text_encoder_2->encode(at::tensor(eos_padded).view({1, 16})).hidden, e2.hidden), 1e-4);
}

TEST(SdxlConditioning, EmptyNegativePromptGivesZerosUnderCfg) {
  auto p = Pipeline::load(model("probe-sdxl"), RuntimeOptions{});
  const Conditioning c = p->encode("red apple", "");
  EXPECT_EQ(c.uncond.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(c.uncond_pooled.abs().max().item<float>(), 0.0f);
  const Probe cond = read_probe(p->generate(c, one_step(*p, 1.0, 32, 16)).latents, 16 * 48);
  // CFG 3: out = u + 3·(c - u) with u's pooled and context zero.
  GenerateResult g = p->generate(c, one_step(*p, 3.0, 32, 16));
  EXPECT_EQ(g.stats.unet_rows, 2);
  const Probe cfg = read_probe(g.latents, 16 * 48);
  EXPECT_LE(max_abs(cfg.pooled, 3.0 * cond.pooled), 1e-5);
  EXPECT_LE(max_abs(cfg.context, 3.0 * cond.context), 1e-5);
  EXPECT_TRUE(at::equal(cfg.time_ids, cond.time_ids));
  // A negative prompt is encoded, not zeroed.
  const Conditioning neg = p->encode("red apple", "blurry");
  EXPECT_GT(neg.uncond_pooled.abs().max().item<float>(), 0.0f);
  // Without force_zeros_for_empty_prompt the empty string is encoded.
  auto q = Pipeline::load(
      edited("probe-sdxl", [](json& m) { m["guidance"]["force_zeros_for_empty_prompt"] = false; }).string(),
      RuntimeOptions{});
  EXPECT_GT(q->encode("red apple", "").uncond.abs().max().item<float>(), 0.0f);
}

TEST(EmbeddedGuidance, TimestepCondIsTheEmbeddingOfWMinusOneAndOneRowPerStep) {
  auto p = Pipeline::load(model("probe-lcm"), RuntimeOptions{});
  const Conditioning c = p->encode("red apple", "ignored");
  EXPECT_FALSE(c.uncond.defined());  // no unconditional pass to feed
  const double w = 3.0;
  GenerateRequest r = one_step(*p, w, 32, 32);
  GenerateResult g = p->generate(c, r);
  EXPECT_EQ(g.stats.unet_calls, 1);
  EXPECT_EQ(g.stats.unet_rows, 1);
  const Probe got = read_probe(g.latents, 16 * 32);
  // w - 1 = 2, D = 8: half 4, f_k = 10000^(-k/3), args 2000·f_k.
  for (int64_t k = 0; k < 4; ++k) {
    const double arg = 2000.0 * std::pow(10000.0, -double(k) / 3.0);
    EXPECT_NEAR(got.timestep_cond[k].item<float>(), std::sin(arg), 1e-6 + 1e-6 * arg) << k;
    EXPECT_NEAR(got.timestep_cond[4 + k].item<float>(), std::cos(arg), 1e-6 + 1e-6 * arg) << k;
  }
  EXPECT_EQ(got.pooled.abs().max().item<float>(), 0.0f);  // no added_cond
  r.steps = 3;
  GenerateResult g3 = p->generate(c, r);
  EXPECT_EQ(g3.stats.unet_calls, 3);
  EXPECT_EQ(g3.stats.unet_rows, 3);
}

TEST(EmbeddedGuidance, WChangesTheImage) {
  auto p = Pipeline::load(model("tiny-lcm"), RuntimeOptions{});
  const Conditioning c = p->encode("red apple", "");
  GenerateRequest r = p->request_with_defaults("", std::nullopt, 2.0, std::nullopt, std::nullopt);
  EXPECT_EQ(r.sampler, "lcm");
  r.seed = 9;
  GenerateResult low = p->generate(c, r);
  EXPECT_EQ(low.stats.unet_rows, r.steps);
  r.cfg_scale = 8.0;
  GenerateResult high = p->generate(c, r);
  EXPECT_GT(max_abs(low.latents, high.latents), 1e-3);
  r.cfg_scale = 2.0;
  EXPECT_TRUE(at::equal(p->generate(c, r).latents, low.latents));
}

TEST(EmbeddedGuidance, UnetWithoutTimestepCondIsRefusedAtLoad) {
  for (const char* old : {"tiny-blocks", "tiny-mono"}) {
    const fs::path dir = edited("tiny-lcm", [&](json& m) {
      m["unet"]["file"] = (fs::path(FEWSTEP_TEST_MODELS) / old / "unet.pt").string();
      m["unet"]["form"] = std::string(old) == "tiny-mono" ? "monolithic" : "blocks";
    });
    try {
      Pipeline::load(dir.string(), RuntimeOptions{});
      FAIL() << old;
    } catch (const ModelError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("model.json: field 'guidance.mode': \"embedded\" needs a UNet that takes timestep_cond"),
                std::string::npos)
          << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}

TEST(GuidanceNone, TurboRunsWithoutCfgByDefault) {
  auto p = Pipeline::load(model("tiny-turbo"), RuntimeOptions{});
  GenerateRequest r = p->request_with_defaults("", std::nullopt, std::nullopt, std::nullopt, std::nullopt);
  EXPECT_EQ(r.cfg_scale, 1.0);
  const Conditioning c = p->encode("red apple", "");
  EXPECT_EQ(p->generate(c, r).stats.unet_rows, r.steps);  // one row per step
  r.cfg_scale = 2.0;                                      // asked for: CFG runs
  EXPECT_EQ(p->generate(c, r).stats.unet_rows, 2 * r.steps);
}

TEST(SchedulerKeys, SetAlphaToOneMovesDdimsFinalPoint) {
  // Probe (prediction "sample"): x0 = the probe image P. One DDIM step from
  // x_T = α_T·P + σ_T·ε̂ to the final point (α_f, σ_f) gives α_f·P + σ_f·ε̂,
  // ε̂ = (x_T - α_T·P)/σ_T. set_alpha_to_one true: (1, 0), false: (√ᾱ_0, √(1-ᾱ_0)).
  const fs::path on = edited("probe-lcm", [](json& m) { m["scheduler"]["set_alpha_to_one"] = true; });
  const fs::path off = edited("probe-lcm", [](json& m) { m["scheduler"]["set_alpha_to_one"] = false; });
  auto p_on = Pipeline::load(on.string(), RuntimeOptions{}), p_off = Pipeline::load(off.string(), RuntimeOptions{});
  const Conditioning c = p_on->encode("x", "");
  GenerateRequest r = one_step(*p_on, 3.0, 32, 32);
  const at::Tensor x0 = p_on->generate(c, r).latents.to(at::kDouble);
  const at::Tensor x_f = p_off->generate(c, r).latents.to(at::kDouble);
  const at::Tensor ac = training_alphas_cumprod(p_on->manifest().scheduler);
  const double ac0 = ac[0].item<double>(), acT = ac[1].item<double>();  // the one step runs at t = 1
  EXPECT_NEAR(ac0, 1.0 - 0.00085, 1e-15);
  const at::Tensor x_T = seeded_unit_noise({1, 3, 32, 32}, r.seed).to(at::kDouble);  // initial noise scale 1 (VP)
  const at::Tensor eps_hat = (x_T - std::sqrt(acT) * x0) / std::sqrt(1.0 - acT);
  const at::Tensor expected = std::sqrt(ac0) * x0 + std::sqrt(1.0 - ac0) * eps_hat;
  // float32 sampler arithmetic on values of this size
  EXPECT_LE(max_abs(x_f, expected), 1e-5 * (1.0 + expected.abs().max().item<double>()));
  EXPECT_GT(max_abs(x_f, x0), 1e-2);
}

TEST(SchedulerKeys, UnknownKeysWarnOnceNamingThem) {
  const fs::path dir = edited("tiny-blocks", [](json& m) {
    m["scheduler"]["_class_name"] = "PNDMScheduler";
    m["scheduler"]["skip_prk_steps"] = true;
    m["scheduler"]["solver_order"] = 3;
    m["scheduler"]["sigma_max"] = 14.6;
    m["scheduler"]["eta"] = 0.5;
  });
  LoadedModel loaded = load_model_source(dir.string(), false);
  std::vector<std::string> w = loaded.manifest.warnings;
  ASSERT_EQ(w.size(), 2u);
  std::sort(w.begin(), w.end());
  EXPECT_NE(w[0].find("field 'scheduler.eta': not a scheduler setting fewstep implements; ignored"), std::string::npos)
      << w[0];
  EXPECT_NE(w[1].find("field 'scheduler.sigma_max'"), std::string::npos) << w[1];
  testing::internal::CaptureStderr();
  auto p = Pipeline::load(dir.string(), RuntimeOptions{});
  const std::string printed = testing::internal::GetCapturedStderr();
  EXPECT_EQ(printed, "warning: " + p->warnings()[0] + "\nwarning: " + p->warnings()[1] + "\n");
}

}  // namespace
