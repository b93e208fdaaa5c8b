// libFuzzer target: model.json (unet/package.h parse_manifest) on arbitrary
// bytes, in a virtual package folder where every named file exists except
// those whose name contains "missing"; the same text as a diffusers
// scheduler_config.json (parse_scheduler_config). Only ModelError may come
// out, and an accepted manifest must hold what the pipeline relies on.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "unet/package.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const fewstep::ModelManifest m = fewstep::parse_manifest(
        text, "/pkg", "/pkg/model.json",
        [](const std::filesystem::path& p) { return p.filename().string().find("missing") == std::string::npos; });
    if (m.sample_height < 1 || m.sample_width < 1 || m.defaults.width < 1 || m.defaults.height < 1 ||
        m.size_multiple() < 1 || m.defaults.steps < 1)
      std::abort();
    if (m.kind == "latent" && !m.vae_decoder) std::abort();
    if (m.text_encoder && !m.tokenizer) std::abort();
  } catch (const fewstep::ModelError&) {
  }
  try {
    fewstep::parse_scheduler_config(std::string(text), "scheduler_config.json");
  } catch (const fewstep::ModelError&) {
  }
  return 0;
}
