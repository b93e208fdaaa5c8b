// DPM++ 2S ancestral: the single-step second-order DPM-Solver++(2S) (Lu et
// al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models", Alg. 1 with r = 1/2) down to σ_down, then fresh
// noise up to the next point (k-diffusion's sample_dpmpp_2s_ancestral; the
// ancestral split as euler_ancestral's).
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <algorithm>
#include <cmath>

namespace fewstep {
namespace {

/// From point t to point s: σ_up = σ_s·min(1, η·sqrt(1 - q²)), q = k_s/k_t
/// (k = σ/α), σ_down = sqrt(σ_s² - σ_up²), so the target before the noise
/// is (α_s, σ_down) with λ_down = log(α_s/σ_down), h = λ_down - λ_t. With the
/// midpoint m at λ_t + h/2 on the model's path (point_at_lambda):
///   u   = (σ_m/σ_t)·x - α_m·(e^{-h/2} - 1)·D(x, t),
///   x_s = (σ_down/σ_t)·x - α_s·(e^{-h} - 1)·D(u, m) + σ_up·z.
/// A step to σ_down = 0 returns α_s·D(x, t); a step from α_t = 0 (flow at
/// t = 1, zero terminal SNR: λ_t = -∞) is euler_ancestral's first-order step.
at::Tensor run_dpmpp_2s_ancestral(SamplerContext& ctx, at::Tensor x) {
  const Schedule& sc = ctx.schedule;
  const double eta = ctx.options.real("eta");
  for (int64_t i = 0; i < sc.steps(); ++i) {
    const double a_t = detail::alpha_at(sc, i), s_t = detail::sigma_at(sc, i);
    const double a_s = detail::alpha_at(sc, i + 1), s_s = detail::sigma_at(sc, i + 1);
    const at::Tensor x0 = detail::denoise_at(ctx, x, i).x0;
    const double q = a_t > 0 ? (s_s * a_t) / (a_s * s_t) : 0.0;
    const double s_up = s_s * std::min(1.0, eta * std::sqrt(std::max(1.0 - q * q, 0.0)));
    const double s_down = std::sqrt(std::max(s_s * s_s - s_up * s_up, 0.0));
    if (s_down <= 0) {
      x = a_s * x0;
    } else if (a_t <= 0) {
      x = a_s * x0 + (s_down / s_t) * (x - a_t * x0);
    } else {
      const double lam_t = std::log(a_t / s_t), h = std::log(a_s / s_down) - lam_t;
      const NoisePoint mid = detail::point_at_lambda(sc, lam_t + 0.5 * h);
      const at::Tensor u = (mid.sigma / s_t) * x - (mid.alpha * std::expm1(-0.5 * h)) * x0;
      const at::Tensor x0_mid = detail::denoise_at_point(ctx, u, mid).x0;
      x = (s_down / s_t) * x - (a_s * std::expm1(-h)) * x0_mid;
    }
    if (s_s > 0 && s_up > 0) x = x + s_up * detail::noise_like(ctx.noise, i, x);
    detail::report(ctx, i, x);
  }
  return x;
}

}  // namespace

SamplerInfo dpmpp_2s_ancestral_sampler() {
  SamplerInfo info;
  info.name = "dpmpp_2s_ancestral";
  info.aliases = {"dpm++2s_a", "DPM++ 2S a"};
  info.order = 2;
  info.stochastic = true;
  info.family = "euler";
  info.options = {eta_option(1.0)};
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help = "DPM++ 2S ancestral (Lu et al. 2022): DPM-Solver++(2S) to sigma_down, then fresh noise";
  info.nfe = "2N-1 (2N with a final sigma > 0)";
  info.run = run_dpmpp_2s_ancestral;
  return info;
}

}  // namespace fewstep
