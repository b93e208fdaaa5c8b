// DDIM: Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models".
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <algorithm>
#include <cmath>

namespace fewstep {
namespace {

/// One DDIM step from point i (t) to point i+1 (s), Song et al. 2021 Eq. 12:
///   x_s = α_s·x0 + sqrt(σ_s² - σ_η²)·ε + σ_η·z,
/// with Eq. 16's σ_η written for any (α, σ) path:
///   σ_η² = η²·(σ_s²/σ_t²)·(σ_t² - (α_t/α_s)²·σ_s²)
/// (VP: η²·(1-ᾱ_s)/(1-ᾱ_t)·(1-ᾱ_t/ᾱ_s)). η = 0 is the deterministic DDIM
/// (first-order exponential integrator of the probability-flow ODE); η = 1
/// has DDPM's posterior variance.
at::Tensor ddim_step(const StepInput& in) {
  const Schedule& sc = in.schedule;
  const double a_t = detail::alpha_at(sc, in.i), s_t = detail::sigma_at(sc, in.i);
  const double a_s = detail::alpha_at(sc, in.i + 1), s_s = detail::sigma_at(sc, in.i + 1);
  const double eta = in.options.real("eta");
  double var_eta = 0.0;
  if (eta > 0 && s_t > 0) {
    const double transition = std::max(s_t * s_t - (a_t / a_s) * (a_t / a_s) * s_s * s_s, 0.0);
    var_eta = eta * eta * (s_s * s_s) / (s_t * s_t) * transition;
  }
  const double dir = std::sqrt(std::max(s_s * s_s - var_eta, 0.0));
  at::Tensor x = a_s * in.out.x0 + dir * in.out.eps;
  if (var_eta > 0) x = x + std::sqrt(var_eta) * detail::noise_like(in.noise, in.i, in.x);
  return x;
}

}  // namespace

SamplerInfo ddim_sampler() {
  SamplerInfo info;
  info.name = "ddim";
  info.aliases = {"DDIMScheduler", "DDIM"};
  info.order = 1;
  info.stochastic = false;  // unless eta > 0
  info.family = "ddim";
  info.options = {eta_option(0.0)};
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help = "DDIM (Song et al. 2021); eta 0 deterministic, eta 1 DDPM-like ancestral";
  info.step_rule = ddim_step;
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_step_rule(ctx, x, ddim_step); };
  return info;
}

}  // namespace fewstep
