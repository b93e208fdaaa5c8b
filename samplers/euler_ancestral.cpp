// Euler ancestral: Euler steps of the probability-flow ODE down to σ_down,
// then fresh noise up to σ_next (k-diffusion's sample_euler_ancestral; the
// ancestral split follows DDPM's posterior, Ho et al. 2020 Eq. 7).
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <algorithm>
#include <cmath>

namespace fewstep {
namespace {

/// In z = x/α, k = σ/α, from k_t to k_s (q = k_s/k_t):
///   k_up = k_s·min(1, η·sqrt(1 - q²)),  k_down = sqrt(k_s² - k_up²),
///   z_s = z_t + (k_down - k_t)·d + k_up·z,  d = (z_t - x0)/k_t = (x_t - α_t·x0)/σ_t.
/// Since z_t - k_t·d = x0, this is x_s = α_s·x0 + σ_down·d + σ_up·z with
/// σ_{up,down} = α_s·k_{up,down}: no division by α, finite at α_t = 0.
at::Tensor euler_ancestral_step(const StepInput& in) {
  const Schedule& sc = in.schedule;
  const double a_t = detail::alpha_at(sc, in.i), s_t = detail::sigma_at(sc, in.i);
  const double a_s = detail::alpha_at(sc, in.i + 1), s_s = detail::sigma_at(sc, in.i + 1);
  const double eta = in.options.real("eta");
  const double q = (s_s * a_t) / (a_s * s_t);
  const double s_up = s_s * std::min(1.0, eta * std::sqrt(std::max(1.0 - q * q, 0.0)));
  const double s_down = std::sqrt(std::max(s_s * s_s - s_up * s_up, 0.0));
  at::Tensor x = a_s * in.out.x0 + (s_down / s_t) * (in.x - a_t * in.out.x0);
  if (s_up > 0) x = x + s_up * detail::noise_like(in.noise, in.i, in.x);
  return x;
}

}  // namespace

SamplerInfo euler_ancestral_sampler() {
  SamplerInfo info;
  info.name = "euler_ancestral";
  info.aliases = {"EulerAncestralDiscreteScheduler", "euler_a", "Euler a"};
  info.order = 1;
  info.stochastic = true;
  info.family = "euler";
  info.options = {eta_option(1.0)};
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help = "Euler ancestral: Euler step to sigma_down, then fresh noise to the next sigma";
  info.step_rule = euler_ancestral_step;
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_step_rule(ctx, x, euler_ancestral_step); };
  return info;
}

}  // namespace fewstep
