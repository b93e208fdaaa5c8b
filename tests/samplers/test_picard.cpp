// Picard-parallel sampling (ParaDiGMS, Shih et al. 2023) against the
// sequential sampler it wraps, on analytic:gmm (a nonlinear denoiser).
#include "sampler_test_util.h"

#include <gtest/gtest.h>

#include <cmath>

namespace fewstep {
namespace {

constexpr const char* kModel = "analytic:gmm:shape=3x8x8";

// The per-step tolerance accumulated over the steps as independent errors:
// tol·sqrt(Σ_j var_j), var_j the DDPM posterior variance that scales step j's
// test (Ho et al. 2020 Eq. 7 on the schedule's (α, σ)).
double accumulated_tolerance(const Schedule& sc, double tol) {
  double sum = 0;
  for (int64_t j = 0; j < sc.steps(); ++j) {
    const double a_t = sc.alphas[j].item<double>(), s_t = sc.sigmas[j].item<double>();
    const double a_s = sc.alphas[j + 1].item<double>(), s_s = sc.sigmas[j + 1].item<double>();
    const double r = a_t / a_s;
    sum += s_s * s_s * (s_t * s_t - r * r * s_s * s_s) / (s_t * s_t);
  }
  return tol * std::sqrt(sum);
}

// ddim, euler, dpmpp_2m at 25, 50, 100 steps (and ddpm, stochastic, at 50),
// window 8, tol 1e-3; one process for all (LibTorch's start-up is per process).
TEST(Picard, WithinToleranceOfSequentialWithFewerRounds) {
  auto model = make_analytic_model(kModel);
  const std::vector<std::pair<std::string, int64_t>> cases = {
      {"ddim", 25},   {"ddim", 50},     {"ddim", 100},    {"euler", 25},     {"euler", 50},
      {"euler", 100}, {"dpmpp_2m", 25}, {"dpmpp_2m", 50}, {"dpmpp_2m", 100}, {"ddpm", 50}};
  for (const auto& [sampler, steps] : cases) {
    test::RunArgs args{.sampler = sampler, .steps = steps, .dtype = at::kFloat};
    const test::Run seq = test::run_sampler(*model, args);
    args.picard = PicardOptions{.window = 8, .tol = 1e-3};
    const test::Run par = test::run_sampler(*model, args);
    const std::string what = sampler + " " + std::to_string(steps);
    EXPECT_LE(test::rms(par.x - seq.x), accumulated_tolerance(seq.schedule, 1e-3)) << what;
    EXPECT_LT(par.stats.picard_rounds, steps) << what;
    EXPECT_GE(par.stats.nfe, steps) << what;               // every step evaluated at least once
    EXPECT_EQ(par.stats.rows, 2 * par.stats.nfe) << what;  // batch 2 per evaluated point
    EXPECT_EQ(seq.stats.picard_rounds, 0) << what;
  }
}

// Window 1 is the sequential sampler, written as x_b + (rule(x_b) - x_b):
// equal up to float rounding, max |difference| <= 1e-6 of the sample's scale.
TEST(Picard, WindowOneEqualsSequential) {
  auto model = make_analytic_model(kModel);
  for (const SamplerInfo& info : sampler_registry()) {
    if (!info.step_rule) continue;
    test::RunArgs args{.sampler = info.name, .steps = 30, .dtype = at::kFloat};
    const test::Run seq = test::run_sampler(*model, args);
    args.picard = PicardOptions{.window = 1, .tol = 1e-3};
    const test::Run par = test::run_sampler(*model, args);
    const double scale = seq.x.abs().max().item<double>();
    EXPECT_LE((par.x - seq.x).abs().max().item<double>(), 1e-6 * scale) << info.name;
    EXPECT_EQ(par.stats.picard_rounds, 30) << info.name;
  }
}

TEST(Picard, BatchesTheWholeWindowInOneDenoiserCall) {
  auto model = make_analytic_model(kModel);
  const SamplerInfo& info = find_sampler("ddim");
  const ResolvedOptions o = resolve_sampler_options(info, {});
  const Schedule sc = make_schedule(model->scheduler_config(), info, 20, o);
  std::vector<int64_t> rows_per_call;
  ModelFn inner = model->model_fn();
  auto denoiser = make_model_denoiser(
      [&](const at::Tensor& x, const at::Tensor& t) {
        rows_per_call.push_back(x.size(0));
        return inner(x, t);
      },
      model->scheduler_config());
  SampleStats stats;
  sample(info, sc, *denoiser, test::unit_noise(*model, 3, 1, at::kFloat), o, 0, {},
         PicardOptions{.window = 6, .tol = 1e-3}, &stats);
  ASSERT_FALSE(rows_per_call.empty());
  EXPECT_EQ(rows_per_call.front(), 18);  // 6 points x batch 3 in the first call
  EXPECT_EQ(static_cast<int64_t>(rows_per_call.size()), stats.picard_rounds);
}

TEST(Picard, RefusesSamplersWithoutASingleStepRule) {
  auto model = make_analytic_model(kModel);
  EXPECT_THROW(test::run_sampler(*model, {.sampler = "heun", .steps = 5, .picard = PicardOptions{}}), SamplerError);
  EXPECT_THROW(
      test::run_sampler(
          *model, {.sampler = "dpmpp_2m", .steps = 5, .options = {{"solver_order", "3"}}, .picard = PicardOptions{}}),
      SamplerError);
}

TEST(Picard, MaxRoundsCapsTheWork) {
  auto model = make_analytic_model(kModel);
  const test::Run r = test::run_sampler(*model, {.sampler = "ddim",
                                                 .steps = 40,
                                                 .dtype = at::kFloat,
                                                 .picard = PicardOptions{.window = 4, .tol = 1e-3, .max_rounds = 3}});
  EXPECT_EQ(r.stats.picard_rounds, 3);
  EXPECT_FALSE(at::isnan(r.x).any().item<bool>());
}

}  // namespace
}  // namespace fewstep
