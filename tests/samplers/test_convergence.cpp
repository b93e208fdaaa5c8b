// Convergence order on analytic:gaussian, whose probability-flow ODE solution
// is exact. Protocol (issue 3): final_sigmas_type=sigma_min and the exact
// solution at that same final sigma as reference (a final jump to sigma 0
// through the denoiser leaves a bias that does not shrink with steps: tested
// on its own below), 8/16/32/64 steps in float64, and the slope of
// log(error) against log(steps actually taken) within ±0.3 of the theory.
//
// Spacing. ddim, euler and heun use `linspace`, as the protocol says. The
// samplers that integrate in λ = log(α/σ) (DPM-Solver++, UniPC, singlestep
// DPM-Solver) use sigmas uniform in λ (sigma_spacing=exponential), the grid
// of their order theorems (Lu et al. 2022 §3.3): with linspace in t near
// t = 0, σ² ∝ t, so the last steps form a ladder λ_j ≈ -log(j·T/N) whose
// step sizes log((j+1)/j) do not shrink with N, and the multistep
// extrapolation over those fixed steps dominates the error. diffusers' own
// DPMSolverMultistepScheduler and UniPCMultistepScheduler show the same
// errors there (slopes 1.25 and 1.33 on this model at 8..64 steps).
//
// The model answers at each point's exact noise level (test::exact_level_model_fn):
// diffusers' definitions hand the model timesteps that are not exactly the
// sampler's sigma (Euler linspace: σ linear in t; DPM family with exponential
// sigmas: truncated integer timesteps), an O(1)-in-steps model error that would
// hide the integrator's order.
//
// Expected orders, with the multistep samplers' start-up steps:
//  - ddim, euler: 1 (first-order exponential integrator / Euler).
//  - heun: 2 (trapezoid; every step is 2nd order since the final sigma is not 0).
//  - dpmpp_2m: 2. Its first step is first order: local error O(h²), which adds
//    O(h²) to the global error, the same as the order-2 steps' sum, so the
//    order stays 2 (lower_order_final=false: otherwise the last step under 15
//    steps is first order too, still O(h²)).
//  - unipc bh2 order 2 with the corrector: 3. UniC-p raises UniP-p's order by
//    one (Zhao et al. 2023, Thm. 3.1). The start-up step is UniP-1 corrected
//    by UniC-1 (order 2: local error O(h³)), which keeps the global O(h³).
//    The last step is not corrected (no model call follows it): its local
//    error O(h³) is also within O(h³).
//  - dpm_solver order 2 (singlestep; groups of 2 intervals): 2.
//  - deis solver_order 3 (uniform λ = uniform log ρ, its Lagrange variable): 3.
//  - dpmpp_2s_ancestral with eta 0 (DPM-Solver++(2S), uniform λ): 2.
// The linear multistep samplers (plms, ipndm, lms) are measured after their
// warm-up below.
#include "sampler_test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <sstream>

