// Helpers shared by the sampler tests: run a registry sampler on an analytic
// model from seeded unit noise.
#pragma once

#include "samplers/denoiser.h"
#include "samplers/registry.h"
#include "samplers/sample.h"
#include "samplers/schedule.h"
#include "unet/analytic.h"

#include <ATen/CPUGeneratorImpl.h>

#include <optional>
#include <string>

namespace fewstep::test {

/// Seeded unit noise [batch, C, H, W] for a model.
inline at::Tensor unit_noise(const AnalyticModel& m, int64_t batch, uint64_t seed, at::ScalarType dtype) {
  std::vector<int64_t> shape = {batch};
  shape.insert(shape.end(), m.sample_shape().begin(), m.sample_shape().end());
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kDouble)).to(dtype);
}

struct Run {
  at::Tensor x;        ///< the result
  at::Tensor x_start;  ///< x at point 0
  Schedule schedule;
  SampleStats stats;
};

struct RunArgs {
  std::string sampler;
  int64_t steps = 10;
  SamplerOptions options = {};
  std::optional<std::string> spacing = {};
  at::ScalarType dtype = at::kDouble;
  int64_t batch = 2;
  uint64_t noise_seed = 1;
  uint64_t step_seed = 7;
  std::optional<PicardOptions> picard = {};
  std::optional<SchedulerConfig> config = {};  ///< defaults to the model's
  /// Answer each call at the schedule point's exact noise level
  /// (exact_level_model_fn) rather than at the timestep the model is given.
  bool exact_levels = false;
};

/// The analytic model told each schedule point's exact noise level: a call at
/// the model timestep of point i is answered at the timestep that the model's
/// own map sends to (alphas[i], sigmas[i]). diffusers' definitions give the
/// model a timestep whose point is not exactly the sampler's (Euler family:
/// σ linear in t; DPM family with Karras/exponential sigmas: integer
/// timesteps); measuring an integrator's order needs the ideal denoiser at the
/// sampler's own sigma. A timestep that is no schedule point's (a sampler's
/// intermediate point, which samplers place with the model's own map,
/// samplers/common.h point_at_timestep/point_at_lambda) is passed through.
inline ModelFn exact_level_model_fn(AnalyticModel& model, const Schedule& s) {
  ModelFn inner = model.model_fn();
  const bool flow = s.alphas_cumprod.numel() == 0;
  return [inner, s, flow](const at::Tensor& x, const at::Tensor& timestep) {
    at::Tensor exact = timestep.to(at::kDouble).clone();
    for (int64_t r = 0; r < exact.size(0); ++r) {
      const double t = exact[r].item<double>();
      int64_t i = 0;
      while (i <= s.steps() && s.timesteps[i].item<double>() != t) ++i;
      if (i > s.steps()) continue;
      const double k = s.sigmas[i].item<double>() / s.alphas[i].item<double>();
      if (!flow) exact[r] = vp_point_at_k_sigma(s.alphas_cumprod, k).timestep;
    }
    return inner(x, exact);
  };
}

inline Run run_sampler(AnalyticModel& model, const RunArgs& a) {
  const SamplerInfo& info = find_sampler(a.sampler);
  const ResolvedOptions resolved = resolve_sampler_options(info, a.options);
  SchedulerConfig cfg = a.config.value_or(model.scheduler_config());
  if (a.spacing) cfg.timestep_spacing = *a.spacing;
  Run r;
  r.schedule = make_schedule(cfg, info, a.steps, resolved);
  auto denoiser = make_model_denoiser(a.exact_levels ? exact_level_model_fn(model, r.schedule) : model.model_fn(), cfg);
  const at::Tensor noise = unit_noise(model, a.batch, a.noise_seed, a.dtype);
  r.x_start = noise.to(at::kDouble) * initial_noise_scale(r.schedule);
  r.x = sample(info, r.schedule, *denoiser, noise, resolved, a.step_seed, {}, a.picard, &r.stats);
  return r;
}

/// True when `a` (with its own options) must be refused as a schedule with
/// no step: the sampler ends at sigma_min by default (pndm, plms, deis, tcd:
/// their diffusers twins' ᾱ_0) and its only point already sits there (one
/// `leading` or `linspace` step of the ddim family is at t = 0).
inline bool has_no_step_to_sigma_min(AnalyticModel& model, const RunArgs& a) {
  const SamplerInfo& info = find_sampler(a.sampler);
  if (resolve_sampler_options(info, a.options).choice("final_sigmas_type") != "sigma_min") return false;
  SamplerOptions zero = a.options;
  zero["final_sigmas_type"] = "zero";
  SchedulerConfig cfg = a.config.value_or(model.scheduler_config());
  if (a.spacing) cfg.timestep_spacing = *a.spacing;
  const Schedule s = make_schedule(cfg, info, a.steps, resolve_sampler_options(info, zero));
  return s.steps() == 1 && s.timesteps[0].item<double>() == 0.0;
}

/// The schedule's point i as a NoisePoint.
inline NoisePoint point(const Schedule& s, int64_t i) {
  return {s.timesteps[i].item<double>(), s.alphas[i].item<double>(), s.sigmas[i].item<double>()};
}

/// Root-mean-square of a tensor.
inline double rms(const at::Tensor& t) { return t.to(at::kDouble).pow(2).mean().sqrt().item<double>(); }

}  // namespace fewstep::test
