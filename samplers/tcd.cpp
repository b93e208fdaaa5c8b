// TCD: the sampler of Trajectory Consistency Distillation, Zheng, He, Pan,
// Lin, Han & Shan 2024, "Trajectory Consistency Distillation: Improved
// Latent Consistency Distillation by Semi-Linear Consistency Function with
// Trajectory Mapping", Algorithm 4 (strategic stochastic sampling, SSS);
// diffusers' TCDScheduler, whose `eta` is the paper's γ.
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <algorithm>
#include <cmath>

namespace fewstep {
namespace {

/// From point i (t) to point i+1 (t'): the model's prediction is taken down
/// to the point s at timestep ⌊(1-γ)·t'⌋ (DDIM's step, x_s = α_s·x0 + σ_s·ε),
/// then noised forward to t' (the forward process from s:
///   x_{t'} = (α_{t'}/α_s)·x_s + sqrt(σ_{t'}² - (α_{t'}/α_s)²·σ_s²)·z).
/// γ = 0 is deterministic (s = t'); γ = 1 is LCM's multistep sampling (s at
/// timestep 0). The last step ends at s itself, without noise: with the
/// final point at ᾱ_0 (the default, as diffusers) that is the final point;
/// with final_sigmas_type=zero it returns x0.
at::Tensor tcd_step(const StepInput& in) {
  const Schedule& sc = in.schedule;
  const double gamma = in.options.real("eta");
  const bool last = in.i + 1 == sc.steps();
  const NoisePoint next{detail::timestep_at(sc, in.i + 1), detail::alpha_at(sc, in.i + 1),
                        detail::sigma_at(sc, in.i + 1)};
  if (next.sigma <= 0) return next.alpha * in.out.x0;
  const NoisePoint s = detail::point_at_timestep(sc, std::floor((1.0 - gamma) * next.timestep));
  const at::Tensor x_s = s.alpha * in.out.x0 + s.sigma * in.out.eps;
  if (last || gamma <= 0) return x_s;
  const double ratio = next.alpha / s.alpha;
  const double sd = std::sqrt(std::max(next.sigma * next.sigma - ratio * ratio * s.sigma * s.sigma, 0.0));
  return ratio * x_s + sd * detail::noise_like(in.noise, in.i, in.x);
}

}  // namespace

SamplerInfo tcd_sampler() {
  SamplerInfo info;
  info.name = "tcd";
  info.aliases = {"TCDScheduler"};
  info.order = 1;
  info.stochastic = true;
  info.family = "lcm";
  info.options = {
      real_option("eta", 0.3, 0.0, 1.0, "gamma, the stochasticity: 0 deterministic, 1 LCM-like fresh noise"),
      int_option("original_inference_steps", 50, 1, 1000, "the distillation schedule's step count"),
  };
  for (auto& o : detail::schedule_options_ending_at_sigma_min("TCDScheduler")) info.options.push_back(o);
  info.help = "TCD strategic stochastic sampling (Zheng et al. 2024) for TCD-distilled models; eta is gamma";
  info.step_rule = tcd_step;
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_step_rule(ctx, x, tcd_step); };
  return info;
}

}  // namespace fewstep
