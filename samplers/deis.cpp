// DEIS: Zhang & Chen 2023, "Fast Sampling of Diffusion Models with
// Exponential Integrator" (ICLR), the ρAB-DEIS multistep form (§4, Eq. 14-15;
// diffusers' DEISMultistepScheduler, algorithm_type deis, solver_type logrho).
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>

namespace fewstep {
namespace {

// ∫_0^h w^m e^w dw for m = 0, 1, 2 (closed forms).
std::array<double, 3> exp_moments(double h) {
  const double g0 = std::expm1(h);
  const double g1 = h * std::exp(h) - g0;
  const double g2 = h * h * std::exp(h) - 2.0 * g1;
  return {g0, g1, g2};
}

// The exponential integrator's weights. With ρ = σ/α and x̄ = x/α, the
// probability-flow ODE is dx̄/dρ = ε (Zhang & Chen Eq. 10), so
//   x̄_t = x̄_s + Σ_j c_j·ε_j,  c_j = ∫_{ρ_s}^{ρ_t} ℓ_j(log ρ) dρ,
// with ℓ_j the Lagrange basis in log ρ through the history's points
// (u[0] = log ρ_s, then older). Substituting u = log ρ_s + w:
// c_j = ρ_s·∫_0^h ℓ_j(w) e^w dw, h = log ρ_t - log ρ_s.
std::vector<double> deis_weights(const std::vector<double>& u, double u_t) {
  const size_t n = u.size();
  const double h = u_t - u[0];
  const auto g = exp_moments(h);
  std::vector<double> c(n);
  for (size_t j = 0; j < n; ++j) {
    // ℓ_j(w) = Π_{k≠j} (w - w_k)/(w_j - w_k), w_k = u_k - u_0, as a0 + a1·w + a2·w².
    double a[3] = {1.0, 0.0, 0.0};
    double denom = 1.0;
    for (size_t k = 0; k < n; ++k) {
      if (k == j) continue;
      const double wk = u[k] - u[0];
      denom *= (u[j] - u[0]) - wk;
      // multiply the polynomial by (w - wk)
      a[2] = a[1] - wk * a[2];
      a[1] = a[0] - wk * a[1];
      a[0] = -wk * a[0];
    }
    c[j] = std::exp(u[0]) * (a[0] * g[0] + a[1] * g[1] + a[2] * g[2]) / denom;
  }
  return c;
}

// diffusers' DEISMultistepScheduler order rule: min(solver_order, step + 1);
// with lower_order_final and fewer than 15 steps, 1 on the last step and at
// most 2 on the one before.
int deis_order(int64_t i, int64_t n, int solver_order, bool lower_order_final) {
  const bool few = lower_order_final && n < 15;
  if (few && i == n - 1) return 1;
  int order = std::min<int>(solver_order, static_cast<int>(i) + 1);
  if (few && i == n - 2) order = std::min(order, 2);
  return order;
}

at::Tensor run_deis(SamplerContext& ctx, at::Tensor x) {
  const Schedule& sc = ctx.schedule;
  const int64_t n = sc.steps();
  const int solver_order = static_cast<int>(ctx.options.integer("solver_order"));
  const bool lower_order_final = ctx.options.flag("lower_order_final");
  std::deque<at::Tensor> eps;  // ε at points i, i-1, ..., newest first
  std::deque<double> log_rho;  // their log(σ/α)
  for (int64_t i = 0; i < n; ++i) {
    const double a_s = detail::alpha_at(sc, i), s_s = detail::sigma_at(sc, i);
    const double a_t = detail::alpha_at(sc, i + 1), s_t = detail::sigma_at(sc, i + 1);
    const DenoiserOutput out = detail::denoise_at(ctx, x, i);
    // ε from the (clipped or thresholded) x0, as diffusers' convert_model_output.
    const at::Tensor e = (x - a_s * out.x0) / s_s;
    eps.push_front(e);
    log_rho.push_front(a_s > 0 ? std::log(s_s / a_s) : INFINITY);
    if (eps.size() > 3) {
      eps.pop_back();
      log_rho.pop_back();
    }
    // A point with α = 0 (zero terminal SNR, flow at t = 1) has ρ = ∞: no
    // polynomial in log ρ reaches it, so the history stops before it.
    int usable = 0;
    while (usable < int(log_rho.size()) && std::isfinite(log_rho[usable])) ++usable;
    const int order = std::min(deis_order(i, n, solver_order, lower_order_final), std::max(usable, 1));
    if (order == 1 || s_t <= 0) {
      // First order: DDIM, x_t = α_t·x0 + σ_t·ε (finite at α_s = 0 and at σ_t = 0).
      x = a_t * out.x0 + s_t * e;
    } else {
      const std::vector<double> u(log_rho.begin(), log_rho.begin() + order);
      const std::vector<double> c = deis_weights(u, std::log(s_t / a_t));
      at::Tensor xbar = x / a_s;
      for (int j = 0; j < order; ++j) xbar = xbar + c[j] * eps[j];
      x = a_t * xbar;
    }
    detail::report(ctx, i, x);
  }
  return x;
}

}  // namespace

SamplerInfo deis_sampler() {
  SamplerInfo info;
  info.name = "deis";
  info.aliases = {"DEISMultistepScheduler"};
  info.order = 3;
  info.stochastic = false;
  info.family = "dpm";
  info.options = {
      int_option("solver_order", 2, 1, 3, "multistep order in log(sigma/alpha)"),
      bool_option("lower_order_final", true, "lower orders on the last two steps when steps < 15"),
  };
  for (auto& o : detail::schedule_options_ending_at_sigma_min("DEISMultistepScheduler")) info.options.push_back(o);
  info.help = "DEIS (Zhang & Chen 2023), rhoAB multistep in log(sigma/alpha), orders 1-3 (default 2)";
  info.run = run_deis;
  return info;
}

}  // namespace fewstep
