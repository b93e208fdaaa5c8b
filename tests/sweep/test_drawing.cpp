// Contact sheet layout and placement, text drawing, plots, metrics.
#include <gtest/gtest.h>

#include <cmath>

#include "pipeline/canvas.h"
#include "pipeline/contact_sheet.h"
#include "pipeline/metrics.h"
#include "pipeline/plot.h"

namespace fewstep {
namespace {

RgbImage solid(int w, int h, Rgb c) {
  RgbImage img;
  img.width = w;
  img.height = h;
  for (int i = 0; i < w * h; ++i) img.pixels.insert(img.pixels.end(), {c.r, c.g, c.b});
  return img;
}

// The sheet's size follows from the grid: the label column, then `cols`
// cells of tile·scale plus the gap; a header, then `rows` cells.
TEST(ContactSheet, SizeMatchesTheGrid) {
  const std::vector<std::string> rows = {"ddim", "dpmpp_2m", "unipc"}, cols = {"1", "2", "4", "8", "ref"};
  const int tile_w = 16, tile_h = 12;
  std::vector<RgbImage> tiles;
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

TEST(Metrics, RmseAndPsnrFollowTheirDefinitions) {
  const at::Tensor a = at::zeros({2, 3}, at::kDouble), b = at::full({2, 3}, 0.25, at::kDouble);
  EXPECT_DOUBLE_EQ(rmse(a, b), 0.25);
  EXPECT_NEAR(psnr_db(0.1, 1.0), 20.0, 1e-12);  // 20·log10(1/0.1)
  EXPECT_TRUE(std::isinf(psnr_db(0.0, 1.0)));
}

// SSIM is 1 for identical images; for a constant offset d on flat images
// only the luminance term remains: (2μxμy + C1)/(μx² + μy² + C1).
TEST(Metrics, SsimMatchesTheLuminanceTermOnFlatImages) {
  const at::Tensor x = at::full({16, 16, 3}, 100, at::kByte), y = at::full({16, 16, 3}, 140, at::kByte);
  EXPECT_NEAR(ssim(x, x), 1.0, 1e-12);
  const double mx = 100.0 / 255, my = 140.0 / 255, c1 = 1e-4;
  EXPECT_NEAR(ssim(x, y), (2 * mx * my + c1) / (mx * mx + my * my + c1), 1e-9);
}

}  // namespace
}  // namespace fewstep
