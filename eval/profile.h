// `fewstep profile`: one generation (after a warm-up) under LibTorch's
// Kineto profiler. Produces a top-operator table by self time, a table by
// pipeline stage from the runtime's own record_function ranges, and a
// Chrome trace (trace.json) that opens in Perfetto (ui.perfetto.dev).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "eval/flops.h"
#include "pipeline/pipeline.h"

namespace fewstep {

/// What to profile; unset optionals take the model's defaults.
struct ProfileOptions {
  std::string model;  ///< empty = the embedded model
  std::string prompt, negative_prompt, sampler;
  std::optional<int64_t> steps, width, height;
  std::optional<double> cfg_scale;
  uint64_t seed = 0;
  std::optional<std::string> timestep_spacing;
  SamplerOptions sampler_options;
  RuntimeOptions rt;
  std::filesystem::path out;  ///< output folder (created when missing)
  int64_t top = 25;           ///< rows of the operator table
  /// Called once the model is loaded, with the request to profile: it may
  /// change the request (the distributed layer sets a CFG split there) and
  /// returns false when this process has no share of the work (run_profile
  /// then returns an empty report). Empty = profile everything here.
  std::function<bool(const Pipeline&, GenerateRequest&)> prepare;
  bool write_trace = true;  ///< false: profile, but write no file (a partner rank of a CFG split)
};

/// One profiler event, reduced to what the tables need. Times in ns.
struct ProfiledEvent {
  std::string name;
  uint64_t start_ns = 0, end_ns = 0;
  uint64_t thread = 0;
  bool on_device = false;   ///< a GPU kernel, copy or set (not a host-side op)
  bool user_scope = false;  ///< a record_function range (RecordScope::USER_SCOPE)
  bool op = false;          ///< an operator (RecordScope::FUNCTION) on the host
  uint64_t flops = 0;       ///< FLOPs from the recorded input shapes (op_flops, conv_flops); 0 for other ops
};

/// One row of the operator table.
struct OpRow {
  std::string name;
  std::string device;  ///< "CPU" (host operators) or "CUDA" (kernels)
  int64_t calls = 0;
  double self_ms = 0;   ///< time not spent in nested operators
  double total_ms = 0;  ///< inclusive time
  double share = 0;     ///< self_ms over the device's summed self time, in [0, 1]
  double gflop = 0;     ///< summed FLOPs (op_flops, conv_flops) / 1e9; 0 for ops that are not counted
};

/// One row of the stage table.
struct StageRow {
  std::string name;
  int64_t calls = 0;
  double inclusive_ms = 0;  ///< summed durations of the stage's ranges
  double exclusive_ms = 0;  ///< inclusive minus the stage ranges nested directly inside
  double gflop = 0;         ///< FLOPs of the operators inside the stage's ranges (inclusive) / 1e9; see stage_table
};

/// The stage an event belongs to, or "" when it is none: the runtime's
/// ranges text_encoder, unet, unet.<block>, sampler, vae_decoder; the
/// attention op's own range `attention` (fused kernels) and LibTorch's
/// aten::scaled_dot_product_attention (native attention) both as `attention`.
std::string stage_of(const std::string& event_name);

/// Operator rows by self time, descending, at most `top`. Self time nests
/// host operators per thread by their intervals (an operator's self time is
/// its duration minus its direct children's); device events are their own
/// self time.
std::vector<OpRow> op_table(const std::vector<ProfiledEvent>& events, int64_t top);

/// Stage rows in order of first appearance. Stage ranges nest per thread;
/// on one thread the exclusive times of all rows sum to at most the span
/// of the outermost ranges. A stage's FLOPs are those of the host operators
/// inside its ranges on the same thread, each operator counted only when no
/// operator around it has FLOPs itself (an attention op counts, not the
/// matrix products of LibTorch's math attention inside it).
std::vector<StageRow> stage_table(const std::vector<ProfiledEvent>& events);

/// FLOPs of the UNet per batch row: profiles one generation of `req` (pass
/// a short one; its size matters, its CFG scale, sampler and steps do not),
/// sums the FLOPs of the `unet` / `unet.*` stages and divides by the rows
/// the UNet ran (2 per call with CFG). Every layer's FLOP count is linear in the batch, so a run's UNet
/// FLOPs are this times its GenerateStats::unet_rows (up to ops whose size
/// does not grow with the batch, such as the time embedding's frequency
/// table: a few FLOPs per call). nullopt for analytic
/// models (no UNet) and when the profiler records nothing. Throws the
/// Pipeline's errors.
std::optional<double> unet_flops_per_row(Pipeline& pipe, const Conditioning& cond, GenerateRequest req);

/// The profile's results.
struct ProfileReport {
  std::vector<OpRow> ops;
  std::vector<StageRow> stages;
  double total_ms = 0;  ///< wall time of the profiled encode + generate
  int64_t events = 0;   ///< events the profiler recorded
  std::filesystem::path trace;
  std::string description;  ///< what ran: model, sampler, steps, size, device, dtype
};

/// Loads the model, runs one untimed warm-up generation, then profiles one
/// prompt encoding and generation (host activity; also CUDA with a CUDA
/// device) and writes `out/trace.json` (unless !write_trace; see prepare). Throws std::invalid_argument /
/// FileError naming the flag, the Pipeline's errors, or std::runtime_error
/// when the profiler records nothing.
ProfileReport run_profile(const ProfileOptions& o);

/// Aligned text tables (the CLI prints them).
std::string format_op_table(const std::vector<OpRow>& rows);
std::string format_stage_table(const std::vector<StageRow>& rows, double total_ms);

}  // namespace fewstep
