// TorchScript wrappers (see torchscript.h).
#include "unet/torchscript.h"

#include <ATen/record_function.h>
#include <torch/headeronly/version.h>

#include <algorithm>
#include <filesystem>
#include <regex>

namespace fewstep {
namespace {

std::string base(const std::string& file) { return std::filesystem::path(file).filename().string(); }

at::Tensor as_tensor(const c10::IValue& v, const std::string& file) {
  if (v.isTensor()) return v.toTensor();
  if (v.isTuple() && !v.toTupleRef().elements().empty() && v.toTupleRef().elements()[0].isTensor())
    return v.toTupleRef().elements()[0].toTensor();
  throw ModelError(file + ": forward must return a tensor");
}

torch::jit::Module submodule(const torch::jit::Module& m, const std::string& name, const std::string& file) {
  if (!m.hasattr(name) || !m.attr(name).isModule())
    throw ModelError(file + ": field 'unet.form' is \"blocks\" but the module has no submodule '" + name + "'");
  return m.attr(name).toModule();
}

std::vector<torch::jit::Module> module_list(const torch::jit::Module& m, const std::string& name,
                                            const std::string& file) {
  std::vector<torch::jit::Module> out;
  for (const auto& child : submodule(m, name, file).children()) out.push_back(child);
  if (out.empty()) throw ModelError(file + ": submodule '" + name + "' is empty");
  return out;
}

/// Arguments of a module's forward, self excluded.
int64_t forward_arity(const torch::jit::Module& m) {
  const auto method = m.find_method("forward");
  return method ? static_cast<int64_t>(method->function().getSchema().arguments().size()) - 1 : -1;
}

/// `t` when given, else an empty float32 tensor on `like`'s device.
at::Tensor given_or_empty(const at::Tensor& t, const at::Tensor& like) {
  return t.defined() ? t : at::empty({0}, like.options().dtype(at::kFloat));
}

std::string shape_str(at::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

std::string first_line(const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  std::string msg = ce ? ce->what_without_backtrace() : e.what();
  // The TorchScript interpreter puts two tracebacks first and the cause last.
  if (msg.rfind("The following operation failed in the TorchScript interpreter", 0) == 0) {
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    auto last = msg.rfind('\n');
    if (last != std::string::npos) msg = msg.substr(last + 1);
  }
  auto nl = msg.find('\n');
  return nl == std::string::npos ? msg : msg.substr(0, nl);
}

std::string explain_load_failure(const std::string& file, const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  const std::string msg = ce ? ce->what_without_backtrace() : e.what();
  std::smatch m;
  // torch::jit::load's own wording (torch/csrc/jit/frontend, caffe2/serialize).
  if (std::regex_search(msg, m, std::regex("Unknown builtin op: ([A-Za-z0-9_:.]+)")))
    return file + ": needs the operator " + std::string(m[1]) +
           ", which this runtime does not have (a custom op of another library?)";
  if (std::regex_search(msg, m, std::regex("Unknown type name '([^']+)'")))
    return file + ": needs the type " + std::string(m[1]) + ", which this runtime does not have";
  if (std::regex_search(
          msg, m, std::regex("file with version ([0-9]+), but the maximum supported version for reading is ([0-9]+)")))
    return file + ": written by a newer torch (file format version " + std::string(m[1]) + "; this LibTorch " +
           std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
           std::to_string(TORCH_VERSION_PATCH) + " reads up to version " + std::string(m[2]) +
           "): export it with torch " + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
  return file + ": not a loadable TorchScript file (" + first_line(e) + ")";
}

torch::jit::Module load_torchscript(const std::string& file) {
  try {
    return torch::jit::load(file, at::kCPU);
  } catch (const std::exception& e) {
    throw ModelError(explain_load_failure(file, e));
  }
}

int64_t count_parameters(const torch::jit::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

TorchScriptUnet::TorchScriptUnet(const UnetSpec& spec, bool conditional, const ModulePass& pass,
                                 bool channels_last_on_cpu)
    : file_(spec.file),
      form_(spec.form),
      conditional_(conditional),
      channels_last_on_cpu_(channels_last_on_cpu),
      module_(load_torchscript(spec.file)) {
  module_.eval();
  if (pass) pass(module_);
  for (const auto& p : module_.parameters()) {
    if (p.dim() == 4) {
      input_conv_channels_ = p.size(1);
      break;
    }
  }
  if (form_ == "blocks") {
    time_embed_ = submodule(module_, "time_embed", file_);
    input_blocks_ = module_list(module_, "input_blocks", file_);
    middle_block_ = submodule(module_, "middle_block", file_);
    output_blocks_ = module_list(module_, "output_blocks", file_);
    out_ = submodule(module_, "out", file_);
    if (input_blocks_.size() != output_blocks_.size())
      throw ModelError(file_ + ": input_blocks has " + std::to_string(input_blocks_.size()) +
                       " blocks but output_blocks has " + std::to_string(output_blocks_.size()));
    const int64_t arity = forward_arity(time_embed_);
    if (arity != 1 && arity != 3)
      throw ModelError(file_ + ": time_embed.forward takes " + std::to_string(arity) +
                       " arguments; the contract is (timestep) or (timestep, timestep_cond, added_cond)");
    takes_extra_ = arity == 3 ? 2 : 0;
  } else if (!module_.find_method("forward")) {
    throw ModelError(file_ + ": no forward method");
  } else {
    // forward(sample, timestep[, encoder_hidden_states][, timestep_cond[, added_cond]])
    const int64_t extra = forward_arity(module_) - (conditional_ ? 3 : 2);
    takes_extra_ = static_cast<int>(std::clamp<int64_t>(extra, 0, 2));
  }
}

int64_t TorchScriptUnet::parameter_count() const { return count_parameters(module_); }

void TorchScriptUnet::to(at::Device device, at::ScalarType dtype) {
  module_.to(device, dtype);
  channels_last_ = channels_last_on_cpu_ && device.is_cpu();
  if (!channels_last_) return;
  for (const at::Tensor& p : module_.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

at::Tensor TorchScriptUnet::forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context) {
  return forward(sample, timestep, context, ExtraConditioning{});
}

at::Tensor TorchScriptUnet::forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context,
                                    const ExtraConditioning& extra) {
  const char* schema = form_ == "blocks" ? "time_embed.forward" : "forward";
  if (extra.timestep_cond.defined() && !takes_timestep_cond())
    throw ModelError(base(file_) + ": got a timestep_cond, but the UNet's " + schema + " takes none");
  if (extra.added_cond.defined() && !takes_added_cond())
    throw ModelError(base(file_) + ": got an added_cond, but the UNet's " + schema + " takes none");
  at::Tensor out;
  try {
    const at::Tensor x =
        channels_last_ && sample.dim() == 4 ? sample.contiguous(at::MemoryFormat::ChannelsLast) : sample;
    out = form_ == "blocks" ? forward_blocks(x, timestep, context, extra)
                            : forward_monolithic(x, timestep, context, extra);
    if (channels_last_) out = out.contiguous();
  } catch (const ModelError&) {
    throw;
  } catch (const std::exception& e) {
    if (input_conv_channels_ > 0 && sample.dim() == 4 && sample.size(1) != input_conv_channels_)
      throw ModelError(base(file_) + ": the UNet's input convolution takes " + std::to_string(input_conv_channels_) +
                       " channels but the sample has " + std::to_string(sample.size(1)) +
                       " (model.json 'in_channels' disagrees with the UNet): " + first_line(e));
    throw ModelError(base(file_) + ": forward failed for sample " + shape_str(sample.sizes()) + ": " + first_line(e));
  }
  if (out.sizes() != sample.sizes())
    throw ModelError(base(file_) + ": output shape " + shape_str(out.sizes()) + " does not match sample " +
                     shape_str(sample.sizes()) + " (check in_channels)");
  return out;
}

at::Tensor TorchScriptUnet::forward_monolithic(const at::Tensor& sample, const at::Tensor& timestep,
                                               const at::Tensor& context, const ExtraConditioning& extra) {
  RECORD_USER_SCOPE("unet");
  std::vector<c10::IValue> args{sample, timestep};
  if (conditional_) args.emplace_back(context);
  if (!extra.empty()) {
    args.emplace_back(given_or_empty(extra.timestep_cond, sample));
    if (takes_added_cond()) args.emplace_back(given_or_empty(extra.added_cond, sample));
  }
  return as_tensor(module_.forward(args), file_);
}

at::Tensor TorchScriptUnet::time_embedding(const at::Tensor& timestep, const ExtraConditioning& extra) {
  RECORD_USER_SCOPE("unet.time_embed");
  if (takes_extra_ == 0) return as_tensor(time_embed_.forward({timestep}), file_);
  return as_tensor(time_embed_.forward({timestep, given_or_empty(extra.timestep_cond, timestep),
                                        given_or_empty(extra.added_cond, timestep)}),
                   file_);
}

at::Tensor TorchScriptUnet::forward_blocks(const at::Tensor& sample, const at::Tensor& timestep,
                                           const at::Tensor& context, const ExtraConditioning& extra) {
  // LDM UNet order: emb = time_embed(t[, timestep_cond, added_cond]); input
  // blocks push skips; middle; output blocks pop them (concatenated on
  // channels); out head.
  const at::Tensor ctx = context.defined() ? context : at::empty({0}, sample.options());
  const at::Tensor emb = time_embedding(timestep, extra);
  at::Tensor h = sample;
  std::vector<at::Tensor> skips;
  skips.reserve(input_blocks_.size());
  for (size_t i = 0; i < input_blocks_.size(); ++i) {
    RECORD_USER_SCOPE("unet.input_blocks." + std::to_string(i));
    h = as_tensor(input_blocks_[i].forward({h, emb, ctx}), file_);
    skips.push_back(h);
  }
  {
    RECORD_USER_SCOPE("unet.middle_block");
    h = as_tensor(middle_block_.forward({h, emb, ctx}), file_);
  }
  for (size_t j = 0; j < output_blocks_.size(); ++j) {
    RECORD_USER_SCOPE("unet.output_blocks." + std::to_string(j));
    at::Tensor skip = std::move(skips.back());
    skips.pop_back();
    h = as_tensor(output_blocks_[j].forward({at::cat({h, skip}, 1), emb, ctx}), file_);
  }
  RECORD_USER_SCOPE("unet.out");
  return as_tensor(out_.forward({h}), file_);
}

TextEncoder::TextEncoder(const TextEncoderSpec& spec, const ModulePass& pass)
    : spec_(spec), module_(load_torchscript(spec.file)) {
  module_.eval();
  if (pass) pass(module_);
}

TextEmbedding TextEncoder::encode(const at::Tensor& ids) {
  RECORD_USER_SCOPE("text_encoder");
  c10::IValue result;
  try {
    result = module_.forward({ids});
  } catch (const std::exception& e) {
    throw ModelError(base(spec_.file) + ": forward failed for input_ids " + shape_str(ids.sizes()) + ": " +
                     first_line(e));
  }
  TextEmbedding out;
  out.hidden = as_tensor(result, spec_.file);
  const std::string field = "field '" + spec_.field;
  if (out.hidden.dim() != 3 || out.hidden.size(0) != ids.size(0) || out.hidden.size(1) != ids.size(1) ||
      out.hidden.size(2) != spec_.hidden_size)
    throw ModelError(base(spec_.file) + ": output " + shape_str(out.hidden.sizes()) + " does not match " + field +
                     ".hidden_size' = " + std::to_string(spec_.hidden_size));
  if (spec_.pooled_size > 0) {
    const bool pair =
        result.isTuple() && result.toTupleRef().elements().size() >= 2 && result.toTupleRef().elements()[1].isTensor();
    if (!pair)
      throw ModelError(base(spec_.file) + ": " + field +
                       ".pooled_size' is set but forward returns no (hidden, pooled) tuple");
    out.pooled = result.toTupleRef().elements()[1].toTensor();
    if (out.pooled.dim() != 2 || out.pooled.size(0) != ids.size(0) || out.pooled.size(1) != spec_.pooled_size)
      throw ModelError(base(spec_.file) + ": pooled output " + shape_str(out.pooled.sizes()) + " does not match " +
                       field + ".pooled_size' = " + std::to_string(spec_.pooled_size));
  }
  return out;
}

int64_t TextEncoder::parameter_count() const { return count_parameters(module_); }
void TextEncoder::to(at::Device device, at::ScalarType dtype) { module_.to(device, dtype); }

VaeDecoder::VaeDecoder(const VaeSpec& spec) : spec_(spec), module_(load_torchscript(spec.file)) { module_.eval(); }

at::Tensor VaeDecoder::decode(const at::Tensor& latents) {
  RECORD_USER_SCOPE("vae_decoder");
  at::Tensor img;
  try {
    img = as_tensor(module_.forward({latents / spec_.scaling_factor}), spec_.file);
  } catch (const ModelError&) {
    throw;
  } catch (const std::exception& e) {
    throw ModelError(base(spec_.file) + ": forward failed for latents " + shape_str(latents.sizes()) + ": " +
                     first_line(e));
  }
  if (img.dim() != 4 || img.size(0) != latents.size(0) || (img.size(1) != 3 && img.size(1) != 1))
    throw ModelError(base(spec_.file) + ": output " + shape_str(img.sizes()) +
                     " is not an image batch [B, 3, H, W] or [B, 1, H, W]");
  return img;
}

int64_t VaeDecoder::parameter_count() const { return count_parameters(module_); }
void VaeDecoder::to(at::Device device, at::ScalarType dtype) { module_.to(device, dtype); }

}  // namespace fewstep
