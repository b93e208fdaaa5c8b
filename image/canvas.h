// Drawing on an RGB Image for the sweep's contact sheet and plots:
// rectangles, thick lines, markers and text drawn with stb_easy_font's
// bitmap glyphs. No torch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "image/image.h"

namespace fewstep {

/// An 8-bit sRGB colour.
struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

/// A width × height RGB image to draw on. Drawing outside is clipped.
class Canvas {
 public:
  /// Throws std::invalid_argument when width or height is below 1.
  Canvas(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return image_.width; }
  int height() const { return image_.height; }
  /// What has been drawn: an RGB Image.
  const Image& image() const { return image_; }
  Rgb at(int x, int y) const;

  void set(int x, int y, Rgb c);
  void fill_rect(int x, int y, int w, int h, Rgb c);
  /// Outline of a rectangle, 1 px.
  void frame_rect(int x, int y, int w, int h, Rgb c);
  /// A straight segment of `thickness` px (square pen stepped along the
  /// segment at one-pixel intervals; coordinates in pixels, may be fractional).
  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 1);
  /// Copies an image with its top-left at (x, y), each source pixel as a
  /// scale × scale block (nearest neighbour); grey images are drawn grey,
  /// RGBA images without their alpha.
  void blit(int x, int y, const Image& src, int scale = 1);
  /// ASCII text with its top-left at (x, y); stb_easy_font glyphs (about
  /// 6 px wide and 12 px high per line at scale 1), each glyph pixel drawn
  /// as a scale × scale block. Non-ASCII bytes are drawn as '?'.
  void text(int x, int y, const std::string& s, Rgb c, int scale = 1);

  /// Width and height in pixels that text() covers for `s` at `scale`.
  static int text_width(const std::string& s, int scale = 1);
  static int text_height(const std::string& s, int scale = 1);

 private:
  Image image_;
};

/// A qualitative palette of clearly distinct line colours (cycled by index).
Rgb palette_color(size_t i);

}  // namespace fewstep
