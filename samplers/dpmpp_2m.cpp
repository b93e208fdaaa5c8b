// DPM-Solver++(2M) (Lu et al. 2022, Alg. 2); data prediction, one NFE per step; solver_order=3 gives dpmpp_3m
#include "samplers/dpm_multistep.h"
#include "samplers/sampler_list.h"

namespace fewstep {

SamplerInfo dpmpp_2m_sampler() {
  SamplerInfo info;
  info.name = "dpmpp_2m";
  info.aliases = {"DPMSolverMultistepScheduler", "dpm++2m", "DPM++ 2M"};
  info.order = 2;
  info.stochastic = false;
  info.family = "dpm";
  info.options = detail::dpm_multistep_options(2, false);
  info.help =
      "DPM-Solver++(2M) (Lu et al. 2022, Alg. 2); data prediction, one NFE per step; solver_order=3 gives dpmpp_3m";
  info.step_rule = [](const StepInput& in) { return detail::dpm_multistep_rule(in, 2); };
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_dpm_multistep(ctx, x, 2); };
  return info;
}

}  // namespace fewstep
