// Image-quality metrics for `fewstep sweep`: RMSE, PSNR and SSIM.
#pragma once

#include <ATen/ATen.h>

#include "image/image.h"

namespace fewstep {

/// Root-mean-square difference of two same-shaped tensors, computed in
/// float64 over every element. Throws std::invalid_argument on a shape mismatch.
double rmse(const at::Tensor& a, const at::Tensor& b);

/// Root-mean-square difference of two 8-bit images in levels (0-255), over
/// every byte. Throws std::invalid_argument on a size or channel mismatch.
double rmse(const Image& a, const Image& b);

/// Peak signal-to-noise ratio in dB: 20·log10(peak / rmse). +inf when rmse is 0.
double psnr_db(double rmse_value, double peak);

/// Structural similarity of two 8-bit RGB images (Wang, Bovik,
/// Sheikh & Simoncelli 2004, "Image Quality Assessment: From Error
/// Visibility to Structural Similarity", Eq. 13): intensities scaled to
/// [0, 1], an 11×11 Gaussian window with σ = 1.5 (shrunk to the largest odd
/// size that fits smaller images), K1 = 0.01, K2 = 0.03, L = 1, valid
/// positions only; the mean SSIM over positions and the three channels.
/// Returns 1 for identical images. Computed in float64 with a separable
/// Gaussian (the 2-D window is the outer product of the 1-D one). Throws
/// std::invalid_argument on a size mismatch or images that are not RGB.
double ssim(const Image& a, const Image& b);

}  // namespace fewstep
