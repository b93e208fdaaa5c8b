// fewstep sampler layer: running a sampler, sequentially or Picard-parallel.
#pragma once

#include "samplers/sampler.h"

#include <cstdint>
#include <optional>
#include <string>

namespace fewstep {

/// What a run cost.
struct SampleStats {
  int64_t nfe = 0;            ///< denoiser evaluations per sample: one per point evaluated
                              ///< (Picard: summed over the window's points, every round)
  int64_t rows = 0;           ///< rows the denoiser evaluated, summed over calls
  int64_t picard_rounds = 0;  ///< Picard rounds (= denoiser calls); 0 when sequential
};

/// One image's unit noise: the first draw, randn(shape) in float32, of a CPU
/// generator seeded with `seed` (torch.Generator().manual_seed(seed) draws
/// the same), so a seed gives the same noise on every device. sample()
/// continues this generator's stream for step noise. Shape is usually
/// [1, C, H, W].
at::Tensor seeded_unit_noise(const std::vector<int64_t>& shape, uint64_t seed);

/// Whether a run of `info` with `resolved` options draws step noise: the
/// `eta` option when the sampler has one (stochastic samplers default to 1,
/// DDIM to 0), else info.stochastic.
bool draws_step_noise(const SamplerInfo& info, const ResolvedOptions& resolved);

/// Runs `info` over `schedule` from unit noise [B, C, H, W] (float32 or
/// float64: that dtype is the sampler math dtype), scaled by
/// initial_noise_scale. `resolved` must come from resolve_sampler_options.
/// Stochastic steps draw from StepNoise(seed, skip 1): when unit_noise is
/// seeded_unit_noise(shape, seed), as the pipeline and sweep make it, step
/// noise continues that stream instead of repeating it (same seed, same
/// result). With `picard`, runs Picard iteration over info.step_rule.
/// Returns the sample at the schedule's final point, in x = α·x0 + σ·ε units
/// (x0 itself when the final sigma is 0). `cb` may be empty; `stats` may be null.
/// Throws SamplerError for a bad dtype, an empty schedule, or Picard on a
/// sampler without a step rule.
at::Tensor sample(const SamplerInfo& info, const Schedule& schedule, Denoiser& denoiser, const at::Tensor& unit_noise,
                  const ResolvedOptions& resolved, uint64_t seed, const StepCallback& cb,
                  const std::optional<PicardOptions>& picard, SampleStats* stats);

/// Picard iteration itself (picard.cpp), x at point 0 given. Returns x at
/// point N; adds its rounds and point evaluations to `stats` when non-null.
at::Tensor picard_sample(const SamplerInfo& info, SamplerContext& ctx, at::Tensor x, const PicardOptions& picard,
                         SampleStats* stats);

}  // namespace fewstep
