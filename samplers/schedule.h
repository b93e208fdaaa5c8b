// fewstep sampler layer: training schedules and inference schedules.
//
// Training: betas -> alphas_cumprod (Ho et al. 2020, "Denoising Diffusion
// Probabilistic Models", Eq. 4: ᾱ_t = ∏ (1 - β_s)), with the zero-terminal-SNR
// rescale (Lin et al. 2024, Algorithm 1), or rectified flow (σ = t, Esser et
// al. 2024 "Scaling Rectified Flow Transformers", with SD3's time shift).
//
// Inference: the timestep spacings of diffusers' scheduler families, Karras
// (Karras et al. 2022, Eq. 5), exponential and "simple" sigma spacings, and
// user-given timesteps or sigmas. Everything is float64.
#pragma once

#include "samplers/sampler.h"

#include <cstdint>
#include <string>
#include <vector>

namespace fewstep {

/// True when the config describes a rectified-flow model (prediction_type
/// flow): x_t = (1-t)·x0 + t·ε, with the model timestep t·num_train_timesteps.
bool is_flow(const SchedulerConfig& cfg);

/// Training betas [num_train_timesteps] float64 from beta_schedule
/// (linear | scaled_linear | squaredcos_cap_v2) or trained_betas, before any
/// zero-SNR rescale. Throws SamplerError for an unknown beta_schedule, a
/// trained_betas length that differs from num_train_timesteps, or betas
/// outside (0, 1].
at::Tensor training_betas(const SchedulerConfig& cfg);

/// ᾱ_t [num_train_timesteps] float64 (Ho et al. 2020 Eq. 4), rescaled to zero
/// terminal SNR when cfg.rescale_betas_zero_snr (Lin et al. 2024 Alg. 1).
/// Empty for flow models. The terminal zero is left as is; make_schedule
/// decides how to clamp it.
at::Tensor training_alphas_cumprod(const SchedulerConfig& cfg);

/// A point on the noise path: x = alpha·x0 + sigma·ε, seen by the model at
/// `timestep` (training-timestep units, fractional allowed).
struct NoisePoint {
  double timestep = 0, alpha = 1, sigma = 0;
};

/// The VP point at a fractional training timestep t ∈ [0, T-1]: log-SNR
/// λ = log(ᾱ/(1-ᾱ)) is interpolated linearly between integer timesteps, so
/// the point is exact at training timesteps. t is clamped to [0, T-1].
/// alphas_cumprod: [T] float64.
NoisePoint vp_point_at_timestep(const at::Tensor& alphas_cumprod, double t);

/// The VP point at a fractional training timestep t ∈ [0, T-1] as diffusers'
/// Euler family defines it (EulerDiscrete, EulerAncestralDiscrete,
/// HeunDiscrete: np.interp(t, arange(T), sigmas)): the k-sigma σ/α is
/// interpolated linearly between integer timesteps. Exact at integer t, where
/// it equals vp_point_at_timestep; in between it differs from the log-SNR map
/// by up to ~2e-4 relative. t is clamped to [0, T-1]. alphas_cumprod: [T]
/// float64.
NoisePoint vp_point_linear_k_sigma(const at::Tensor& alphas_cumprod, double t);

/// The VP point whose k-diffusion sigma (σ/α, Karras et al. 2022) is
/// `k_sigma` ≥ 0; its timestep is the inverse of vp_point_at_timestep (so
/// the two agree to float rounding), clamped to [0, T-1] outside the training
/// range; a timestep within 1e-9 of an integer is that integer (a training
/// sigma maps to its own timestep despite rounding in λ). k_sigma = 0 gives (timestep 0, alpha 1, sigma 0).
NoisePoint vp_point_at_k_sigma(const at::Tensor& alphas_cumprod, double k_sigma);

/// The flow point at t ∈ [0, 1]: alpha = 1 - t, sigma = t, timestep t·T.
NoisePoint flow_point(double t, int64_t num_train_timesteps);

/// SD3's time shift of flow sigmas: shift·t / (1 + (shift-1)·t).
double flow_shift(double t, double shift);

/// Descending model timesteps for `steps` steps of a diffusers family
/// ("ddim" for DDIM/DDPM, "euler" for Euler/Heun, "dpm" for DPM-Solver/UniPC)
/// and spacing (leading | trailing | linspace), as diffusers' set_timesteps
/// defines them (see schedule.cpp for each formula). Rounding is half to
/// even, as numpy's. Trailing always yields exactly `steps` values (numpy's
/// float arange sometimes yields one more: a diffusers bug, not reproduced).
/// Throws SamplerError for an unknown spacing or steps < 1.
std::vector<double> spaced_timesteps(const std::string& family, const std::string& spacing, int64_t steps,
                                     int64_t num_train_timesteps, int64_t steps_offset);

/// Karras et al. 2022 Eq. 5 (ρ = 7): n sigmas from sigma_max down to sigma_min.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n, double rho = 7.0);

/// n sigmas geometrically spaced from sigma_max down to sigma_min.
std::vector<double> exponential_sigmas(double sigma_min, double sigma_max, int64_t n);

/// The spacing a family uses when cfg.timestep_spacing is unset (diffusers'
/// defaults: leading for DDIM/DDPM/LCM, linspace for the others).
std::string default_timestep_spacing(const std::string& family);

/// Builds the inference schedule of `steps` steps for a sampler.
///
/// Sources, first match wins: the sampler options `timesteps` / `sigmas`
/// (user-given, descending) or cfg.custom_timesteps / cfg.custom_sigmas;
/// flow models: diffusers' FlowMatchEulerDiscrete sigmas with `shift`; the
/// option `sigma_spacing` or cfg.sigma_spacing (karras | exponential |
/// simple); the `lcm` family's own timesteps; otherwise the family's
/// timestep_spacing with steps_offset. The final point is sigma 0 (alpha 1)
/// unless `final_sigmas_type` (option, else cfg) is sigma_min: the VP point
/// ᾱ_0 at timestep 0 (flow: the shifted 1/T). For the ddim sampler the
/// config's set_alpha_to_one, when set, replaces cfg.final_sigmas_type
/// (false: ᾱ_0, as DDIMScheduler's final_alpha_cumprod; true: ᾱ = 1).
///
/// Guarantees: timesteps in [0, T-1] and sigmas strictly decreasing over the
/// N+1 points (duplicates after clamping a timestep to T-1, e.g. leading
/// spacing at steps = T with steps_offset 1, are dropped, so steps() may be
/// less than `steps`); no point with alpha 0 when prediction_type is epsilon
/// (a zero-SNR terminal ᾱ is clamped to 2^-24, as diffusers' Euler and
/// DPM-Solver do; the euler and dpm families always clamp it).
/// Repeated timesteps that a spacing's rounding produces (DPM linspace near
/// steps = T) are dropped the same way.
/// Fractional timesteps map to points as diffusers' family does: the euler
/// family (spacing and user-given timesteps) by vp_point_linear_k_sigma, the
/// others by vp_point_at_timestep. Karras and exponential sigmas are inverted
/// with the log-SNR map (diffusers' _sigma_to_t); for the dpm family the
/// model's timestep is then diffusers' int64 one while alphas/sigmas keep the
/// exact sigmas: Karras rounds half to even (except the dpmpp_* samplers,
/// i.e. DPMSolverMultistep, with beta_schedule squaredcos_cap_v2), the rest
/// truncates. A point whose integer would equal a neighbour's (sigmas dense
/// near σ_min or σ_max) keeps its exact timestep, so model timesteps stay
/// strictly decreasing (diffusers would repeat them).
/// Throws SamplerError on bad input (steps < 1, unknown spacing, leading
/// spacing whose step ratio T // N is 0 (DPM family at steps ≥ T/2), custom
/// values not descending or out of range, lcm steps over
/// original_inference_steps).
Schedule make_schedule(const SchedulerConfig& cfg, const SamplerInfo& sampler, int64_t steps,
                       const ResolvedOptions& resolved);

/// Unit noise times this is x at point 0: sqrt(alpha0² + sigma0²) (1 for VP).
double initial_noise_scale(const Schedule& schedule);

}  // namespace fewstep
