// DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for
// Guided Sampling of Diffusion Probabilistic Models", Algorithm 2) and its
// SDE variant; shared by dpmpp_2m, dpmpp_3m and dpmpp_2m_sde (internal).
#pragma once

#include "samplers/sampler.h"

#include <string>
#include <vector>

namespace fewstep::detail {

struct DpmMultistepSettings {
  int order = 2;                  ///< solver_order 1..3
  bool heun = false;              ///< solver_type heun (else midpoint)
  bool lower_order_final = true;  ///< lower orders on the last steps when steps < 15
  bool euler_at_final = false;    ///< first order on the last step
  double eta = 0.0;               ///< 0: ODE; 1: diffusers' sde-dpmsolver++
};

/// Reads solver_order (or `default_order` when absent), solver_type,
/// lower_order_final, euler_at_final and eta from resolved options.
DpmMultistepSettings dpm_multistep_settings(const ResolvedOptions& o);

/// The order step i of n uses, as diffusers' DPMSolverMultistepScheduler.step:
/// 1 at the first step, on the last step with euler_at_final, or with
/// lower_order_final and n < 15, or when the final sigma is 0; at most 2 on
/// the second step and, with lower_order_final and n < 15, the next-to-last;
/// never more than the history (`available` outputs) allows.
int dpm_multistep_order(const Schedule& sc, int64_t i, const DpmMultistepSettings& s, int available);

/// One multistep update from point i to i+1. `d` holds the data predictions
/// at points i, i-1, i-2 (newest first; at least `order` of them). `noise` is
/// step i's Gaussian noise (needed when eta > 0).
at::Tensor dpm_multistep_update(const Schedule& sc, int64_t i, const at::Tensor& x, const std::vector<at::Tensor>& d,
                                int order, const DpmMultistepSettings& s, const at::Tensor* noise);

/// Sequential run: one NFE per step.
at::Tensor run_dpm_multistep(SamplerContext& ctx, at::Tensor x, int default_order);

/// The Picard rule for orders <= 2 (the previous output comes from StepInput::prev).
at::Tensor dpm_multistep_rule(const StepInput& in, int default_order);

/// The options every DPM-Solver++ multistep sampler takes.
std::vector<SamplerOptionInfo> dpm_multistep_options(int default_order, bool with_eta);

}  // namespace fewstep::detail
