// Training and inference schedules; see schedule.h for the contract.
#include "samplers/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>

namespace fewstep {
namespace {

double round_half_even(double v) { return std::nearbyint(v); }

// λ = log(ᾱ) - log(1 - ᾱ), the log-SNR of a VP point (Kingma et al. 2021).
double log_snr(double ac) { return std::log(ac) - std::log1p(-ac); }

NoisePoint vp_point_from_ac(double timestep, double ac) { return {timestep, std::sqrt(ac), std::sqrt(1.0 - ac)}; }

// numpy.linspace(start, stop, n): start + i·(stop-start)/(n-1), the last
// value exactly stop; n = 1 gives [start].
std::vector<double> linspace(double start, double stop, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  if (n == 1) {
    v[0] = start;
    return v;
  }
  const double step = (stop - start) / static_cast<double>(n - 1);
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  v[n - 1] = stop;
  return v;
}

std::vector<double> descending_indices(int64_t n, double step, bool round) {
  // (arange(0, n) · step) reversed.
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) * step;
    v[n - 1 - i] = round ? round_half_even(t) : t;
  }
  return v;
}

std::string join(const std::vector<double>& v) {
  std::ostringstream s;
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  return s.str();
}

void require_descending(const std::vector<double>& v, const char* what) {
  for (size_t i = 1; i < v.size(); ++i)
    if (!(v[i] < v[i - 1]))
      throw SamplerError(std::string("custom ") + what + " must be strictly descending, got " + join(v));
  for (double x : v)
    if (!std::isfinite(x) || x < 0)
      throw SamplerError(std::string("custom ") + what + " must be finite and >= 0, got " + join(v));
}

double k_sigma_at_index(const at::Tensor& ac, int64_t i) {
  const double a = ac.data_ptr<double>()[i];
  return std::sqrt((1.0 - a) / a);
}

// The points 0..N-1 of a spacing given by k-diffusion sigmas (VP) or flow t.
std::vector<NoisePoint> points_from_sigmas(const std::vector<double>& s, bool flow, const at::Tensor& ac, int64_t T) {
  std::vector<NoisePoint> p;
  for (double v : s) p.push_back(flow ? flow_point(v, T) : vp_point_at_k_sigma(ac, v));
  return p;
}

// Keeps σ/α strictly decreasing: an inner point not below its predecessor
// (to 1e-9 relative, so float rounding does not leave a vanishing step) is
// dropped; the final point always stays (the inner point before it goes).
std::vector<NoisePoint> strictly_decreasing(const std::vector<NoisePoint>& in) {
  auto k = [](const NoisePoint& p) { return p.alpha > 0 ? p.sigma / p.alpha : INFINITY; };
  auto below = [&](const NoisePoint& a, const NoisePoint& b) { return k(a) < k(b) * (1.0 - 1e-9); };
  std::vector<NoisePoint> out;
  for (size_t i = 0; i + 1 < in.size(); ++i)
    if (out.empty() || below(in[i], out.back())) out.push_back(in[i]);
  while (out.size() > 1 && !below(in.back(), out.back())) out.pop_back();
  if (!out.empty() && !below(in.back(), out.back()))
    throw SamplerError(
        "schedule has no step: its first point already sits at the final sigma "
        "(e.g. 1 linspace step with final_sigmas_type=sigma_min); use final_sigmas_type=zero");
  out.push_back(in.back());
  return out;
}

// The point of a spacing's timestep t: diffusers' Euler family
// (EulerDiscrete, EulerAncestralDiscrete, HeunDiscrete) interpolates the
// k-sigma linearly in t (np.interp(t, arange(T), sigmas)); the others take the
// log-SNR map. Both are exact at integer t.
NoisePoint family_point_at_timestep(const std::string& family, const at::Tensor& ac, double t) {
  return family == "euler" ? vp_point_linear_k_sigma(ac, t) : vp_point_at_timestep(ac, t);
}

