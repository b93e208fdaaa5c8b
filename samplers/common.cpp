// Shared sampler helpers; see common.h.
#include "samplers/common.h"

#include "samplers/schedule.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

namespace fewstep {

StepNoise::StepNoise(std::vector<int64_t> shape, uint64_t seed, at::ScalarType dtype, int64_t skip)
    : shape_(std::move(shape)), gen_(at::make_generator<at::CPUGeneratorImpl>(seed)), dtype_(dtype) {
  if (skip < 0) throw SamplerError("StepNoise: negative skip");
  for (int64_t k = 0; k < skip; ++k) (void)at::randn(shape_, gen_, at::TensorOptions().dtype(at::kFloat));
}

const at::Tensor& StepNoise::at_step(int64_t i) {
  if (i < 0) throw SamplerError("StepNoise: negative step index");
  while (static_cast<int64_t>(drawn_.size()) <= i)
    drawn_.push_back(at::randn(shape_, gen_, at::TensorOptions().dtype(dtype_)));
  return drawn_[static_cast<size_t>(i)];
}

namespace detail {

bool is_flow_path(const Schedule& s) {
  if (s.alphas_cumprod.defined() && s.alphas_cumprod.numel() > 0) return false;
  for (int64_t i = 0; i <= s.steps(); ++i) {
    const double a = alpha_at(s, i), sg = sigma_at(s, i);
    if (sg > 1e-9 && sg < 1 - 1e-9) return std::abs(a + sg - 1.0) < 1e-9;
  }
  return true;  // no interior point: only flow paths start at alpha 0
}

NoiseLevels levels_at(const Schedule& s, int64_t i, int64_t rows) {
  auto opts = at::TensorOptions().dtype(at::kDouble);
  return {at::full({rows}, alpha_at(s, i), opts), at::full({rows}, sigma_at(s, i), opts),
          at::full({rows}, timestep_at(s, i), opts)};
}

namespace {
// A flow schedule's timestep scale T (timestep = σ·T at every point).
double flow_timestep_scale(const Schedule& s) {
  for (int64_t i = 0; i <= s.steps(); ++i)
    if (sigma_at(s, i) > 0 && timestep_at(s, i) > 0) return timestep_at(s, i) / sigma_at(s, i);
  return 1000.0;  // no point to read it from; diffusers' default num_train_timesteps
}
}  // namespace

NoisePoint point_at_timestep(const Schedule& s, double t) {
  if (!is_flow_path(s)) return vp_point_at_timestep(s.alphas_cumprod, t);
  const double sigma = std::clamp(t / flow_timestep_scale(s), 0.0, 1.0);
  return {t, 1.0 - sigma, sigma};
}

NoisePoint point_at_lambda(const Schedule& s, double lambda) {
  if (!is_flow_path(s)) return vp_point_at_k_sigma(s.alphas_cumprod, std::exp(-lambda));
  const double t = 1.0 / (1.0 + std::exp(lambda));
  return {t * flow_timestep_scale(s), 1.0 - t, t};
}

DenoiserOutput denoise_at_point(SamplerContext& ctx, const at::Tensor& x, const NoisePoint& p) {
  const int64_t rows = x.size(0);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  return ctx.denoiser(
      x, {at::full({rows}, p.alpha, opts), at::full({rows}, p.sigma, opts), at::full({rows}, p.timestep, opts)});
}

DenoiserOutput denoise_at(SamplerContext& ctx, const at::Tensor& x, int64_t i) {
  return ctx.denoiser(x, levels_at(ctx.schedule, i, x.size(0)));
}

at::Tensor noise_like(StepNoise* noise, int64_t i, const at::Tensor& like) {
  if (!noise) throw SamplerError("stochastic sampler run without a noise generator");
  const at::Tensor& z = noise->at_step(i);
  if (z.sizes() != like.sizes()) throw SamplerError("step noise shape differs from the sample's");
  return z.to(like.device(), like.scalar_type());
}

std::vector<SamplerOptionInfo> schedule_options_ending_at_sigma_min(const std::string& twin) {
  std::vector<SamplerOptionInfo> o = schedule_options();
  for (SamplerOptionInfo& s : o)
    if (s.name == "final_sigmas_type") {
      s.default_value = "sigma_min";
      s.help = "the last step's target: the smallest training sigma (default, as " + twin + ") or sigma 0 (returns x0)";
    }
  return o;
}

void report(SamplerContext& ctx, int64_t i, const at::Tensor& x) {
  if (ctx.callback) ctx.callback(i, ctx.schedule.steps(), x);
}

at::Tensor run_step_rule(SamplerContext& ctx, at::Tensor x, const StepRule& rule) {
  const int64_t n = ctx.schedule.steps();
  DenoiserOutput prev;
  for (int64_t i = 0; i < n; ++i) {
    DenoiserOutput out = denoise_at(ctx, x, i);
    x = rule(StepInput{ctx.schedule, i, x, out, i > 0 ? &prev : nullptr, ctx.noise, ctx.options});
    prev = std::move(out);
    report(ctx, i, x);
  }
  return x;
}

}  // namespace detail
}  // namespace fewstep
