// Singlestep DPM-Solver: Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for
// Diffusion Probabilistic Model Sampling in Around 10 Steps" (Algorithms 1
// and 2, noise prediction) and DPM-Solver++ (Lu et al. 2022b, Algorithm 1,
// data prediction), scheduled as diffusers' DPMSolverSinglestepScheduler.
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <cmath>

namespace fewstep {
namespace {

/// diffusers' order list: singlestep orders 1, 2, 3 repeat, each group of
/// order k spanning k schedule intervals whose inner points are where the
/// extra model evaluations happen (one NFE per schedule point).
std::vector<int> order_list(int64_t steps, int order, bool lower_order_final, bool final_zero) {
  if (!lower_order_final && (steps % order != 0 || final_zero)) lower_order_final = true;
  std::vector<int> o;
  auto repeat = [&](std::initializer_list<int> block, int64_t times) {
    for (int64_t i = 0; i < times; ++i) o.insert(o.end(), block);
  };
  if (order == 3) {
    if (!lower_order_final)
      repeat({1, 2, 3}, steps / 3);
    else if (steps % 3 == 0) {
      repeat({1, 2, 3}, steps / 3 - 1);
      o.insert(o.end(), {1, 2, 1});
    } else if (steps % 3 == 1) {
      repeat({1, 2, 3}, steps / 3);
      o.push_back(1);
    } else {
      repeat({1, 2, 3}, steps / 3);
      o.insert(o.end(), {1, 2});
    }
  } else if (order == 2) {
    if (!lower_order_final)
      repeat({1, 2}, steps / 2);
    else if (steps % 2 == 0) {
      repeat({1, 2}, steps / 2 - 1);
      o.insert(o.end(), {1, 1});
    } else {
      repeat({1, 2}, steps / 2);
      o.push_back(1);
    }
  } else {
    repeat({1}, steps);
  }
  if (final_zero) o.back() = 1;
  return o;
}

struct Settings {
  bool data_prediction, heun;
};

/// The order-k singlestep update from point b = i+1-k to point i+1, using
/// the model outputs m[0..k-1] at points b..i (data or noise predictions).
/// Data prediction (DPM-Solver++): x_t = (σ_t/σ_b)·x_b + α_t·(1-e^{-h})·D0 + ...
/// Noise prediction (DPM-Solver):   x_t = (α_t/α_b)·x_b - σ_t·(e^{h}-1)·D0 + ...
/// with σ_t·e^{h} written as α_t·σ_b/α_b so that σ_t = 0 stays finite.
at::Tensor singlestep_update(const Schedule& sc, int64_t i, int k, const at::Tensor& x_b,
                             const std::vector<at::Tensor>& m, const Settings& s) {
  const int64_t b = i + 1 - k;
  const double a_t = detail::alpha_at(sc, i + 1), s_t = detail::sigma_at(sc, i + 1);
  const double a_b = detail::alpha_at(sc, b), s_b = detail::sigma_at(sc, b);
  const double lam_b = detail::lambda_at(sc, b);
  const double h = detail::lambda_at(sc, i + 1) - lam_b;
  // D0 and the divided differences in λ (Lu et al. 2022, Alg. 1-2; r = h_j/h).
  at::Tensor d0 = m[0], d1, d1_last, d2;
  if (k == 2) {
    const double r0 = (detail::lambda_at(sc, b + 1) - lam_b) / h;
    d1 = (m[1] - m[0]) / r0;
  } else if (k == 3) {
    const double r1 = (detail::lambda_at(sc, b + 1) - lam_b) / h;  // inner point 1
    const double r0 = (detail::lambda_at(sc, b + 2) - lam_b) / h;  // inner point 2
    const at::Tensor d1_0 = (m[1] - m[0]) / r1, d1_1 = (m[2] - m[0]) / r0;
    d1 = (r0 * d1_0 - r1 * d1_1) / (r0 - r1);
    d2 = 2.0 * (d1_1 - d1_0) / (r0 - r1);
    d1_last = d1_1;
  }
  if (s.data_prediction) {
    const double em1 = std::expm1(-h);  // e^{-h} - 1
    at::Tensor x = (s_t > 0 ? s_t / s_b : 0.0) * x_b - (a_t * em1) * d0;
    if (k == 2) x = x + (s.heun ? a_t * (em1 / h + 1.0) : -0.5 * a_t * em1) * d1;
    if (k == 3 && !s.heun) x = x + (a_t * (em1 / h + 1.0)) * d1_last;
    if (k == 3 && s.heun) x = x + (a_t * (em1 / h + 1.0)) * d1 - (a_t * ((em1 + h) / (h * h) - 0.5)) * d2;
    return x;
  }
  const double ep1 = a_t * s_b / a_b - s_t;  // σ_t·(e^{h} - 1)
  at::Tensor x = (a_t / a_b) * x_b - ep1 * d0;
  if (k >= 2 && s_t > 0) {
    const double eh = std::expm1(h);  // e^{h} - 1
    if (k == 2) x = x - (s.heun ? s_t * (eh / h - 1.0) : 0.5 * ep1) * d1;
    if (k == 3 && !s.heun) x = x - (s_t * (eh / h - 1.0)) * d1_last;
    if (k == 3 && s.heun) x = x - (s_t * (eh / h - 1.0)) * d1 - (s_t * ((eh - h) / (h * h) - 0.5)) * d2;
  }
  return x;
}

at::Tensor run_dpm_solver(SamplerContext& ctx, at::Tensor x) {
  const Schedule& sc = ctx.schedule;
  const int64_t n = sc.steps();
  const Settings s{ctx.options.choice("algorithm_type") == "dpmsolver++", ctx.options.choice("solver_type") == "heun"};
  const std::vector<int> orders = order_list(n, static_cast<int>(ctx.options.integer("solver_order")),
                                             ctx.options.flag("lower_order_final"), detail::sigma_at(sc, n) <= 0);
  at::Tensor x_start = x;  // the sample at the current group's first point
  std::vector<at::Tensor> m;
  for (int64_t i = 0; i < n; ++i) {
    int k = orders[static_cast<size_t>(i)];
    // A group starting at α = 0 (λ = -∞) has no finite higher-order terms:
    // restart the group here with order 1.
    if (k > 1 && !std::isfinite(detail::lambda_at(sc, i + 1 - k))) k = 1;
    if (k == 1) {
      x_start = x;
      m.clear();
    }
    const DenoiserOutput out = detail::denoise_at(ctx, x, i);
    m.push_back(s.data_prediction ? out.x0 : out.eps);
    if (!s.data_prediction && detail::alpha_at(sc, i) <= 0)
      x = singlestep_update(sc, i, 1, x_start, {out.x0}, Settings{true, s.heun});  // noise form divides by α
    else
      x = singlestep_update(sc, i, k, x_start, m, s);
    detail::report(ctx, i, x);
  }
  return x;
}

}  // namespace

SamplerInfo dpm_solver_sampler() {
  SamplerInfo info;
  info.name = "dpm_solver";
  info.aliases = {"DPMSolverSinglestepScheduler"};
  info.order = 2;
  info.stochastic = false;
  info.family = "dpm";
  info.options = {
      int_option("solver_order", 2, 1, 3, "singlestep order"),
      choice_option("algorithm_type", "dpmsolver++", {"dpmsolver++", "dpmsolver"},
                    "data prediction (DPM-Solver++) or noise prediction (DPM-Solver)"),
      choice_option("solver_type", "midpoint", {"midpoint", "heun"}, "higher-order update form"),
      bool_option("lower_order_final", true, "lower orders at the end so the groups fit the steps"),
  };
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help = "singlestep DPM-Solver orders 1-3 (Lu et al. 2022), noise or data prediction";
  info.run = run_dpm_solver;
  return info;
}

}  // namespace fewstep
