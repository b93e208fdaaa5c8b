// Canvas drawing (see canvas.h).
#include "image/canvas.h"

#include <stb_easy_font.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

namespace fewstep {
namespace {

// stb_easy_font takes mutable char*; glyphs outside printable ASCII become '?'.
std::vector<char> ascii_copy(const std::string& s) {
  std::vector<char> out;
  out.reserve(s.size() + 1);
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    out.push_back(ch == '\n' || (u >= 32 && u < 127) ? ch : '?');
  }
  out.push_back('\0');
  return out;
}

// One stb_easy_font vertex: x, y, z as float and an RGBA colour.
struct FontVertex {
  float x, y, z;
  unsigned char color[4];
};

}  // namespace

Canvas::Canvas(int width, int height, Rgb background) {
  if (width < 1 || height < 1) throw std::invalid_argument("Canvas: width and height must be at least 1");
  image_ = Image(width, height, 3);
  for (size_t i = 0; i < image_.pixels.size(); i += 3) {
    image_.pixels[i] = background.r;
    image_.pixels[i + 1] = background.g;
    image_.pixels[i + 2] = background.b;
  }
}

Rgb Canvas::at(int x, int y) const {
  if (x < 0 || y < 0 || x >= width() || y >= height()) return {};
  const uint8_t* p = &image_.pixels[image_.offset(x, y)];
  return {p[0], p[1], p[2]};
}

void Canvas::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width() || y >= height()) return;
  uint8_t* p = &image_.pixels[image_.offset(x, y)];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

void Canvas::fill_rect(int x, int y, int w, int h, Rgb c) {
  const int x0 = std::max(x, 0), y0 = std::max(y, 0);
  const int x1 = std::min(x + w, width()), y1 = std::min(y + h, height());
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) set(xx, yy, c);
}

void Canvas::frame_rect(int x, int y, int w, int h, Rgb c) {
  fill_rect(x, y, w, 1, c);
  fill_rect(x, y + h - 1, w, 1, c);
  fill_rect(x, y, 1, h, c);
  fill_rect(x + w - 1, y, 1, h, c);
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb c, int thickness) {
  const double len = std::hypot(x1 - x0, y1 - y0);
  const int n = std::max(1, static_cast<int>(std::ceil(len)));
  const int half = thickness / 2;
  for (int i = 0; i <= n; ++i) {
    const double t = double(i) / double(n);
    const int px = static_cast<int>(std::lround(x0 + t * (x1 - x0))) - half;
    const int py = static_cast<int>(std::lround(y0 + t * (y1 - y0))) - half;
    fill_rect(px, py, thickness, thickness, c);
  }
}

void Canvas::blit(int x, int y, const Image& src, int scale) {
  for (int sy = 0; sy < src.height; ++sy)
    for (int sx = 0; sx < src.width; ++sx) {
      const uint8_t* p = &src.pixels[src.offset(sx, sy)];
      const Rgb c = src.channels >= 3 ? Rgb{p[0], p[1], p[2]} : Rgb{p[0], p[0], p[0]};
      fill_rect(x + sx * scale, y + sy * scale, scale, scale, c);
    }
}

void Canvas::text(int x, int y, const std::string& s, Rgb c, int scale) {
  std::vector<char> buf = ascii_copy(s);
  // About 270 bytes of vertices per glyph (stb_easy_font's own estimate).
  std::vector<FontVertex> verts(buf.size() * 24 + 64);
  const int quads =
      stb_easy_font_print(0, 0, buf.data(), nullptr, verts.data(), static_cast<int>(verts.size() * sizeof(FontVertex)));
  for (int q = 0; q < quads; ++q) {
    const FontVertex* v = &verts[size_t(q) * 4];
    float minx = v[0].x, maxx = v[0].x, miny = v[0].y, maxy = v[0].y;
    for (int k = 1; k < 4; ++k) {
      minx = std::min(minx, v[k].x), maxx = std::max(maxx, v[k].x);
      miny = std::min(miny, v[k].y), maxy = std::max(maxy, v[k].y);
    }
    // Quads are axis-aligned with integer corners in glyph units.
    const int gx = static_cast<int>(std::lround(minx)), gy = static_cast<int>(std::lround(miny));
    const int gw = static_cast<int>(std::lround(maxx - minx)), gh = static_cast<int>(std::lround(maxy - miny));
    fill_rect(x + gx * scale, y + gy * scale, gw * scale, gh * scale, c);
  }
}

int Canvas::text_width(const std::string& s, int scale) {
  std::vector<char> buf = ascii_copy(s);
  return stb_easy_font_width(buf.data()) * scale;
}

int Canvas::text_height(const std::string& s, int scale) {
  std::vector<char> buf = ascii_copy(s);
  return stb_easy_font_height(buf.data()) * scale;
}

Rgb palette_color(size_t i) {
  // Okabe & Ito (2008) colour-blind-safe palette, then darker variants.
  static constexpr std::array<Rgb, 14> colors = {{{0, 114, 178},
                                                  {213, 94, 0},
                                                  {0, 158, 115},
                                                  {204, 121, 167},
                                                  {230, 159, 0},
                                                  {86, 180, 233},
                                                  {0, 0, 0},
                                                  {240, 228, 66},
                                                  {120, 60, 20},
                                                  {110, 110, 110},
                                                  {150, 40, 120},
                                                  {0, 90, 60},
                                                  {170, 170, 40},
                                                  {20, 40, 120}}};
  return colors[i % colors.size()];
}

}  // namespace fewstep
