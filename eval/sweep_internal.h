// Pieces shared by sweep.cpp and sweep_report.cpp (not a public interface).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "eval/sweep.h"

namespace fewstep {

/// One (sampler, steps) averaged over prompts and seeds.
struct SweepSetting {
  std::string sampler;
  int64_t steps = 0;
  std::optional<double> rtol;  ///< adaptive samplers: the setting is a tolerance
  double nfe = 0, wall_ms = 0, rmse_latent = 0, ssim = 0;
  double psnr_db = 0;  ///< from the mean squared image error
};

/// "8" (steps) or "rtol 0.05" (an adaptive sampler's tolerance).
std::string setting_label(const SweepSetting& s);

/// Settings in first-seen order of the rows.
std::vector<SweepSetting> aggregate_settings(const std::vector<SweepRow>& rows);

/// The settings no other beats on both NFE (<=) and PSNR (>=), sorted by NFE.
std::vector<SweepSetting> pareto_front(const std::vector<SweepSetting>& settings);

}  // namespace fewstep
