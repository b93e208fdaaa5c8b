// LCM multistep consistency sampling: Luo et al. 2023, "Latent Consistency
// Models", Algorithm 3 (Song et al. 2023, "Consistency Models", Alg. 1).
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <cmath>

namespace fewstep {
namespace {

/// f(x, t) = c_skip(t)·x + c_out(t)·x0 with the LCM boundary scalings
/// (σ_data = 0.5, t scaled by timestep_scaling): c_skip = σ_data²/((s·t)² + σ_data²),
/// c_out = s·t/sqrt((s·t)² + σ_data²). Then the next point is re-noised:
///   x_{i+1} = α_{i+1}·f + σ_{i+1}·(η·z + sqrt(1-η²)·ε̂),  ε̂ = (x_i - α_i·f)/σ_i,
/// η = 1 is LCM's fresh noise; η < 1 keeps part of the implied noise
/// (a DDIM-style interpolation). The final step to sigma 0 returns f.
at::Tensor lcm_step(const StepInput& in) {
  const Schedule& sc = in.schedule;
  const double t = detail::timestep_at(sc, in.i) * in.options.real("timestep_scaling");
  const double sd2 = 0.25;
  const double c_skip = sd2 / (t * t + sd2), c_out = t / std::sqrt(t * t + sd2);
  const at::Tensor f = c_skip * in.x + c_out * in.out.x0;
  const double a_s = detail::alpha_at(sc, in.i + 1), s_s = detail::sigma_at(sc, in.i + 1);
  if (s_s <= 0) return a_s * f;
  const double eta = in.options.real("eta");
  at::Tensor x = a_s * f;
  if (eta > 0) x = x + (s_s * eta) * detail::noise_like(in.noise, in.i, in.x);
  if (eta < 1) {
    const double a_t = detail::alpha_at(sc, in.i), s_t = detail::sigma_at(sc, in.i);
    x = x + (s_s * std::sqrt(1.0 - eta * eta) / s_t) * (in.x - a_t * f);
  }
  return x;
}

}  // namespace

SamplerInfo lcm_sampler() {
  SamplerInfo info;
  info.name = "lcm";
  info.aliases = {"LCMScheduler", "LCM"};
  info.order = 1;
  info.stochastic = true;
  info.family = "lcm";
  info.options = {
      eta_option(1.0),
      int_option("original_inference_steps", 50, 1, 1000, "the distillation schedule's step count"),
      real_option("timestep_scaling", 10.0, 0.0, 1e6, "scales t in the boundary conditions c_skip, c_out"),
  };
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help = "LCM multistep consistency sampling (Luo et al. 2023) for distilled models";
  info.step_rule = lcm_step;
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_step_rule(ctx, x, lcm_step); };
  return info;
}

}  // namespace fewstep
