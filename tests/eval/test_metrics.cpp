// Image-quality metrics against their definitions.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/metrics.h"

namespace fewstep {
namespace {

TEST(Metrics, RmseAndPsnrFollowTheirDefinitions) {
  const at::Tensor a = at::zeros({2, 3}, at::kDouble), b = at::full({2, 3}, 0.25, at::kDouble);
  EXPECT_DOUBLE_EQ(rmse(a, b), 0.25);
  EXPECT_NEAR(psnr_db(0.1, 1.0), 20.0, 1e-12);  // 20·log10(1/0.1)
  // Images: levels differ by 3 on one byte of 12.
  Image p(2, 2, 3, 50), q(2, 2, 3, 50);
  q.pixels[5] = 53;
  EXPECT_DOUBLE_EQ(rmse(p, q), std::sqrt(9.0 / 12.0));
  EXPECT_TRUE(std::isinf(psnr_db(0.0, 1.0)));
}

// SSIM is 1 for identical images; for a constant offset d on flat images
// only the luminance term remains: (2μxμy + C1)/(μx² + μy² + C1).
TEST(Metrics, SsimMatchesTheLuminanceTermOnFlatImages) {
  const Image x(16, 16, 3, 100), y(16, 16, 3, 140);
  EXPECT_NEAR(ssim(x, x), 1.0, 1e-12);
  const double mx = 100.0 / 255, my = 140.0 / 255, c1 = 1e-4;
  EXPECT_NEAR(ssim(x, y), (2 * mx * my + c1) / (mx * mx + my * my + c1), 1e-9);
}

// On a random image pair, the separable float64 SSIM equals a direct
// evaluation of Eq. 13 with the 2-D window (computed here by brute force).
TEST(Metrics, SsimEqualsTheDirectTwoDimensionalWindow) {
  Image a(13, 12, 3), b(13, 12, 3);
  uint32_t state = 12345;
  auto next = [&] { return static_cast<uint8_t>((state = state * 1664525u + 1013904223u) >> 24); };
  for (auto& v : a.pixels) v = next();
  for (auto& v : b.pixels) v = next();
  const int win = 11;
  double g[win], gs = 0;
  for (int i = 0; i < win; ++i) gs += g[i] = std::exp(-double((i - 5) * (i - 5)) / 4.5);
  double total = 0;
  int count = 0;
  for (int c = 0; c < 3; ++c)
    for (int y0 = 0; y0 + win <= 12; ++y0)
      for (int x0 = 0; x0 + win <= 13; ++x0) {
        double mx = 0, my = 0, xx = 0, yy = 0, xy = 0;
        for (int i = 0; i < win; ++i)
          for (int j = 0; j < win; ++j) {
            const double w = g[i] * g[j] / (gs * gs);
            const double x = a.pixels[a.offset(x0 + j, y0 + i) + size_t(c)] / 255.0;
            const double yv = b.pixels[b.offset(x0 + j, y0 + i) + size_t(c)] / 255.0;
            mx += w * x, my += w * yv, xx += w * x * x, yy += w * yv * yv, xy += w * x * yv;
          }
        const double c1 = 1e-4, c2 = 9e-4;
        total += ((2 * mx * my + c1) * (2 * (xy - mx * my) + c2)) /
                 ((mx * mx + my * my + c1) * ((xx - mx * mx) + (yy - my * my) + c2));
        ++count;
      }
  EXPECT_NEAR(ssim(a, b), total / count, 1e-12);
}

}  // namespace
}  // namespace fewstep
