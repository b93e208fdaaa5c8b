// The parameterization wrapper; see denoiser.h.
#include "samplers/denoiser.h"

#include <sstream>

namespace fewstep {
namespace {

// [R] float64 CPU -> [R, 1, 1, ...] in x's dtype and device.
at::Tensor per_row(const at::Tensor& v, const at::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = v.size(0);
  return v.to(x.device(), x.scalar_type()).reshape(shape);
}

// 1/v where v > 0, else 0: a safe reciprocal for α or σ that may be 0.
at::Tensor safe_reciprocal(const at::Tensor& v) {
  return at::where(v > 0, 1.0 / v.clamp_min(1e-300), at::zeros_like(v));
}

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

class ModelDenoiser final : public Denoiser {
 public:
  ModelDenoiser(ModelFn model, const SchedulerConfig& cfg) : model_(std::move(model)), cfg_(cfg) {}

  DenoiserOutput operator()(const at::Tensor& x, const NoiseLevels& levels) override {
    const int64_t rows = x.size(0);
    if (levels.alpha.size(0) != rows || levels.sigma.size(0) != rows || levels.timestep.size(0) != rows)
      throw SamplerError("denoiser: noise levels have a different row count than x");
    at::Tensor raw = model_(x, levels.timestep);
    if (raw.sizes() != x.sizes())
      throw SamplerError("model output shape " + shape_str(raw.sizes()) + " differs from its input " +
                         shape_str(x.sizes()));
    raw = raw.to(x.device(), x.scalar_type());
    ++nfe;
    this->rows += rows;

    const at::Tensor a = per_row(levels.alpha, x), s = per_row(levels.sigma, x);
    DenoiserOutput out;
    switch (cfg_.prediction_type) {
      case PredictionType::epsilon:
        out.eps = raw;
        out.x0 = (x - s * raw) * per_row(safe_reciprocal(levels.alpha), x);
        break;
      case PredictionType::v_prediction:
        out.x0 = a * x - s * raw;
        out.eps = s * x + a * raw;
        break;
      case PredictionType::sample:
        out.x0 = raw;
        out.eps = (x - a * raw) * per_row(safe_reciprocal(levels.sigma), x);
        break;
      case PredictionType::flow:
        out.x0 = x - s * raw;
        out.eps = x + a * raw;
        break;
    }
    if (cfg_.thresholding)
      out.x0 = dynamic_threshold(out.x0, cfg_.dynamic_thresholding_ratio, cfg_.sample_max_value);
    else if (cfg_.clip_sample)
      out.x0 = out.x0.clamp(-cfg_.clip_sample_range, cfg_.clip_sample_range);
    return out;
  }

 private:
  ModelFn model_;
  SchedulerConfig cfg_;
};

}  // namespace

at::Tensor dynamic_threshold(const at::Tensor& x0, double ratio, double max_value) {
  const int64_t b = x0.size(0);
  const at::Tensor flat = x0.reshape({b, -1});
  const at::Tensor work = flat.scalar_type() == at::kDouble ? flat : flat.to(at::kFloat);
  at::Tensor s = at::quantile(work.abs(), ratio, /*dim=*/1, /*keepdim=*/true);
  s = s.clamp(1.0, max_value);  // as torch.clamp: max wins when max_value < 1
  return (at::minimum(at::maximum(work, -s), s) / s).reshape(x0.sizes()).to(x0.scalar_type());
}

std::unique_ptr<Denoiser> make_model_denoiser(ModelFn model, const SchedulerConfig& cfg) {
  if (!model) throw SamplerError("make_model_denoiser: empty model function");
  return std::make_unique<ModelDenoiser>(std::move(model), cfg);
}

}  // namespace fewstep
