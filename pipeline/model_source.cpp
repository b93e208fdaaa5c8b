// --model resolution (see model_source.h).
#include "pipeline/model_source.h"

#include <cstdlib>
#include <filesystem>

#include "kernels/attention.h"
#include "unet/analytic.h"

namespace fewstep {

std::string default_model_dir() {
  if (const char* env = std::getenv("FEWSTEP_MODEL_DIR"); env && *env) return env;
  return std::string(FEWSTEP_SOURCE_DIR) + "/models/emoji";
}

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
  const ModelManifest& m = out.manifest;
  const ModulePass pass = make_pass(true);
  out.model = std::make_unique<TorchScriptUnet>(m.unet, m.text_encoder.has_value(), make_pass(m.unet.form != "blocks"),
                                                fusion == FusionMode::all);
  if (m.text_encoder) out.text_encoder = std::make_unique<TextEncoder>(*m.text_encoder, pass);
  if (m.vae_decoder) out.vae = std::make_unique<VaeDecoder>(*m.vae_decoder);
  if (m.tokenizer) {
    try {
      out.tokenizer = Tokenizer::from_vocab_merges(m.tokenizer->vocab, m.tokenizer->merges);
    } catch (const std::exception& e) {
      throw ModelError(m.tokenizer->vocab + ": field 'tokenizer': " + first_line(e));
    }
  }
  return out;
}

}  // namespace fewstep