// diffusers' DPM family (DPMSolverMultistep, DPMSolverSinglestep,
// UniPCMultistep) gives the model an int64 timestep for Karras and
// exponential sigmas while its update keeps the sigmas: `round` (Karras:
// np.round of _sigma_to_t) or the int64 cast's truncation. A point whose
// integer would equal a neighbour's (sigmas dense near σ_min or σ_max) keeps
// its exact timestep instead, so the model's timesteps stay strictly
// decreasing. (Integers r, exact t: for neighbours i-1, i with r_{i-1} ≠ r_i,
// r_{i-1} ≥ r_i + 1, and either rounding moves t by less than 1 below or 0.5
// either side, so an integer kept next to an exact value still orders them.)
void use_integer_timesteps(std::vector<NoisePoint>& pts, bool round) {
  const size_t n = pts.size();
  std::vector<double> r(n);
  for (size_t i = 0; i < n; ++i) r[i] = round ? round_half_even(pts[i].timestep) : std::floor(pts[i].timestep);
  for (size_t i = 0; i < n; ++i) {
    const bool repeated = (i > 0 && r[i] == r[i - 1]) || (i + 1 < n && r[i] == r[i + 1]);
    if (!repeated) pts[i].timestep = r[i];
  }
}

// LCM's timesteps (Luo et al. 2023; diffusers LCMScheduler.set_timesteps):
// the distillation schedule (1..S)·(T//S) - 1, reversed, sampled at
// floor(linspace(0, S, N, endpoint=False)).
std::vector<double> lcm_timesteps(int64_t steps, int64_t T, int64_t original_steps) {
  if (original_steps > T)
    throw SamplerError("original_inference_steps (" + std::to_string(original_steps) +
                       ") exceeds num_train_timesteps (" + std::to_string(T) + ")");
  if (steps > original_steps)
    throw SamplerError("lcm: steps (" + std::to_string(steps) + ") exceed original_inference_steps (" +
                       std::to_string(original_steps) + "); raise original_inference_steps");
  const int64_t k = T / original_steps;
  std::vector<double> origin(static_cast<size_t>(original_steps));
  for (int64_t i = 0; i < original_steps; ++i) origin[original_steps - 1 - i] = static_cast<double>((i + 1) * k - 1);
  std::vector<double> t;
  for (int64_t i = 0; i < steps; ++i) {
    const auto idx = static_cast<int64_t>(
        std::floor(static_cast<double>(i) * static_cast<double>(original_steps) / static_cast<double>(steps)));
    t.push_back(origin[idx]);
  }
  return t;
}

}  // namespace

bool is_flow(const SchedulerConfig& cfg) { return cfg.prediction_type == PredictionType::flow; }

at::Tensor training_betas(const SchedulerConfig& cfg) {
  const int64_t T = cfg.num_train_timesteps;
  if (T < 1) throw SamplerError("num_train_timesteps must be >= 1, got " + std::to_string(T));
  auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor betas;
  if (!cfg.trained_betas.empty()) {
    if (static_cast<int64_t>(cfg.trained_betas.size()) != T)
      throw SamplerError("trained_betas has " + std::to_string(cfg.trained_betas.size()) +
                         " values, num_train_timesteps is " + std::to_string(T));
    betas = at::tensor(cfg.trained_betas, opts);
  } else if (cfg.beta_schedule == "linear") {
    betas = at::linspace(cfg.beta_start, cfg.beta_end, T, opts);
  } else if (cfg.beta_schedule == "scaled_linear") {
    betas = at::linspace(std::sqrt(cfg.beta_start), std::sqrt(cfg.beta_end), T, opts).pow(2);
  } else if (cfg.beta_schedule == "squaredcos_cap_v2") {
    // Nichol & Dhariwal 2021 Eq. 17: ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2), s = 0.008;
    // β_i = min(1 - ᾱ((i+1)/T)/ᾱ(i/T), 0.999).
    auto alpha_bar = [](double t) {
      const double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
      return c * c;
    };
    std::vector<double> b(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) {
      const double t1 = static_cast<double>(i) / T, t2 = static_cast<double>(i + 1) / T;
      b[i] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999);
    }
    betas = at::tensor(b, opts);
  } else {
    throw SamplerError("unknown beta_schedule '" + cfg.beta_schedule +
                       "' (valid: linear, scaled_linear, squaredcos_cap_v2, or trained_betas)");
  }
  const double lo = betas.min().item<double>(), hi = betas.max().item<double>();
  if (!(lo > 0) || !(hi <= 1)) throw SamplerError("betas must lie in (0, 1]; check beta_start/beta_end/trained_betas");
  return betas;
}

