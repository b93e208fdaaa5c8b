// Analytic models; see analytic.h.
#include "unet/analytic.h"

#include "common/parse.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <sstream>

namespace fewstep {
namespace {

constexpr const char* kValidKeys = "k, shape, seed, prediction_type, shift, rescale_betas_zero_snr";

[[noreturn]] void bad_spec(const std::string& spec, const std::string& why) {
  throw AnalyticSpecError("bad analytic model '" + spec + "': " + why);
}

int64_t parse_int(const std::string& spec, const std::string& key, const std::string& v, int64_t lo, int64_t hi) {
  const auto x = parse_integer(v);
  if (!x || *x < lo || *x > hi)
    bad_spec(spec, key + "=" + v + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return *x;
}

// [B] float64 -> [B, 1, 1, 1].
at::Tensor rows(const at::Tensor& v, int64_t dim) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[0] = v.size(0);
  return v.reshape(shape);
}

at::Generator seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

/// x0 ~ N(μ, diag(v)). Posterior mean (per dimension, x = α·x0 + σ·ε):
///   E[x0|x] = μ + α·v/(α²v + σ²)·(x - αμ).
/// PF-ODE solution: (x - αμ)/sqrt(α²v + σ²) is constant along trajectories
/// (in k-diffusion form dz/dk = (z - E[x0|z])/k with z = x/α, k = σ/α, the
/// ODE is linear and z - μ ∝ sqrt(v + k²)), so
///   x_to = α_to·μ + sqrt(α_to²v + σ_to²)/sqrt(α_from²v + σ_from²)·(x_from - α_from·μ).
class GaussianModel final : public AnalyticModel {
 public:
  explicit GaussianModel(AnalyticSpec spec) : AnalyticModel(std::move(spec)) {
    at::Generator g = seeded(spec_.seed);
    mean_ = 0.5 * at::randn(spec_.shape, g, kF64);
    var_ = 0.05 + 1.45 * at::rand(spec_.shape, g, kF64);  // v ∈ [0.05, 1.5]
  }
  at::Tensor posterior_mean(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& sigma) const override {
    const at::Tensor a = rows(alpha, x.dim()), s = rows(sigma, x.dim());
    return mean_ + a * var_ / (a * a * var_ + s * s) * (x - a * mean_);
  }
  at::Tensor ode_solution(const at::Tensor& x, const NoisePoint& from, const NoisePoint& to) const override {
    const at::Tensor scale = at::sqrt(to.alpha * to.alpha * var_ + to.sigma * to.sigma) /
                             at::sqrt(from.alpha * from.alpha * var_ + from.sigma * from.sigma);
    return to.alpha * mean_ + scale * (x - from.alpha * mean_);
  }
  at::Tensor sample_data(int64_t n, uint64_t seed) const override {
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), spec_.shape.begin(), spec_.shape.end());
    at::Generator g = seeded(seed);
    return mean_ + at::sqrt(var_) * at::randn(shape, g, kF64);
  }

 private:
  at::Tensor mean_, var_;  // [C, H, W] float64
};

/// x0 ~ Σ_k w_k N(m_k, s_k² I). Given x = α·x0 + σ·ε, component k has
/// x ~ N(α·m_k, c_k I) with c_k = α²s_k² + σ², responsibilities
/// r_k ∝ w_k N(x; α m_k, c_k I), and
///   E[x0|x] = Σ_k r_k·(m_k + α·s_k²/c_k·(x - α·m_k)).
/// The ODE reference integrates dz/du = z - E[x0|z] in u = log(σ/α), z = x/α
/// (k-diffusion form) with classical RK4 in float64 (kReferenceSteps per unit
/// of u), down to σ/α = 1e-6 when the target sigma is 0, then denoises.
class GmmModel final : public AnalyticModel {
 public:
  static constexpr double kReferenceStepsPerUnit = 200.0;

