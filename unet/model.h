// fewstep: the model interface that TorchScript UNets and analytic models
// both implement. The pipeline calls it; samplers never see it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fewstep {

/// Conditioning beyond the text context, per batch row; an undefined tensor
/// means "not given" (the module then sees an empty tensor).
struct ExtraConditioning {
  /// [B, D] float32: LCM's guidance embedding of w (Luo et al. 2023, Sec. 4.2),
  /// D = unet.time_cond_proj_dim.
  at::Tensor timestep_cond;
  /// [B, P + 6] float32: SDXL's cat(pooled text embedding [B, P], time_ids [B, 6])
  /// with time_ids = (orig_h, orig_w, crop_top, crop_left, target_h, target_w)
  /// in pixels (Podell et al. 2023, Sec. 2.2).
  at::Tensor added_cond;
  bool empty() const { return !timestep_cond.defined() && !added_cond.defined(); }
};

/// A denoising network. Implementations: TorchScript UNets (monolithic or
/// block-wise, unet/torchscript.h) and closed-form analytic models
/// (unet/analytic.h).
class Model {
 public:
  virtual ~Model() = default;
  /// sample: [B, C, H, W] in the model's dtype and device; timestep: [B]
  /// float (training-timestep units, 0..num_train_timesteps-1, or t·1000
  /// for flow); context: encoder_hidden_states [B, L, D], or an undefined
  /// tensor for an unconditional model. Returns the raw prediction
  /// (epsilon / v / sample / flow, as the scheduler config says), [B, C, H, W].
  virtual at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context) = 0;
  /// The same with extra conditioning. Models that take none (analytic
  /// ones) keep this default, which throws std::invalid_argument when
  /// `extra` is not empty.
  virtual at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context,
                             const ExtraConditioning& extra) {
    if (!extra.empty()) throw std::invalid_argument("this model takes no timestep_cond or added_cond");
    return forward(sample, timestep, context);
  }
  /// Number of parameters (0 for analytic models).
  virtual int64_t parameter_count() const { return 0; }
  /// Moves the model to a device and dtype (no-op for analytic models).
  virtual void to(at::Device device, at::ScalarType dtype) {}
};

}  // namespace fewstep
