// iPNDM with variable step sizes: iPNDM (Zhang & Chen 2023, "Fast Sampling
// of Diffusion Models with Exponential Integrator", DEIS paper, §4) with the
// Adams–Bashforth weights of the actual σ steps (Zhou, Chen, Wang & Ye 2024,
// "Fast ODE-based Sampling for Diffusion Models in Around 5 Steps", CVPR,
// App.: iPNDM_v), so it stays 4th order on Karras or exponential spacings
// (stable-diffusion.cpp's and ComfyUI's `ipndm_v`).
//
// Deliberate difference: the weights here integrate the interpolating
// polynomial exactly (as lms does). stable-diffusion.cpp and ComfyUI take
// closed forms from zju-pi/diff-sampler whose 3rd- and 4th-order sets are
// not exact on uneven steps (their 4th-order set on even steps is
// (57, -65, 43, -11)/24, a 3rd-order rule); on even steps this sampler is
// ipndm exactly.
#include "samplers/common.h"
#include "samplers/linear_multistep.h"
#include "samplers/sampler_list.h"

namespace fewstep {

SamplerInfo ipndm_v_sampler() {
  SamplerInfo info;
  info.name = "ipndm_v";
  info.order = 4;
  info.stochastic = false;
  info.family = "euler";
  info.options = {int_option("max_order", 4, 1, 4, "highest Adams-Bashforth order (1 is Euler)")};
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help =
      "iPNDM with variable steps (Zhou et al. 2024): Adams-Bashforth up to order 4 with the weights of "
      "the actual sigma steps";
  info.run = [](SamplerContext& ctx, at::Tensor x) {
    return detail::run_sigma_multistep(ctx, x, static_cast<int>(ctx.options.integer("max_order")), true,
                                       [](const std::vector<double>& taus, double tau_next) {
                                         return detail::lagrange_weights(taus, taus[0], tau_next);
                                       });
  };
  return info;
}

}  // namespace fewstep
