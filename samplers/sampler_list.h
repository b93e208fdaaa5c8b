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
SamplerInfo pndm_sampler();
SamplerInfo plms_sampler();
SamplerInfo ipndm_sampler();
SamplerInfo ipndm_v_sampler();
SamplerInfo deis_sampler();
SamplerInfo lms_sampler();
SamplerInfo dpmpp_2s_ancestral_sampler();
SamplerInfo tcd_sampler();
SamplerInfo dpm_adaptive_sampler();

}  // namespace fewstep
