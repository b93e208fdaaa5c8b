// Resolves a --model argument (a package folder or an analytic spec) into
// loaded modules.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "kernels/fused.h"
#include "tokenizer/tokenizer.h"
#include "unet/model.h"
#include "unet/package.h"
#include "unet/torchscript.h"

namespace fewstep {

/// Everything a Pipeline needs from a model source, still on the CPU in the
/// stored dtype.
struct LoadedModel {
  ModelManifest manifest;
  std::unique_ptr<Model> model;
  std::unique_ptr<TextEncoder> text_encoder;    ///< null for unconditional models
  std::unique_ptr<TextEncoder> text_encoder_2;  ///< SDXL's second encoder, else null
  std::unique_ptr<VaeDecoder> vae;              ///< null for pixel models
  std::optional<Tokenizer> tokenizer, tokenizer_2;
  bool analytic = false;
};

/// The folder of the embedded default model (FEWSTEP_MODEL_DIR when set,
/// else `models/emoji` beside the executable's source tree or install).
std::string default_model_dir();

/// `model` is a package folder or `analytic:<name>[:options]`. With
/// `fused_attention`, the UNet and text encoders are rewritten so that their
/// attention runs through fewstep::attention (the VAE never is: see
/// VaeDecoder); with `fusion` kernels or all, GroupNorm/SiLU, GELU and GEGLU
/// run through fewstep's fused kernels (rewrite_fusion, kernels/fused.h), and
/// with all a UNet on the CPU also runs channels-last. Tokenizers pad with the
/// manifest's pad_id. A scheduler key that no sampler takes as an option adds
/// a warning to manifest.warnings. Throws ModelError / TokenizerError, among
/// others when the manifest asks for an input the UNet's schema lacks
/// (guidance.mode "embedded" without timestep_cond, addition_embed_type
/// "text_time" without added_cond).
LoadedModel load_model_source(const std::string& model, bool fused_attention, FusionMode fusion = FusionMode::none);

}  // namespace fewstep
