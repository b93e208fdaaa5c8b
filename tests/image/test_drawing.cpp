// Contact sheet layout and placement, text drawing, plots, upscaling.
#include <gtest/gtest.h>

#include <cmath>

#include "image/canvas.h"
#include "image/contact_sheet.h"
#include "image/plot.h"

namespace fewstep {
namespace {

Image solid(int w, int h, Rgb c) {
  Image img(w, h, 3);
  for (size_t i = 0; i < img.pixels.size(); i += 3) {
    img.pixels[i] = c.r;
    img.pixels[i + 1] = c.g;
    img.pixels[i + 2] = c.b;
  }
  return img;
}

// The sheet's size follows from the grid: the label column, then `cols`
// cells of tile·scale plus the gap; a header, then `rows` cells.
TEST(ContactSheet, SizeMatchesTheGrid) {
  const std::vector<std::string> rows = {"ddim", "dpmpp_2m", "unipc"}, cols = {"1", "2", "4", "8", "ref"};
  const int tile_w = 16, tile_h = 12;
  std::vector<Image> tiles;
  for (size_t i = 0; i < rows.size() * cols.size(); ++i) tiles.push_back(solid(tile_w, tile_h, palette_color(i)));
  const Canvas c = draw_contact_sheet(rows, cols, tiles, tile_w, tile_h, "title");
  const int scale = (96 + 15) / 16;  // ceil(96 / max(16, 12)) = 6
  const int gap = 8, label_w = Canvas::text_width("dpmpp_2m", 2);
  EXPECT_EQ(c.width(), label_w + 2 * gap + 5 * (tile_w * scale + gap));
  EXPECT_EQ(c.height(), (24 + gap) + (24 + gap) + 3 * (tile_h * scale + gap));
  // Every cell shows its own tile: check each cell's centre pixel.
  const ContactSheetLayout l = contact_sheet_layout(rows, cols, tile_w, tile_h, "title");
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 5; ++k) {
      const Rgb want = palette_color(size_t(r * 5 + k));
      const Rgb got = c.at(l.cell_x(k) + tile_w * scale / 2, l.cell_y(r) + tile_h * scale / 2);
      EXPECT_EQ(got.r, want.r);
      EXPECT_EQ(got.g, want.g);
      EXPECT_EQ(got.b, want.b);
    }
}

TEST(ContactSheet, RejectsAWrongTileCount) {
  EXPECT_THROW(draw_contact_sheet({"a"}, {"1", "2"}, {solid(4, 4, {})}, 4, 4, ""), std::invalid_argument);
}

// Labels are drawn: text leaves ink where it is drawn and nowhere else.
TEST(Canvas, TextDrawsInkInsideItsBox) {
  Canvas c(200, 40);
  c.text(10, 10, "ddim 16", {0, 0, 0}, 2);
  const int w = Canvas::text_width("ddim 16", 2), h = Canvas::text_height("ddim 16", 2);
  int inside = 0, outside = 0;
  for (int y = 0; y < c.height(); ++y)
    for (int x = 0; x < c.width(); ++x) {
      const bool ink = c.at(x, y).r == 0;
      const bool in_box = x >= 10 && x < 10 + w && y >= 10 && y < 10 + h;
      (in_box ? inside : outside) += ink;
    }
  EXPECT_GT(inside, 50);
  EXPECT_EQ(outside, 0);
}

TEST(Plot, DrawsEverySeriesColour) {
  PlotPanel p{"t", "x", "y", true, true, {}};
  p.series.push_back({"a", {1, 2, 4}, {1.0, 0.1, 0.01}});
  p.series.push_back({"b", {1, 2, 4}, {2.0, 0.5, std::nan("")}});
  const Canvas c = draw_plot({p}, 300, 200);
  for (size_t k = 0; k < 2; ++k) {
    const Rgb want = palette_color(k);
    int found = 0;
    for (int y = 0; y < 200; ++y)
      for (int x = 0; x < 300; ++x) found += c.at(x, y).r == want.r && c.at(x, y).g == want.g && c.at(x, y).b == want.b;
    EXPECT_GT(found, 20) << "series " << k;
  }
}

// Nearest-neighbour upscaling repeats each pixel as a factor × factor block.
TEST(Upscale, NearestRepeatsPixels) {
  Image img(2, 2, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i);
  const Image up = upscale(img, 3, false);
  ASSERT_EQ(up.width, 6);
  ASSERT_EQ(up.height, 6);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x)
      for (int c = 0; c < 3; ++c)
        EXPECT_EQ(up.pixels[up.offset(x, y) + size_t(c)], img.pixels[img.offset(x / 3, y / 3) + size_t(c)]);
}

// A flat image stays flat under the smooth filter (its weights sum to 1).
TEST(Upscale, SmoothKeepsAFlatImageFlat) {
  const Image up = upscale(solid(3, 2, {10, 200, 77}), 4, true);
  ASSERT_EQ(up.width, 12);
  for (size_t i = 0; i < up.pixels.size(); i += 3) {
    EXPECT_EQ(up.pixels[i], 10);
    EXPECT_EQ(up.pixels[i + 1], 200);
    EXPECT_EQ(up.pixels[i + 2], 77);
  }
}

}  // namespace
}  // namespace fewstep
