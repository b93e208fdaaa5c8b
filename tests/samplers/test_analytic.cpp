// Analytic models: spec parsing, the ideal denoiser's parameterizations, the
// Gaussian's exact ODE solution, and the GMM's RK4 reference.
#include "sampler_test_util.h"

#include <gtest/gtest.h>

#include <cmath>

namespace fewstep {
namespace {

TEST(Analytic, ParsesSpecs) {
  const AnalyticSpec s = parse_analytic_spec("analytic:gmm:k=8,shape=3x16x16,seed=0");
  EXPECT_EQ(s.kind, "gmm");
  EXPECT_EQ(s.k, 8);
  EXPECT_EQ(s.shape, (std::vector<int64_t>{3, 16, 16}));
  const AnalyticSpec g = parse_analytic_spec("analytic:gaussian");
  EXPECT_EQ(g.kind, "gaussian");
  EXPECT_EQ(g.shape, (std::vector<int64_t>{3, 16, 16}));
  EXPECT_EQ(g.prediction_type, PredictionType::epsilon);
  const SchedulerConfig cfg = make_analytic_model(g)->scheduler_config();
  EXPECT_EQ(cfg.beta_schedule, "scaled_linear");
  EXPECT_EQ(cfg.beta_start, 0.00085);
  EXPECT_EQ(cfg.beta_end, 0.012);
  EXPECT_EQ(cfg.num_train_timesteps, 1000);
  for (const std::string bad : {"gaussian", "analytic:", "analytic:mixture", "analytic:gmm:k=0", "analytic:gmm:k=x",
                                "analytic:gmm:shape=3x16", "analytic:gmm:color=red", "analytic:gmm:k",
                                "analytic:gaussian:prediction_type=noise", "analytic:gmm:shift=-1"}) {
    try {
      parse_analytic_spec(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const AnalyticSpecError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      EXPECT_NE(m.find(bad), std::string::npos) << m;
    }
  }
}

// Every prediction type the model emits converts back, through the one
// wrapper, to the same posterior mean.
TEST(Analytic, PredictionTypesAgreeThroughTheDenoiser) {
  at::Tensor reference;
  for (const std::string type : {"epsilon", "v_prediction", "sample"}) {
    auto m = make_analytic_model("analytic:gmm:shape=2x4x4,prediction_type=" + type);
    const at::Tensor x = test::unit_noise(*m, 3, 4, at::kDouble);
    const at::Tensor t = at::tensor({900.0, 400.5, 20.0}, at::kDouble);
    auto d = make_model_denoiser(m->model_fn(), m->scheduler_config());
    at::Tensor a = at::empty({3}, at::kDouble), s = at::empty({3}, at::kDouble);
    for (int64_t i = 0; i < 3; ++i) {
      const NoisePoint p = m->point_at_timestep(t[i].item<double>());
      a[i] = p.alpha;
      s[i] = p.sigma;
    }
    const at::Tensor x0 = (*d)(x, {a, s, t}).x0;
    EXPECT_LT((x0 - m->posterior_mean(x, a, s)).abs().max().item<double>(), 1e-10) << type;
    if (!reference.defined()) reference = x0;
    EXPECT_LT((x0 - reference).abs().max().item<double>(), 1e-10) << type;
  }
}

// The exact solution satisfies the probability-flow ODE dz/dk = (z - D(z))/k
// (z = x/α, k = σ/α; Karras et al. 2022 Eq. 4): central difference vs RHS.
TEST(Analytic, GaussianSolutionSolvesTheOde) {
  auto m = make_analytic_model("analytic:gaussian:shape=2x4x4");
  const at::Tensor x = test::unit_noise(*m, 2, 5, at::kDouble);
  auto at_k = [](double k) { return NoisePoint{0, 1.0 / std::sqrt(1 + k * k), k / std::sqrt(1 + k * k)}; };
  const NoisePoint start = at_k(10.0);
  for (double k : {5.0, 1.0, 0.2}) {
    const double h = 1e-5 * k;
    auto z = [&](double kk) { return m->ode_solution(x, start, at_k(kk)) / at_k(kk).alpha; };
    const at::Tensor dz = (z(k + h) - z(k - h)) / (2 * h);
    const at::Tensor zk = z(k);
    const at::Tensor d = m->posterior_mean(zk, at::ones({2}, at::kDouble), at::full({2}, k, at::kDouble));
    EXPECT_LT((dz - (zk - d) / k).abs().max().item<double>(), 1e-6) << k;
  }
  // From a point to itself is the identity.
  EXPECT_LT((m->ode_solution(x, start, start) - x).abs().max().item<double>(), 1e-14);
}

// With one component the GMM is an isotropic Gaussian N(m, s²I), whose ODE
// solution is closed-form: x_to = α_to·m + sqrt(α_to²s² + σ_to²)/sqrt(α_from²s² + σ_from²)·(x - α_from·m).
// Recover m and s² from the denoiser (it is affine for one component) and
// compare the RK4 reference with that formula.
TEST(Analytic, GmmReferenceMatchesTheClosedFormForOneComponent) {
  auto m = make_analytic_model("analytic:gmm:k=1,shape=1x2x2");
  const at::Tensor one = at::ones({1}, at::kDouble);
  // D(z; k) = m + s²/(s² + k²)·(z - m): at z = 0 and z = 1.
  const double k = 1.0;
  const at::Tensor d0 = m->posterior_mean(at::zeros({1, 1, 2, 2}, at::kDouble), one, one * k);
  const at::Tensor d1 = m->posterior_mean(at::ones({1, 1, 2, 2}, at::kDouble), one, one * k);
  const at::Tensor slope = d1 - d0;  // s²/(s² + k²)
  const at::Tensor s2 = slope * k * k / (1 - slope);
  const at::Tensor mean = d0 / (1 - slope);
  const at::Tensor x = test::unit_noise(*m, 1, 6, at::kDouble);
  const NoisePoint from{999, 0.068, std::sqrt(1 - 0.068 * 0.068)};
  for (const NoisePoint to : {NoisePoint{0, 0.9, std::sqrt(1 - 0.81)}, NoisePoint{0, 1.0, 0.0}}) {
    const at::Tensor closed = to.alpha * mean + at::sqrt(to.alpha * to.alpha * s2 + to.sigma * to.sigma) /
                                                    at::sqrt(from.alpha * from.alpha * s2 + from.sigma * from.sigma) *
                                                    (x - from.alpha * mean);
    EXPECT_LT((m->ode_solution(x, from, to) - closed).abs().max().item<double>(), 1e-7) << to.sigma;
  }
}

TEST(Analytic, GmmDenoiserIsThePosteriorMean) {
  // Monte Carlo over the joint (x0, x): the posterior mean D(x) = E[x0 | x]
  // has E[D(x)] = E[x0], and its residual x0 - D(x) is orthogonal to every
  // function of x, D itself included.
  auto m = make_analytic_model("analytic:gmm:k=4,shape=1x2x2");
  const at::Tensor x0 = m->sample_data(200000, 9);
  const double a = 0.6, s = 0.8;
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(10);
  const at::Tensor x = a * x0 + s * at::randn(x0.sizes(), g, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor d =
      m->posterior_mean(x, at::full({x.size(0)}, a, at::kDouble), at::full({x.size(0)}, s, at::kDouble));
  // E[D(x)] = E[x0] and E[(x0 - D)·D] = 0 (the residual is orthogonal to any function of x).
  EXPECT_LT((d.mean(0) - x0.mean(0)).abs().max().item<double>(), 0.01);
  EXPECT_LT(((x0 - d) * d).mean(0).abs().max().item<double>(), 0.01);
}

// The model reads a schedule's timestep at its point, except where diffusers'
// definition gives the model a timestep that is not its sigma's: the Euler
// family's fractional linspace timesteps (σ/α linear in t, the model's map is
// log-SNR: a few 1e-4 relative apart) and the DPM family's integer Karras
// timesteps (rounded: within half a timestep of the sigma's own).
TEST(Analytic, ModelReadsScheduleTimestepsAtTheirPoints) {
  auto m = make_analytic_model("analytic:gaussian");
  const at::Tensor ac = training_alphas_cumprod(m->scheduler_config());
  int exact = 0;
  for (const std::string sigmas : {"none", "karras"})
    for (const SamplerInfo& info : sampler_registry()) {
      const Schedule s =
          make_schedule(m->scheduler_config(), info, 13, resolve_sampler_options(info, {{"sigma_spacing", sigmas}}));
      for (int64_t i = 0; i < s.steps(); ++i) {
        const double t = s.timesteps[i].item<double>(), k = s.sigmas[i].item<double>() / s.alphas[i].item<double>();
        const NoisePoint p = m->point_at_timestep(t);
        const std::string what = info.name + " " + sigmas + " " + std::to_string(i);
        if (info.family == "dpm" && sigmas == "karras") {
          EXPECT_EQ(t, std::nearbyint(t)) << what;
          EXPECT_LE(std::abs(t - vp_point_at_k_sigma(ac, k).timestep), 0.5 + 1e-9) << what;
        } else if (info.family == "euler" && t != std::floor(t)) {
          EXPECT_NEAR(p.sigma / p.alpha, k, 5e-4 * k) << what;
        } else {
          EXPECT_NEAR(p.alpha, s.alphas[i].item<double>(), 1e-12) << what;
          EXPECT_NEAR(p.sigma, s.sigmas[i].item<double>(), 1e-12) << what;
          ++exact;
        }
      }
    }
  EXPECT_GT(exact, 100);
}

}  // namespace
}  // namespace fewstep
