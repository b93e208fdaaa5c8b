// iPNDM: the improved pseudo numerical method of Zhang & Chen 2023, "Fast
// Sampling of Diffusion Models with Exponential Integrator" (DEIS, ICLR),
// §4 and App. B: PNDM's 4th-order Adams–Bashforth combination of noise
// estimates in ρ = σ/α (Karras' τ), warm-started by the lower orders
// instead of Runge–Kutta steps (stable-diffusion.cpp's and ComfyUI's
// `ipndm`).
#include "samplers/common.h"
#include "samplers/linear_multistep.h"
#include "samplers/sampler_list.h"

namespace fewstep {

SamplerInfo ipndm_sampler() {
  SamplerInfo info;
  info.name = "ipndm";
  info.order = 4;
  info.stochastic = false;
  info.family = "euler";
  info.options = {int_option("max_order", 4, 1, 4, "highest Adams-Bashforth order (1 is Euler)")};
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help =
      "iPNDM (Zhang & Chen 2023, DEIS paper): fixed-coefficient Adams-Bashforth up to order 4 in sigma, "
      "lower orders to start";
  info.run = [](SamplerContext& ctx, at::Tensor x) {
    // The equal-step weights whatever the spacing (iPNDM's definition).
    return detail::run_sigma_multistep(
        ctx, x, static_cast<int>(ctx.options.integer("max_order")), true,
        [](const std::vector<double>& taus, double) { return detail::adams_bashforth_weights(int(taus.size())); });
  };
  return info;
}

}  // namespace fewstep
