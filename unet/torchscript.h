// TorchScript wrappers for a package's UNet, text encoder and VAE decoder.
#pragma once

#include <torch/script.h>

#include <functional>
#include <string>
#include <vector>

#include "unet/model.h"
#include "unet/package.h"

namespace fewstep {

/// Transforms a loaded module in place (e.g. the fused-attention rewrite).
using ModulePass = std::function<void(torch::jit::Module&)>;

/// Loads a TorchScript file onto the CPU. Throws ModelError with one line
/// instead of c10::Error: "<file>: needs the operator ns::op, which this
/// runtime does not have ...", "<file>: written by a newer torch (file format
/// version N; this LibTorch X.Y.Z reads up to version M) ...", or
/// "<file>: not a loadable TorchScript file (<LibTorch's first line>)".
/// TorchScript files are code: load only packages you trust.
torch::jit::Module load_torchscript(const std::string& file);

/// The one-line message load_torchscript throws for a failure `e` of
/// torch::jit::load on `file`.
std::string explain_load_failure(const std::string& file, const std::exception& e);

/// First line of an exception's message, without LibTorch's backtrace.
std::string first_line(const std::exception& e);

/// A TorchScript UNet in either contract of the manifest (`unet.form`):
///  - monolithic: forward(sample [B,C,H,W], timestep [B], encoder_hidden_states [B,L,D]
///    [, timestep_cond [B,D'], added_cond [B,A]]) -> [B,C,H,W] (or forward(sample,
///    timestep) for unconditional models); the last two are passed only when given;
///  - blocks: submodules time_embed, input_blocks, middle_block, output_blocks and out,
///    run as in the LDM UNet (Rombach et al. 2022, App. G) with a skip stack, each block
///    inside a profiler range `unet.input_blocks.i`, `unet.middle_block`, `unet.output_blocks.i`.
///    time_embed.forward takes (timestep [B] float32, timestep_cond, added_cond) or, in
///    packages written before those existed, (timestep) alone: the schema decides.
/// An extra input that is not given reaches the module as an empty tensor (numel 0).
/// With `channels_last_on_cpu`, a model moved to the CPU keeps its 4-D
/// weights and runs its activations channels-last (NHWC memory, the same
/// NCHW shapes): oneDNN's convolutions then need no layout reorders and
/// the spatial transformer's flatten/transpose become views. forward()
/// still takes and returns contiguous NCHW tensors.
/// Throws ModelError on a missing submodule, a failing forward or a wrong output shape.
/// When a forward fails and the sample's channel count differs from the
/// module's first 4-D weight (its input convolution, [out, in, kh, kw]), the
/// error says so first, then quotes LibTorch's first line.
class TorchScriptUnet : public Model {
 public:
  TorchScriptUnet(const UnetSpec& spec, bool conditional, const ModulePass& pass, bool channels_last_on_cpu = false);
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context) override;
  /// extra: timestep_cond [B, D] and/or added_cond [B, A], float32 (model.h).
  /// Throws ModelError when given to a UNet whose schema does not take them.
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context,
                     const ExtraConditioning& extra) override;
  int64_t parameter_count() const override;
  void to(at::Device device, at::ScalarType dtype) override;
  const std::string& form() const { return form_; }
  /// Whether the module's schema takes timestep_cond / added_cond: block-wise,
  /// time_embed.forward has 3 arguments; monolithic, forward has at least 4 / 5.
  bool takes_timestep_cond() const { return takes_extra_ >= 1; }
  bool takes_added_cond() const { return takes_extra_ >= 2; }

 private:
  at::Tensor forward_monolithic(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context,
                                const ExtraConditioning& extra);
  at::Tensor forward_blocks(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context,
                            const ExtraConditioning& extra);
  /// emb [B, E] = time_embed(timestep[, timestep_cond, added_cond]): the one
  /// place that knows time_embed's two schemas.
  at::Tensor time_embedding(const at::Tensor& timestep, const ExtraConditioning& extra);

  std::string file_, form_;
  bool conditional_;
  int takes_extra_ = 0;  // 0: neither, 1: timestep_cond, 2: both (the schema's extra arguments)
  bool channels_last_on_cpu_;
  bool channels_last_ = false;       // on the CPU with channels_last_on_cpu_
  int64_t input_conv_channels_ = 0;  // 0: the module has no 4-D weight
  torch::jit::Module module_;
  torch::jit::Module time_embed_, middle_block_, out_;
  std::vector<torch::jit::Module> input_blocks_, output_blocks_;
};

/// A text encoder's output for input_ids [B, L].
struct TextEmbedding {
  at::Tensor hidden;  ///< encoder_hidden_states [B, L, D]
  at::Tensor pooled;  ///< [B, P] when the module returns (hidden, pooled) and pooled_size is set; else undefined
};

/// Text encoder: forward(input_ids [B, L] int64) -> hidden [B, L, D], or a
/// tuple (hidden [B, L, D], pooled [B, P]) (SDXL's text_encoder_2: the
/// penultimate layer's hidden states and the projected pooled embedding).
class TextEncoder {
 public:
  TextEncoder(const TextEncoderSpec& spec, const ModulePass& pass);
  /// ids: [B, L] int64 on any device. Returns float tensors on the module's
  /// device. Throws ModelError if hidden is not [B, L, hidden_size], or if
  /// pooled_size is set and the module returns no [B, pooled_size] pooled
  /// embedding.
  TextEmbedding encode(const at::Tensor& ids);
  int64_t parameter_count() const;
  void to(at::Device device, at::ScalarType dtype);
  const TextEncoderSpec& spec() const { return spec_; }

 private:
  TextEncoderSpec spec_;
  torch::jit::Module module_;
};

/// VAE decoder: decode(latents [B, C, h, w]) -> image [B, 3 or 1, H, W] in [-1, 1]
/// (to_rgb8 clamps to that range); latents are divided by `scaling_factor` first
/// (Rombach et al. 2022, Sec. 3.1). Never rewritten to fewstep::attention: the SD
/// VAE's mid-block attention has head dim 512, over the fused kernel's 256.
class VaeDecoder {
 public:
  explicit VaeDecoder(const VaeSpec& spec);
  at::Tensor decode(const at::Tensor& latents);
  int64_t parameter_count() const;
  void to(at::Device device, at::ScalarType dtype);

 private:
  VaeSpec spec_;
  torch::jit::Module module_;
};

/// Sum of the numel of a module's parameters (recursively).
int64_t count_parameters(const torch::jit::Module& m);

}  // namespace fewstep
