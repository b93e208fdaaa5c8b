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

/// Picard windows spread over processes (ParaDiGMS' multi-device form,
/// Shih et al. 2023 §4): each round's window of points is cut into
/// `world` contiguous shares (sizes differ by at most one, the first ranks
/// take the larger ones; shares may be empty when the window is smaller
/// than the world), this process evaluates share `rank`, and
/// `allgather_rows` returns every share's denoiser outputs in order, so
/// that every process runs the same cumulative sums and the same
/// convergence test. Set by the distributed layer (dist/), which is the
/// only code that knows what is underneath.
struct PicardSplit {
  int rank = 0, world = 1;
  /// local [counts[rank], ...] -> [sum(counts), ...], shares in rank order.
  std::function<at::Tensor(const at::Tensor& local, const std::vector<int64_t>& counts)> allgather_rows;
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
/// result). With `picard`, runs Picard iteration over info.step_rule
/// (shared across processes by `split` when given).
/// Returns the sample at the schedule's final point, in x = α·x0 + σ·ε units
/// (x0 itself when the final sigma is 0). `cb` may be empty; `stats` may be null.
/// Throws SamplerError for a bad dtype, an empty schedule, or Picard on a
/// sampler without a step rule.
at::Tensor sample(const SamplerInfo& info, const Schedule& schedule, Denoiser& denoiser, const at::Tensor& unit_noise,
                  const ResolvedOptions& resolved, uint64_t seed, const StepCallback& cb,
                  const std::optional<PicardOptions>& picard, SampleStats* stats, const PicardSplit* split = nullptr);

/// Picard iteration itself (picard.cpp), x at point 0 given. Returns x at
/// point N; adds its rounds and point evaluations (all processes' points,
/// as in one process) to `stats` when non-null. With `split` (non-null,
/// world > 1) the window's evaluations are shared as PicardSplit says.
at::Tensor picard_sample(const SamplerInfo& info, SamplerContext& ctx, at::Tensor x, const PicardOptions& picard,
                         SampleStats* stats, const PicardSplit* split = nullptr);

}  // namespace fewstep
