// fewstep sampler layer: reading and checking `--sampler-option key=value`
// values. Samplers read resolved options (every key present, already checked
// by resolve_sampler_options) through these helpers.
#pragma once

#include "samplers/sampler.h"

#include <string>
#include <vector>

namespace fewstep {

/// The option's value, or `fallback` when the key is absent or empty.
std::string option_or(const SamplerOptions& o, const std::string& key, const std::string& fallback);
/// The option as a double / integer / bool, or `fallback` when absent.
/// Throws SamplerError naming the key when the value does not parse.
double option_double(const SamplerOptions& o, const std::string& key, double fallback);
int64_t option_int(const SamplerOptions& o, const std::string& key, int64_t fallback);
bool option_bool(const SamplerOptions& o, const std::string& key, bool fallback);
/// A comma-separated list of numbers (empty when absent or empty).
std::vector<double> option_list(const SamplerOptions& o, const std::string& key);

/// Checks one value against its registry row and returns it normalized
/// (booleans become true|false, lists lose spaces). Throws SamplerError
/// "sampler option KEY=VALUE: <why>; valid: <choices or range>".
std::string check_option_value(const SamplerOptionInfo& info, const std::string& value);

/// Registry-row builders, so each sampler's table stays one line per option.
SamplerOptionInfo choice_option(std::string name, std::string def, std::vector<std::string> choices, std::string help);
SamplerOptionInfo bool_option(std::string name, bool def, std::string help);
SamplerOptionInfo int_option(std::string name, int64_t def, int64_t min, int64_t max, std::string help);
SamplerOptionInfo real_option(std::string name, double def, double min, double max, std::string help);
SamplerOptionInfo index_list_option(std::string name, std::string help);

/// The schedule options every sampler takes: final_sigmas_type,
/// sigma_spacing, timesteps, sigmas (see make_schedule).
std::vector<SamplerOptionInfo> schedule_options();

/// `eta` (stochasticity: 0 deterministic, 1 the ancestral/DDPM amount).
SamplerOptionInfo eta_option(double def);

}  // namespace fewstep
