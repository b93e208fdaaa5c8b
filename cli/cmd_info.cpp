// `fewstep info`: a model package's manifest summary, or a PNG's parameters.
#include <iostream>

#include "cli/common.h"
#include "image/png.h"
#include "io/files.h"
#include "pipeline/tensor_io.h"
#include "pipeline/model_source.h"

namespace fewstep::cli {
namespace {

struct InfoOptions {
  std::string model, image;
  RuntimeOptions rt;
};

const char* prediction_name(PredictionType p) {
  switch (p) {
    case PredictionType::epsilon:
      return "epsilon";
    case PredictionType::v_prediction:
      return "v_prediction";
    case PredictionType::sample:
      return "sample";
    case PredictionType::flow:
      return "flow";
  }
  return "?";
}

int run_info(const InfoOptions& o) {
  if (!o.image.empty()) {
    auto text = read_png_text(o.image, "parameters");
    if (!text) throw FileError(o.image + ": has no 'parameters' text chunk");
    std::cout << *text << "\n";
    return 0;
  }
  const std::string model = o.model.empty() ? default_model_dir() : o.model;
  auto pipe = Pipeline::load(model, o.rt);
  const ModelManifest& m = pipe->manifest();
  const SchedulerConfig& s = m.scheduler;
  std::cout << "name:            " << m.name << "\n"
            << "kind:            " << m.kind << "\n"
            << "sample_size:     " << m.sample_height << "x" << m.sample_width << " (model space), in_channels "
            << m.in_channels << ", vae_scale_factor " << m.vae_scale_factor << "\n"
            << "default size:    " << m.defaults.width << "x" << m.defaults.height << " px (multiples of "
            << m.size_multiple() << ")\n"
            << "scheduler:       " << (s.trained_betas.empty() ? s.beta_schedule : "trained_betas") << ", "
            << s.num_train_timesteps << " steps, prediction_type " << prediction_name(s.prediction_type)
            << ", timestep_spacing " << s.timestep_spacing.value_or("(sampler default)") << "\n"
            << "defaults:        sampler " << m.defaults.sampler << ", steps " << m.defaults.steps << ", cfg_scale "
            << m.defaults.cfg_scale << "\n"
            << "unet:            " << m.unet.form << ", " << pipe->unet_parameters() << " parameters\n";
  if (m.text_encoder) {
    std::cout << "text_encoder:    " << pipe->text_encoder_parameters() << " parameters"
              << (m.text_encoder_2 ? " (both encoders)" : "") << ", context_length " << m.text_encoder->context_length
              << ", hidden_size " << m.text_encoder->hidden_size;
    if (m.text_encoder_2)
      std::cout << " + " << m.text_encoder_2->hidden_size << " (text_encoder_2, pooled "
                << m.text_encoder_2->pooled_size << ")";
    std::cout << "\n";
  } else {
    std::cout << "text_encoder:    none (unconditional)\n";
  }
  std::cout << "guidance:        " << m.guidance.mode;
  if (m.guidance.mode == "embedded")
    std::cout << " (timestep_cond of width " << m.unet.time_cond_proj_dim << "; --cfg-scale sets w)";
  if (!m.unet.addition_embed_type.empty()) std::cout << ", added_cond " << m.unet.addition_embed_type;
  std::cout << "\n";
  if (m.vae_decoder)
    std::cout << "vae_decoder:     " << pipe->vae_parameters() << " parameters, scaling_factor "
              << m.vae_decoder->scaling_factor << "\n";
  std::cout << "total:           " << pipe->unet_parameters() + pipe->text_encoder_parameters() + pipe->vae_parameters()
            << " parameters\n";
  if (!m.license.empty()) std::cout << "license:         " << m.license << "\n";
  if (!m.attribution.empty()) std::cout << "attribution:     " << m.attribution << "\n";
  return 0;
}

}  // namespace

void register_info_command(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand("info", "Describe a model package, or print a PNG's generation parameters");
  auto* model = cmd->add_option("--model,-m", o->model, "model package folder (default: the embedded model)");
  auto* image = cmd->add_option("--image", o->image, "PNG written by fewstep (or an SD front end)");
  model->excludes(image);
  add_runtime_flags(*cmd, o->rt);
  cmd->callback([o] { run_info(*o); });
}

}  // namespace fewstep::cli
