// The parameterization wrapper: each prediction type converted back to the
// (x0, ε) it was made from, clipping, Imagen dynamic thresholding, counting.
#include "samplers/denoiser.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace fewstep {
namespace {

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kDouble));
}

at::Tensor per_row(const at::Tensor& v) { return v.reshape({-1, 1, 1, 1}); }

// A model that returns the exact prediction of `type` for known x0 and ε.
struct Truth {
  at::Tensor x0, eps, alpha, sigma;
  at::Tensor x() const { return per_row(alpha) * x0 + per_row(sigma) * eps; }
  at::Tensor prediction(PredictionType type) const {
    const at::Tensor a = per_row(alpha), s = per_row(sigma);
    switch (type) {
      case PredictionType::epsilon:
        return eps;
      case PredictionType::v_prediction:
        return a * eps - s * x0;  // Salimans & Ho 2022
      case PredictionType::sample:
        return x0;
      case PredictionType::flow:
        return eps - x0;  // rectified flow velocity
    }
    return {};
  }
};

TEST(Denoiser, EveryPredictionTypeRecoversX0AndEps) {
  for (PredictionType type :
       {PredictionType::epsilon, PredictionType::v_prediction, PredictionType::sample, PredictionType::flow}) {
    Truth t{randn({3, 2, 4, 4}, 1), randn({3, 2, 4, 4}, 2), {}, {}};
    const at::Tensor tt = at::tensor({0.9, 0.5, 0.05}, at::kDouble);
    if (type == PredictionType::flow) {
      t.alpha = 1 - tt;
      t.sigma = tt;
    } else {
      t.alpha = at::sqrt(1 - tt * tt);
      t.sigma = tt;
    }
    SchedulerConfig cfg;
    cfg.prediction_type = type;
    auto d = make_model_denoiser([&](const at::Tensor&, const at::Tensor&) { return t.prediction(type); }, cfg);
    const DenoiserOutput out = (*d)(t.x(), {t.alpha, t.sigma, at::zeros({3}, at::kDouble)});
    EXPECT_LT((out.x0 - t.x0).abs().max().item<double>(), 1e-12) << static_cast<int>(type);
    EXPECT_LT((out.eps - t.eps).abs().max().item<double>(), 1e-12) << static_cast<int>(type);
    EXPECT_EQ(d->nfe, 1);
    EXPECT_EQ(d->rows, 3);
  }
}

TEST(Denoiser, SamplePredictionAtSigmaZeroGivesZeroEps) {
  SchedulerConfig cfg;
  cfg.prediction_type = PredictionType::sample;
  const at::Tensor x0 = randn({1, 1, 2, 2}, 3);
  auto d = make_model_denoiser([&](const at::Tensor&, const at::Tensor&) { return x0; }, cfg);
  const DenoiserOutput out =
      (*d)(x0, {at::ones({1}, at::kDouble), at::zeros({1}, at::kDouble), at::zeros({1}, at::kDouble)});
  EXPECT_TRUE(at::isfinite(out.eps).all().item<bool>());
  EXPECT_EQ(out.eps.abs().max().item<double>(), 0.0);
}

TEST(Denoiser, ClipSampleClampsX0Only) {
  SchedulerConfig cfg;
  cfg.prediction_type = PredictionType::sample;
  cfg.clip_sample = true;
  cfg.clip_sample_range = 0.5;
  const at::Tensor x0 = randn({2, 1, 4, 4}, 4) * 2;
  auto d = make_model_denoiser([&](const at::Tensor&, const at::Tensor&) { return x0; }, cfg);
  const at::Tensor x = randn({2, 1, 4, 4}, 5);
  const at::Tensor a = at::full({2}, 0.6, at::kDouble), s = at::full({2}, 0.8, at::kDouble);
  const DenoiserOutput out = (*d)(x, {a, s, at::zeros({2}, at::kDouble)});
  EXPECT_TRUE(at::equal(out.x0, x0.clamp(-0.5, 0.5)));
  // ε comes from the unclipped prediction (diffusers' use_clipped_model_output=False).
  EXPECT_LT((out.eps - (x - 0.6 * x0) / 0.8).abs().max().item<double>(), 1e-12);
}

TEST(Denoiser, DynamicThresholdingFollowsImagen) {
  // Per sample: s = quantile(|x0|, p) (linear interpolation between order
  // statistics), clamped to [1, sample_max_value]; x0 -> clamp(x0, -s, s)/s.
  const at::Tensor x0 = randn({3, 2, 5, 5}, 6) * at::tensor({0.5, 2.0, 5.0}, at::kDouble).reshape({3, 1, 1, 1});
  const double p = 0.9, max_value = 3.0;
  const at::Tensor got = dynamic_threshold(x0, p, max_value);
  for (int64_t b = 0; b < 3; ++b) {
    std::vector<double> v(50);
    const at::Tensor row = x0[b].reshape({-1}).abs().contiguous();
    std::copy(row.data_ptr<double>(), row.data_ptr<double>() + 50, v.begin());
    std::sort(v.begin(), v.end());
    const double pos = p * 49.0;
    const auto lo = static_cast<size_t>(std::floor(pos));
    const double q = v[lo] + (pos - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
    const double s = std::min(std::max(q, 1.0), max_value);
    const at::Tensor expected = x0[b].clamp(-s, s) / s;
    EXPECT_LT((got[b] - expected).abs().max().item<double>(), 1e-12) << b;
  }
  // The small-valued sample has s = 1: plain clipping to [-1, 1].
  EXPECT_TRUE(at::allclose(got[0], x0[0].clamp(-1, 1)));
}

TEST(Denoiser, KeepsTheSamplerDtypeAndChecksShapes) {
  SchedulerConfig cfg;
  auto d =
      make_model_denoiser([](const at::Tensor& x, const at::Tensor&) { return at::zeros_like(x, at::kDouble); }, cfg);
  const at::Tensor x = at::ones({2, 1, 2, 2}, at::kFloat);
  const NoiseLevels l{at::full({2}, 0.6, at::kDouble), at::full({2}, 0.8, at::kDouble), at::zeros({2}, at::kDouble)};
  EXPECT_EQ((*d)(x, l).x0.scalar_type(), at::kFloat);
  auto bad = make_model_denoiser([](const at::Tensor&, const at::Tensor&) { return at::zeros({2, 1, 3, 3}); }, cfg);
  EXPECT_THROW((*bad)(x, l), SamplerError);
  EXPECT_THROW((*d)(x, NoiseLevels{at::ones({1}, at::kDouble), at::ones({1}, at::kDouble), at::ones({1}, at::kDouble)}),
               SamplerError);
}

}  // namespace
}  // namespace fewstep