namespace fewstep {
namespace {

struct Case {
  std::string sampler;
  SamplerOptions options;
  double order;
  bool uniform_lambda = false;
  std::vector<int64_t> steps = {8, 16, 32, 64};
};

// Least-squares slope of log(error) against log(steps), negated.
double fitted_order(const std::vector<int64_t>& steps, const std::vector<double>& err) {
  double mx = 0, my = 0;
  const auto n = static_cast<double>(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    mx += std::log(static_cast<double>(steps[i])) / n;
    my += std::log(err[i]) / n;
  }
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const double dx = std::log(static_cast<double>(steps[i])) - mx;
    sxy += dx * (std::log(err[i]) - my);
    sxx += dx * dx;
  }
  return -sxy / sxx;
}

// One process for all cases (each ctest process pays LibTorch's start-up).
TEST(ConvergenceOrder, SlopesMatchTheory) {
  const std::vector<Case> cases = {
      Case{"ddim", {}, 1.0},
      Case{"euler", {}, 1.0},
      Case{"heun", {}, 2.0},
      Case{"dpmpp_2m", {{"lower_order_final", "false"}}, 2.0, true},
      Case{"unipc", {{"solver_type", "bh2"}, {"solver_order", "2"}, {"lower_order_final", "false"}}, 3.0, true},
      Case{"dpm_solver", {{"solver_order", "2"}, {"lower_order_final", "false"}}, 2.0, true},
      Case{"deis", {{"solver_order", "3"}, {"lower_order_final", "false"}}, 3.0, true},
      Case{"dpmpp_2s_ancestral", {{"eta", "0"}}, 2.0, true}};
  auto model = make_analytic_model("analytic:gaussian");
  for (const Case& c : cases) {
    std::vector<double> err;
    std::vector<int64_t> taken;
    for (int64_t n : c.steps) {
      SamplerOptions o = c.options;
      o["final_sigmas_type"] = "sigma_min";
      if (c.uniform_lambda) o["sigma_spacing"] = "exponential";
      const test::Run r = test::run_sampler(
          *model, {.sampler = c.sampler, .steps = n, .options = o, .spacing = "linspace", .exact_levels = true});
      // linspace and exponential end at t = 0 itself: the sigma_min point
      // repeats it and is merged, so N-1 steps are taken.
      const int64_t steps = r.schedule.steps();
      ASSERT_GE(steps, n - 1);
      const at::Tensor exact =
          model->ode_solution(r.x_start, test::point(r.schedule, 0), test::point(r.schedule, steps));
      err.push_back(test::rms(r.x - exact));
      taken.push_back(steps);
    }
    const double order = fitted_order(taken, err);
    std::string detail;
    for (size_t i = 0; i < err.size(); ++i) detail += " " + std::to_string(taken[i]) + ":" + std::to_string(err[i]);
    EXPECT_NEAR(order, c.order, 0.3) << c.sampler << " errors" << detail;
  }
}

// The linear multistep samplers: plms and ipndm (Adams–Bashforth in
// ρ = σ/α with fixed weights, which assume equal steps: the grid has equal ρ
// steps, user-given sigmas from the highest training noise to the final point
// at sigma_min) and lms (variable-step weights; Karras sigmas, smooth in ρ).
// Their order is that of the multistep phase, "after warm-up": the final
// sample against the exact solution started from the sampler's own sample at
// point 4, after the three lower-order steps and the first 4th-order step
// (which still combines point 0's output).
// What the warm-up leaves, measured (errors at 512..4096 steps): plms's
// improved-Euler and Adams–Bashforth 2/3 start and ipndm's Euler start leave
// no visible error on equal ρ steps (whole-run orders 3.76 and 3.76, the same
// as after warm-up): their steps sit at the highest noise, where this ODE is
// nearly linear in ρ (dy/dρ changes like v/ρ³). On Karras sigmas the first
// steps are 60/N long there, and lms's Euler start (global O(N⁻²)) overtakes
// the 4th-order phase from about 128 steps: its whole-run error falls like
// N⁻³ (32..256 steps) and tends to N⁻².
TEST(ConvergenceOrder, LinearMultistepSamplersAfterWarmUp) {
  auto model = make_analytic_model("analytic:gaussian");
  const SchedulerConfig cfg = model->scheduler_config();
  const at::Tensor ac = training_alphas_cumprod(cfg);
  const double rho_max = std::sqrt((1 - ac[-1].item<double>()) / ac[-1].item<double>());
  const double rho_min = std::sqrt((1 - ac[0].item<double>()) / ac[0].item<double>());
  struct Expect {
    std::string sampler;
    bool equal_rho_steps;  // else Karras sigmas
    double order, tolerance;
    std::vector<int64_t> steps;
  };
  const std::vector<Expect> cases = {{"plms", true, 4.0, 0.3, {512, 1024, 2048, 4096}},
                                     {"ipndm", true, 4.0, 0.3, {512, 1024, 2048, 4096}},
                                     {"lms", false, 4.0, 0.5, {64, 128, 256, 512}}};  // "at least 3.5"
  for (const Expect& e : cases) {
    std::vector<double> whole, after;
    std::vector<int64_t> taken;
    for (int64_t n : e.steps) {
      SamplerOptions o = {{"final_sigmas_type", "sigma_min"}};
      if (e.equal_rho_steps) {
        // n equal steps in ρ: n points from rho_max, the last step ends at rho_min (the final point).
        std::string sigmas;
        for (int64_t i = 0; i < n; ++i)
          sigmas += (i ? "," : "") + std::to_string(rho_max - (rho_max - rho_min) * double(i) / double(n));
        o["sigmas"] = sigmas;
      } else {
        o["sigma_spacing"] = "karras";
      }
      const SamplerInfo& info = find_sampler(e.sampler);
      const ResolvedOptions resolved = resolve_sampler_options(info, o);
      const Schedule sc = make_schedule(cfg, info, n, resolved);
      const int64_t steps = sc.steps();
      // Both grids come from sigmas inverted with the model's own log-SNR map:
      // the model already answers at each point's exact level.
      auto denoiser = make_model_denoiser(model->model_fn(), cfg);
      const at::Tensor noise = test::unit_noise(*model, 2, 1, at::kDouble);
      at::Tensor x4;
      const StepCallback keep = [&](int64_t i, int64_t, const at::Tensor& x) {
        if (i == 3) x4 = x.clone();
      };
      const at::Tensor x = sample(info, sc, *denoiser, noise, resolved, 7, keep, {}, nullptr);
      const at::Tensor x_start = noise * initial_noise_scale(sc);
      whole.push_back(test::rms(x - model->ode_solution(x_start, test::point(sc, 0), test::point(sc, steps))));
      after.push_back(test::rms(x - model->ode_solution(x4, test::point(sc, 4), test::point(sc, steps))));
      taken.push_back(steps);
    }
    std::ostringstream detail;
    for (size_t i = 0; i < taken.size(); ++i) detail << " " << taken[i] << ": " << whole[i] << " / " << after[i];
    std::cout << e.sampler << " errors whole / after warm-up:" << detail.str() << "; orders "
              << fitted_order(taken, whole) << " / " << fitted_order(taken, after) << "\n";
    EXPECT_NEAR(fitted_order(taken, after), e.order, e.tolerance)
        << e.sampler << " errors whole / after warm-up:" << detail.str() << "; whole-run order "
        << fitted_order(taken, whole);
  }
}

// The final jump to sigma 0: the last step returns the denoiser's x0 at the
// last point, D(x_{N-1}). Against the exact ODE solution at sigma 0 this
// leaves, per dimension, the bias
//   (sqrt(v)/sqrt(α²v+σ²) - αv/(α²v+σ²))·(x - αμ)
// at the last point (α, σ), which does not shrink with steps: with sigmas
// uniform in λ the last point is σ_min for every N, so the bias is the same.
TEST(FinalJump, ReturnsTheDenoisedLastPointWithAFixedBias) {
  auto model = make_analytic_model("analytic:gaussian");
  std::vector<double> bias, err;
  for (int64_t n : {16, 64}) {
    const SamplerOptions o = {{"sigma_spacing", "exponential"}, {"lower_order_final", "false"}};
    const test::Run r = test::run_sampler(
        *model, {.sampler = "unipc", .steps = n, .options = o, .spacing = "linspace", .exact_levels = true});
    const int64_t steps = r.schedule.steps();
    ASSERT_EQ(r.schedule.sigmas[steps].item<double>(), 0.0);
    const NoisePoint first = test::point(r.schedule, 0), last = test::point(r.schedule, steps - 1);
    const at::Tensor x_last = model->ode_solution(r.x_start, first, last);
    const at::Tensor jump =
        model->posterior_mean(x_last, at::full({2}, last.alpha, at::kDouble), at::full({2}, last.sigma, at::kDouble));
    const at::Tensor exact = model->ode_solution(r.x_start, first, test::point(r.schedule, steps));
    bias.push_back(test::rms(jump - exact));
    err.push_back(test::rms(r.x - exact));
  }
  EXPECT_GT(bias[0], 1e-4);              // far above float64 rounding
  EXPECT_NEAR(bias[1], bias[0], 1e-12);  // the same last point, so the same bias
  // The sampler's error tends to that bias, not to 0: at 64 steps UniPC's
  // ODE error (about 1e-4 of this bias's 7e-4, see ConvergenceOrder.SlopesMatchTheory,
  // case unipc)
  // is all that separates them.
  EXPECT_NEAR(err[1], bias[1], 0.2 * bias[1]);
  EXPECT_GT(err[0], err[1]);
}

// Every sampler's last step to sigma 0 returns the denoiser's x0 at the last
// point, except: lcm (its consistency function there); pndm, plms and lms,
// whose last step combines earlier outputs as every other step does
// (diffusers' PNDMScheduler and LMSDiscreteScheduler, k-diffusion's lms);
// and dpm_adaptive, which reports no intermediate point (its own test
// checks its end).
TEST(FinalJump, EverySamplerEndsOnTheDenoisedLastPoint) {
  auto model = make_analytic_model("analytic:gaussian:shape=2x4x4");
  for (const SamplerInfo& info : sampler_registry()) {
    if (info.name == "lcm" || info.name == "pndm" || info.name == "plms" || info.name == "lms" || info.adaptive)
      continue;
    const SchedulerConfig cfg = model->scheduler_config();
    const ResolvedOptions resolved = resolve_sampler_options(info, {{"final_sigmas_type", "zero"}});
    const Schedule sc = make_schedule(cfg, info, 6, resolved);
    const int64_t n = sc.steps();
    auto denoiser = make_model_denoiser(model->model_fn(), cfg);
    at::Tensor before_last;
    const StepCallback keep = [&](int64_t i, int64_t, const at::Tensor& x) {
      if (i == n - 2) before_last = x.clone();
    };
    const at::Tensor noise = test::unit_noise(*model, 2, 3, at::kDouble);
    const at::Tensor x = sample(info, sc, *denoiser, noise, resolved, 5, keep, {}, nullptr);
    const NoisePoint last = test::point(sc, n - 1);
    const at::Tensor expected = model->posterior_mean(before_last, at::full({2}, last.alpha, at::kDouble),
                                                      at::full({2}, last.sigma, at::kDouble));
    EXPECT_LT((x - expected).abs().max().item<double>(), 1e-10) << info.name;
  }
}

}  // namespace
}  // namespace fewstep

