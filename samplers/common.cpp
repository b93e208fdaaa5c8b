// Shared sampler helpers; see common.h.
#include "samplers/common.h"

#include <ATen/CPUGeneratorImpl.h>

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

DenoiserOutput denoise_at(SamplerContext& ctx, const at::Tensor& x, int64_t i) {
  return ctx.denoiser(x, levels_at(ctx.schedule, i, x.size(0)));
}

at::Tensor noise_like(StepNoise* noise, int64_t i, const at::Tensor& like) {
  if (!noise) throw SamplerError("stochastic sampler run without a noise generator");
  const at::Tensor& z = noise->at_step(i);
  if (z.sizes() != like.sizes()) throw SamplerError("step noise shape differs from the sample's");
  return z.to(like.device(), like.scalar_type());
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
