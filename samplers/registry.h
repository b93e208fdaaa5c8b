// fewstep sampler layer: the one registry table of samplers. It drives the
// CLI (`fewstep samplers`, `--sampler`), the tests, the bench and the docs.
#pragma once

#include "samplers/sampler.h"

#include <optional>
#include <string>
#include <vector>

namespace fewstep {

/// Every sampler, in display order. Built once; never empty.
const std::vector<SamplerInfo>& sampler_registry();

/// The diffusers scheduler class that is this sampler's twin: its first
/// alias that is a diffusers class name (ends in "Scheduler"), if any. The
/// peer tests (tests/samplers_peer) run every sampler that has one.
std::optional<std::string> diffusers_twin(const SamplerInfo& info);

/// The diffusers scheduler class the peer tests run this sampler against:
/// its twin, else the twin class it is another configuration of (plms:
/// PNDMScheduler with skip_prk_steps; dpmpp_3m, dpmpp_2m_sde:
/// DPMSolverMultistepScheduler; a table in registry.cpp), else none. The
/// peer list of tests/samplers_peer and tools/oracles/diffusers_samplers.py
/// is every registry sampler that has one.
std::optional<std::string> diffusers_peer(const SamplerInfo& info);

/// The sampler called `name` (a registry name, or an alias: a diffusers
/// scheduler class name). Throws SamplerError
/// "unknown sampler 'x' (valid: ddim, ddpm, ...)".
const SamplerInfo& find_sampler(const std::string& name);

/// `given` checked against the sampler's options, completed with their
/// defaults and typed (resolve_options): the result has every option key.
/// Throws SamplerError naming the key and listing the valid keys (unknown
/// key) or the valid values/range (bad value).
ResolvedOptions resolve_sampler_options(const SamplerInfo& info, const SamplerOptions& given);

/// The registry as the Markdown table of samplers/README.md: name, aliases,
/// order, NFE, stochasticity (and eta's default), whether Picard applies,
/// and the options besides the shared schedule options (with their defaults;
/// a schedule option whose default differs from the shared one is listed).
/// `fewstep samplers --markdown` prints it; a test checks the README's copy.
std::string sampler_table_markdown();

/// The same with a model's scheduler config: its other_keys that name one of
/// this sampler's options (diffusers' names: solver_order,
/// original_inference_steps, timestep_scaling, ...) and hold a value valid
/// for it become that option's default, as diffusers' from_config hands a
/// scheduler class the config keys it knows; `given` (the user's) wins. A
/// config value this sampler refuses is dropped (its own default stays).
/// Throws SamplerError as above, for `given` only.
ResolvedOptions resolve_sampler_options(const SamplerInfo& info, const SamplerOptions& given,
                                        const SchedulerConfig& cfg);

/// Whether `key` is an option of some sampler that a diffusers scheduler
/// config may carry (every option but fewstep's own eta, sigma_spacing,
/// timesteps, sigmas). A manifest's other scheduler keys are not implemented.
bool is_scheduler_option_key(const std::string& key);

}  // namespace fewstep
