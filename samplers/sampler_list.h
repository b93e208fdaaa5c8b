// fewstep sampler layer: one factory per sampler file (internal). The
// registry (registry.cpp) lists them in display order; adding a sampler means
// one new file and one line there.
#pragma once

#include "samplers/sampler.h"

namespace fewstep {

SamplerInfo ddim_sampler();
SamplerInfo ddpm_sampler();
SamplerInfo euler_sampler();
SamplerInfo euler_ancestral_sampler();
SamplerInfo heun_sampler();
SamplerInfo dpmpp_2m_sampler();
SamplerInfo dpmpp_3m_sampler();
SamplerInfo dpmpp_2m_sde_sampler();
SamplerInfo dpm_solver_sampler();
SamplerInfo unipc_sampler();
SamplerInfo lcm_sampler();

}  // namespace fewstep
