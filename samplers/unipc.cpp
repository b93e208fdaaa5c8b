// UniPC: Zhao, Bai, Rao, Zhou & Lu 2023, "UniPC: A Unified Predictor-Corrector
// Framework for Fast Sampling of Diffusion Models", Algorithms 2 and 3
// (UniP-p and UniC-p with B(h), data prediction), scheduled as diffusers'
// UniPCMultistepScheduler.
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <cmath>
#include <set>
#include <sstream>

namespace fewstep {
namespace {

/// Solves the n×n system A·y = b (n ≤ 3) by Gaussian elimination with
/// partial pivoting, in float64.
std::vector<double> solve(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t c = 0; c < n; ++c) {
    size_t p = c;
    for (size_t r = c + 1; r < n; ++r)
      if (std::abs(a[r][c]) > std::abs(a[p][c])) p = r;
    std::swap(a[c], a[p]);
    std::swap(b[c], b[p]);
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> y(n);
  for (size_t c = n; c-- > 0;) {
    double v = b[c];
    for (size_t k = c + 1; k < n; ++k) v -= a[c][k] * y[k];
    y[c] = v / a[c][c];
  }
  return y;
}

struct History {
  std::vector<at::Tensor> m;   ///< data predictions, newest last
  std::vector<int64_t> point;  ///< their schedule points
};

/// One UniP (corrector = false) or UniC (corrector = true) update from point
/// s0 = hist.point.back() to point t, order p (Zhao et al. 2023 Alg. 2-3):
///   x_t = σ_t/σ_s0·x - α_t·h·φ1(h)·m0 - α_t·B(h)·Σ_k ρ_k·D_k,
/// D_k = (m_{s_k} - m0)/r_k with r_k = (λ_{s_k} - λ_s0)/h over the p-1 older
/// points, ρ from R·ρ = b (R_{ik} = r_k^{i-1}, b_i = h·φ_{i+1}(h)·i!/B(h)),
/// B(h) = h (bh1) or e^h - 1 (bh2) in the data-prediction sign (hh = -h).
/// UniC adds the point t itself (r = 1, D = m_t - m0); UniP with p = 2 uses
/// ρ = 1/2 and UniC with p = 1 uses ρ = 1/2, as the paper prescribes.
at::Tensor uni_update(const Schedule& sc, int64_t t, const at::Tensor& x, const History& hist, int p, bool bh2,
                      const at::Tensor* m_t) {
  const size_t last = hist.m.size() - 1;
  // An older point at λ = -∞ (α = 0: flow at t = 1, zero SNR) is infinitely
  // far in λ: it carries no usable difference, so the order stops before it.
  for (int k = 1; k < p; ++k)
    if (!std::isfinite(detail::lambda_at(sc, hist.point[last - k]))) {
      p = k;
      break;
    }
  const int64_t s0 = hist.point[last];
  const at::Tensor& m0 = hist.m[last];
  const double a_t = detail::alpha_at(sc, t), s_t = detail::sigma_at(sc, t);
  const double lam_0 = detail::lambda_at(sc, s0);
  const double h = detail::lambda_at(sc, t) - lam_0;
  const double hh = -h;
  const double h_phi_1 = std::expm1(hh);
  at::Tensor x_t = (s_t > 0 ? s_t / detail::sigma_at(sc, s0) : 0.0) * x - (a_t * h_phi_1) * m0;
  const int rows = m_t ? p : p - 1;  // unknown ρ's
  if (rows == 0) return x_t;
  std::vector<double> rks;
  std::vector<at::Tensor> d;
  for (int k = 1; k < p; ++k) {
    const double rk = (detail::lambda_at(sc, hist.point[last - k]) - lam_0) / h;
    rks.push_back(rk);
    d.push_back((hist.m[last - k] - m0) / rk);
  }
  rks.push_back(1.0);
  const double b_h = bh2 ? std::expm1(hh) : hh;
  std::vector<std::vector<double>> r_mat;
  std::vector<double> b;
  double h_phi_k = h_phi_1 / hh - 1.0, factorial = 1.0;
  for (int i = 1; i <= p; ++i) {
    std::vector<double> row;
    for (double rk : rks) row.push_back(std::pow(rk, i - 1));
    r_mat.push_back(row);
    b.push_back(h_phi_k * factorial / b_h);
    factorial *= i + 1;
    h_phi_k = h_phi_k / hh - 1.0 / factorial;
  }
  std::vector<double> rho;
  if (!m_t) {
    if (p == 2) {
      rho = {0.5};
    } else {
      std::vector<std::vector<double>> sub(static_cast<size_t>(rows));
      for (int i = 0; i < rows; ++i) sub[i].assign(r_mat[i].begin(), r_mat[i].begin() + rows);
      rho = solve(sub, std::vector<double>(b.begin(), b.begin() + rows));
    }
  } else {
    rho = p == 1 ? std::vector<double>{0.5} : solve(r_mat, b);
    d.push_back(*m_t - m0);
  }
  at::Tensor res = rho[0] * d[0];
  for (size_t k = 1; k < d.size(); ++k) res = res + rho[k] * d[k];
  return x_t - (a_t * b_h) * res;
}

at::Tensor run_unipc(SamplerContext& ctx, at::Tensor x) {
  const Schedule& sc = ctx.schedule;
  const int64_t n = sc.steps();
  const int order = static_cast<int>(ctx.options.integer("solver_order"));
  const bool bh2 = ctx.options.choice("solver_type") == "bh2";
  const bool lower_order_final = ctx.options.flag("lower_order_final");
  const IndexList& no_corrector = ctx.options.indices("disable_corrector");
  History hist;
  at::Tensor last_x;
  int last_order = 1;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor m = detail::denoise_at(ctx, x, i).x0;
    // UniC: correct x_i with the output just computed at it (no extra NFE).
    // (Skipped after a step from λ = -∞, whose B(h) is infinite for bh1.)
    if (i > 0 && !no_corrector.contains(i - 1) && std::isfinite(detail::lambda_at(sc, i - 1)))
      x = uni_update(sc, i, last_x, hist, last_order, bh2, &m);
    hist.m.push_back(m);
    hist.point.push_back(i);
    if (hist.m.size() > 3) {
      hist.m.erase(hist.m.begin());
      hist.point.erase(hist.point.begin());
    }
    int p = lower_order_final ? static_cast<int>(std::min<int64_t>(order, n - i)) : order;
    p = std::min<int>(p, static_cast<int>(std::min<int64_t>(i, order)) + 1);  // warm-up
    if (detail::sigma_at(sc, i + 1) <= 0) p = 1;  // λ = ∞ at sigma 0: only order 1 is finite
    last_x = x;
    last_order = p;
    x = uni_update(sc, i + 1, x, hist, p, bh2, nullptr);
    detail::report(ctx, i, x);
  }
  return x;
}

}  // namespace

SamplerInfo unipc_sampler() {
  SamplerInfo info;
  info.name = "unipc";
  info.aliases = {"UniPCMultistepScheduler", "UniPC"};
  info.order = 2;
  info.stochastic = false;
  info.family = "dpm";
  info.options = {
      choice_option("solver_type", "bh2", {"bh1", "bh2"}, "B(h) = h (bh1) or e^h - 1 (bh2)"),
      int_option("solver_order", 2, 1, 3, "UniP order; UniC raises the accuracy by one"),
      index_list_option("disable_corrector", "steps whose result UniC leaves uncorrected: all, or a comma list"),
      bool_option("lower_order_final", true, "lower orders on the last steps"),
  };
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help = "UniPC predictor-corrector (Zhao et al. 2023); the corrector reuses the next NFE";
  info.run = run_unipc;
  return info;
}

}  // namespace fewstep
