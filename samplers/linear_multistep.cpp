// Adams–Bashforth weights; see linear_multistep.h.
#include "samplers/linear_multistep.h"

#include "samplers/common.h"

#include <array>
#include <cmath>
#include <stdexcept>

namespace fewstep::detail {

std::vector<double> adams_bashforth_weights(int order) {
  switch (order) {
    case 1:
      return {1.0};
    case 2:
      return {3.0 / 2.0, -1.0 / 2.0};
    case 3:
      return {23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0};
    case 4:
      return {55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0};
    default:
      throw std::invalid_argument("Adams-Bashforth order must be 1..4");
  }
}

std::vector<double> lagrange_weights(const std::vector<double>& nodes, double a, double b) {
  // Gauss–Legendre nodes and weights on [-1, 1], 4 points (exact to degree 7).
  const double p = std::sqrt(3.0 / 7.0 - 2.0 / 7.0 * std::sqrt(6.0 / 5.0));
  const double q = std::sqrt(3.0 / 7.0 + 2.0 / 7.0 * std::sqrt(6.0 / 5.0));
  const double wp = (18.0 + std::sqrt(30.0)) / 36.0, wq = (18.0 - std::sqrt(30.0)) / 36.0;
  const std::array<double, 4> gx = {-q, -p, p, q}, gw = {wq, wp, wp, wq};
  const size_t n = nodes.size();
  std::vector<double> w(n, 0.0);
  for (size_t g = 0; g < gx.size(); ++g) {
    const double u = 0.5 * (a + b) + 0.5 * (b - a) * gx[g];
    for (size_t j = 0; j < n; ++j) {
      double basis = 1.0;
      for (size_t k = 0; k < n; ++k)
        if (k != j) basis *= (u - nodes[k]) / (nodes[j] - nodes[k]);
      w[j] += 0.5 * gw[g] * basis;  // ∫ over [a, b] / (b - a) = ½·Σ gw·ℓ
    }
  }
  return w;
}

at::Tensor weighted_sum(const std::vector<double>& w, const std::deque<at::Tensor>& d) {
  at::Tensor out = w[0] * d[0];
  for (size_t j = 1; j < w.size(); ++j) out = out + w[j] * d[j];
  return out;
}

at::Tensor run_sigma_multistep(SamplerContext& ctx, at::Tensor x, int max_order, bool jump_to_x0,
                               const MultistepWeights& weights) {
  const Schedule& sc = ctx.schedule;
  const bool flow = is_flow_path(sc);
  std::deque<at::Tensor> d;  // dy/dτ at points i, i-1, ..., newest first
  std::deque<double> taus;   // their τ
  for (int64_t i = 0; i < sc.steps(); ++i) {
    const double c_t = ode_scale(sc, i, flow), c_s = ode_scale(sc, i + 1, flow);
    const double s_t = sigma_at(sc, i), s_s = sigma_at(sc, i + 1);
    const at::Tensor x0 = denoise_at(ctx, x, i).x0;
    d.push_front((x - c_t * x0) / s_t);
    taus.push_front(s_t / c_t);
    if (static_cast<int>(d.size()) > max_order) {
      d.pop_back();
      taus.pop_back();
    }
    if (s_s <= 0 && jump_to_x0) {
      x = c_s * x0;
    } else {
      const double tau_next = s_s / c_s;
      const std::vector<double> w = weights(std::vector<double>(taus.begin(), taus.end()), tau_next);
      x = c_s * (x / c_t + (tau_next - taus[0]) * weighted_sum(w, d));
    }
    report(ctx, i, x);
  }
  return x;
}

}  // namespace fewstep::detail