at::Tensor training_alphas_cumprod(const SchedulerConfig& cfg) {
  if (is_flow(cfg)) return at::empty({0}, at::kDouble);
  at::Tensor ac = at::cumprod(1.0 - training_betas(cfg), 0);
  if (cfg.rescale_betas_zero_snr) {
    // Lin et al. 2024, Algorithm 1: shift √ᾱ so its last value is 0, scale so
    // its first is unchanged.
    at::Tensor s = ac.sqrt();
    const double s0 = s[0].item<double>(), sT = s[-1].item<double>();
    s = (s - sT) * (s0 / (s0 - sT));
    ac = s.pow(2);
  }
  return ac.contiguous();
}

namespace {

// The point at fractional training timestep t (clamped to [0, T-1]): the
// training point at integer t, else `between(ac_i, ac_{i+1}, frac)`.
template <class Between>
NoisePoint interpolated_point(const at::Tensor& alphas_cumprod, double t, Between between) {
  const int64_t T = alphas_cumprod.size(0);
  const double* ac = alphas_cumprod.data_ptr<double>();
  t = std::clamp(t, 0.0, static_cast<double>(T - 1));
  const auto i = static_cast<int64_t>(std::floor(t));
  const double frac = t - static_cast<double>(i);
  if (frac == 0.0 || i + 1 >= T) return vp_point_from_ac(t, ac[i]);
  NoisePoint p = between(ac[i], ac[i + 1], frac);
  p.timestep = t;
  return p;
}

}  // namespace

NoisePoint vp_point_at_timestep(const at::Tensor& alphas_cumprod, double t) {
  return interpolated_point(alphas_cumprod, t, [](double a0, double a1, double frac) {
    const double lam = log_snr(a0) + frac * (log_snr(a1) - log_snr(a0));
    // ᾱ = sigmoid(λ); 1 - ᾱ = sigmoid(-λ).
    return NoisePoint{0.0, std::sqrt(1.0 / (1.0 + std::exp(-lam))), std::sqrt(1.0 / (1.0 + std::exp(lam)))};
  });
}

NoisePoint vp_point_linear_k_sigma(const at::Tensor& alphas_cumprod, double t) {
  return interpolated_point(alphas_cumprod, t, [](double a0, double a1, double frac) {
    if (!(a1 > 0)) return NoisePoint{0.0, 0.0, 1.0};  // k = ∞ at an unclamped zero-SNR end
    const double k0 = std::sqrt((1.0 - a0) / a0), k1 = std::sqrt((1.0 - a1) / a1);
    const double k = k0 + frac * (k1 - k0);
    const double alpha = 1.0 / std::sqrt(1.0 + k * k);
    return NoisePoint{0.0, alpha, k * alpha};
  });
}

