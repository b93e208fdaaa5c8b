// One diffusers peer case, as written by tools/oracles/diffusers_samplers.py,
// and the run of fewstep on it.
#pragma once

#include "samplers/sampler.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fewstep::peer {

/// Flat float64 values of a [1, C, H, W] sample (row-major).
using Flat = std::vector<double>;

/// A case: the configuration both sides run and diffusers' results.
struct PeerCase {
  std::string id, sampler, diffusers_class;
  std::string compare;          ///< "all" | "trajectory" | "schedule" | "runs" | "refused" (see the oracle)
  std::string known_different;  ///< why the scope is narrower than "all" ("" if it is not)
  std::string diffusers_error;  ///< what diffusers raised or produced, if anything
  std::string note;             ///< how the oracle worked around a diffusers defect, if it did
  /// Per trajectory entry: how far 1e-15 relative in diffusers' sigmas moves its sample (peer_case.cpp).
  std::vector<double> rounding_floor;
  int64_t steps = 0;  ///< steps requested (fewstep may drop a repeated final point: see `timesteps`)
  uint64_t noise_seed = 0;
  bool stochastic = false;
  std::vector<int64_t> shape;
  SchedulerConfig config;
  SamplerOptions options;
  std::string diffusers_config;               ///< the diffusers config as JSON text, for messages
  std::vector<double> timesteps;              ///< [N] model timestep at points 0..N-1, as fewstep must build them
  std::vector<std::optional<double>> sigmas;  ///< [N+1] k-sigma σ/α; the last may be unknown (LCM)
  std::vector<double> model_timesteps;        ///< every model call's timestep, in order
  Flat x_init;                                ///< x at point 0 (x = α·x0 + σ·ε): the scaled unit noise
  std::optional<Flat> x_final;                ///< expected x at point N
  std::vector<Flat> trajectory;               ///< x after step i (point i+1), for the steps diffusers completed
  std::vector<Flat> trajectory_corrected;     ///< UniPC: corrected x at points 1..N-1
  std::vector<Flat> step_noise;               ///< stochastic samplers: the noise of step i
  /// Other valid expectations with a different step count (fewstep may drop
  /// a repeated final sigma); compare against the one whose step count
  /// matches fewstep's schedule (expectation_for).
  std::vector<PeerCase> alternatives;
};

/// The expectation (the case or one of its alternatives) with `steps` schedule steps; the case
/// itself when none matches.
const PeerCase& expectation_for(const PeerCase& c, int64_t steps);

/// Reads a case from the oracle's JSON object. Throws nlohmann::json
/// exceptions or std::runtime_error on a malformed case.
PeerCase parse_case(const nlohmann::json& j, const std::vector<int64_t>& shape);

/// What fewstep produced for a case.
struct PeerRun {
  at::Tensor timesteps, k_sigmas;       ///< schedule: [N], [N+1] float64
  std::vector<double> model_timesteps;  ///< every model call's timestep, in order
  std::vector<Flat> trajectory;         ///< x after each step (callback), in x = α·x0 + σ·ε units
  Flat x_start;                         ///< the unit noise scaled as sample() scales it
  Flat x_final;
  std::string noise_problem;  ///< non-empty when StepNoise did not reproduce the oracle's noise
};

/// Builds fewstep's schedule and denoiser for the case and runs it through
/// sample() on the toy model in float64, from seeded_unit_noise(shape,
/// noise_seed) and with sample()'s own step noise (StepNoise(noise_seed,
/// skip 1)), as generate does. Records whether StepNoise reproduces the
/// oracle's noise. Throws what fewstep throws.
PeerRun run_fewstep(const PeerCase& c);

/// The differences between fewstep's run and diffusers' results that the
/// case's scope covers, one line each (empty: they agree). Tolerances are
/// documented in peer_case.cpp.
std::vector<std::string> compare_run(const PeerCase& c, const PeerRun& run);

/// A one-line summary of the case's configuration for failure messages.
std::string describe(const PeerCase& c);

}  // namespace fewstep::peer
