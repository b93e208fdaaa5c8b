// fewstep: analytic models, data distributions whose ideal denoiser has a
// closed form, so a sampler's true error can be measured against steps.
//
//   analytic:gaussian  x0 ~ N(μ, diag(v)); the probability-flow ODE solution
//                      is exact (see GaussianModel in analytic.cpp).
//   analytic:gmm       x0 ~ Σ_k w_k N(m_k, s_k² I); exact posterior mean;
//                      the ODE reference is a float64 RK4 solve.
//
// The ideal denoiser is the posterior mean E[x0 | x_t] (Tweedie; Efron 2011),
// which is the minimizer of the denoising loss every parameterization trains.
#pragma once

#include "samplers/sampler.h"
#include "samplers/schedule.h"
#include "unet/model.h"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fewstep {

/// `analytic:NAME[:key=value,...]`. Keys (all optional):
///   k=8                 gmm components (1..256)
///   shape=3x16x16       sample shape C×H×W
///   seed=0              seeds the distribution's parameters
///   prediction_type=epsilon|v_prediction|sample|flow  (flow: rectified-flow schedule)
///   shift=1.0           flow time shift (SD3)
///   rescale_betas_zero_snr=false
/// Defaults: SD 1.5's schedule (scaled_linear, beta 0.00085..0.012, 1000 steps).
struct AnalyticSpec {
  std::string kind;  ///< "gaussian" | "gmm"
  int64_t k = 8;
  std::vector<int64_t> shape = {3, 16, 16};
  uint64_t seed = 0;
  PredictionType prediction_type = PredictionType::epsilon;
  double shift = 1.0;
  bool rescale_betas_zero_snr = false;
};

/// A bad analytic model spec; the message is one line for users.
struct AnalyticSpecError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// True when `model` names an analytic model ("analytic:...").
bool is_analytic_spec(const std::string& model);

/// Parses a spec. Throws AnalyticSpecError with one line naming the bad
/// part and the valid keys/values.
AnalyticSpec parse_analytic_spec(const std::string& spec);

/// An analytic model: the Model interface plus what tests and sweeps need.
class AnalyticModel : public Model {
 public:
  explicit AnalyticModel(AnalyticSpec spec);
  const AnalyticSpec& spec() const { return spec_; }
  /// The scheduler config its timesteps follow (diffusers keys).
  const SchedulerConfig& scheduler_config() const { return cfg_; }
  /// [C, H, W].
  const std::vector<int64_t>& sample_shape() const { return spec_.shape; }
  /// How the model reads a timestep: flow t·T, or VP by log-SNR
  /// interpolation (vp_point_at_timestep), the inverse of make_schedule's map.
  NoisePoint point_at_timestep(double timestep) const;

  /// sample [B, C, H, W] (float32 or float64), timestep [B]; context ignored.
  /// Returns the ideal prediction for the spec's prediction_type, computed in
  /// float64 and cast to sample's dtype.
  using Model::forward;
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context) override;
  /// forward() as a ModelFn (captures this; the model must outlive it).
  ModelFn model_fn();

  /// E[x0 | x] for x [B, C, H, W] float64 at per-row alpha, sigma [B] float64.
  virtual at::Tensor posterior_mean(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& sigma) const = 0;
  /// The probability-flow ODE's solution from `from` to `to` for x [B, C, H, W]
  /// (float64 in and out): exact for the Gaussian, an RK4 reference for the GMM.
  virtual at::Tensor ode_solution(const at::Tensor& x, const NoisePoint& from, const NoisePoint& to) const = 0;
  /// n samples of the data distribution [n, C, H, W] float64.
  virtual at::Tensor sample_data(int64_t n, uint64_t seed) const = 0;

 protected:
  AnalyticSpec spec_;
  SchedulerConfig cfg_;
  at::Tensor alphas_cumprod_;  ///< [T] float64 (empty for flow)
};

/// Builds the model a spec names. Throws AnalyticSpecError for bad specs.
std::unique_ptr<AnalyticModel> make_analytic_model(const AnalyticSpec& spec);
std::unique_ptr<AnalyticModel> make_analytic_model(const std::string& spec);

}  // namespace fewstep
