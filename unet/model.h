// fewstep: the model interface that TorchScript UNets and analytic models
// both implement. The pipeline calls it; samplers never see it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace fewstep {

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
  /// Number of parameters (0 for analytic models).
  virtual int64_t parameter_count() const { return 0; }
  /// Moves the model to a device and dtype (no-op for analytic models).
  virtual void to(at::Device device, at::ScalarType dtype) {}
};

}  // namespace fewstep
