// DDPM ancestral sampling: Ho, Jain & Abbeel 2020, Algorithm 2.
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <algorithm>
#include <cmath>

namespace fewstep {
namespace {

/// One DDPM step from point i (t) to point i+1 (s): a draw from the posterior
/// q(x_s | x_t, x0) (Ho et al. 2020 Eq. 6-7), written for any (α, σ) path
/// (Kingma et al. 2021 Eq. 32-33) with α_{t|s} = α_t/α_s and
/// σ²_{t|s} = σ_t² - α²_{t|s}·σ_s²:
///   mean = α_{t|s}·σ_s²/σ_t²·x_t + α_s·σ²_{t|s}/σ_t²·x0
///   var  = σ²_{t|s}·σ_s²/σ_t²  (fixed_small, β̃_t)   or  σ²_{t|s} (fixed_large, β_t)
/// (VP: mean = √α_t(1-ᾱ_s)/(1-ᾱ_t)·x_t + √ᾱ_s·β_t/(1-ᾱ_t)·x0.) The noise std
/// is multiplied by eta. No noise on a final step to sigma 0. The mean uses
/// x0 (clipped when configured) and x_t, as diffusers' DDPMScheduler does.
at::Tensor ddpm_step(const StepInput& in) {
  const Schedule& sc = in.schedule;
  const double a_t = detail::alpha_at(sc, in.i), s_t = detail::sigma_at(sc, in.i);
  const double a_s = detail::alpha_at(sc, in.i + 1), s_s = detail::sigma_at(sc, in.i + 1);
  const double r = a_t / a_s;
  const double transition = std::max(s_t * s_t - r * r * s_s * s_s, 0.0);
  at::Tensor x = (r * s_s * s_s / (s_t * s_t)) * in.x + (a_s * transition / (s_t * s_t)) * in.out.x0;
  if (s_s <= 0) return x;
  const bool large = in.options.choice("variance_type") == "fixed_large";
  const double var = std::max(large ? transition : transition * s_s * s_s / (s_t * s_t), 1e-20);
  const double eta = in.options.real("eta");
  if (eta > 0) x = x + eta * std::sqrt(var) * detail::noise_like(in.noise, in.i, in.x);
  return x;
}

}  // namespace

SamplerInfo ddpm_sampler() {
  SamplerInfo info;
  info.name = "ddpm";
  info.aliases = {"DDPMScheduler"};
  info.order = 1;
  info.stochastic = true;
  info.family = "ddim";
  info.options = {eta_option(1.0), choice_option("variance_type", "fixed_small", {"fixed_small", "fixed_large"},
                                                 "posterior variance beta-tilde (fixed_small) or beta (fixed_large)")};
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help = "DDPM ancestral sampling (Ho et al. 2020, Alg. 2)";
  info.step_rule = ddpm_step;
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_step_rule(ctx, x, ddpm_step); };
  return info;
}

}  // namespace fewstep
