// Adaptive-step DPM-Solver: Lu, Zhou, Bao, Chen, Li & Zhu 2022,
// "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling
// in Around 10 Steps" (NeurIPS), §4 and Alg. 4-5 (DPM-Solver-12 and -23:
// embedded first/second- or second/third-order single steps in λ with error
// control), with k-diffusion's sample_dpm_adaptive step controller (a PID
// controller on the error, Söderlind 2003's digital filters).
#include "samplers/common.h"
#include "samplers/sampler_list.h"

#include <array>
#include <cmath>

namespace fewstep {
namespace {

struct Row {
  at::Tensor x, x_prev, eps;  // [1, C, H, W]; eps: ε at the current point (undefined: not yet evaluated)
  NoisePoint p;               // the current point
  double lam = 0, h = 0;      // its λ; the controller's proposed step
  std::array<double, 3> inv_errors{};
  bool started = false, done = false;
};

double lambda_of(const NoisePoint& p) { return std::log(p.alpha) - std::log(p.sigma); }

// ε = (x - α·x0)/σ of rows `xs` at points `pts`, in one denoiser call.
std::vector<at::Tensor> eps_at(SamplerContext& ctx, const std::vector<at::Tensor>& xs,
                               const std::vector<NoisePoint>& pts) {
  const auto n = static_cast<int64_t>(xs.size());
  auto opts = at::TensorOptions().dtype(at::kDouble);
  NoiseLevels lv{at::empty({n}, opts), at::empty({n}, opts), at::empty({n}, opts)};
  for (int64_t r = 0; r < n; ++r) {
    lv.alpha[r] = pts[r].alpha;
    lv.sigma[r] = pts[r].sigma;
    lv.timestep[r] = pts[r].timestep;
  }
  const DenoiserOutput out = ctx.denoiser(at::cat(xs), lv);
  std::vector<at::Tensor> eps;
  for (int64_t r = 0; r < n; ++r) eps.push_back((xs[r] - pts[r].alpha * out.x0.narrow(0, r, 1)) / pts[r].sigma);
  return eps;
}

// DPM-Solver's first-order term from point s to point q (Lu et al. Eq. 3.7):
// (α_q/α_s)·x - σ_q·(e^{h} - 1)·ε_s, h = λ_q - λ_s.
at::Tensor dpm1(const Row& r, const NoisePoint& q, double h) {
  return (q.alpha / r.p.alpha) * r.x - (q.sigma * std::expm1(h)) * r.eps;
}

// k-diffusion's PIDStepSizeController.propose_step: returns whether the step
// is accepted and scales row.h by the limited factor.
bool propose(Row& row, double error, const ResolvedOptions& o, double order) {
  const double p = o.real("pcoeff"), i = o.real("icoeff"), d = o.real("dcoeff");
  const double b1 = (p + i + d) / order, b2 = -(p + 2 * d) / order, b3 = d / order;
  const double inv = 1.0 / (error + 1e-8);
  if (!row.started) row.inv_errors = {inv, inv, inv};
  row.started = true;
  row.inv_errors[0] = inv;
  double factor = std::pow(row.inv_errors[0], b1) * std::pow(row.inv_errors[1], b2) * std::pow(row.inv_errors[2], b3);
  factor = 1.0 + std::atan(factor - 1.0);  // limiter
  const bool accept = factor >= o.real("accept_safety");
  if (accept) {
    row.inv_errors[2] = row.inv_errors[1];
    row.inv_errors[1] = row.inv_errors[0];
  }
  row.h *= factor;
  return accept;
}

/// Integrates every row from point 0 to the end point with its own step
/// sizes (rows share denoiser calls but never step sizes, so a row's result
/// does not depend on its batch). Per attempted step from λ_s with h:
/// order 3: x_low = DPM-Solver-2 (r1 = 1/3), x_high = DPM-Solver-3 (Lu et al.
/// Alg. 5, r1 = 1/3, r2 = 2/3); order 2: DPM-Solver-1 and -2 (r1 = 1/2). The
/// error is the RMS of (x_low - x_high)/δ, δ = max(atol, rtol·max(|x_low|,
/// |x_prev|)), in k-diffusion's coordinates x/α (x itself on flow paths).
/// ε at the step's start is kept across rejected attempts (k-diffusion
/// evaluates it again), so an accepted step costs `order` NFE and a rejected
/// one order - 1. With a final sigma of 0 the integration ends at the
/// training sigma_min (timestep 0; flow: timestep 1) and one more NFE returns
/// x0 there; otherwise it ends at the final point.
at::Tensor run_dpm_adaptive(SamplerContext& ctx, at::Tensor x) {
  const Schedule& sc = ctx.schedule;
  const ResolvedOptions& o = ctx.options;
  const bool flow = detail::is_flow_path(sc);
  const int order = static_cast<int>(o.integer("order"));
  const double rtol = o.real("rtol"), atol = o.real("atol");
  const int64_t n = sc.steps();
  const NoisePoint last{detail::timestep_at(sc, n), detail::alpha_at(sc, n), detail::sigma_at(sc, n)};
  const bool jump = last.sigma <= 0;
  const NoisePoint end = jump ? detail::point_at_timestep(sc, flow ? 1.0 : 0.0) : last;
  const double lam_end = lambda_of(end);

  std::vector<Row> rows(static_cast<size_t>(x.size(0)));
  for (size_t r = 0; r < rows.size(); ++r) {
    Row& row = rows[r];
    row.x = x.narrow(0, int64_t(r), 1);
    row.p = {detail::timestep_at(sc, 0), detail::alpha_at(sc, 0), detail::sigma_at(sc, 0)};
    row.h = o.real("h_init");
    if (row.p.alpha <= 0) {
      // λ = -∞ (zero terminal SNR, flow at t = 1): one DDIM step to the next
      // training timestep first.
      const NoisePoint next = detail::point_at_timestep(sc, row.p.timestep - 1.0);
      const DenoiserOutput out = detail::denoise_at_point(ctx, row.x, row.p);
      row.x = next.alpha * out.x0 + next.sigma * out.eps;
      row.p = next;
    }
    row.lam = lambda_of(row.p);
    row.x_prev = row.x;
    row.done = row.lam >= lam_end - 1e-5;
  }
  auto scale_of = [&](const NoisePoint& p) { return flow ? 1.0 : p.alpha; };
  for (;;) {
    std::vector<size_t> active;
    for (size_t r = 0; r < rows.size(); ++r)
      if (!rows[r].done) active.push_back(r);
    if (active.empty()) break;
    {  // ε at the current points where it is not known yet
      std::vector<at::Tensor> xs;
      std::vector<NoisePoint> pts;
      std::vector<size_t> which;
      for (size_t r : active)
        if (!rows[r].eps.defined()) xs.push_back(rows[r].x), pts.push_back(rows[r].p), which.push_back(r);
      if (!xs.empty()) {
        const auto eps = eps_at(ctx, xs, pts);
        for (size_t k = 0; k < which.size(); ++k) rows[which[k]].eps = eps[k];
      }
    }
    const double r1 = order == 2 ? 0.5 : 1.0 / 3.0, r2 = 2.0 / 3.0;
    std::vector<double> lam_t(active.size()), h(active.size());
    std::vector<NoisePoint> p_t(active.size()), p_1(active.size()), p_2(active.size());
    std::vector<at::Tensor> u1(active.size()), u2(active.size());
    for (size_t k = 0; k < active.size(); ++k) {
      const Row& row = rows[active[k]];
      lam_t[k] = std::min(lam_end, row.lam + row.h);
      h[k] = lam_t[k] - row.lam;
      p_t[k] = lam_t[k] >= lam_end ? end : detail::point_at_lambda(sc, lam_t[k]);
      p_1[k] = detail::point_at_lambda(sc, row.lam + r1 * h[k]);
      u1[k] = dpm1(row, p_1[k], r1 * h[k]);
    }
    const auto e1 = eps_at(ctx, u1, p_1);
    std::vector<at::Tensor> e2;
    if (order == 3) {
      for (size_t k = 0; k < active.size(); ++k) {
        const Row& row = rows[active[k]];
        p_2[k] = detail::point_at_lambda(sc, row.lam + r2 * h[k]);
        const double rh = r2 * h[k];
        u2[k] = dpm1(row, p_2[k], rh) - (p_2[k].sigma * (r2 / r1) * (std::expm1(rh) / rh - 1.0)) * (e1[k] - row.eps);
      }
      e2 = eps_at(ctx, u2, p_2);
    }
    for (size_t k = 0; k < active.size(); ++k) {
      Row& row = rows[active[k]];
      const NoisePoint& q = p_t[k];
      const double em1 = std::expm1(h[k]);
      const at::Tensor base = dpm1(row, q, h[k]);
      at::Tensor low, high;
      if (order == 2) {
        low = base;
        high = base - (q.sigma / (2.0 * r1) * em1) * (e1[k] - row.eps);
      } else {
        low = base - (q.sigma / (2.0 * r1) * em1) * (e1[k] - row.eps);
        high = base - (q.sigma / r2 * (em1 / h[k] - 1.0)) * (e2[k] - row.eps);
      }
      const double c_t = scale_of(q), c_prev = scale_of(row.p);
      const at::Tensor y_low = low / c_t, y_high = high / c_t, y_prev = row.x_prev / c_prev;
      const at::Tensor delta = at::clamp_min(rtol * at::maximum(y_low.abs(), y_prev.abs()), atol);
      double error = ((y_low - y_high) / delta).pow(2).mean().sqrt().item<double>();
      if (std::isnan(error)) error = INFINITY;  // rejected, the step shrinks
      const bool accepted = propose(row, error, o, order);
      if (!(row.h > 1e-10))
        throw SamplerError("dpm_adaptive: the step size fell below 1e-10 in lambda (rtol " + std::to_string(rtol) +
                           ", atol " + std::to_string(atol) + " cannot be met)");
      if (accepted) {
        row.x_prev = low;
        row.x = high;
        row.p = q;
        row.lam = lam_t[k];
        row.eps = at::Tensor();
        row.done = row.lam >= lam_end - 1e-5;
      }
    }
  }
  std::vector<at::Tensor> out;
  for (const Row& row : rows) out.push_back(row.x);
  x = at::cat(out);
  if (jump) x = last.alpha * detail::denoise_at_point(ctx, x, end).x0;
  detail::report(ctx, n - 1, x);
  return x;
}

}  // namespace

SamplerInfo dpm_adaptive_sampler() {
  SamplerInfo info;
  info.name = "dpm_adaptive";
  info.aliases = {"DPM adaptive"};
  info.order = 3;
  info.stochastic = false;
  info.family = "dpm";
  info.adaptive = true;
  info.options = {
      int_option("order", 3, 2, 3, "3: DPM-Solver-23 (3 NFE per step), 2: DPM-Solver-12 (2 NFE)"),
      real_option("rtol", 0.05, 1e-6, 1.0, "relative tolerance of the local error"),
      real_option("atol", 0.0078, 1e-9, 1.0, "absolute tolerance of the local error (x/alpha units)"),
      real_option("h_init", 0.05, 1e-4, 10.0, "first step size in lambda = log(alpha/sigma)"),
      real_option("pcoeff", 0.0, -10.0, 10.0, "step controller: proportional coefficient"),
      real_option("icoeff", 1.0, -10.0, 10.0, "step controller: integral coefficient"),
      real_option("dcoeff", 0.0, -10.0, 10.0, "step controller: derivative coefficient"),
      real_option("accept_safety", 0.81, 0.0, 1.0, "accept a step when the controller's factor is at least this"),
  };
  for (auto& o : schedule_options()) info.options.push_back(o);
  info.help =
      "Adaptive DPM-Solver-12/23 (Lu et al. 2022, Sec. 4): picks its own steps by error control; "
      "--steps is ignored";
  info.nfe = "adaptive (rtol)";
  info.run = run_dpm_adaptive;
  return info;
}

}  // namespace fewstep
