// DPM-Solver++ multistep updates; see dpm_multistep.h.
#include "samplers/dpm_multistep.h"

#include "samplers/common.h"

#include <cmath>

namespace fewstep::detail {

DpmMultistepSettings dpm_multistep_settings(const ResolvedOptions& o) {
  DpmMultistepSettings s;
  s.order = static_cast<int>(o.integer("solver_order"));
  s.heun = o.choice("solver_type") == "heun";
  s.lower_order_final = o.flag("lower_order_final");
  s.euler_at_final = o.flag("euler_at_final");
  s.eta = o.has("eta") ? o.real("eta") : 0.0;
  return s;
}

int dpm_multistep_order(const Schedule& sc, int64_t i, const DpmMultistepSettings& s, int available) {
  const int64_t n = sc.steps();
  const bool few = s.lower_order_final && n < 15;
  const bool final_zero = sigma_at(sc, n) <= 0;
  if (i == n - 1 && (s.euler_at_final || few || final_zero)) return 1;
  int order = std::min<int>(s.order, available);
  if (i == n - 2 && few) order = std::min(order, 2);
  return std::max(order, 1);
}

at::Tensor dpm_multistep_update(const Schedule& sc, int64_t i, const at::Tensor& x, const std::vector<at::Tensor>& d,
                                int order, const DpmMultistepSettings& s, const at::Tensor* noise) {
  // Lu et al. 2022 (DPM-Solver++) Eq. 5 for order 1, Alg. 2 for order 2
  // (midpoint; heun is diffusers' variant), the multistep 3rd order of
  // diffusers' DPMSolverMultistepScheduler; the SDE form (Lu et al. 2022 §5,
  // "SDE-DPM-Solver++") with eta: e^{-ηh} on x and (1+η)h in the data terms.
  const double a_t = alpha_at(sc, i + 1), s_t = sigma_at(sc, i + 1), s_0 = sigma_at(sc, i);
  const double lam_t = lambda_at(sc, i + 1), lam_0 = lambda_at(sc, i);
  const double h = lam_t - lam_0;
  const double eta_h = s.eta > 0 ? s.eta * h : 0.0;
  const double hh = h + eta_h;           // (1+η)h
  const double phi1 = -std::expm1(-hh);  // 1 - e^{-(1+η)h}
  const double x_coef = s_t > 0 ? (s_t / s_0) * std::exp(-eta_h) : 0.0;
  at::Tensor out = x_coef * x + (a_t * phi1) * d[0];
  if (order >= 2) {
    const double h_0 = lam_0 - lambda_at(sc, i - 1), r0 = h_0 / h;
    const at::Tensor d1_0 = (d[0] - d[1]) / r0;
    if (order == 2) {
      const double c = s.heun ? a_t * (1.0 - phi1 / hh) : 0.5 * a_t * phi1;
      out = out + c * d1_0;
    } else {
      const double h_1 = lambda_at(sc, i - 1) - lambda_at(sc, i - 2), r1 = h_1 / h;
      const at::Tensor d1_1 = (d[1] - d[2]) / r1;
      const at::Tensor d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1);
      const at::Tensor d2 = (d1_0 - d1_1) / (r0 + r1);
      const double em1 = std::expm1(-hh);  // e^{-h} - 1 (η = 0 for the 3rd order)
      out = out + (a_t * (em1 / hh + 1.0)) * d1 - (a_t * ((em1 + hh) / (hh * hh) - 0.5)) * d2;
    }
  }
  if (s.eta > 0 && s_t > 0) out = out + (s_t * std::sqrt(-std::expm1(-2.0 * eta_h))) * *noise;
  return out;
}

at::Tensor run_dpm_multistep(SamplerContext& ctx, at::Tensor x, int default_order) {
  const Schedule& sc = ctx.schedule;
  const DpmMultistepSettings s = dpm_multistep_settings(ctx.options);
  std::vector<at::Tensor> d;  // data predictions, newest first
  for (int64_t i = 0; i < sc.steps(); ++i) {
    d.insert(d.begin(), denoise_at(ctx, x, i).x0);
    if (static_cast<int>(d.size()) > 3) d.pop_back();
    const int order = dpm_multistep_order(sc, i, s, static_cast<int>(d.size()));
    at::Tensor z;
    if (s.eta > 0) z = noise_like(ctx.noise, i, x);
    x = dpm_multistep_update(sc, i, x, d, order, s, s.eta > 0 ? &z : nullptr);
    report(ctx, i, x);
  }
  return x;
}

at::Tensor dpm_multistep_rule(const StepInput& in, int default_order) {
  const DpmMultistepSettings s = dpm_multistep_settings(in.options);
  if (s.order > 2) throw SamplerError("Picard supports DPM-Solver++ of solver_order <= 2 only");
  std::vector<at::Tensor> d = {in.out.x0};
  if (in.prev) d.push_back(in.prev->x0);
  const int order = dpm_multistep_order(in.schedule, in.i, s, static_cast<int>(d.size()));
  at::Tensor z;
  if (s.eta > 0) z = noise_like(in.noise, in.i, in.x);
  return dpm_multistep_update(in.schedule, in.i, in.x, d, order, s, s.eta > 0 ? &z : nullptr);
}

std::vector<SamplerOptionInfo> dpm_multistep_options(int default_order, bool with_eta) {
  std::vector<SamplerOptionInfo> o = {
      int_option("solver_order", default_order, 1, with_eta ? 2 : 3, "multistep order (2: DPM-Solver++(2M), 3: (3M))"),
      choice_option("solver_type", "midpoint", {"midpoint", "heun"}, "second-order update form"),
      bool_option("lower_order_final", true, "lower orders on the last steps when steps < 15"),
      bool_option("euler_at_final", false, "first order on the last step"),
  };
  if (with_eta) o.push_back(eta_option(1.0));
  for (auto& s : schedule_options()) o.push_back(s);
  return o;
}

}  // namespace fewstep::detail
