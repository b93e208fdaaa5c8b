// Edge cases seen in the field's bug trackers (issue 3's list).
#include "sampler_test_util.h"

#include <gtest/gtest.h>

#include <cmath>

namespace fewstep {
namespace {

bool finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

// Every schedule invariant make_schedule promises.
void expect_valid(const Schedule& s, const SchedulerConfig& cfg, const std::string& what) {
  const int64_t n = s.steps();
  ASSERT_GE(n, 1) << what;
  EXPECT_TRUE(finite(s.timesteps) && finite(s.alphas) && finite(s.sigmas)) << what;
  const double t_max = is_flow(cfg) ? static_cast<double>(cfg.num_train_timesteps) : cfg.num_train_timesteps - 1.0;
  for (int64_t i = 0; i <= n; ++i) {
    EXPECT_GE(s.timesteps[i].item<double>(), 0.0) << what;
    EXPECT_LE(s.timesteps[i].item<double>(), t_max) << what;
    if (i > 0) {
      const double k0 = s.sigmas[i - 1].item<double>() * s.alphas[i].item<double>();
      const double k1 = s.sigmas[i].item<double>() * s.alphas[i - 1].item<double>();
      EXPECT_LT(k1, k0) << what << ": sigma/alpha not strictly decreasing at " << i;
    }
  }
}

TEST(EdgeCases, OneStepForEverySamplerSpacingAndFamily) {
  auto model = make_analytic_model("analytic:gmm:k=3,shape=2x4x4");
  auto flow = make_analytic_model("analytic:gmm:k=3,shape=2x4x4,prediction_type=flow,shift=3");
  for (const SamplerInfo& info : sampler_registry())
    for (AnalyticModel* m : {model.get(), flow.get()})
      for (const std::string spacing : {"leading", "trailing", "linspace"})
        for (const std::string sigmas : {"none", "karras", "exponential", "simple"}) {
          const std::string what = info.name + " " + spacing + " " + sigmas + (m == flow.get() ? " flow" : "");
          const test::RunArgs args{
              .sampler = info.name, .steps = 1, .options = {{"sigma_spacing", sigmas}}, .spacing = spacing};
          if (test::has_no_step_to_sigma_min(*m, args)) {
            // One leading/linspace step of pndm/plms sits at t = 0, their final
            // point ᾱ_0 (diffusers' set_alpha_to_one=False): refused.
            EXPECT_THROW(test::run_sampler(*m, args), SamplerError) << what;
            continue;
          }
          const test::Run r = test::run_sampler(*m, args);
          SchedulerConfig cfg = m->scheduler_config();
          expect_valid(r.schedule, cfg, what);
          EXPECT_TRUE(finite(r.x)) << what;
        }
}

TEST(EdgeCases, StepsEqualTrainingStepsWithStepsOffsetOne) {
  auto model = make_analytic_model("analytic:gaussian:shape=1x2x2");
  SchedulerConfig cfg = model->scheduler_config();
  cfg.steps_offset = 1;
  for (const std::string name : {"ddim", "euler"}) {
    // leading: (0..999)·1 + 1 reaches 1000 = T; clamped to 999, the repeat dropped.
    const test::Run r =
        test::run_sampler(*model, {.sampler = name, .steps = 1000, .spacing = "leading", .config = cfg});
    expect_valid(r.schedule, cfg, name);
    EXPECT_EQ(r.schedule.steps(), 999);
    EXPECT_EQ(r.schedule.timesteps[0].item<double>(), 999.0);
    EXPECT_TRUE(finite(r.x)) << name;
  }
  // DPM's leading ratio T // (N+1) is 0 here: refused with a one-line reason.
  EXPECT_THROW(test::run_sampler(*model, {.sampler = "unipc", .steps = 1000, .spacing = "leading", .config = cfg}),
               SamplerError);
  const test::Run u =
      test::run_sampler(*model, {.sampler = "unipc", .steps = 1000, .spacing = "linspace", .config = cfg});
  expect_valid(u.schedule, cfg, "unipc linspace 1000");
  EXPECT_TRUE(finite(u.x));
}

TEST(EdgeCases, ZeroTerminalSnrNeverGivesInf) {
  // Epsilon prediction at ᾱ = 0 would divide by α = 0: the terminal ᾱ is
  // clamped to 2^-24 (as diffusers' Euler and DPM-Solver do).
  auto eps = make_analytic_model("analytic:gaussian:shape=2x4x4,rescale_betas_zero_snr=true");
  auto v =
      make_analytic_model("analytic:gaussian:shape=2x4x4,rescale_betas_zero_snr=true,prediction_type=v_prediction");
  for (const SamplerInfo& info : sampler_registry()) {
    const test::Run r = test::run_sampler(*eps, {.sampler = info.name, .steps = 8, .spacing = "trailing"});
    EXPECT_EQ(r.schedule.timesteps[0].item<double>(), 999.0);
    EXPECT_NEAR(r.schedule.alphas[0].item<double>(), std::pow(2.0, -12), 1e-15) << info.name;
    EXPECT_TRUE(finite(r.x)) << info.name << " epsilon";
    const test::Run q = test::run_sampler(*v, {.sampler = info.name, .steps = 8, .spacing = "trailing"});
    EXPECT_TRUE(finite(q.x)) << info.name << " v_prediction";
    if (info.family == "ddim") {
      EXPECT_EQ(q.schedule.alphas[0].item<double>(), 0.0) << "v_prediction needs no clamp";
    }
  }
}

TEST(EdgeCases, KarrasAtHighStepCountsHasNoDuplicateTimesteps) {
  const SchedulerConfig cfg = make_analytic_model("analytic:gaussian")->scheduler_config();
  for (const std::string name : {"dpmpp_2m", "euler", "ddim"})
    for (int64_t n : {500, 999, 1000}) {
      const SamplerInfo& info = find_sampler(name);
      const Schedule s = make_schedule(cfg, info, n, resolve_sampler_options(info, {{"sigma_spacing", "karras"}}));
      EXPECT_EQ(s.steps(), n) << name;
      for (int64_t i = 1; i < n; ++i)
        ASSERT_LT(s.timesteps[i].item<double>(), s.timesteps[i - 1].item<double>()) << name << " n=" << n << " i=" << i;
    }
}

TEST(EdgeCases, FlowSchedulesStartExactlyAtSigmaOne) {
  auto model = make_analytic_model("analytic:gaussian:shape=2x4x4,prediction_type=flow,shift=3");
  for (const SamplerInfo& info : sampler_registry()) {
    for (const std::string sigmas : {"none", "karras", "exponential", "simple"}) {
      const test::Run r =
          test::run_sampler(*model, {.sampler = info.name, .steps = 12, .options = {{"sigma_spacing", sigmas}}});
      EXPECT_EQ(r.schedule.sigmas[0].item<double>(), 1.0) << info.name << " " << sigmas;
      EXPECT_EQ(r.schedule.alphas[0].item<double>(), 0.0);
      EXPECT_EQ(r.schedule.timesteps[0].item<double>(), 1000.0);
      EXPECT_TRUE(finite(r.x)) << info.name << " " << sigmas;
    }
  }
  // And the deterministic ODE samplers solve the flow ODE: their error
  // against the exact solution falls at least like first order.
  for (const std::string name : {"euler", "heun", "dpmpp_2m", "unipc", "ddim"}) {
    std::vector<double> err;
    for (int64_t n : {15, 60}) {
      const test::Run r =
          test::run_sampler(*model, {.sampler = name, .steps = n, .options = {{"final_sigmas_type", "sigma_min"}}});
      const at::Tensor exact = model->ode_solution(r.x_start, test::point(r.schedule, 0), test::point(r.schedule, n));
      err.push_back(test::rms(r.x - exact));
    }
    EXPECT_LT(err[1], 0.5 * err[0]) << name;
  }
}

TEST(EdgeCases, LogSpaceSchedulesNeverTakeLogOfZero) {
  for (const std::string spec : {"analytic:gaussian", "analytic:gaussian:prediction_type=flow",
                                 "analytic:gaussian:rescale_betas_zero_snr=true,prediction_type=v_prediction"}) {
    const SchedulerConfig cfg = make_analytic_model(spec)->scheduler_config();
    for (const SamplerInfo& info : sampler_registry())
      for (const std::string sigmas : {"karras", "exponential"})
        for (const std::string final_type : {"zero", "sigma_min"})
          for (int64_t n : {1, 2, 10, 50}) {
            const std::string what = spec + " " + info.name + " " + sigmas + " " + final_type + " " + std::to_string(n);
            const ResolvedOptions o =
                resolve_sampler_options(info, {{"sigma_spacing", sigmas}, {"final_sigmas_type", final_type}});
            if (n == 1 && final_type == "sigma_min" && info.family == "euler" && !is_flow(cfg)) {
              // Euler's 1-step linspace sits at t = 0, which is sigma_min itself: no step to take.
              EXPECT_THROW(make_schedule(cfg, info, n, o), SamplerError) << what;
              continue;
            }
            expect_valid(make_schedule(cfg, info, n, o), cfg, what);
          }
  }
}

TEST(EdgeCases, ThirdOrderSamplersAtThreeNMinusOneSteps) {
  auto model = make_analytic_model("analytic:gaussian:shape=2x4x4");
  const std::vector<std::pair<std::string, SamplerOptions>> third = {
      {"dpmpp_3m", {}}, {"dpm_solver", {{"solver_order", "3"}}}, {"unipc", {{"solver_order", "3"}}}};
  for (const auto& [name, o] : third)
    for (int64_t n : {2, 5, 8, 11, 14, 17}) {
      const test::Run r = test::run_sampler(*model, {.sampler = name, .steps = n, .options = o});
      const at::Tensor exact =
          model->ode_solution(r.x_start, test::point(r.schedule, 0), test::point(r.schedule, n - 1));
      ASSERT_TRUE(finite(r.x)) << name << " " << n;
      EXPECT_EQ(r.stats.nfe, n) << name;
      // Before the final jump, the third-order solve is closer to the exact
      // ODE solution than DDIM's first-order one.
      if (n >= 5) {
        auto before_last = [&](const std::string& s, const SamplerOptions& opts) {
          const SamplerInfo& info = find_sampler(s);
          const ResolvedOptions res = resolve_sampler_options(info, opts);
          const Schedule sc = make_schedule(model->scheduler_config(), info, n, res);
          auto den = make_model_denoiser(model->model_fn(), model->scheduler_config());
          at::Tensor kept;
          sample(
              info, sc, *den, test::unit_noise(*model, 2, 1, at::kDouble), res, 7,
              [&](int64_t i, int64_t, const at::Tensor& x) {
                if (i == n - 2) kept = x.clone();
              },
              {}, nullptr);
          return kept;
        };
        EXPECT_LT(test::rms(before_last(name, o) - exact), test::rms(before_last("ddim", {}) - exact))
            << name << " " << n;
      }
    }
}

TEST(EdgeCases, LowerOrderFinalBelowFifteenSteps) {
  auto model = make_analytic_model("analytic:gmm:shape=2x4x4");
  auto run = [&](int64_t n, SamplerOptions o) {
    o["final_sigmas_type"] = "sigma_min";  // so the last step's order is the option's business alone
    return test::run_sampler(*model, {.sampler = "dpmpp_2m", .steps = n, .options = o, .spacing = "trailing"}).x;
  };
  // Under 15 steps lower_order_final makes the last step first order, as euler_at_final does.
  EXPECT_TRUE(at::equal(run(10, {{"lower_order_final", "true"}}),
                        run(10, {{"lower_order_final", "false"}, {"euler_at_final", "true"}})));
  EXPECT_FALSE(at::equal(run(10, {{"lower_order_final", "true"}}), run(10, {{"lower_order_final", "false"}})));
  // From 15 steps on it changes nothing.
  EXPECT_TRUE(at::equal(run(20, {{"lower_order_final", "true"}}), run(20, {{"lower_order_final", "false"}})));
  // dpmpp_3m: the last two steps drop to orders 1 and 2 under 15 steps.
  auto run3 = [&](int64_t n, const std::string& lof) {
    return test::run_sampler(*model, {.sampler = "dpmpp_3m",
                                      .steps = n,
                                      .options = {{"final_sigmas_type", "sigma_min"}, {"lower_order_final", lof}}})
        .x;
  };
  EXPECT_FALSE(at::equal(run3(10, "true"), run3(10, "false")));
  EXPECT_TRUE(finite(run3(4, "true")) && finite(run3(4, "false")));
}

// A stochastic step must not reuse the initial noise. When both came from
// generators with the same seed, Euler ancestral's first step added
// sigma_up·z with z equal to the initial noise, so its noise summed in
// amplitude (sigma_down + sigma_up) instead of in quadrature. Euler ancestral
// with eta 1 on a VP path is DDPM's posterior step (Ho et al. 2020, Eq. 6-7):
//   x_s = sqrt(ab_s)·b/(1-ab_t)·x0 + sqrt(a)·(1-ab_s)/(1-ab_t)·x_t + sqrt(b·(1-ab_s)/(1-ab_t))·z,
// a = ab_t/ab_s, b = 1 - a; z must be the seed's second draw at step 0 and
// its third at step 1, for float32 and float64 sampler math alike.
TEST(EdgeCases, StepNoiseContinuesTheInitialNoiseStream) {
  struct ConstantData : Denoiser {  // x0 = 0.3 everywhere
    DenoiserOutput operator()(const at::Tensor& x, const NoiseLevels& l) override {
      ++nfe;
      const at::Tensor x0 = at::full_like(x, 0.3);
      const at::Tensor a = l.alpha.to(x.scalar_type()).view({-1, 1, 1, 1});
      const at::Tensor s = l.sigma.to(x.scalar_type()).view({-1, 1, 1, 1});
      return {x0, (x - a * x0) / s};
    }
  };
  auto model = make_analytic_model("analytic:gaussian:shape=3x4x4");
  const SamplerInfo& info = find_sampler("euler_ancestral");
  const ResolvedOptions res = resolve_sampler_options(info, {});
  const Schedule sc = make_schedule(model->scheduler_config(), info, 4, res);
  const uint64_t seed = 1234;
  const std::vector<int64_t> shape = {1, 3, 4, 4};
  for (const at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
    const at::Tensor first = at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
    ASSERT_TRUE(at::equal(first, seeded_unit_noise(shape, seed)));
    const auto opts = at::TensorOptions().dtype(dtype);
    const at::Tensor z0 = at::randn(shape, g, opts).to(at::kDouble), z1 = at::randn(shape, g, opts).to(at::kDouble);
    std::vector<at::Tensor> xs;
    ConstantData den;
    sample(
        info, sc, den, first.to(dtype), res, seed,
        [&](int64_t, int64_t, const at::Tensor& x) { xs.push_back(x.to(at::kDouble)); }, {}, nullptr);
    auto posterior = [&](int64_t i, const at::Tensor& x_t, const at::Tensor& z) {
      const double ab_t = std::pow(sc.alphas[i].item<double>(), 2), ab_s = std::pow(sc.alphas[i + 1].item<double>(), 2);
      const double a = ab_t / ab_s, b = 1 - a;
      const double sigma_up = std::sqrt(b * (1 - ab_s) / (1 - ab_t));
      EXPECT_GT(sigma_up, 0.1);  // the step noise is a large part of x_s
      return std::sqrt(ab_s) * b / (1 - ab_t) * 0.3 + std::sqrt(a) * (1 - ab_s) / (1 - ab_t) * x_t + sigma_up * z;
    };
    const at::Tensor x_start = first.to(at::kDouble) * initial_noise_scale(sc);
    const at::Tensor want0 = posterior(0, x_start, z0), want1 = posterior(1, xs.at(0), z1);
    const double tol = dtype == at::kFloat ? 1e-5 : 1e-12;
    EXPECT_LT((xs.at(0) - want0).abs().max().item<double>(), tol) << dtype;
    EXPECT_LT((xs.at(1) - want1).abs().max().item<double>(), tol) << dtype;
  }
}

// Runs `name` on analytic:gaussian with SD 1.x's PNDM configuration (leading
// spacing, steps_offset 1, final point at ᾱ_0) and records the model's
// timestep at every call.
struct RecordedRun {
  Schedule schedule;
  std::vector<double> calls;
  at::Tensor x;
};
RecordedRun recorded_run(const std::string& name, int64_t steps,
                         const std::string& spec = "analytic:gaussian:shape=2x4x4") {
  auto model = make_analytic_model(spec);
  SchedulerConfig cfg = model->scheduler_config();
  cfg.timestep_spacing = "leading";
  cfg.steps_offset = 1;
  const SamplerInfo& info = find_sampler(name);
  const ResolvedOptions o = resolve_sampler_options(info, {});
  RecordedRun r;
  r.schedule = make_schedule(cfg, info, steps, o);
  ModelFn inner = model->model_fn();
  ModelFn record = [&](const at::Tensor& x, const at::Tensor& t) {
    r.calls.push_back(t[0].item<double>());
    return inner(x, t);
  };
  auto denoiser = make_model_denoiser(record, cfg);
  r.x = sample(info, r.schedule, *denoiser, test::unit_noise(*model, 2, 3, at::kDouble), o, 5, {}, {}, nullptr);
  return r;
}

// diffusers #444: PNDMScheduler raised IndexError at 3, 9 and 27 steps (odd
// T//N with steps_offset 1 put a Runge–Kutta half step past T-1) and needs 4
// steps for its warm-up. Here every step count runs, the model only ever sees
// training timesteps, and the calls follow each method:
//  - plms: N+1 calls, t_0, t_1, t_1, t_2, ..., t_{N-1} (the second timestep
//    twice: diffusers' skip_prk_steps start);
//  - pndm: on each of the first min(3, N) steps t_i, t_{i+1} + ⌊g/2⌋ twice,
//    t_{i+1} (g = t_i - t_{i+1}; the final point at ᾱ_0 has timestep 0), then
//    t_i once per step.
TEST(EdgeCases, PndmAndPlmsAtTheStepCountsOfDiffusers444) {
  for (int64_t n : {1, 2, 3, 9, 27}) {
    const RecordedRun plms = recorded_run("plms", n);
    std::vector<double> want;
    for (int64_t i = 0; i < n; ++i) {
      want.push_back(plms.schedule.timesteps[i].item<double>());
      if (i == 1) want.push_back(want.back());
    }
    EXPECT_EQ(plms.calls, want) << "plms " << n;
    EXPECT_TRUE(finite(plms.x)) << n;

    const RecordedRun pndm = recorded_run("pndm", n);
    want.clear();
    const Schedule& s = pndm.schedule;
    for (int64_t i = 0; i < n; ++i) {
      const double t = s.timesteps[i].item<double>(), t_next = s.timesteps[i + 1].item<double>();
      want.push_back(t);
      if (i < 3) {
        const double half = t_next + std::floor((t - t_next) / 2);
        want.insert(want.end(), {half, half, t_next});
      }
    }
    EXPECT_EQ(pndm.calls, want) << "pndm " << n;
    EXPECT_TRUE(finite(pndm.x)) << n;
    for (double t : pndm.calls) {
      EXPECT_GE(t, 0.0);
      EXPECT_LE(t, 999.0);
    }
  }
}

// diffusers #9090: PNDMScheduler.set_timesteps(20) with SD 1.5's config gives
// 21 timesteps, 901 twice. That is the skip_prk_steps method (the model at
// the second timestep twice: the improved-Euler first step), so plms keeps it:
// pinned here call by call.
TEST(EdgeCases, PlmsRepeatsTheSecondTimestepAsDiffusers9090) {
  const RecordedRun r = recorded_run("plms", 20);
  std::vector<double> want = {951, 901};
  for (double t = 901; t >= 1; t -= 50) want.push_back(t);
  EXPECT_EQ(r.calls, want);
  // With repeat_first_timestep=false the first step is plain: 20 calls.
  auto model = make_analytic_model("analytic:gaussian:shape=2x4x4");
  SchedulerConfig cfg = model->scheduler_config();
  cfg.steps_offset = 1;
  const test::Run plain = test::run_sampler(*model, {.sampler = "plms",
                                                     .steps = 20,
                                                     .options = {{"repeat_first_timestep", "false"}},
                                                     .spacing = "leading",
                                                     .config = cfg});
  EXPECT_EQ(plain.stats.nfe, 20);
}

// diffusers #14816: PNDMScheduler converts v to ε after combining the model
// outputs, at the current point, so an ε- and a v-predicting form of one
// denoiser give different samples. Here each output is converted at its own
// point first: both forms give the same sample.
TEST(EdgeCases, PndmAndPlmsGiveTheSameSampleForEpsilonAndV) {
  for (const std::string name : {"pndm", "plms"}) {
    const RecordedRun eps = recorded_run(name, 12);
    const RecordedRun v = recorded_run(name, 12, "analytic:gaussian:shape=2x4x4,prediction_type=v_prediction");
    EXPECT_EQ(eps.calls, v.calls) << name;
    EXPECT_LT((eps.x - v.x).abs().max().item<double>(), 1e-10) << name;
    EXPECT_GT(eps.x.abs().max().item<double>(), 0.1) << name;
  }
}

}  // namespace
}  // namespace fewstep
