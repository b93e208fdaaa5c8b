// The one 8-bit image type of fewstep: generated images, contact-sheet
// tiles, plots and PNG files all use it. No torch (pipeline/tensor_io.h
// converts model outputs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fewstep {

/// An 8-bit image, pixels [height, width, channels] row-major, channels in
/// {1, 3, 4} (grey, RGB, RGBA). An empty image (no pixels) is a blank.
struct Image {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> pixels;

  Image() = default;
  /// A width × height image of `channels` channels, every byte `fill`.
  /// Throws std::invalid_argument for a negative size or channels not in {1, 3, 4}.
  Image(int width, int height, int channels = 3, uint8_t fill = 0);
  bool empty() const { return pixels.empty(); }
  /// Byte offset of pixel (x, y), channel 0.
  size_t offset(int x, int y) const { return (size_t(y) * size_t(width) + size_t(x)) * size_t(channels); }
  /// True when the pixel buffer matches width × height × channels.
  bool consistent() const;
};

/// Enlarges an image by an integer factor: nearest neighbour (each pixel a
/// factor × factor block), or stb_image_resize's default smooth filter
/// (Mitchell for upsampling) when `smooth`. factor <= 1 returns the image.
Image upscale(const Image& image, int factor, bool smooth);

}  // namespace fewstep
