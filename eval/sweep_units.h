// A sweep's work units: one run each (a swept run or a reference run),
// described by an opaque, deterministic, serialisable spec. Units are what
// the sweep splits across ranks (balanced by expected cost), writes one file
// each under OUT/units/ as they finish, and reuses on --resume. The sweep
// never looks inside a spec to schedule, store or resume a unit: a new axis
// (caches, tolerances, reference models) adds keys to the spec and to the
// function that turns a spec into a request, nothing else.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"
#include "pipeline/pipeline.h"

namespace fewstep {

/// One unit of a sweep.
struct SweepUnit {
  /// Everything that decides the unit's result: its own settings ("kind":
  /// "run" or "reference", prompt, seed, sampler, steps, options, ...) and
  /// the sweep-wide ones (model, size, CFG scale, dtype, ...). Equal specs
  /// give bit-identical results at equal --threads.
  nlohmann::json spec;
  std::string id;   ///< "u-" + FNV-1a of spec.dump() (16 hex digits): its file name under units/
  double cost = 1;  ///< expected cost: expected NFE × rows per UNet call (the model is the sweep's)
  /// Sets id from spec.
  void name();
};

/// What one unit produced: enough for every row, metric, grid and plot.
struct UnitResult {
  at::Tensor latents;  ///< final sample before decoding [1, C, h, w], float32 or float64, CPU
  Image image;         ///< 8-bit RGB
  int64_t nfe = 0, unet_calls = 0, unet_rows = 0;
  double wall_ms = 0;  ///< sampling + decoding
  int rank = 0;        ///< the rank that computed it
};

/// The unit's file bytes (CBOR: the spec, the result's numbers, the latents
/// as .npy bytes and the raw RGB pixels).
std::vector<uint8_t> encode_unit(const SweepUnit& unit, const UnitResult& r);

/// Parses encode_unit's bytes. Returns nullopt when they are not a unit
/// file or hold another spec (a stale file of another sweep); `where` names
/// the source in errors that are not (e.g. a corrupt .npy inside).
std::optional<UnitResult> decode_unit(const std::vector<uint8_t>& bytes, const SweepUnit& expected,
                                      const std::string& where);

/// units/<id>.unit inside the sweep's output folder.
std::filesystem::path unit_path(const std::filesystem::path& out, const SweepUnit& unit);

/// The unit's result from its file, or nullopt when the file is absent,
/// unreadable or holds another spec.
std::optional<UnitResult> load_unit(const std::filesystem::path& out, const SweepUnit& unit);

/// The NFE a run of `req` is expected to make: the sampler driven over its
/// schedule (with `req.picard` when set) by a stand-in linear model on a
/// one-element sample, so multi-stage and adaptive samplers count their
/// extra evaluations. Falls back to req.steps when the dry run fails.
double expected_nfe(const Pipeline& pipe, const GenerateRequest& req);

}  // namespace fewstep
