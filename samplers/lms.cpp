// Linear multistep (LMS): Adams–Bashforth with variable steps on Karras et
// al. 2022's σ ODE (k-diffusion's sample_lms; diffusers'
// LMSDiscreteScheduler): each step integrates the Lagrange polynomial through
// the last `order` derivatives over [σ_i, σ_{i+1}] exactly.
#include "samplers/common.h"
#include "samplers/linear_multistep.h"
#include "samplers/sampler_list.h"

namespace fewstep {

SamplerInfo lms_sampler() {
  SamplerInfo info;
  info.name = "lms";
  info.aliases = {"LMSDiscreteScheduler", "LMS"};
  info.order = 4;
  info.stochastic = false;
  info.family = "euler";
  info.options = {int_option("order", 4, 1, 4, "multistep order (diffusers' step() argument `order`)")};
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help = "Linear multistep (k-diffusion lms): variable-step Adams-Bashforth in sigma, up to order 4";
  info.run = [](SamplerContext& ctx, at::Tensor x) {
    // The last step to σ = 0 is integrated too (diffusers and k-diffusion).
    return detail::run_sigma_multistep(ctx, x, static_cast<int>(ctx.options.integer("order")), false,
                                       [](const std::vector<double>& taus, double tau_next) {
                                         return detail::lagrange_weights(taus, taus[0], tau_next);
                                       });
  };
  return info;
}

}  // namespace fewstep
