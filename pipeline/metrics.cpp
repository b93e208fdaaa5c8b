// Image-quality metrics (see metrics.h).
#include "pipeline/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

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

double ssim(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes() || a.dim() != 3 || a.size(2) != 3 || a.scalar_type() != at::kByte ||
      b.scalar_type() != at::kByte)
    throw std::invalid_argument("ssim: need two [H, W, 3] uint8 images of the same size");
  const int64_t h = a.size(0), w = a.size(1);
  int64_t win = std::min<int64_t>({11, h, w});
  if (win % 2 == 0) --win;
  // [3, 1, H, W] float64 in [0, 1].
  auto planes = [](const at::Tensor& img) { return img.permute({2, 0, 1}).unsqueeze(1).to(at::kDouble) / 255.0; };
  const at::Tensor x = planes(a), y = planes(b);
  const at::Tensor r = at::arange(win, at::kDouble) - double(win / 2);
  const at::Tensor g1 = at::exp(-r.square() / (2 * 1.5 * 1.5));
  const at::Tensor g = at::outer(g1, g1);
  const at::Tensor kernel = (g / g.sum()).view({1, 1, win, win});
  auto blur = [&](const at::Tensor& t) { return at::conv2d(t, kernel); };
  const at::Tensor mx = blur(x), my = blur(y);
  const at::Tensor sxx = blur(x * x) - mx * mx, syy = blur(y * y) - my * my, sxy = blur(x * y) - mx * my;
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  const at::Tensor s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
  return s.mean().item<double>();
}

}  // namespace fewstep
