// fewstep sampler layer: the one registry table of samplers. It drives the
// CLI (`fewstep samplers`, `--sampler`), the tests, the bench and the docs.
#pragma once

#include "samplers/sampler.h"

#include <string>
#include <vector>

namespace fewstep {

/// Every sampler, in display order. Built once; never empty.
const std::vector<SamplerInfo>& sampler_registry();

/// The sampler called `name` (a registry name, or an alias: a diffusers
/// scheduler class name). Throws SamplerError
/// "unknown sampler 'x' (valid: ddim, ddpm, ...)".
const SamplerInfo& find_sampler(const std::string& name);

/// `given` checked against the sampler's options, completed with their
/// defaults and typed (resolve_options): the result has every option key.
/// Throws SamplerError naming the key and listing the valid keys (unknown
/// key) or the valid values/range (bad value).
ResolvedOptions resolve_sampler_options(const SamplerInfo& info, const SamplerOptions& given);

}  // namespace fewstep
