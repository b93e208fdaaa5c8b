// The PNG `parameters` text (see parameters.h).
#include "pipeline/parameters.h"

#include <cctype>
#include <sstream>

#include "samplers/registry.h"

namespace fewstep {

std::string format_parameters(const std::string& prompt, const std::string& negative_prompt, const GenerateRequest& req,
                              const std::string& model_name, const std::string& guidance_mode) {
  std::ostringstream s;
  s << prompt << "\n";
  if (!negative_prompt.empty()) s << "Negative prompt: " << negative_prompt << "\n";
  // The resolved name, and whether the seed drives step noise even with
  // --init-noise (a stochastic sampler); an unknown name is written as given.
  std::string sampler = req.sampler;
  bool step_noise = false;
  try {
    const SamplerInfo& info = find_sampler(req.sampler);
    sampler = info.name;
    step_noise = draws_step_noise(info, resolve_sampler_options(info, req.sampler_options));
  } catch (const SamplerError&) {
  }
  s << "Steps: " << req.steps << ", Sampler: " << sampler;
  // A1111's "Schedule type" is the sigma spacing (Karras, Exponential, ...).
  std::string other_options;
  for (const auto& [key, value] : req.sampler_options) {
    if (key == "sigma_spacing" && !value.empty() && value != "none") {
      std::string v = value;
      v[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(v[0])));
      s << ", Schedule type: " << v;
    } else {
      other_options += (other_options.empty() ? "" : " ") + key + "=" + value;
    }
  }
  s << ", CFG scale: " << req.cfg_scale;
  if (guidance_mode == "embedded") s << ", Guidance: embedded";
  if (req.init_noise.defined()) s << ", Initial noise: from file";
  if (!req.init_noise.defined() || step_noise) s << ", Seed: " << req.seed;
  s << ", Size: " << req.width << "x" << req.height << ", Model: " << model_name;
  if (req.timestep_spacing) s << ", Timestep spacing: " << *req.timestep_spacing;
  if (!other_options.empty()) s << ", Sampler options: " << other_options;
  if (req.picard)
    s << ", Parallel: picard window=" << req.picard->window << " tol=" << req.picard->tol
      << " max_rounds=" << req.picard->max_rounds;
  return s.str();
}

}  // namespace fewstep
