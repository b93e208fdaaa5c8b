// Image-quality metrics (see metrics.h).
#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace fewstep {

double rmse(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) throw std::invalid_argument("rmse: tensors differ in shape");
  const at::Tensor d = a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble);
  return std::sqrt(d.square().mean().item<double>());
}

double psnr_db(double rmse_value, double peak) {
  if (rmse_value <= 0) return std::numeric_limits<double>::infinity();
  return 20.0 * std::log10(peak / rmse_value);
}

double rmse(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height || a.channels != b.channels || !a.consistent() || !b.consistent())
    throw std::invalid_argument("rmse: images differ in size or channels");
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const double d = double(a.pixels[i]) - double(b.pixels[i]);
    sum += d * d;
  }
  return a.pixels.empty() ? 0.0 : std::sqrt(sum / double(a.pixels.size()));
}

namespace {

/// "Valid" separable blur of a [h, w] plane by the normalised 1-D kernel g:
/// [h - k + 1, w - k + 1].
std::vector<double> blur_valid(const std::vector<double>& p, int h, int w, const std::vector<double>& g) {
  const int k = static_cast<int>(g.size()), oh = h - k + 1, ow = w - k + 1;
  std::vector<double> rows(size_t(h) * size_t(ow)), out(size_t(oh) * size_t(ow));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < ow; ++x) {
      double acc = 0;
      for (int i = 0; i < k; ++i) acc += g[size_t(i)] * p[size_t(y) * size_t(w) + size_t(x + i)];
      rows[size_t(y) * size_t(ow) + size_t(x)] = acc;
    }
  for (int y = 0; y < oh; ++y)
    for (int x = 0; x < ow; ++x) {
      double acc = 0;
      for (int i = 0; i < k; ++i) acc += g[size_t(i)] * rows[size_t(y + i) * size_t(ow) + size_t(x)];
      out[size_t(y) * size_t(ow) + size_t(x)] = acc;
    }
  return out;
}

}  // namespace

double ssim(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height || a.channels != 3 || b.channels != 3 || a.empty() ||
      !a.consistent() || !b.consistent())
    throw std::invalid_argument("ssim: need two RGB images of the same size");
  const int h = a.height, w = a.width;
  int win = std::min({11, h, w});
  if (win % 2 == 0) --win;
  // The 2-D Gaussian window is the outer product of this 1-D one (σ = 1.5).
  std::vector<double> g(static_cast<size_t>(win));
  double gsum = 0;
  for (int i = 0; i < win; ++i)
    gsum += g[size_t(i)] = std::exp(-double((i - win / 2) * (i - win / 2)) / (2 * 1.5 * 1.5));
  for (double& v : g) v /= gsum;
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  const size_t n = size_t(h) * size_t(w);
  double total = 0;
  size_t count = 0;
  for (int c = 0; c < 3; ++c) {
    std::vector<double> x(n), y(n), xx(n), yy(n), xy(n);
    for (size_t i = 0; i < n; ++i) {
      x[i] = a.pixels[i * 3 + size_t(c)] / 255.0;
      y[i] = b.pixels[i * 3 + size_t(c)] / 255.0;
      xx[i] = x[i] * x[i], yy[i] = y[i] * y[i], xy[i] = x[i] * y[i];
    }
    const auto mx = blur_valid(x, h, w, g), my = blur_valid(y, h, w, g);
    const auto bxx = blur_valid(xx, h, w, g), byy = blur_valid(yy, h, w, g), bxy = blur_valid(xy, h, w, g);
    for (size_t i = 0; i < mx.size(); ++i) {
      const double sxx = bxx[i] - mx[i] * mx[i], syy = byy[i] - my[i] * my[i], sxy = bxy[i] - mx[i] * my[i];
      total += ((2 * mx[i] * my[i] + c1) * (2 * sxy + c2)) / ((mx[i] * mx[i] + my[i] * my[i] + c1) * (sxx + syy + c2));
      ++count;
    }
  }
  return total / double(count);
}

}  // namespace fewstep
