// Heun: Karras et al. 2022, Algorithm 1 (deterministic 2nd-order sampler).
#include "samplers/common.h"
#include "samplers/sampler_list.h"

namespace fewstep {
namespace {

/// Karras et al. 2022 Alg. 1 lines 5-8 on dy/dτ = (y - x0)/τ, an Euler
/// predictor to τ_s, then the trapezoid with the derivative there:
///   y' = y + Δτ·d_t;  y_s = y + Δτ·(d_t + d_s)/2,  d = (y - x0)/τ = (x - c·x0)/σ.
/// The coordinates are y = x/c, τ = σ/c with c = α on variance-preserving
/// paths (k-diffusion's σ/α, as diffusers' HeunDiscreteScheduler) and c = 1
/// on flow paths (τ = t, as FlowMatchHeunDiscreteScheduler), so a flow run
/// starting at t = 1 (α = 0) stays finite. The step to σ = 0 stays Euler
/// (Alg. 1 line 6): N steps cost 2N-1 NFE with a final sigma 0, else 2N.
at::Tensor run_heun(SamplerContext& ctx, at::Tensor x) {
  const Schedule& sc = ctx.schedule;
  const bool flow = detail::is_flow_path(sc);
  for (int64_t i = 0; i < sc.steps(); ++i) {
    const double c_t = flow ? 1.0 : detail::alpha_at(sc, i), c_s = flow ? 1.0 : detail::alpha_at(sc, i + 1);
    const double s_t = detail::sigma_at(sc, i), s_s = detail::sigma_at(sc, i + 1);
    const double dtau = s_s / c_s - s_t / c_t;
    const at::Tensor y = x / c_t;
    const at::Tensor d = (x - c_t * detail::denoise_at(ctx, x, i).x0) / s_t;
    at::Tensor y_s = y + dtau * d;
    if (s_s > 0) {
      const at::Tensor x_e = c_s * y_s;
      const at::Tensor d_s = (x_e - c_s * detail::denoise_at(ctx, x_e, i + 1).x0) / s_s;
      y_s = y + dtau * (0.5 * (d + d_s));
    }
    x = c_s * y_s;
    detail::report(ctx, i, x);
  }
  return x;
}

}  // namespace

SamplerInfo heun_sampler() {
  SamplerInfo info;
  info.name = "heun";
  info.aliases = {"HeunDiscreteScheduler", "FlowMatchHeunDiscreteScheduler", "Heun"};
  info.order = 2;
  info.stochastic = false;
  info.family = "euler";
  info.options = schedule_options();
  info.help = "Heun's 2nd-order method (Karras et al. 2022, Alg. 1); 2 NFE per step, Euler on the last";
  info.nfe = "2N-1 (2N with a final sigma > 0)";
  info.run = run_heun;
  return info;
}

}  // namespace fewstep
