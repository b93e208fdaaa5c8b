// Image and upscaling (see image.h).
#include "image/image.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>

namespace fewstep {

Image::Image(int w, int h, int c, uint8_t fill) : width(w), height(h), channels(c) {
  if (w < 0 || h < 0) throw std::invalid_argument("Image: negative size");
  if (c != 1 && c != 3 && c != 4)
    throw std::invalid_argument("Image: channels must be 1, 3 or 4, got " + std::to_string(c));
  pixels.assign(size_t(w) * size_t(h) * size_t(c), fill);
}

bool Image::consistent() const {
  return width >= 0 && height >= 0 && (channels == 1 || channels == 3 || channels == 4) &&
         pixels.size() == size_t(width) * size_t(height) * size_t(channels);
}

Image upscale(const Image& src, int factor, bool smooth) {
  if (factor <= 1 || src.empty()) return src;
  Image out(src.width * factor, src.height * factor, src.channels);
  if (smooth) {
    stbir_resize_uint8(src.pixels.data(), src.width, src.height, 0, out.pixels.data(), out.width, out.height, 0,
                       src.channels);
    return out;
  }
  const size_t c = size_t(src.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      const uint8_t* s = &src.pixels[src.offset(x / factor, y / factor)];
      std::copy(s, s + c, &out.pixels[out.offset(x, y)]);
    }
  return out;
}

}  // namespace fewstep
