// Schedules against diffusers' documented formulas, recomputed with numpy by
// tools/oracles/sampler_schedules.py into data/schedules.json, and against
// the papers' formulas (Karras et al. 2022 Eq. 5; SD3's flow shift).
#include "samplers/registry.h"
#include "samplers/schedule.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <vector>

namespace fewstep {
namespace {

using nlohmann::json;

const json& reference() {
  static const json j = [] {
    std::ifstream in(std::string(FEWSTEP_SAMPLER_TEST_DATA) + "/schedules.json");
    return json::parse(in);
  }();
  return j;
}

SchedulerConfig sd15() {
  SchedulerConfig c;
  c.beta_schedule = "scaled_linear";
  c.beta_start = 0.00085;
  c.beta_end = 0.012;
  return c;
}

// A registry sampler of each diffusers family.
const SamplerInfo& sampler_of(const std::string& family) {
  if (family == "ddim") return find_sampler("ddim");
  if (family == "euler") return find_sampler("euler");
  return find_sampler("dpmpp_2m");
}

double k_of(const Schedule& s, int64_t i) { return s.sigmas[i].item<double>() / s.alphas[i].item<double>(); }

// log-SNR interpolation written out independently: λ(t) linear between
// integer timesteps, k = exp(-λ/2).
double k_log_snr(const at::Tensor& ac, double t) {
  const auto i = static_cast<int64_t>(std::floor(t));
  auto lam = [&](int64_t j) {
    const double a = ac[j].item<double>();
    return std::log(a / (1 - a));
  };
  if (t == static_cast<double>(i)) return std::exp(-0.5 * lam(i));
  return std::exp(-0.5 * (lam(i) + (t - static_cast<double>(i)) * (lam(i + 1) - lam(i))));
}

// diffusers' Euler family written out independently: k-sigma linear in t
// between integer timesteps (np.interp).
double k_linear(const at::Tensor& ac, double t) {
  const auto i = static_cast<int64_t>(std::floor(t));
  auto k = [&](int64_t j) {
    const double a = ac[j].item<double>();
    return std::sqrt((1 - a) / a);
  };
  if (t == static_cast<double>(i)) return k(i);
  return k(i) + (t - static_cast<double>(i)) * (k(i + 1) - k(i));
}

TEST(Schedule, AlphasCumprodMatchBetaScheduleFormulas) {
  const json& ref = reference();
  std::vector<int64_t> idx = ref["alphas_cumprod_index"].get<std::vector<int64_t>>();
  struct Case {
    std::string key, schedule;
    double start, end;
    bool zero_snr;
  };
  for (const Case& c :
       {Case{"linear", "linear", 0.0001, 0.02, false}, Case{"scaled_linear", "scaled_linear", 0.00085, 0.012, false},
        Case{"squaredcos_cap_v2", "squaredcos_cap_v2", 0, 0, false},
        Case{"scaled_linear_zero_snr", "scaled_linear", 0.00085, 0.012, true}}) {
    SchedulerConfig cfg;
    cfg.beta_schedule = c.schedule;
    cfg.beta_start = c.start;
    cfg.beta_end = c.end;
    cfg.rescale_betas_zero_snr = c.zero_snr;
    const at::Tensor ac = training_alphas_cumprod(cfg);
    const auto expected = ref["alphas_cumprod"][c.key].get<std::vector<double>>();
    for (size_t j = 0; j < idx.size(); ++j)
      EXPECT_NEAR(ac[idx[j]].item<double>(), expected[j], 1e-12 + 1e-10 * expected[j]) << c.key << " index " << idx[j];
  }
}

TEST(Schedule, ZeroSnrRescaleEndsAtZeroAndKeepsTheFirstValue) {
  SchedulerConfig cfg = sd15();
  const double first = training_alphas_cumprod(cfg)[0].item<double>();
  cfg.rescale_betas_zero_snr = true;
  const at::Tensor ac = training_alphas_cumprod(cfg);
  EXPECT_EQ(ac[-1].item<double>(), 0.0);
  EXPECT_NEAR(ac[0].item<double>(), first, 1e-15);
}

TEST(Schedule, SpacingsMatchDiffusersForEveryFamilyAndStepCount) {
  const SchedulerConfig base = sd15();
  const at::Tensor ac = training_alphas_cumprod(base);
  int checked = 0;
  for (const json& row : reference()["spacings"]) {
    const std::string family = row["family"], spacing = row["spacing"];
    const int64_t n = row["steps"], offset = row["steps_offset"];
    const auto expected = row["timesteps"].get<std::vector<double>>();
    SchedulerConfig cfg = base;
    cfg.timestep_spacing = spacing;
    cfg.steps_offset = offset;
    const SamplerInfo& info = sampler_of(family);
    const std::string what =
        family + "/" + spacing + " steps=" + std::to_string(n) + " offset=" + std::to_string(offset);
    if (spacing == "leading" && family == "dpm" && 1000 / (n + 1) == 0) {
      // Step ratio 0: the formula puts every step at one timestep. Refused.
      EXPECT_THROW(make_schedule(cfg, info, n, resolve_sampler_options(info, {})), SamplerError) << what;
      continue;
    }
    if (std::adjacent_find(expected.begin(), expected.end()) != expected.end()) {
      // Rounding repeats some timesteps (DPM linspace near T steps): the repeats are dropped.
      std::vector<double> unique = expected;
      unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
      const Schedule s = make_schedule(cfg, info, n, resolve_sampler_options(info, {}));
      ASSERT_EQ(s.steps(), static_cast<int64_t>(unique.size())) << what;
      for (size_t i = 0; i < unique.size(); ++i)
        EXPECT_EQ(s.timesteps[static_cast<int64_t>(i)].item<double>(), unique[i]);
      continue;
    }
    const Schedule s = make_schedule(cfg, info, n, resolve_sampler_options(info, {}));
    if (expected.front() > 999) {
      // leading + steps_offset at steps = T: diffusers would index past the table;
      // fewstep clamps to T-1 and drops the duplicate (tested in edge cases).
      EXPECT_EQ(s.steps(), n - 1) << what;
      continue;
    }
    ASSERT_EQ(s.steps(), n) << what;
    // EulerDiscreteScheduler builds linspace in float32: allow its rounding.
    const double tol = (family == "euler" && spacing == "linspace") ? 1e-4 : 1e-9;
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(s.timesteps[i].item<double>(), expected[i], tol) << what << " i=" << i;
    EXPECT_EQ(s.sigmas[n].item<double>(), 0.0) << what;
    EXPECT_EQ(s.alphas[n].item<double>(), 1.0) << what;
    if (row.contains("k_sigmas")) {
      const auto k = row["k_sigmas"].get<std::vector<double>>();
      for (int64_t i = 0; i < n; ++i) {
        const double t = s.timesteps[i].item<double>();
        // Integer timesteps: the training table exactly. Fractional ones
        // (Euler linspace) interpolate the k-sigma linearly in t, as diffusers
        // does; the reference's t is float32 (within 1e-4 of fewstep's, checked
        // above), which moves its k by at most |k(⌈t⌉) - k(⌊t⌋)|·1e-4.
        const double slope =
            t == std::floor(t) ? 0.0 : std::abs(k_linear(ac, std::ceil(t)) - k_linear(ac, std::floor(t)));
        EXPECT_NEAR(k_of(s, i), k[i], 1e-11 * k[i] + slope * 1e-4) << what << " i=" << i;
        const double same_t = family == "euler" ? k_linear(ac, t) : k_log_snr(ac, t);
        EXPECT_NEAR(k_of(s, i), same_t, 1e-11 * k[i]) << what << " i=" << i;
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 90);
}

TEST(Schedule, KarrasAndExponentialMatchTheirFormulas) {
  SchedulerConfig cfg = sd15();
  const SamplerInfo& info = find_sampler("dpmpp_2m");
  for (const std::string kind : {"karras", "exponential"}) {
    for (const json& row : reference()[kind]) {
      const int64_t n = row["steps"];
      const Schedule s = make_schedule(cfg, info, n, resolve_sampler_options(info, {{"sigma_spacing", kind}}));
      const auto k = row["k_sigmas"].get<std::vector<double>>();
      const auto t = row["timesteps"].get<std::vector<double>>();
      ASSERT_EQ(s.steps(), n);
      // diffusers' _sigma_to_t interpolates log(sigma) linearly (the log-SNR
      // map); DPMSolverMultistep then hands the model an int64 timestep:
      // rounded for Karras (SD 1.5 is not squaredcos_cap_v2), truncated for
      // exponential. Where two neighbours' integers repeat, fewstep keeps the
      // exact timestep (no duplicate timesteps).
      std::vector<double> r;
      for (double v : t) r.push_back(kind == "karras" ? std::nearbyint(v) : std::floor(v));
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_NEAR(k_of(s, i), k[i], 1e-11 * k[i]) << kind << " n=" << n << " i=" << i;
        const bool repeated = (i > 0 && r[i] == r[i - 1]) || (i + 1 < n && r[i] == r[i + 1]);
        EXPECT_NEAR(s.timesteps[i].item<double>(), repeated ? t[i] : r[i], 1e-8) << kind << " n=" << n << " i=" << i;
      }
      for (int64_t i = 1; i < n; ++i) EXPECT_LT(s.timesteps[i].item<double>(), s.timesteps[i - 1].item<double>());
    }
  }
}

TEST(Schedule, KarrasEquationFive) {
  // σ_i = (σ_max^{1/ρ} + i/(N-1)·(σ_min^{1/ρ} - σ_max^{1/ρ}))^ρ, ρ = 7.
  const auto s = karras_sigmas(0.03, 14.6, 5);
  for (int i = 0; i < 5; ++i) {
    const double e =
        std::pow(std::pow(14.6, 1 / 7.0) + i / 4.0 * (std::pow(0.03, 1 / 7.0) - std::pow(14.6, 1 / 7.0)), 7);
    EXPECT_NEAR(s[i], e, 1e-12 * e);
  }
}

TEST(Schedule, FlowSigmasStartAtOneAndFollowTheShift) {
  SchedulerConfig cfg;
  cfg.prediction_type = PredictionType::flow;
  const SamplerInfo& info = find_sampler("euler");
  for (const json& row : reference()["flow"]) {
    cfg.shift = row["shift"];
    const int64_t n = row["steps"];
    const Schedule s = make_schedule(cfg, info, n, resolve_sampler_options(info, {}));
    const auto e = row["sigmas"].get<std::vector<double>>();
    ASSERT_EQ(s.steps(), n);
    EXPECT_EQ(s.sigmas[0].item<double>(), 1.0);
    EXPECT_EQ(s.alphas[0].item<double>(), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(s.sigmas[i].item<double>(), e[i], 1e-12);
      EXPECT_NEAR(s.alphas[i].item<double>(), 1.0 - e[i], 1e-12);
      EXPECT_NEAR(s.timesteps[i].item<double>(), 1000.0 * e[i], 1e-9);
    }
    EXPECT_EQ(s.sigmas[n].item<double>(), 0.0);
  }
}

TEST(Schedule, LcmTimestepsFollowTheDistillationSchedule) {
  const SamplerInfo& info = find_sampler("lcm");
  for (const json& row : reference()["lcm"]) {
    const int64_t n = row["steps"];
    const Schedule s = make_schedule(sd15(), info, n, resolve_sampler_options(info, {}));
    const auto e = row["timesteps"].get<std::vector<double>>();
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(s.timesteps[i].item<double>(), e[i]) << "n=" << n;
  }
  EXPECT_THROW(make_schedule(sd15(), info, 51, resolve_sampler_options(info, {})), SamplerError);
}

TEST(Schedule, FinalSigmaMinIsTheFirstTrainingPoint) {
  SchedulerConfig cfg = sd15();
  cfg.timestep_spacing = "trailing";
  const double ac0 = training_alphas_cumprod(cfg)[0].item<double>();
  for (const std::string name : {"ddim", "euler", "dpmpp_2m"}) {
    const SamplerInfo& info = find_sampler(name);
    const Schedule s =
        make_schedule(cfg, info, 10, resolve_sampler_options(info, {{"final_sigmas_type", "sigma_min"}}));
    EXPECT_EQ(s.timesteps[10].item<double>(), 0.0);
    EXPECT_NEAR(s.alphas[10].item<double>(), std::sqrt(ac0), 1e-15);
    EXPECT_NEAR(s.sigmas[10].item<double>(), std::sqrt(1 - ac0), 1e-15);
  }
}

TEST(Schedule, CustomTimestepsAndSigmas) {
  const SchedulerConfig cfg = sd15();
  const at::Tensor ac = training_alphas_cumprod(cfg);
  const SamplerInfo& info = find_sampler("lcm");
  const Schedule s = make_schedule(cfg, info, 99, resolve_sampler_options(info, {{"timesteps", "999,759,499,259"}}));
  ASSERT_EQ(s.steps(), 4);
  for (int i = 0; i < 4; ++i) {
    const double t = std::vector<double>{999, 759, 499, 259}[i];
    EXPECT_EQ(s.timesteps[i].item<double>(), t);
    EXPECT_NEAR(s.alphas[i].item<double>(), std::sqrt(ac[static_cast<int64_t>(t)].item<double>()), 1e-15);
  }
  const SamplerInfo& euler = find_sampler("euler");
  const Schedule k = make_schedule(cfg, euler, 1, resolve_sampler_options(euler, {{"sigmas", "14.6,3,0.5,0"}}));
  ASSERT_EQ(k.steps(), 3);
  EXPECT_NEAR(k_of(k, 1), 3.0, 1e-12);
  EXPECT_NEAR(k_of(k, 2), 0.5, 1e-12);
  double crossing = -1.0;  // where the log-SNR table crosses k = 3
  for (int64_t t = 0; t < 999 && crossing < 0; ++t)
    if (k_log_snr(ac, static_cast<double>(t + 1)) >= 3.0) {
      const double l0 = -2 * std::log(k_log_snr(ac, static_cast<double>(t)));
      const double l1 = -2 * std::log(k_log_snr(ac, static_cast<double>(t + 1)));
      crossing = static_cast<double>(t) + (l0 + 2 * std::log(3.0)) / (l0 - l1);
    }
  EXPECT_NEAR(k.timesteps[1].item<double>(), crossing, 1e-9);
  EXPECT_THROW(make_schedule(cfg, euler, 1, resolve_sampler_options(euler, {{"timesteps", "500,700"}})), SamplerError);
  EXPECT_THROW(make_schedule(cfg, euler, 1, resolve_sampler_options(euler, {{"timesteps", "1200,700"}})), SamplerError);
  EXPECT_THROW(make_schedule(cfg, euler, 1, resolve_sampler_options(euler, {{"sigmas", "1,1"}})), SamplerError);
}

TEST(Schedule, LogSnrMapAndItsInverseAgree) {
  const at::Tensor ac = training_alphas_cumprod(sd15());
  for (double t : {0.0, 0.25, 1.5, 17.3, 500.0, 998.9, 999.0}) {
    const NoisePoint p = vp_point_at_timestep(ac, t);
    EXPECT_NEAR(p.alpha * p.alpha + p.sigma * p.sigma, 1.0, 1e-14);
    const NoisePoint q = vp_point_at_k_sigma(ac, p.sigma / p.alpha);
    EXPECT_NEAR(q.timestep, t, 1e-9) << t;
    EXPECT_NEAR(q.alpha, p.alpha, 1e-14);
  }
}

TEST(Schedule, BadConfigurationsAreOneLineErrors) {
  SchedulerConfig cfg = sd15();
  const SamplerInfo& info = find_sampler("ddim");
  const ResolvedOptions o = resolve_sampler_options(info, {});
  EXPECT_THROW(make_schedule(cfg, info, 0, o), SamplerError);
  EXPECT_THROW(make_schedule(cfg, info, 1001, o), SamplerError);
  cfg.timestep_spacing = "sideways";
  EXPECT_THROW(make_schedule(cfg, info, 10, o), SamplerError);
  cfg = sd15();
  cfg.beta_schedule = "cubic";
  try {
    make_schedule(cfg, info, 10, o);
    FAIL() << "no error";
  } catch (const SamplerError& e) {
    EXPECT_NE(std::string(e.what()).find("beta_schedule"), std::string::npos);
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  cfg = sd15();
  cfg.trained_betas = {0.1, 0.2};
  EXPECT_THROW(make_schedule(cfg, info, 10, o), SamplerError);
}

}  // namespace
}  // namespace fewstep

namespace fewstep {
namespace {

TEST(Schedule, ConfigKeysApplyUnlessAnOptionOverridesThem) {
  SchedulerConfig cfg = sd15();
  cfg.final_sigmas_type = "sigma_min";
  cfg.sigma_spacing = "karras";
  const SamplerInfo& info = find_sampler("dpmpp_2m");
  const Schedule from_config = make_schedule(cfg, info, 10, resolve_sampler_options(info, {}));
  // Karras's last sigma is the training sigma_min itself, which the final
  // point repeats: the two merge (diffusers takes a zero-length last step).
  ASSERT_EQ(from_config.steps(), 9);
  const double ac0 = training_alphas_cumprod(cfg)[0].item<double>();
  EXPECT_NEAR(k_of(from_config, 9), std::sqrt((1 - ac0) / ac0), 1e-12);
  const auto k = karras_sigmas(k_of(from_config, 9), k_of(from_config, 0), 10);
  EXPECT_NEAR(k_of(from_config, 5), k[5], 1e-12 * k[5]);
  const Schedule overridden = make_schedule(
      cfg, info, 10, resolve_sampler_options(info, {{"final_sigmas_type", "zero"}, {"sigma_spacing", "none"}}));
  EXPECT_EQ(overridden.sigmas[10].item<double>(), 0.0);
  EXPECT_EQ(overridden.timesteps[1].item<double>(), 899.0);  // linspace(0, 999, 11).round()[::-1][1]
}

TEST(Schedule, KarrasStartsAtTheLastTrainingTimestepForEveryBetaSchedule) {
  for (const std::string beta : {"linear", "scaled_linear", "squaredcos_cap_v2"}) {
    SchedulerConfig cfg;
    cfg.beta_schedule = beta;
    const SamplerInfo& info = find_sampler("unipc");
    const Schedule s = make_schedule(cfg, info, 12, resolve_sampler_options(info, {{"sigma_spacing", "karras"}}));
    EXPECT_NEAR(s.timesteps[0].item<double>(), 999.0, 1e-6) << beta;
  }
}

TEST(Schedule, SetAlphaToOneDecidesDdimsFinalPoint) {
  // SD 1.5's scheduler config: scaled_linear from 0.00085, set_alpha_to_one
  // false, steps_offset 1. ᾱ_0 = 1 - β_0 = 1 - 0.00085 (Ho et al. 2020 Eq. 4),
  // so DDIM's final point is (√0.99915, √0.00085); with true it is (1, 0).
  SchedulerConfig cfg = sd15();
  cfg.steps_offset = 1;
  const SamplerInfo& ddim = find_sampler("ddim");
  auto final_point = [&](const SchedulerConfig& c, const SamplerInfo& info, const SamplerOptions& given = {}) {
    const Schedule s = make_schedule(c, info, 4, resolve_sampler_options(info, given));
    EXPECT_EQ(s.steps(), 4);
    EXPECT_EQ(s.timesteps[3].item<double>(), 1.0);  // leading: 750, 500, 250, 0, plus steps_offset
    return std::pair{s.alphas[4].item<double>(), s.sigmas[4].item<double>()};
  };
  EXPECT_EQ(final_point(cfg, ddim), std::pair(1.0, 0.0));  // unset: diffusers' default true
  cfg.set_alpha_to_one = false;
  const auto [a, s] = final_point(cfg, ddim);
  EXPECT_NEAR(a, std::sqrt(0.99915), 1e-15);
  EXPECT_NEAR(s, std::sqrt(0.00085), 1e-15);
  cfg.set_alpha_to_one = true;
  cfg.final_sigmas_type = "sigma_min";  // set_alpha_to_one wins over the config's final_sigmas_type for DDIM
  EXPECT_EQ(final_point(cfg, ddim), std::pair(1.0, 0.0));
  // The option still wins, and diffusers' other schedulers ignore the key.
  cfg = sd15();
  cfg.steps_offset = 1;
  cfg.set_alpha_to_one = false;
  EXPECT_EQ(final_point(cfg, ddim, {{"final_sigmas_type", "zero"}}), std::pair(1.0, 0.0));
  EXPECT_EQ(final_point(cfg, find_sampler("ddpm")), std::pair(1.0, 0.0));
  cfg.timestep_spacing = "trailing";
  const Schedule euler =
      make_schedule(cfg, find_sampler("euler"), 4, resolve_sampler_options(find_sampler("euler"), {}));
  EXPECT_EQ(euler.sigmas[4].item<double>(), 0.0);
}

TEST(Schedule, SchedulerConfigKeysBecomeOptionDefaults) {
  // diffusers hands a scheduler class the config keys it knows: LCM's
  // original_inference_steps moves its timesteps (k = 1000 / 25 = 40 instead of 20).
  SchedulerConfig cfg = sd15();
  cfg.other_keys = {{"original_inference_steps", "25"}, {"solver_order", "3"}, {"solver_type", "bh1"}};
  const SamplerInfo& lcm = find_sampler("lcm");
  const ResolvedOptions lcm_opts = resolve_sampler_options(lcm, {}, cfg);
  EXPECT_EQ(lcm_opts.integer("original_inference_steps"), 25);
  const Schedule s = make_schedule(cfg, lcm, 1, lcm_opts);
  EXPECT_EQ(s.timesteps[0].item<double>(), 999.0);
  const Schedule s2 = make_schedule(cfg, lcm, 2, lcm_opts);
  // lcm_origin_timesteps = arange(1, 26)·40 - 1 = 39 .. 999; 2 steps take
  // indices 0 and 12 of the reversed list: 999 and 519.
  EXPECT_EQ(s2.timesteps[1].item<double>(), 519.0);
  // The user's option wins; a value this sampler refuses (UniPC's bh1 for
  // DPM-Solver++) leaves its default.
  EXPECT_EQ(resolve_sampler_options(lcm, {{"original_inference_steps", "50"}}, cfg).integer("original_inference_steps"),
            50);
  const SamplerInfo& dpm = find_sampler("dpmpp_2m");
  const ResolvedOptions dpm_opts = resolve_sampler_options(dpm, {}, cfg);
  EXPECT_EQ(dpm_opts.integer("solver_order"), 3);
  EXPECT_EQ(dpm_opts.choice("solver_type"), "midpoint");
  EXPECT_EQ(resolve_sampler_options(find_sampler("unipc"), {}, cfg).choice("solver_type"), "bh1");
  EXPECT_TRUE(is_scheduler_option_key("original_inference_steps"));
  EXPECT_FALSE(is_scheduler_option_key("eta"));  // fewstep's own option, not a diffusers config key
  EXPECT_FALSE(is_scheduler_option_key("skip_prk_steps"));
}

}  // namespace
}  // namespace fewstep
