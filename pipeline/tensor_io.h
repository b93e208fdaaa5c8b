// Tensor adapters over the torch-free file and image cores: model outputs
// to 8-bit images (image/image.h) and tensors to and from .npy (io/npy.h).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "image/image.h"

namespace fewstep {

/// Converts an image batch of one in [-1, 1], [1, C, H, W] float, to an RGB
/// Image: round((clamp(x, -1, 1) + 1) · 127.5), NaN as 0 (mid-grey); C < 3
/// replicates channel 0, C > 3 shows the first three. Throws
/// std::invalid_argument for another shape.
Image to_rgb8(const at::Tensor& image);

/// Serialises a float32 or float64 tensor (other dtypes become float32) as
/// .npy, C order. Never throws for a defined tensor.
std::vector<uint8_t> encode_npy(const at::Tensor& t);

/// The tensor in .npy bytes holding float32 or float64 (encode_npy's
/// output), on the CPU. Throws FileError starting with `where` otherwise.
at::Tensor decode_npy(const std::vector<uint8_t>& bytes, const std::string& where);

/// Reads a .npy file holding float32 in C order into a CPU tensor. Throws
/// FileError naming the file on any other dtype, Fortran order or a
/// malformed file.
at::Tensor read_npy_float32(const std::filesystem::path& file);

}  // namespace fewstep
