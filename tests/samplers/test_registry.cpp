// The registry table, option checking, and whole-registry properties: no
// NaN or Inf for every sampler × spacing × 1..50 steps on analytic:gmm, and
// the same seed giving the same output.
#include "sampler_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>

namespace fewstep {
namespace {

TEST(Registry, NamesAliasesAndRows) {
  const std::vector<std::string> expected = {"ddim",       "ddpm",
                                             "euler",      "euler_ancestral",
                                             "heun",       "dpmpp_2m",
                                             "dpmpp_3m",   "dpmpp_2m_sde",
                                             "dpm_solver", "unipc",
                                             "lcm",        "pndm",
                                             "plms",       "ipndm",
                                             "ipndm_v",    "deis",
                                             "lms",        "dpmpp_2s_ancestral",
                                             "tcd",        "dpm_adaptive"};
  std::vector<std::string> names;
  for (const SamplerInfo& info : sampler_registry()) {
    names.push_back(info.name);
    EXPECT_FALSE(info.help.empty()) << info.name;
    EXPECT_TRUE(info.run) << info.name;
    EXPECT_TRUE(std::set<std::string>({"ddim", "euler", "dpm", "lcm"}).count(info.family)) << info.name;
    EXPECT_GE(info.order, 1);
    bool has_eta = false;
    for (const auto& o : info.options) has_eta |= o.name == "eta";
    if (info.stochastic) {
      EXPECT_TRUE(has_eta) << info.name << " is stochastic but takes no eta";
    }
    // Every default passes its own check.
    EXPECT_NO_THROW(resolve_sampler_options(info, {})) << info.name;
  }
  EXPECT_EQ(names, expected);
  const std::vector<std::pair<std::string, std::string>> aliases = {
      {"DDIMScheduler", "ddim"},
      {"DDPMScheduler", "ddpm"},
      {"EulerDiscreteScheduler", "euler"},
      {"EulerAncestralDiscreteScheduler", "euler_ancestral"},
      {"HeunDiscreteScheduler", "heun"},
      {"DPMSolverMultistepScheduler", "dpmpp_2m"},
      {"DPMSolverSinglestepScheduler", "dpm_solver"},
      {"UniPCMultistepScheduler", "unipc"},
      {"LCMScheduler", "lcm"},
      // stable-diffusion.cpp's and A1111's names
      {"euler_a", "euler_ancestral"},
      {"Euler a", "euler_ancestral"},
      {"dpm++2m", "dpmpp_2m"},
      {"DPM++ 2M", "dpmpp_2m"},
      {"DPM++ 2M SDE", "dpmpp_2m_sde"},
      {"Euler", "euler"},
      {"Heun", "heun"},
      {"DDIM", "ddim"},
      {"UniPC", "unipc"},
      {"LCM", "lcm"},
      // issue 15's samplers
      {"PNDMScheduler", "pndm"},
      {"PLMS", "plms"},
      {"DEISMultistepScheduler", "deis"},
      {"LMSDiscreteScheduler", "lms"},
      {"LMS", "lms"},
      {"TCDScheduler", "tcd"},
      {"dpm++2s_a", "dpmpp_2s_ancestral"},
      {"DPM++ 2S a", "dpmpp_2s_ancestral"},
      {"DPM adaptive", "dpm_adaptive"}};
  for (const auto& [alias, name] : aliases) EXPECT_EQ(find_sampler(alias).name, name);
  for (const std::string name : {"ddim", "euler", "dpmpp_2m", "tcd"}) EXPECT_TRUE(find_sampler(name).step_rule) << name;
  // The diffusers twin is the first alias that is a scheduler class; plms is
  // PNDMScheduler's skip_prk_steps form and answers to no class of its own.
  EXPECT_EQ(diffusers_twin(find_sampler("heun")).value_or(""), "HeunDiscreteScheduler");
  EXPECT_EQ(diffusers_twin(find_sampler("pndm")).value_or(""), "PNDMScheduler");
  EXPECT_FALSE(diffusers_twin(find_sampler("plms")));
  EXPECT_FALSE(diffusers_twin(find_sampler("dpmpp_2m_sde")));
  // The peer tests' class: the twin, else the class a variant configures.
  EXPECT_EQ(diffusers_peer(find_sampler("pndm")).value_or(""), "PNDMScheduler");
  EXPECT_EQ(diffusers_peer(find_sampler("plms")).value_or(""), "PNDMScheduler");
  EXPECT_EQ(diffusers_peer(find_sampler("dpmpp_3m")).value_or(""), "DPMSolverMultistepScheduler");
  EXPECT_EQ(diffusers_peer(find_sampler("dpmpp_2m_sde")).value_or(""), "DPMSolverMultistepScheduler");
  EXPECT_FALSE(diffusers_peer(find_sampler("ipndm")));
  // A variant's class is a registry sampler's twin.
  for (const SamplerInfo& info : sampler_registry())
    if (const auto peer = diffusers_peer(info); peer && !diffusers_twin(info)) {
      const bool twin_class = std::any_of(sampler_registry().begin(), sampler_registry().end(),
                                          [&](const SamplerInfo& o) { return diffusers_twin(o) == peer; });
      EXPECT_TRUE(twin_class) << info.name << ": " << *peer << " is no sampler's twin";
    }
  EXPECT_TRUE(find_sampler("dpm_adaptive").adaptive);
  // Where the twin ends at the smallest training sigma, so does the sampler by default.
  for (const std::string name : {"pndm", "plms", "deis", "tcd"})
    EXPECT_EQ(resolve_sampler_options(find_sampler(name), {}).choice("final_sigmas_type"), "sigma_min") << name;
}

// samplers/README.md's table is `fewstep samplers --markdown`, i.e.
// sampler_table_markdown(): the committed copy must match the registry.
TEST(Registry, ReadmeTableMatchesTheRegistry) {
  std::ifstream in(std::string(FEWSTEP_SOURCE_DIR) + "/samplers/README.md");
  ASSERT_TRUE(in) << "cannot read samplers/README.md";
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::string begin = "<!-- generated: fewstep samplers --markdown -->\n", end = "<!-- end generated -->";
  const auto a = text.find(begin), b = text.find(end);
  ASSERT_NE(a, std::string::npos) << "samplers/README.md lacks the marker " << begin;
  ASSERT_NE(b, std::string::npos) << "samplers/README.md lacks the marker " << end;
  EXPECT_EQ(text.substr(a + begin.size(), b - a - begin.size()), sampler_table_markdown())
      << "samplers/README.md's table is stale: regenerate it with `fewstep samplers --markdown`";
}

TEST(Registry, UnknownSamplerListsTheValidNames) {
  try {
    find_sampler("k_dpm_fast");
    FAIL();
  } catch (const SamplerError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown sampler 'k_dpm_fast'"), std::string::npos);
    EXPECT_NE(m.find("ddim, ddpm"), std::string::npos);
    EXPECT_NE(m.find("lcm"), std::string::npos);
  }
}

TEST(Registry, OptionsAreCheckedAndDefaulted) {
  const SamplerInfo& unipc = find_sampler("unipc");
  const ResolvedOptions r = resolve_sampler_options(unipc, {{"solver_order", "3"}, {"lower_order_final", "no"}});
  EXPECT_EQ(r.integer("solver_order"), 3);
  EXPECT_EQ(r.text().at("solver_order"), "3");
  EXPECT_FALSE(r.flag("lower_order_final"));
  EXPECT_EQ(r.text().at("lower_order_final"), "false");
  EXPECT_EQ(r.choice("solver_type"), "bh2");
  const ResolvedOptions d = resolve_sampler_options(unipc, {{"disable_corrector", "0, 2"}});
  EXPECT_EQ(d.text().at("disable_corrector"), "0,2");
  EXPECT_EQ(d.indices("disable_corrector").items, (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(d.indices("disable_corrector").contains(2));
  EXPECT_FALSE(d.indices("disable_corrector").contains(1));
  EXPECT_TRUE(resolve_sampler_options(unipc, {{"disable_corrector", "all"}}).indices("disable_corrector").contains(7));
  // The typed value is what was checked: an integer option is not readable as a real.
  EXPECT_THROW(r.real("solver_order"), std::logic_error);
  auto message = [](const SamplerInfo& info, const SamplerOptions& o) {
    try {
      resolve_sampler_options(info, o);
    } catch (const SamplerError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(message(unipc, {{"order", "2"}}).find("valid: solver_type, solver_order"), std::string::npos);
  EXPECT_NE(message(unipc, {{"solver_order", "4"}}).find("[1, 3]"), std::string::npos);
  EXPECT_NE(message(unipc, {{"solver_type", "bh3"}}).find("bh1|bh2"), std::string::npos);
  EXPECT_NE(message(unipc, {{"disable_corrector", "x"}}).find("disable_corrector"), std::string::npos);
  EXPECT_NE(message(find_sampler("ddim"), {{"eta", "1.5"}}).find("[0, 1]"), std::string::npos);
  EXPECT_NE(message(find_sampler("ddim"), {{"eta", "nan"}}).find("eta"), std::string::npos);
  EXPECT_NE(message(find_sampler("dpmpp_2m_sde"), {{"solver_order", "3"}}).find("[1, 2]"), std::string::npos);
  EXPECT_NE(message(find_sampler("euler"), {{"sigmas", "1,a"}}).find("sigmas"), std::string::npos);
  for (const auto& m : {message(unipc, {{"order", "2"}}), message(unipc, {{"solver_order", "4"}})})
    EXPECT_EQ(m.find('\n'), std::string::npos);
}

TEST(Registry, SolverOrderThreeMakesDpmpp2mTheThirdOrderSampler) {
  auto model = make_analytic_model("analytic:gmm:shape=2x4x4");
  const test::Run a = test::run_sampler(
      *model, {.sampler = "DPMSolverMultistepScheduler", .steps = 12, .options = {{"solver_order", "3"}}});
  const test::Run b = test::run_sampler(*model, {.sampler = "dpmpp_3m", .steps = 12});
  EXPECT_TRUE(at::equal(a.x, b.x));
}

// The NFE an N-step run costs, from each algorithm (SamplerInfo::nfe says
// the same in words); nullopt for an adaptive sampler.
std::optional<int64_t> expected_nfe(const SamplerInfo& info, const Schedule& s) {
  const int64_t n = s.steps();
  const bool final_zero = s.sigmas[n].item<double>() == 0.0;
  if (info.adaptive) return std::nullopt;
  if (info.name == "heun" || info.name == "dpmpp_2s_ancestral") return final_zero ? 2 * n - 1 : 2 * n;
  if (info.name == "plms") return n > 1 ? n + 1 : n;  // the repeated second timestep
  if (info.name == "pndm") {
    int64_t rk = 0;  // Runge–Kutta steps: the first three that end above sigma 0, 4 NFE each
    for (int64_t i = 0; i < std::min<int64_t>(3, n); ++i) rk += s.sigmas[i + 1].item<double>() > 0;
    return n + 3 * rk;
  }
  return n;
}

// Whole registry × spacings × steps 1..50 (and the sigma spacings at a few
// step counts) on analytic:gmm: finite output and the NFE each sampler costs.
// dpm_adaptive ignores the step count: it runs once per spacing.
TEST(Registry, NoNanOrInfAnywhere) {
  auto model = make_analytic_model("analytic:gmm:k=4,shape=2x4x4");
  int runs = 0;
  for (const SamplerInfo& info : sampler_registry()) {
    for (const std::string spacing : {"leading", "trailing", "linspace"}) {
      for (int64_t n = 1; n <= 50; ++n) {
        if (info.adaptive && n > 1) break;
        const test::RunArgs args{.sampler = info.name, .steps = n, .spacing = spacing, .dtype = at::kFloat, .batch = 1};
        ++runs;
        if (test::has_no_step_to_sigma_min(*model, args)) {  // pndm/plms, 1 step at t = 0
          EXPECT_THROW(test::run_sampler(*model, args), SamplerError) << info.name << " " << spacing;
          continue;
        }
        const test::Run r = test::run_sampler(*model, args);
        ASSERT_TRUE(at::isfinite(r.x).all().item<bool>()) << info.name << " " << spacing << " steps " << n;
        if (const auto nfe = expected_nfe(info, r.schedule)) {
          EXPECT_EQ(r.stats.nfe, *nfe) << info.name << " " << spacing << " " << n;
        } else {
          EXPECT_GE(r.stats.nfe, 4) << info.name;
        }
      }
    }
    for (const std::string sigmas : {"karras", "exponential", "simple"})
      for (int64_t n : {1, 2, 3, 7, 20}) {
        const test::Run r = test::run_sampler(
            *model, {.sampler = info.name, .steps = n, .options = {{"sigma_spacing", sigmas}}, .dtype = at::kFloat});
        ASSERT_TRUE(at::isfinite(r.x).all().item<bool>()) << info.name << " " << sigmas << " steps " << n;
      }
  }
  EXPECT_EQ(runs, (20 - 1) * 3 * 50 + 3);
}

// Rows of a batch do not interact: a deterministic sampler's row k equals
// the run of row k alone (dpm_adaptive controls each row's steps on its own;
// stochastic samplers draw batch-shaped step noise, see the pipeline test
// for their batches).
TEST(Registry, RowsOfABatchAreIndependent) {
  auto model = make_analytic_model("analytic:gmm:k=4,shape=2x4x4");
  for (const SamplerInfo& info : sampler_registry()) {
    if (draws_step_noise(info, resolve_sampler_options(info, {}))) continue;
    const test::Run batch = test::run_sampler(*model, {.sampler = info.name, .steps = 7, .batch = 3});
    for (int64_t k = 0; k < 3; ++k) {
      // test::unit_noise draws the batch from one generator: row k alone is that row.
      const SamplerInfo& si = find_sampler(info.name);
      const ResolvedOptions o = resolve_sampler_options(si, {});
      auto denoiser = make_model_denoiser(model->model_fn(), model->scheduler_config());
      const at::Tensor row = test::unit_noise(*model, 3, 1, at::kDouble).narrow(0, k, 1);
      const at::Tensor alone = sample(si, batch.schedule, *denoiser, row, o, 7, {}, {}, nullptr);
      EXPECT_LT((alone - batch.x.narrow(0, k, 1)).abs().max().item<double>(), 1e-12) << info.name << " row " << k;
    }
  }
}

// DDIM with eta 1 takes DDPM's posterior variance, and with an unclipped x0
// its mean is DDPM's posterior mean (Song et al. 2021 Eq. 16 and §4.1).
TEST(Registry, DdimWithEtaOneIsDdpm) {
  auto model = make_analytic_model("analytic:gmm:shape=2x4x4");
  const test::Run ddim = test::run_sampler(*model, {.sampler = "ddim", .steps = 15, .options = {{"eta", "1"}}});
  const test::Run ddpm = test::run_sampler(*model, {.sampler = "ddpm", .steps = 15});
  EXPECT_LT((ddim.x - ddpm.x).abs().max().item<double>(), 1e-10);
}

TEST(Registry, SameSeedSameOutput) {
  auto model = make_analytic_model("analytic:gmm:shape=2x4x4");
  for (const SamplerInfo& info : sampler_registry()) {
    SamplerOptions o;
    if (info.name == "ddim") o["eta"] = "0.7";  // make it stochastic too
    const test::RunArgs args{.sampler = info.name, .steps = 9, .options = o, .dtype = at::kFloat, .step_seed = 11};
    const test::Run a = test::run_sampler(*model, args), b = test::run_sampler(*model, args);
    EXPECT_TRUE(at::equal(a.x, b.x)) << info.name;
    test::RunArgs other = args;
    other.step_seed = 12;
    const test::Run c = test::run_sampler(*model, other);
    const bool stochastic = info.stochastic || info.name == "ddim";
    EXPECT_EQ(at::equal(a.x, c.x), !stochastic) << info.name << ": the step seed matters only to stochastic samplers";
  }
}

}  // namespace
}  // namespace fewstep
