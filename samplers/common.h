// fewstep sampler layer: small helpers the sampler files share (internal).
#pragma once

#include "samplers/sampler.h"
#include "samplers/schedule.h"

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

/// Karras et al. 2022's ODE coordinates (§2, Eq. 4 with s(t) = c): y = x/c,
/// τ = σ/c, in which dy/dτ = (y - x0)/τ = (x - c·x0)/σ. c = α on
/// variance-preserving paths (τ is k-diffusion's sigma σ/α) and c = 1 on flow
/// paths (τ = t, so a run starting at α = 0 stays finite).
inline double ode_scale(const Schedule& s, int64_t i, bool flow) { return flow ? 1.0 : alpha_at(s, i); }

/// The point of the schedule's noise path at model timestep t (fractional
/// allowed), mapped as the model reads timesteps: VP by the log-SNR map
/// (vp_point_at_timestep over s.alphas_cumprod), flow by σ = t/T with T the
/// schedule's timestep scale (timestep = σ·T at every flow point).
NoisePoint point_at_timestep(const Schedule& s, double t);

/// The point of the schedule's noise path with half log-SNR λ = log(α/σ)
/// (DPM-Solver, Lu et al. 2022 Eq. 3.3), for samplers that evaluate the model
/// between schedule points: VP: vp_point_at_k_sigma(e^-λ); flow: t = 1/(1+e^λ).
NoisePoint point_at_lambda(const Schedule& s, double lambda);

/// The denoiser's output for x at an arbitrary point p (all rows there).
DenoiserOutput denoise_at_point(SamplerContext& ctx, const at::Tensor& x, const NoisePoint& p);

/// The denoiser's output for x at point i (all rows at that point).
DenoiserOutput denoise_at(SamplerContext& ctx, const at::Tensor& x, int64_t i);

/// schedule_options() with final_sigmas_type defaulting to sigma_min, for
/// samplers whose diffusers twin ends at the smallest training sigma (ᾱ_0's
/// point) rather than at 0; `twin` names it in the option's help.
std::vector<SamplerOptionInfo> schedule_options_ending_at_sigma_min(const std::string& twin);

/// Step i's Gaussian noise, shaped like `like`, on its device and dtype.
/// Throws SamplerError when the run has no StepNoise.
at::Tensor noise_like(StepNoise* noise, int64_t i, const at::Tensor& like);

/// Fires the callback (if any) after step i.
void report(SamplerContext& ctx, int64_t i, const at::Tensor& x);

/// Runs a single-step rule sequentially: for i in 0..N-1,
/// x = rule(i, x, D(x), D(previous x)). The sequential twin of Picard.
at::Tensor run_step_rule(SamplerContext& ctx, at::Tensor x, const StepRule& rule);

}  // namespace fewstep::detail