namespace fewstep {
namespace {

// dpm_adaptive: its error against the exact solution falls as rtol falls,
// and it spends more NFE to get there (Lu et al. 2022 §4: the local error
// per step is held near rtol·|x|). atol is set far below, so rtol governs.
TEST(DpmAdaptive, ErrorFallsWithTheTolerance) {
  auto model = make_analytic_model("analytic:gaussian");
  std::vector<double> err;
  std::vector<int64_t> nfe;
  std::string detail;
  for (const std::string rtol : {"0.1", "0.01", "0.001", "0.0001"}) {
    const SamplerOptions o = {{"final_sigmas_type", "sigma_min"}, {"rtol", rtol}, {"atol", "1e-9"}};
    const test::Run r = test::run_sampler(*model, {.sampler = "dpm_adaptive", .steps = 1, .options = o});
    const at::Tensor exact =
        model->ode_solution(r.x_start, test::point(r.schedule, 0), test::point(r.schedule, r.schedule.steps()));
    err.push_back(test::rms(r.x - exact));
    nfe.push_back(r.stats.nfe);
    detail += " rtol " + rtol + ": NFE " + std::to_string(r.stats.nfe) + " error " + std::to_string(err.back());
  }
  for (size_t k = 1; k < err.size(); ++k) {
    EXPECT_LT(err[k], err[k - 1]) << detail;
    EXPECT_GT(nfe[k], nfe[k - 1]) << detail;
  }
  // With the final point at sigma 0 it ends at the training sigma_min and
  // returns the denoiser's x0 there: one more NFE.
  const test::Run z = test::run_sampler(
      *model, {.sampler = "dpm_adaptive", .steps = 1, .options = {{"rtol", "0.01"}, {"atol", "1e-9"}}});
  EXPECT_EQ(z.stats.nfe, nfe[1] + 1) << detail;
}

}  // namespace
}  // namespace fewstep
