// --model resolution (see model_source.h).
#include "pipeline/model_source.h"

#include <cstdlib>
#include <filesystem>

#include "kernels/attention.h"
#include "samplers/registry.h"
#include "unet/analytic.h"

namespace fewstep {

std::string default_model_dir() {
  if (const char* env = std::getenv("FEWSTEP_MODEL_DIR"); env && *env) return env;
  return std::string(FEWSTEP_SOURCE_DIR) + "/models/emoji";
}

namespace {

/// The tokenizer of a manifest entry, padding with its pad_id when set.
std::optional<Tokenizer> load_tokenizer(const std::optional<TokenizerSpec>& spec, const std::string& field,
                                        const std::string& manifest_file) {
  if (!spec) return std::nullopt;
  std::optional<Tokenizer> tok;
  try {
    tok = Tokenizer::from_vocab_merges(spec->vocab, spec->merges);
  } catch (const std::exception& e) {
    throw ModelError(spec->vocab + ": field '" + field + "': " + first_line(e));
  }
  if (spec->pad_id) {
    if (*spec->pad_id >= tok->vocab_size())
      throw ModelError(manifest_file + ": field '" + field + ".pad_id': " + std::to_string(*spec->pad_id) +
                       " is not below the vocabulary size " + std::to_string(tok->vocab_size()));
    tok->set_pad_id(*spec->pad_id);
  }
  return tok;
}

}  // namespace

LoadedModel load_model_source(const std::string& model, bool fused_attention, FusionMode fusion) {
  LoadedModel out;
  if (model.rfind("analytic:", 0) == 0) {
    std::unique_ptr<AnalyticModel> am;
    try {
      am = make_analytic_model(parse_analytic_spec(model));
    } catch (const AnalyticSpecError& e) {
      throw ModelError(std::string("--model: ") + e.what());
    }
    ModelManifest& m = out.manifest;
    m.name = model;
    m.kind = "pixel";
    m.in_channels = am->sample_shape()[0];
    m.sample_height = am->sample_shape()[1];
    m.sample_width = am->sample_shape()[2];
    m.unet.form = "analytic";
    m.unet.downsample_factor = 1;
    m.scheduler = am->scheduler_config();
    m.defaults = ModelDefaults{"ddim", 20, 1.0, m.sample_width, m.sample_height};
    m.license = "analytic (no weights)";
    out.model = std::move(am);
    out.analytic = true;
    return out;
  }
  const bool kernels = fusion != FusionMode::none;
  // The block-wise runner calls only the UNet's submodules: its root forward
  // is left unfused (it would inline the whole model at load time).
  auto make_pass = [&](bool root_methods) -> ModulePass {
    if (!fused_attention && !kernels) return {};
    return [fused_attention, kernels, root_methods](torch::jit::Module& m) {
      if (kernels)
        rewrite_fusion(m, root_methods);  // inlines first, so attention is then found in the inlined graphs too
      if (fused_attention) rewrite_attention(m);
    };
  };
  out.manifest = load_manifest(model);
  ModelManifest& m = out.manifest;
  const std::string manifest_file = (m.dir / "model.json").string();
  for (const auto& [key, value] : m.scheduler.other_keys)
    if (!is_scheduler_option_key(key))
      m.warnings.push_back(manifest_file + ": field 'scheduler." + key +
                           "': not a scheduler setting fewstep implements; ignored");

  const ModulePass pass = make_pass(true);
  auto unet = std::make_unique<TorchScriptUnet>(m.unet, m.text_encoder.has_value(), make_pass(m.unet.form != "blocks"),
                                                fusion == FusionMode::all);
  const std::string unet_name = std::filesystem::path(m.unet.file).filename().string();
  const std::string schema = unet_name + (m.unet.form == "blocks" ? "'s time_embed.forward" : "'s forward");
  if (m.guidance.mode == "embedded" && !unet->takes_timestep_cond())
    throw ModelError(manifest_file +
                     ": field 'guidance.mode': \"embedded\" needs a UNet that takes timestep_cond, but " + schema +
                     " does not");
  if (m.unet.addition_embed_type == "text_time" && !unet->takes_added_cond())
    throw ModelError(manifest_file + ": field 'unet.addition_embed_type': \"text_time\" needs a UNet that takes " +
                     "added_cond, but " + schema + " does not");
  out.model = std::move(unet);
  if (m.text_encoder) out.text_encoder = std::make_unique<TextEncoder>(*m.text_encoder, pass);
  if (m.text_encoder_2) out.text_encoder_2 = std::make_unique<TextEncoder>(*m.text_encoder_2, pass);
  if (m.vae_decoder) out.vae = std::make_unique<VaeDecoder>(*m.vae_decoder);
  out.tokenizer = load_tokenizer(m.tokenizer, "tokenizer", manifest_file);
  out.tokenizer_2 = load_tokenizer(m.tokenizer_2, "tokenizer_2", manifest_file);
  return out;
}

}  // namespace fewstep