  explicit GmmModel(AnalyticSpec spec) : AnalyticModel(std::move(spec)) {
    at::Generator g = seeded(spec_.seed);
    int64_t d = 1;
    for (int64_t s : spec_.shape) d *= s;
    means_ = 0.8 * at::randn({spec_.k, d}, g, kF64);
    stds_ = 0.1 + 0.3 * at::rand({spec_.k}, g, kF64);  // s_k ∈ [0.1, 0.4]
    const at::Tensor w = 0.5 + at::rand({spec_.k}, g, kF64);
    log_weights_ = at::log(w / w.sum());
  }
  at::Tensor posterior_mean(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& sigma) const override {
    const int64_t b = x.size(0), d = means_.size(1);
    const at::Tensor xf = x.reshape({b, 1, d});
    const at::Tensor a = alpha.reshape({b, 1, 1}), s = sigma.reshape({b, 1, 1});
    const at::Tensor var = stds_.pow(2).reshape({1, -1, 1});  // [1, K, 1]
    const at::Tensor c = a * a * var + s * s;                 // [B, K, 1]
    const at::Tensor diff = xf - a * means_.unsqueeze(0);     // [B, K, D]
    const at::Tensor logp = log_weights_.unsqueeze(0) -
                            0.5 * static_cast<double>(d) * at::log(2 * std::numbers::pi * c.squeeze(2)) -
                            0.5 * diff.pow(2).sum(2) / c.squeeze(2);  // [B, K]
    const at::Tensor r = at::softmax(logp, 1).unsqueeze(2);           // [B, K, 1]
    const at::Tensor x0k = means_.unsqueeze(0) + a * var / c * diff;  // [B, K, D]
    return (r * x0k).sum(1).reshape(x.sizes());
  }
  at::Tensor ode_solution(const at::Tensor& x, const NoisePoint& from, const NoisePoint& to) const override {
    const double k_from = from.sigma / from.alpha;
    const double k_floor = 1e-6, k_to = std::max(to.sigma / to.alpha, k_floor);
    const double u0 = std::log(k_from), u1 = std::log(k_to);
    const auto n = static_cast<int64_t>(std::ceil(std::abs(u1 - u0) * kReferenceStepsPerUnit)) + 1;
    const double h = (u1 - u0) / static_cast<double>(n);
    at::Tensor z = x / from.alpha;
    for (int64_t i = 0; i < n; ++i) {
      const double u = u0 + static_cast<double>(i) * h;
      const at::Tensor k1 = drift(z, u), k2 = drift(z + 0.5 * h * k1, u + 0.5 * h);
      const at::Tensor k3 = drift(z + 0.5 * h * k2, u + 0.5 * h), k4 = drift(z + h * k3, u + h);
      z = z + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4);
    }
    if (to.sigma <= 0) return to.alpha * denoise(z, k_to);
    return to.alpha * z;
  }
  at::Tensor sample_data(int64_t n, uint64_t seed) const override {
    at::Generator g = seeded(seed);
    const at::Tensor comp = at::multinomial(at::exp(log_weights_), n, /*replacement=*/true, g);
    const at::Tensor x = means_.index_select(0, comp) +
                         stds_.index_select(0, comp).unsqueeze(1) * at::randn({n, means_.size(1)}, g, kF64);
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), spec_.shape.begin(), spec_.shape.end());
    return x.reshape(shape);
  }

 private:
  at::Tensor denoise(const at::Tensor& z, double k) const {
    const auto b = z.size(0);
    return posterior_mean(z, at::ones({b}, kF64), at::full({b}, k, kF64));
  }
  at::Tensor drift(const at::Tensor& z, double u) const { return z - denoise(z, std::exp(u)); }

  at::Tensor means_, stds_, log_weights_;  // [K, D], [K], [K]
};

}  // namespace

bool is_analytic_spec(const std::string& model) { return model.rfind("analytic:", 0) == 0; }

