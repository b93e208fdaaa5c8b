// SDE-DPM-Solver++(2M) (Lu et al. 2022, Sec. 5); eta 1 is diffusers' sde-dpmsolver++
#include "samplers/dpm_multistep.h"
#include "samplers/sampler_list.h"

namespace fewstep {

SamplerInfo dpmpp_2m_sde_sampler() {
  SamplerInfo info;
  info.name = "dpmpp_2m_sde";
  info.aliases = {"dpm++2m_sde", "DPM++ 2M SDE"};
  info.order = 2;
  info.stochastic = true;
  info.family = "dpm";
  info.options = detail::dpm_multistep_options(2, true);
  info.help = "SDE-DPM-Solver++(2M) (Lu et al. 2022, Sec. 5); eta 1 is diffusers' sde-dpmsolver++";
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_dpm_multistep(ctx, x, 2); };
  return info;
}

}  // namespace fewstep
