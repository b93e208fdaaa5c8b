// fewstep model packages: a folder with model.json (the manifest) and the
// TorchScript files it names, like a diffusers pipeline folder.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>
#include <stdexcept>
#include <string>

#include "samplers/config.h"

namespace fewstep {

/// Any problem with a model package: one line that names the file and the
/// field (e.g. "models/x/model.json: field 'unet.form': expected \"monolithic\" or \"blocks\"").
struct ModelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// `unet` entry of model.json.
struct UnetSpec {
  std::string file;                 ///< TorchScript file, relative to the package
  std::string form = "monolithic";  ///< "monolithic" | "blocks"
  int64_t downsample_factor = 8;    ///< model-space sizes must be multiples of this
};

/// `text_encoder` entry: forward(input_ids [B, L] int64) -> [B, L, D].
struct TextEncoderSpec {
  std::string file;
  int64_t context_length = 77;
  int64_t hidden_size = 768;
};

/// `tokenizer` entry: CLIP-format vocab.json + merges.txt.
struct TokenizerSpec {
  std::string vocab, merges;
};

/// `vae_decoder` entry: forward(latents) -> image [B, 3, H, W] (or [B, 1, H, W], grey) in [-1, 1].
struct VaeSpec {
  std::string file;
  double scaling_factor = 0.18215;
};

/// `defaults` entry: what `generate` uses when a flag is omitted.
struct ModelDefaults {
  std::string sampler = "ddim";
  int64_t steps = 20;
  double cfg_scale = 7.5;
  int64_t width = 0, height = 0;  ///< pixels; 0 = sample_size × vae_scale_factor
};

/// A validated model.json. Paths are absolute (resolved against `dir`).
struct ModelManifest {
  std::filesystem::path dir;
  int64_t format_version = 1;
  std::string name;
  std::string kind;                             ///< "pixel" | "latent"
  int64_t sample_height = 0, sample_width = 0;  ///< model space
  int64_t in_channels = 0;
  int64_t vae_scale_factor = 1;
  SchedulerConfig scheduler;
  UnetSpec unet;
  std::optional<TextEncoderSpec> text_encoder;
  std::optional<TokenizerSpec> tokenizer;
  std::optional<VaeSpec> vae_decoder;
  ModelDefaults defaults;
  std::string license, attribution;

  /// Pixel size multiple that width and height must respect.
  int64_t size_multiple() const { return unet.downsample_factor * vae_scale_factor; }
};

/// Reads and validates `dir/model.json`: required keys, types, value ranges
/// and the existence of every file named. Omitted scheduler keys take
/// diffusers' defaults (README, "Model packages").
/// Throws ModelError (one line naming the file and the field).
ModelManifest load_manifest(const std::filesystem::path& dir);

/// Says whether a file a manifest names exists (a regular file). load_manifest
/// asks the file system; tests and fuzz targets pass a virtual folder.
using FileExists = std::function<bool(const std::filesystem::path&)>;

/// The validation of load_manifest on model.json's text, with no file read:
/// `dir` is the package folder the manifest's paths are resolved against (used
/// as given), `file` names the manifest in errors, and `exists` decides
/// whether each file named is there. Throws ModelError (one line naming
/// `file` and the field).
ModelManifest parse_manifest(std::string_view json_text, const std::filesystem::path& dir, const std::string& file,
                             const FileExists& exists);

/// Parses a scheduler object with diffusers' scheduler_config.json keys into
/// a SchedulerConfig; `where` prefixes error messages. Throws ModelError.
SchedulerConfig parse_scheduler_config(const std::string& json_text, const std::string& where);

}  // namespace fewstep