NoisePoint vp_point_at_k_sigma(const at::Tensor& alphas_cumprod, double k_sigma) {
  if (k_sigma <= 0) return {0.0, 1.0, 0.0};
  const int64_t T = alphas_cumprod.size(0);
  const double* ac = alphas_cumprod.data_ptr<double>();
  const double alpha = 1.0 / std::sqrt(1.0 + k_sigma * k_sigma);
  const double sigma = k_sigma * alpha;
  const double lam = -2.0 * std::log(k_sigma);
  // λ decreases with t: find i with λ_i >= λ >= λ_{i+1}.
  double t;
  if (lam >= log_snr(ac[0])) {
    t = 0.0;
  } else if (lam <= log_snr(ac[T - 1])) {
    t = static_cast<double>(T - 1);
  } else {
    int64_t lo = 0, hi = T - 1;  // λ_lo > λ > λ_hi
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) / 2;
      (log_snr(ac[mid]) >= lam ? lo : hi) = mid;
    }
    const double l0 = log_snr(ac[lo]), l1 = log_snr(ac[hi]);
    t = static_cast<double>(lo) + (l0 - lam) / (l0 - l1);
    // A training sigma maps to its integer timestep despite rounding in λ.
    if (std::abs(t - std::nearbyint(t)) < 1e-9) t = std::nearbyint(t);
  }
  return {t, alpha, sigma};
}

NoisePoint flow_point(double t, int64_t num_train_timesteps) {
  return {t * static_cast<double>(num_train_timesteps), 1.0 - t, t};
}

double flow_shift(double t, double shift) { return shift * t / (1.0 + (shift - 1.0) * t); }

std::string default_timestep_spacing(const std::string& family) {
  return (family == "ddim" || family == "lcm") ? "leading" : "linspace";
}

std::vector<double> spaced_timesteps(const std::string& family, const std::string& spacing, int64_t steps, int64_t T,
                                     int64_t steps_offset) {
  if (steps < 1) throw SamplerError("steps must be >= 1, got " + std::to_string(steps));
  const auto n = static_cast<double>(steps), Td = static_cast<double>(T);
  const bool dpm = family == "dpm";
  std::vector<double> t;
  if (spacing == "leading") {
    // DDIM/Euler: (arange(0, N) · (T // N)).round()[::-1] + steps_offset.
    // DPM/UniPC:  (arange(0, N+1) · (T // (N+1))).round()[::-1][:-1] + steps_offset.
    const int64_t count = dpm ? steps + 1 : steps;
    if (T / count == 0)
      throw SamplerError("timestep_spacing=leading has step ratio 0 at " + std::to_string(steps) + " steps (" +
                         std::to_string(T) + " training steps); use trailing or linspace");
    t = descending_indices(count, static_cast<double>(T / count), true);
    if (dpm) t.pop_back();
    for (double& v : t) v += static_cast<double>(steps_offset);
  } else if (spacing == "trailing") {
    // All families: arange(T, 0, -T/N).round() - 1, first N values. numpy's
    // float arange fills start + i·δ with δ = (start + step) - start, which
    // rounds differently from i·step (T=1000, N=48, i=3: 937.4999… not 937.5).
    const double delta = (Td - Td / n) - Td;
    for (int64_t i = 0; i < steps; ++i) t.push_back(round_half_even(Td + static_cast<double>(i) * delta) - 1.0);
  } else if (spacing == "linspace") {
    if (dpm) {
      // linspace(0, T-1, N+1).round()[::-1][:-1]
      t = linspace(0.0, Td - 1.0, steps + 1);
      for (double& v : t) v = round_half_even(v);
      std::reverse(t.begin(), t.end());
      t.pop_back();
    } else {
      // DDIM/DDPM: linspace(0, T-1, N).round()[::-1]; Euler/Heun: not rounded.
      t = linspace(0.0, Td - 1.0, steps);
      if (family != "euler")
        for (double& v : t) v = round_half_even(v);
      std::reverse(t.begin(), t.end());
    }
  } else {
    throw SamplerError("unknown timestep_spacing '" + spacing + "' (valid: leading, trailing, linspace)");
  }
  return t;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n, double rho) {
  const double lo = std::pow(sigma_min, 1.0 / rho), hi = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> s;
  for (double r : linspace(0.0, 1.0, n)) s.push_back(std::pow(hi + r * (lo - hi), rho));
  return s;
}

std::vector<double> exponential_sigmas(double sigma_min, double sigma_max, int64_t n) {
  std::vector<double> s;
  for (double l : linspace(std::log(sigma_max), std::log(sigma_min), n)) s.push_back(std::exp(l));
  return s;
}

