// PNDM: Liu, Ren, Lin & Zhao 2022, "Pseudo Numerical Methods for Diffusion
// Models on Manifolds" (ICLR), Algorithm 2: three pseudo Runge–Kutta steps
// (Eq. 13), then the pseudo linear multistep method (Eq. 12). diffusers'
// PNDMScheduler with its default skip_prk_steps=False.
#include "samplers/pndm_method.h"
#include "samplers/sampler_list.h"

namespace fewstep {

SamplerInfo pndm_sampler() {
  SamplerInfo info;
  info.name = "pndm";
  info.aliases = {"PNDMScheduler"};
  info.order = 4;
  info.stochastic = false;
  info.family = "ddim";
  info.options = detail::pndm_options({});
  info.help =
      "PNDM (Liu et al. 2022, Alg. 2): 3 pseudo Runge-Kutta steps (4 NFE each), then 4th-order pseudo "
      "linear multistep";
  info.nfe = "N+9 (N >= 4)";
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_pndm(ctx, x, detail::PndmStart::runge_kutta); };
  return info;
}

}  // namespace fewstep