AnalyticSpec parse_analytic_spec(const std::string& spec) {
  if (!is_analytic_spec(spec)) bad_spec(spec, "expected analytic:gaussian or analytic:gmm[:key=value,...]");
  std::string rest = spec.substr(9);
  const auto colon = rest.find(':');
  AnalyticSpec out;
  out.kind = rest.substr(0, colon);
  if (out.kind != "gaussian" && out.kind != "gmm")
    bad_spec(spec, "unknown kind '" + out.kind + "' (valid: gaussian, gmm)");
  if (colon == std::string::npos) return out;
  std::stringstream in(rest.substr(colon + 1));
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) bad_spec(spec, "'" + item + "' is not key=value (keys: " + kValidKeys + ")");
    const std::string key = item.substr(0, eq), v = item.substr(eq + 1);
    if (key == "k") {
      out.k = parse_int(spec, key, v, 1, 256);
    } else if (key == "seed") {
      out.seed = static_cast<uint64_t>(parse_int(spec, key, v, 0, INT64_MAX));
    } else if (key == "shape") {
      out.shape.clear();
      std::stringstream dims(v);
      std::string dim;
      while (std::getline(dims, dim, 'x')) out.shape.push_back(parse_int(spec, "shape", dim, 1, 4096));
      if (out.shape.size() != 3) bad_spec(spec, "shape=" + v + " must be CxHxW, e.g. 3x16x16");
    } else if (key == "prediction_type") {
      if (v == "epsilon")
        out.prediction_type = PredictionType::epsilon;
      else if (v == "v_prediction")
        out.prediction_type = PredictionType::v_prediction;
      else if (v == "sample")
        out.prediction_type = PredictionType::sample;
      else if (v == "flow")
        out.prediction_type = PredictionType::flow;
      else
        bad_spec(spec, "prediction_type=" + v + " (valid: epsilon, v_prediction, sample, flow)");
    } else if (key == "shift") {
      const auto shift = parse_real(v);
      if (!shift || !(*shift > 0)) bad_spec(spec, "shift=" + v + " must be a number > 0");
      out.shift = *shift;
    } else if (key == "rescale_betas_zero_snr") {
      const auto b = parse_bool(v);
      if (!b) bad_spec(spec, key + "=" + v + " must be true or false");
      out.rescale_betas_zero_snr = *b;
    } else {
      bad_spec(spec, "unknown key '" + key + "' (valid: " + kValidKeys + ")");
    }
  }
  return out;
}

AnalyticModel::AnalyticModel(AnalyticSpec spec) : spec_(std::move(spec)) {
  cfg_.num_train_timesteps = 1000;
  cfg_.beta_schedule = "scaled_linear";
  cfg_.beta_start = 0.00085;
  cfg_.beta_end = 0.012;
  cfg_.prediction_type = spec_.prediction_type;
  cfg_.shift = spec_.shift;
  cfg_.rescale_betas_zero_snr = spec_.rescale_betas_zero_snr;
  alphas_cumprod_ = training_alphas_cumprod(cfg_);
}

NoisePoint AnalyticModel::point_at_timestep(double timestep) const {
  if (is_flow(cfg_))
    return flow_point(timestep / static_cast<double>(cfg_.num_train_timesteps), cfg_.num_train_timesteps);
  return vp_point_at_timestep(alphas_cumprod_, timestep);
}

at::Tensor AnalyticModel::forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor&) {
  const at::Tensor x = sample.to(at::kDouble).cpu();
  const at::Tensor t = timestep.to(at::kDouble).cpu().reshape({-1}).contiguous();
  const int64_t b = x.size(0);
  at::Tensor alpha = at::empty({b}, kF64), sigma = at::empty({b}, kF64);
  for (int64_t i = 0; i < b; ++i) {
    const NoisePoint p = point_at_timestep(t.size(0) == 1 ? t.data_ptr<double>()[0] : t.data_ptr<double>()[i]);
    alpha.data_ptr<double>()[i] = p.alpha;
    sigma.data_ptr<double>()[i] = p.sigma;
  }
  const at::Tensor x0 = posterior_mean(x, alpha, sigma);
  const at::Tensor a = rows(alpha, x.dim()), s = rows(sigma, x.dim());
  // ε from x0 where σ > 0 (at σ = 0 the model is never asked for ε).
  const at::Tensor eps = (x - a * x0) / at::where(s > 0, s, at::ones_like(s));
  at::Tensor out;
  switch (spec_.prediction_type) {
    case PredictionType::epsilon:
      out = eps;
      break;
    case PredictionType::v_prediction:
      out = a * eps - s * x0;
      break;
    case PredictionType::sample:
      out = x0;
      break;
    case PredictionType::flow:
      out = eps - x0;
      break;
  }
  return out.to(sample.device(), sample.scalar_type());
}

ModelFn AnalyticModel::model_fn() {
  return [this](const at::Tensor& x, const at::Tensor& t) { return forward(x, t, at::Tensor()); };
}

std::unique_ptr<AnalyticModel> make_analytic_model(const AnalyticSpec& spec) {
  if (spec.kind == "gaussian") return std::make_unique<GaussianModel>(spec);
  if (spec.kind == "gmm") return std::make_unique<GmmModel>(spec);
  throw AnalyticSpecError("unknown analytic model kind '" + spec.kind + "' (valid: gaussian, gmm)");
}

std::unique_ptr<AnalyticModel> make_analytic_model(const std::string& spec) {
  return make_analytic_model(parse_analytic_spec(spec));
}

}  // namespace fewstep
