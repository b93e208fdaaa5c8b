// fewstep sampler layer: small helpers the sampler files share (internal).
#pragma once

#include "samplers/sampler.h"

#include <cmath>
#include <limits>

namespace fewstep::detail {

/// Schedule values at point i (float64, CPU tensors of the schedule).
inline double alpha_at(const Schedule& s, int64_t i) { return s.alphas.data_ptr<double>()[i]; }
inline double sigma_at(const Schedule& s, int64_t i) { return s.sigmas.data_ptr<double>()[i]; }
inline double timestep_at(const Schedule& s, int64_t i) { return s.timesteps.data_ptr<double>()[i]; }

/// λ = log(α/σ) at point i (DPM-Solver's half log-SNR, Lu et al. 2022
/// Eq. 3.3); +inf where σ = 0.
inline double lambda_at(const Schedule& s, int64_t i) {
  const double sg = sigma_at(s, i);
  return sg > 0 ? std::log(alpha_at(s, i)) - std::log(sg) : std::numeric_limits<double>::infinity();
}

/// True for a rectified-flow path (no training alphas_cumprod, α + σ = 1),
/// false for variance-preserving ones (α² + σ² = 1).
bool is_flow_path(const Schedule& s);

/// Noise levels of point i repeated for `rows` rows.
NoiseLevels levels_at(const Schedule& s, int64_t i, int64_t rows);

/// The denoiser's output for x at point i (all rows at that point).
DenoiserOutput denoise_at(SamplerContext& ctx, const at::Tensor& x, int64_t i);

/// Step i's Gaussian noise, shaped like `like`, on its device and dtype.
/// Throws SamplerError when the run has no StepNoise.
at::Tensor noise_like(StepNoise* noise, int64_t i, const at::Tensor& like);

/// Fires the callback (if any) after step i.
void report(SamplerContext& ctx, int64_t i, const at::Tensor& x);

/// Runs a single-step rule sequentially: for i in 0..N-1,
/// x = rule(i, x, D(x), D(previous x)). The sequential twin of Picard.
at::Tensor run_step_rule(SamplerContext& ctx, at::Tensor x, const StepRule& rule);

}  // namespace fewstep::detail
