// PLMS: the pseudo linear multistep method of Liu, Ren, Lin & Zhao 2022,
// "Pseudo Numerical Methods for Diffusion Models on Manifolds" (ICLR),
// Eq. 12, started without the Runge–Kutta steps, as the original Stable
// Diffusion release ran it (diffusers' PNDMScheduler with skip_prk_steps=True:
// a pseudo improved-Euler first step that evaluates the model twice at the
// second timestep, then Adams–Bashforth orders 2, 3, 4).
#include "samplers/pndm_method.h"
#include "samplers/sampler_list.h"

namespace fewstep {

SamplerInfo plms_sampler() {
  SamplerInfo info;
  info.name = "plms";
  info.aliases = {"PLMS"};
  info.order = 4;
  info.stochastic = false;
  info.family = "ddim";
  info.options = detail::pndm_options({bool_option(
      "repeat_first_timestep", true,
      "diffusers' first step: the model twice at the second timestep (N+1 NFE); false: a plain first step (N NFE)")});
  info.help = "PLMS (Liu et al. 2022, Eq. 12; PNDMScheduler with skip_prk_steps): 4th-order pseudo linear multistep";
  info.nfe = "N+1 (N with repeat_first_timestep=false)";
  info.run = [](SamplerContext& ctx, at::Tensor x) {
    const bool heun = ctx.options.flag("repeat_first_timestep");
    return detail::run_pndm(ctx, x, heun ? detail::PndmStart::heun : detail::PndmStart::euler);
  };
  return info;
}

}  // namespace fewstep
