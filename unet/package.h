// fewstep model packages: a folder with model.json (the manifest) and the
// TorchScript files it names, like a diffusers pipeline folder.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>
#include <stdexcept>
#include <string>
#include <vector>

#include "samplers/config.h"

namespace fewstep {

/// Any problem with a model package: one line that names the file and the
/// field (e.g. "models/x/model.json: field 'unet.form': expected \"monolithic\" or \"blocks\"").
struct ModelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// `unet` entry of model.json.
struct UnetSpec {
  std::string file;                 ///< TorchScript file (absolute after load_manifest)
  std::string form = "monolithic";  ///< "monolithic" | "blocks"
  int64_t downsample_factor = 8;    ///< model-space sizes must be multiples of this
  /// D of `timestep_cond` [B, D], the guidance embedding of an LCM UNet
  /// (Luo et al. 2023, Sec. 4.2); 0 = the UNet takes none.
  int64_t time_cond_proj_dim = 0;
  /// "" or "text_time" (SDXL micro-conditioning, Podell et al. 2023, Sec. 2.2):
  /// the UNet takes `added_cond` = cat(pooled text [B, P], time_ids [B, 6]).
  std::string addition_embed_type{};
  /// The UNet's own sinusoidal width per time id (256 for SDXL); informative.
  int64_t addition_time_embed_dim = 0;
};

/// `text_encoder` / `text_encoder_2` entry: forward(input_ids [B, L] int64)
/// -> hidden [B, L, D], or a tuple (hidden [B, L, D], pooled [B, P]).
struct TextEncoderSpec {
  std::string file;
  int64_t context_length = 77;
  int64_t hidden_size = 768;
  int64_t pooled_size = 0;             ///< P of the pooled output; 0 = none used
  std::string field = "text_encoder";  ///< the manifest key, for error messages
};

/// `tokenizer` / `tokenizer_2` entry: CLIP-format vocab.json + merges.txt.
struct TokenizerSpec {
  std::string vocab, merges;
  /// Padding id; unset = the end token (CLIP-L). OpenCLIP's tokenizer (SD 2.x,
  /// SDXL's tokenizer_2) pads with 0.
  std::optional<int64_t> pad_id{};
};

/// `guidance` entry: how the prompt steers sampling.
///  - "cfg" (default): classifier-free guidance, cond and uncond rows in one
///    UNet call (Ho & Salimans 2022);
///  - "embedded": LCM (Luo et al. 2023): one UNet row per image and step, w =
///    cfg_scale enters through timestep_cond (needs unet.time_cond_proj_dim);
///  - "none": distilled without CFG (SD-Turbo, SDXL-Turbo): cfg_scale defaults to 1.
struct GuidanceSpec {
  std::string mode = "cfg";
  /// SDXL: an empty negative prompt gives zero uncond embeddings (context and
  /// pooled) instead of the encoded empty string, as diffusers does.
  bool force_zeros_for_empty_prompt = false;
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
  /// SDXL's second text encoder: context = cat(hidden_1, hidden_2, -1), the
  /// pooled embedding from text_encoder_2. Set together with tokenizer_2.
  std::optional<TextEncoderSpec> text_encoder_2;
  std::optional<TokenizerSpec> tokenizer_2;
  std::optional<VaeSpec> vae_decoder;
  GuidanceSpec guidance;
  ModelDefaults defaults;
  std::string license, attribution;
  /// One-line notices about the manifest (a scheduler key fewstep does not
  /// implement, ...): the pipeline prints each once at load.
  std::vector<std::string> warnings;

  /// Pixel size multiple that width and height must respect.
  int64_t size_multiple() const { return unet.downsample_factor * vae_scale_factor; }
};

/// Reads and validates `dir/model.json`: required keys, types, value ranges
/// and the existence of every file named. File paths are relative to `dir`
/// (they may leave it, "../emoji/text_encoder.pt") or absolute. Omitted
/// scheduler keys take diffusers' defaults (README, "Model packages"); a
/// scheduler key with a value fewstep does not implement adds a warning, as
/// do unknown keys later (model_source.h: those a sampler takes are options).
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
/// a SchedulerConfig; `where` prefixes error messages; notices about keys
/// fewstep does not implement go to `warnings` when given. Throws ModelError.
SchedulerConfig parse_scheduler_config(const std::string& json_text, const std::string& where,
                                       std::vector<std::string>* warnings = nullptr);

}  // namespace fewstep