Schedule make_schedule(const SchedulerConfig& cfg, const SamplerInfo& sampler, int64_t steps,
                       const ResolvedOptions& resolved) {
  if (steps < 1) throw SamplerError("steps must be >= 1, got " + std::to_string(steps));
  const int64_t T = cfg.num_train_timesteps;
  const bool flow = is_flow(cfg);
  const std::string& family = sampler.family;
  at::Tensor ac = training_alphas_cumprod(cfg);
  if (!flow && ac[-1].item<double>() <= 0.0 &&
      (family == "euler" || family == "dpm" || cfg.prediction_type == PredictionType::epsilon))
    ac.data_ptr<double>()[T - 1] = std::pow(2.0, -24);  // zero terminal SNR: keep α > 0

  // DDIMScheduler's set_alpha_to_one (diffusers' final_alpha_cumprod) decides
  // its final point when the config sets it: false is ᾱ_0, "sigma_min" here.
  // diffusers' other schedulers ignore the key. The option still wins.
  std::string final_type = cfg.final_sigmas_type;
  if (sampler.name == "ddim" && cfg.set_alpha_to_one) final_type = *cfg.set_alpha_to_one ? "zero" : "sigma_min";
  if (!resolved.choice("final_sigmas_type").empty()) final_type = resolved.choice("final_sigmas_type");
  if (final_type != "zero" && final_type != "sigma_min")
    throw SamplerError("unknown final_sigmas_type '" + final_type + "' (valid: zero, sigma_min)");
  const std::string sigma_spacing =
      resolved.choice("sigma_spacing").empty() ? cfg.sigma_spacing : resolved.choice("sigma_spacing");
  std::vector<double> custom_t = resolved.reals("timesteps");
  if (custom_t.empty()) custom_t = cfg.custom_timesteps;
  std::vector<double> custom_s = resolved.reals("sigmas");
  if (custom_s.empty()) custom_s = cfg.custom_sigmas;

  std::vector<NoisePoint> pts;
  std::optional<NoisePoint> final_point;
  if (!custom_t.empty()) {
    require_descending(custom_t, "timesteps");
    const double max_t = flow ? static_cast<double>(T) : static_cast<double>(T - 1);
    if (custom_t.front() > max_t)
      throw SamplerError("custom timesteps must be <= " + std::to_string(static_cast<int64_t>(max_t)));
    for (double t : custom_t)
      pts.push_back(flow ? flow_point(t / static_cast<double>(T), T) : family_point_at_timestep(family, ac, t));
  } else if (!custom_s.empty()) {
    require_descending(custom_s, "sigmas");
    if (flow && custom_s.front() > 1.0) throw SamplerError("custom flow sigmas must lie in [0, 1]");
    if (custom_s.back() == 0.0) {
      custom_s.pop_back();
      final_point = NoisePoint{0.0, 1.0, 0.0};
      if (custom_s.empty()) throw SamplerError("custom sigmas need at least one value above 0");
    }
    pts = points_from_sigmas(custom_s, flow, ac, T);
  } else if (flow) {
    // FlowMatchEulerDiscrete: t = shift(linspace(1, shift(1/T), N)).
    const double t_min = flow_shift(1.0 / static_cast<double>(T), cfg.shift);
    std::vector<double> t = linspace(1.0, t_min, steps);
    for (double& v : t) v = flow_shift(v, cfg.shift);
    if (sigma_spacing == "karras") t = karras_sigmas(t.back(), t.front(), steps);
    if (sigma_spacing == "exponential") t = exponential_sigmas(t.back(), t.front(), steps);
    if (sigma_spacing == "simple") {
      t.clear();
      for (int64_t i = 0; i < steps; ++i)
        t.push_back(flow_shift(static_cast<double>(T - (i * T) / steps) / static_cast<double>(T), cfg.shift));
    }
    pts = points_from_sigmas(t, true, ac, T);
  } else {
    if (steps > T)
      throw SamplerError("steps (" + std::to_string(steps) + ") exceed num_train_timesteps (" + std::to_string(T) +
                         ")");
    const std::string spacing = cfg.timestep_spacing.value_or(default_timestep_spacing(family));
    std::vector<double> t = family == "lcm" ? lcm_timesteps(steps, T, resolved.integer("original_inference_steps"))
                                            : spaced_timesteps(family, spacing, steps, T, cfg.steps_offset.value_or(0));
    // Repeated timesteps (leading + steps_offset at steps = T after this clamp,
    // DPM linspace rounding at steps near T) are dropped below.
    for (double& v : t) v = std::min(v, static_cast<double>(T - 1));
    if (sigma_spacing == "karras" || sigma_spacing == "exponential") {
      // Euler family: the spacing's own sigma range; others: the training range.
      // (A zero terminal SNR left unclamped, v_prediction on the ddim family,
      // has k = ∞ there: the range then ends at diffusers' clamp, ᾱ = 2^-24.)
      const double ac_end = ac.data_ptr<double>()[T - 1];
      const double ac_last = ac_end > 0 ? ac_end : std::pow(2.0, -24);
      double s_min = k_sigma_at_index(ac, 0), s_max = std::sqrt((1.0 - ac_last) / ac_last);
      if (family == "euler") {
        const NoisePoint lo = vp_point_linear_k_sigma(ac, t.back()), hi = vp_point_linear_k_sigma(ac, t.front());
        s_min = lo.sigma / lo.alpha;
        s_max = hi.sigma / hi.alpha;
      }
      const bool karras = sigma_spacing == "karras";
      pts = points_from_sigmas(karras ? karras_sigmas(s_min, s_max, steps) : exponential_sigmas(s_min, s_max, steps),
                               false, ac, T);
      // DPMSolverMultistep keeps Karras timesteps unrounded (then truncated)
      // for squaredcos_cap_v2; the other DPM-family schedulers round them.
      const bool dpm_multistep = sampler.name.rfind("dpmpp_", 0) == 0;
      if (family == "dpm")
        use_integer_timesteps(pts, karras && !(dpm_multistep && cfg.beta_schedule == "squaredcos_cap_v2"));
    } else if (sigma_spacing == "simple") {
      // k-diffusion's simple scheduler: training sigmas at T-1 - floor(i·T/N).
      for (int64_t i = 0; i < steps; ++i)
        pts.push_back(vp_point_at_timestep(ac, static_cast<double>(T - 1 - (i * T) / steps)));
    } else if (sigma_spacing.empty() || sigma_spacing == "none") {
      for (double v : t) pts.push_back(family_point_at_timestep(family, ac, v));
    } else {
      throw SamplerError("unknown sigma_spacing '" + sigma_spacing + "' (valid: none, karras, exponential, simple)");
    }
  }
  if (!final_point) {
    if (final_type == "zero")
      final_point = NoisePoint{0.0, 1.0, 0.0};
    else
      final_point = flow ? flow_point(flow_shift(1.0 / static_cast<double>(T), cfg.shift), T)
                         : vp_point_from_ac(0.0, ac.data_ptr<double>()[0]);
  }
  pts.push_back(*final_point);
  pts = strictly_decreasing(pts);

  const auto n = static_cast<int64_t>(pts.size());
  Schedule s;
  s.timesteps = at::empty({n}, at::kDouble);
  s.alphas = at::empty({n}, at::kDouble);
  s.sigmas = at::empty({n}, at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    s.timesteps.data_ptr<double>()[i] = pts[i].timestep;
    s.alphas.data_ptr<double>()[i] = pts[i].alpha;
    s.sigmas.data_ptr<double>()[i] = pts[i].sigma;
  }
  s.alphas_cumprod = ac;
  return s;
}

double initial_noise_scale(const Schedule& schedule) {
  const double a = schedule.alphas.data_ptr<double>()[0], s = schedule.sigmas.data_ptr<double>()[0];
  return std::sqrt(a * a + s * s);
}

}  // namespace fewstep
