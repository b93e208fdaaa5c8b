// `fewstep sweep`: quality against cost over samplers × step counts × seeds
// (× prompts), each result compared with a reference solution of the same
// model from the same initial noise. Writes results.csv, contact sheets, a
// quality plot and summary.md (docs/sweep.md describes every file and column).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace fewstep {
namespace dist {
class Group;
}

/// A sweep's settings, as the CLI flags give them.
struct SweepOptions {
  std::string model;                 ///< package folder or analytic:...; empty = the embedded model
  std::vector<std::string> prompts;  ///< at least one (an empty prompt is valid)
  std::string negative_prompt;
  std::vector<std::string> samplers;  ///< registry names or aliases
  std::vector<int64_t> steps;         ///< each >= 1
  std::vector<uint64_t> seeds = {0};
  std::optional<double> cfg_scale;       ///< default: the model's
  std::optional<int64_t> width, height;  ///< pixels; default: the model's
  std::optional<std::string> timestep_spacing;
  SamplerOptions sampler_options;       ///< each key goes to the samplers that have it
  std::optional<PicardOptions> picard;  ///< applied to the swept runs, not the reference
  std::string reference;                ///< "SAMPLER:STEPS"; empty = default (see run_sweep)
  RuntimeOptions rt;
  std::filesystem::path out;  ///< output folder (created when missing)
  bool resume = false;        ///< reuse the finished units under out/units/ (same settings), compute the rest
};

/// The reference a sweep compares with.
struct SweepReference {
  std::string sampler;  ///< empty = the analytic model's exact ODE solution
  int64_t steps = 0;
  std::string describe() const;  ///< "unipc:250" or "exact ODE solution"
};

/// One results.csv row: one prompt × sampler × steps × seed.
struct SweepRow {
  std::string prompt, sampler;
  int64_t steps = 0;
  uint64_t seed = 0;
  int64_t nfe = 0, unet_calls = 0;
  std::optional<double> unet_flops;  ///< UNet FLOPs of the run (unet_rows × FLOPs per row); none for analytic models
  double wall_ms = 0;                ///< sampling + decoding, milliseconds
  double rmse_latent = 0;            ///< RMSE of the final sample against the reference's, model space
  double rmse = 0;                   ///< RMSE of the 8-bit images, on the [0, 1] scale (value / 255)
  double psnr_db = 0;                ///< 20·log10(1 / rmse); +inf for identical images
  double ssim = 0;                   ///< SSIM of the 8-bit images (Wang et al. 2004)
  bool stochastic = false;           ///< the run drew step noise (draws_step_noise with its options)
  int rank = 0;                      ///< the rank that computed the run (0 in a single process)
};

/// What a sweep produced.
struct SweepResult {
  std::vector<SweepRow> rows;
  SweepReference reference;
  std::vector<std::filesystem::path> files;  ///< every file written
};

/// Called after each unit with (units done, units in all); the reference runs count.
using SweepProgress = std::function<void(int64_t, int64_t)>;

/// Splits "a,b,c" (items trimmed). Throws std::invalid_argument
/// "<flag>: the list is empty" when no non-empty item remains, and
/// "<flag>: empty item in '<text>'" for "a,,b" or "a,b,".
std::vector<std::string> parse_list(const std::string& flag, const std::string& text);

/// parse_list, then each item as an integer. Throws std::invalid_argument
/// naming the flag and the item.
std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& text);

/// "SAMPLER:STEPS". Throws std::invalid_argument naming --reference.
SweepReference parse_reference(const std::string& text);

/// Checks everything that needs no model: sampler names (canonicalised:
/// aliases become registry names), steps >= 1, seeds, prompts, the
/// reference, sampler options against the samplers, and that the output
/// folder can be created and written. Repeated samplers (an alias beside its
/// name too), steps, seeds and prompts are dropped, the first kept. Throws std::invalid_argument,
/// SamplerError or FileError with one line naming the flag.
void check_sweep_options(SweepOptions& o);

/// Runs the sweep, across the ranks of `group` when given (every rank calls
/// it with the same options; see below). Every combination of a (prompt, seed) starts from the
/// same unit noise, drawn from a CPU generator seeded with the seed. The
/// reference: `o.reference` when given; else, for analytic models, the
/// exact probability-flow ODE solution (analytic:gaussian; a float64 RK4
/// solve for analytic:gmm) from the highest-noise training point to sigma 0;
/// else the same model with unipc at 250 steps. Writes, in o.out:
/// results.csv, grid.png (one contact sheet per prompt and seed:
/// grid-p<i>-s<seed>.png when there are several), quality.png, summary.md,
/// each atomically (existing files are replaced).
///
/// Work units (eval/sweep_units.h): every run and every reference run is a
/// unit, written atomically to out/units/<id>.unit as soon as it finishes
/// (kept when the sweep fails or is interrupted); with `o.resume` the units
/// whose files hold the same settings are reused and only the others run.
/// Across ranks, the units left to run are split by expected cost
/// (dist::balance_by_cost), each rank runs its own, and rank 0 gathers them
/// over the group, computes every metric from the gathered latents and
/// images, and writes every file; other ranks return an empty result (with
/// the reference). The files equal a single process's except wall_ms,
/// `rank` and summary.md's wall-time figures. `progress` counts this
/// rank's units (done, this rank's total).
/// Throws as check_sweep_options, the Pipeline's errors, dist::DistError.
SweepResult run_sweep(SweepOptions o, const SweepProgress& progress = {}, dist::Group* group = nullptr);

/// results.csv text (RFC 4180; header row, one row per SweepRow; numbers
/// with 6 significant digits, inf for infinite PSNR).
std::string format_results_csv(const std::vector<SweepRow>& rows);

/// summary.md text: per (sampler, steps), averaged over prompts and seeds
/// (PSNR from the mean squared error), the Pareto front of NFE against
/// PSNR, each sampler's fewest steps within 1 dB of its best PSNR, and the
/// fastest setting (wall time) with PSNR >= 30 dB.
std::string format_summary_md(const std::vector<SweepRow>& rows, const SweepReference& reference,
                              const std::string& model);

}  // namespace fewstep
