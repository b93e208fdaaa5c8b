// Image-quality metrics for `fewstep sweep`: RMSE, PSNR and SSIM.
#pragma once

#include <ATen/ATen.h>

namespace fewstep {

/// Root-mean-square difference of two same-shaped tensors, computed in
/// float64 over every element. Throws std::invalid_argument on a shape mismatch.
double rmse(const at::Tensor& a, const at::Tensor& b);

/// Peak signal-to-noise ratio in dB: 20·log10(peak / rmse). +inf when rmse is 0.
double psnr_db(double rmse_value, double peak);

/// Structural similarity of two 8-bit images [H, W, 3] uint8 (Wang, Bovik,
/// Sheikh & Simoncelli 2004, "Image Quality Assessment: From Error
/// Visibility to Structural Similarity", Eq. 13): intensities scaled to
/// [0, 1], an 11×11 Gaussian window with σ = 1.5 (shrunk to the largest odd
/// size that fits smaller images), K1 = 0.01, K2 = 0.03, L = 1, valid
/// positions only; the mean SSIM over positions and the three channels.
/// Returns 1 for identical images. Throws std::invalid_argument on a shape
/// or dtype mismatch.
double ssim(const at::Tensor& a, const at::Tensor& b);

}  // namespace fewstep
