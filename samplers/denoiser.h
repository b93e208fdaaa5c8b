// fewstep sampler layer: the one wrapper that turns a model's raw prediction
// into (x0, ε). Samplers never branch on the parameterization.
#pragma once

#include "samplers/sampler.h"

#include <memory>

namespace fewstep {

/// Wraps `model` (x [R, C, H, W], timestep [R] float64 -> raw prediction) as
/// a Denoiser for the config's prediction_type. With x = α·x0 + σ·ε per row:
///   epsilon:      ε = out,          x0 = (x - σ·ε)/α
///   v_prediction: v = α·ε - σ·x0 (Salimans & Ho 2022, Eq. in §4):
///                 x0 = α·x - σ·v,   ε = σ·x + α·v   (VP: α² + σ² = 1)
///   sample:       x0 = out,         ε = (x - α·x0)/σ   (ε = 0 where σ = 0)
///   flow:         v = ε - x0 (rectified flow): x0 = x - σ·v, ε = x + α·v
/// Then x0 is clipped to ±clip_sample_range (clip_sample) or dynamically
/// thresholded (thresholding; Saharia et al. 2022 "Imagen", §2.3: per sample
/// s = quantile(|x0|, dynamic_thresholding_ratio) clamped to
/// [1, sample_max_value], x0 = clamp(x0, -s, s)/s). ε stays the model's (as
/// diffusers' DDIM with use_clipped_model_output=False).
/// The raw output is cast to x's dtype. Each call adds 1 to nfe and R to rows.
/// Throws SamplerError when the model's output shape differs from x's.
std::unique_ptr<Denoiser> make_model_denoiser(ModelFn model, const SchedulerConfig& cfg);

/// Imagen dynamic thresholding of x0 [B, ...] (see make_model_denoiser).
at::Tensor dynamic_threshold(const at::Tensor& x0, double ratio, double max_value);

}  // namespace fewstep
