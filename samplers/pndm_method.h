// Pseudo numerical methods for diffusion models (PNDM; Liu, Ren, Lin & Zhao
// 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds", ICLR):
// the update shared by pndm and plms (internal).
#pragma once

#include "samplers/sampler.h"

#include <string>
#include <vector>

namespace fewstep::detail {

/// How a run warms up the 4th-order linear multistep method.
enum class PndmStart {
  runge_kutta,  ///< pndm: the pseudo Runge–Kutta method on the first 3 steps (Liu et al. Eq. 13)
  heun,         ///< plms: diffusers' skip_prk_steps, a pseudo improved-Euler first step
  euler,        ///< plms with repeat_first_timestep=false: a plain first step
};

/// Runs PNDM over the schedule. The transfer φ (Liu et al. Eq. 11) from
/// point t to point s with a noise estimate e is DDIM's step,
///   x_s = (α_s/α_t)·x_t + (σ_s - α_s·σ_t/α_t)·e,
/// which is diffusers' PNDMScheduler._get_prev_sample written for any (α, σ)
/// path (at α_t = 0, a zero-SNR or flow start, x_s = α_s·x0_t + σ_s·e).
/// The pseudo linear multistep step (Eq. 12) combines the last four ε with
/// Adams–Bashforth weights (fewer while the history fills). Each ε is the
/// denoiser's at its own point, so an ε- and a v-predicting form of one
/// model give the same sample (diffusers converts the combined v at the
/// current point instead: its issue #14816). NFE: N+1 (heun), N (euler),
/// N+9 for N ≥ 4 (runge_kutta: 4 evaluations on each of the first 3 steps).
at::Tensor run_pndm(SamplerContext& ctx, at::Tensor x, PndmStart start);

/// The option table of pndm and plms: the schedule options with
/// final_sigmas_type defaulting to sigma_min (diffusers' set_alpha_to_one
/// False: the last point is ᾱ_0's), plus `extra`.
std::vector<SamplerOptionInfo> pndm_options(std::vector<SamplerOptionInfo> extra);

}  // namespace fewstep::detail
