// PNDM's pseudo Runge–Kutta and pseudo linear multistep updates; see pndm_method.h.
#include "samplers/pndm_method.h"

#include "samplers/common.h"
#include "samplers/linear_multistep.h"

#include <cmath>
#include <deque>

namespace fewstep::detail {
namespace {

NoisePoint point_of(const Schedule& s, int64_t i) { return {timestep_at(s, i), alpha_at(s, i), sigma_at(s, i)}; }

// φ(x_t, e; t -> s), Liu et al. 2022 Eq. 11 in DDIM form (see pndm_method.h).
// x0_t: the denoiser's x0 at x_t, used only where α_t = 0.
at::Tensor transfer(const NoisePoint& t, const NoisePoint& s, const at::Tensor& x_t, const at::Tensor& x0_t,
                    const at::Tensor& e) {
  if (t.alpha <= 0) return s.alpha * x0_t + s.sigma * e;
  return (s.alpha / t.alpha) * x_t + (s.sigma - s.alpha * t.sigma / t.alpha) * e;
}

// The two targets of the Runge–Kutta half steps from point i to i+1, as
// diffusers' PNDMScheduler places them: with integer timesteps t > t' and
// gap g = t - t', the first half step goes to t - ⌊g/2⌋ and the model is then
// evaluated at t' + ⌊g/2⌋ (the same point when g is even; diffusers'
// prk_timesteps differ by one timestep for odd g, e.g. leading spacing at 3,
// 9 or 27 steps). Fractional timesteps (Karras sigmas, flow) take g/2.
std::pair<NoisePoint, NoisePoint> half_points(const Schedule& s, int64_t i) {
  const double t = timestep_at(s, i), t_next = timestep_at(s, i + 1);
  const bool integers = t == std::floor(t) && t_next == std::floor(t_next);
  const double half = integers ? std::floor((t - t_next) / 2.0) : (t - t_next) / 2.0;
  return {point_at_timestep(s, t - half), point_at_timestep(s, t_next + half)};
}

}  // namespace

at::Tensor run_pndm(SamplerContext& ctx, at::Tensor x, PndmStart start) {
  const Schedule& sc = ctx.schedule;
  const int64_t n = sc.steps();
  std::deque<at::Tensor> eps;  // ε at points i, i-1, ..., newest first (the pseudo linear multistep history)
  for (int64_t i = 0; i < n; ++i) {
    const NoisePoint p_t = point_of(sc, i), p_s = point_of(sc, i + 1);
    const DenoiserOutput out = denoise_at(ctx, x, i);
    eps.push_front(out.eps);
    if (eps.size() > 4) eps.pop_back();
    if (start == PndmStart::runge_kutta && i < 3 && p_s.sigma > 0) {
      // Pseudo Runge–Kutta (Liu et al. Eq. 13): four evaluations, combined as RK4.
      const auto [half_target, half_eval] = half_points(sc, i);
      const at::Tensor& e1 = out.eps;
      const at::Tensor x_a = transfer(p_t, half_target, x, out.x0, e1);
      const at::Tensor e2 = denoise_at_point(ctx, x_a, half_eval).eps;
      const at::Tensor x_b = transfer(p_t, half_eval, x, out.x0, e2);
      const at::Tensor e3 = denoise_at_point(ctx, x_b, half_eval).eps;
      const at::Tensor x_c = transfer(p_t, p_s, x, out.x0, e3);
      const at::Tensor e4 = denoise_at_point(ctx, x_c, p_s).eps;
      x = transfer(p_t, p_s, x, out.x0, (e1 + 2.0 * e2 + 2.0 * e3 + e4) / 6.0);
    } else if (start == PndmStart::heun && i == 0 && n > 1) {
      // diffusers' skip_prk_steps start: a step with ε_0, the model again at
      // its result (the repeated timestep), then the step again with the
      // mean of both; that second ε is not kept in the history.
      const at::Tensor x_pred = transfer(p_t, p_s, x, out.x0, out.eps);
      const at::Tensor e_pred = denoise_at(ctx, x_pred, 1).eps;
      x = transfer(p_t, p_s, x, out.x0, 0.5 * (out.eps + e_pred));
    } else {
      const int order = static_cast<int>(eps.size());
      x = transfer(p_t, p_s, x, out.x0, weighted_sum(adams_bashforth_weights(order), eps));
    }
    report(ctx, i, x);
  }
  return x;
}

std::vector<SamplerOptionInfo> pndm_options(std::vector<SamplerOptionInfo> extra) {
  std::vector<SamplerOptionInfo> o = std::move(extra);
  for (SamplerOptionInfo& s : schedule_options_ending_at_sigma_min("PNDMScheduler's set_alpha_to_one=False"))
    o.push_back(s);
  return o;
}

}  // namespace fewstep::detail
