// Running a sampler; see sample.h.
#include "samplers/sample.h"

#include "samplers/registry.h"
#include "samplers/schedule.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace fewstep {

at::Tensor seeded_unit_noise(const std::vector<int64_t>& shape, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

bool draws_step_noise(const SamplerInfo& info, const ResolvedOptions& resolved) {
  if (resolved.has("eta")) return resolved.real("eta") > 0;
  return info.stochastic;
}

at::Tensor sample(const SamplerInfo& info, const Schedule& schedule, Denoiser& denoiser, const at::Tensor& unit_noise,
                  const ResolvedOptions& resolved, uint64_t seed, const StepCallback& cb,
                  const std::optional<PicardOptions>& picard, SampleStats* stats, const PicardSplit* split) {
  const auto dtype = unit_noise.scalar_type();
  if (dtype != at::kFloat && dtype != at::kDouble)
    throw SamplerError("sampler math runs in float32 or float64; the initial noise has another dtype");
  if (schedule.steps() < 1) throw SamplerError("schedule has no steps");
  if (!info.run) throw SamplerError("sampler '" + info.name + "' has no implementation");
  // The callers' unit noise is seeded_unit_noise(shape, seed), one float32
  // draw: step noise continues that stream rather than repeating it.
  StepNoise noise(unit_noise.sizes().vec(), seed, dtype, /*skip=*/1);
  SamplerContext ctx{schedule, denoiser, resolved, &noise, cb};
  const at::Tensor x = unit_noise * initial_noise_scale(schedule);
  const int64_t nfe0 = denoiser.nfe, rows0 = denoiser.rows;
  SampleStats local;
  at::Tensor out;
  if (picard) {
    if (!info.step_rule) {
      std::string with_rule;
      for (const SamplerInfo& s : sampler_registry())
        if (s.step_rule) with_rule += (with_rule.empty() ? "" : ", ") + s.name;
      throw SamplerError("sampler '" + info.name + "' has no Picard form (use " + with_rule + ")");
    }
    out = picard_sample(info, ctx, x, *picard, &local, split);
  } else {
    out = info.run(ctx, x);
    local.nfe = denoiser.nfe - nfe0;
  }
  local.rows = denoiser.rows - rows0;
  if (stats) *stats = local;
  return out;
}

}  // namespace fewstep
