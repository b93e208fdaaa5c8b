// Euler: Karras et al. 2022, "Elucidating the Design Space of
// Diffusion-Based Generative Models", Algorithm 1 without the Heun correction.
#include "samplers/common.h"
#include "samplers/sampler_list.h"

namespace fewstep {
namespace {

/// One Euler step of the probability-flow ODE dz/dk = (z - x0)/k in z = x/α,
/// k = σ/α (Karras et al. 2022 Eq. 4 with s(t) = 1, σ(t) = t):
///   z_s = z_t + (k_s - k_t)·(z_t - x0)/k_t,   x_s = α_s·z_s,
/// written without dividing by α so that α_t = 0 (flow at t = 1, zero SNR)
/// stays finite: x_s = (σ_s/σ_t)·x_t + (α_s - σ_s·α_t/σ_t)·x0. This equals DDIM
/// with eta 0 when x0 is not clipped, and flow-matching Euler on flow paths.
at::Tensor euler_step(const StepInput& in) {
  const Schedule& sc = in.schedule;
  const double a_t = detail::alpha_at(sc, in.i), s_t = detail::sigma_at(sc, in.i);
  const double a_s = detail::alpha_at(sc, in.i + 1), s_s = detail::sigma_at(sc, in.i + 1);
  return (s_s / s_t) * in.x + (a_s - s_s * a_t / s_t) * in.out.x0;
}

}  // namespace

SamplerInfo euler_sampler() {
  SamplerInfo info;
  info.name = "euler";
  info.aliases = {"EulerDiscreteScheduler", "FlowMatchEulerDiscreteScheduler", "Euler"};
  info.order = 1;
  info.stochastic = false;
  info.family = "euler";
  info.options = schedule_options();
  info.help = "Euler on the probability-flow ODE (Karras et al. 2022, Alg. 1 without the 2nd-order step)";
  info.step_rule = euler_step;
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_step_rule(ctx, x, euler_step); };
  return info;
}

}  // namespace fewstep
