// The `parameters` text that SD front ends (A1111, ComfyUI's readers) write
// into a PNG's tEXt chunk, for one generated image.
#pragma once

#include <string>

#include "pipeline/pipeline.h"

namespace fewstep {

/// The A1111-style `parameters` text: prompt, "Negative prompt: ..." (when
/// non-empty), then "Steps: N, Sampler: S[, Schedule type: Karras], CFG scale: F,
/// Seed: N, Size: WxH, Model: M", and when set ", Timestep spacing: ...",
/// ", Sampler options: k=v k=v", ", Parallel: picard window=P tol=T max_rounds=R".
/// S is the registry name (aliases resolved). With req.init_noise, "Seed: N"
/// becomes "Initial noise: from file", followed by the seed only when the
/// sampler draws step noise from it. With guidance_mode "embedded" (LCM),
/// "CFG scale: F" is the embedded w and ", Guidance: embedded" follows it.
/// Throws nothing.
std::string format_parameters(const std::string& prompt, const std::string& negative_prompt, const GenerateRequest& req,
                              const std::string& model_name, const std::string& guidance_mode = "cfg");

}  // namespace fewstep
