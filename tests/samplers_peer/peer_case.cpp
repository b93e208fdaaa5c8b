// Reading a diffusers peer case and running fewstep on it; see peer_case.h.
#include "tests/samplers_peer/peer_case.h"

#include "samplers/denoiser.h"
#include "samplers/registry.h"
#include "samplers/sample.h"
#include "samplers/schedule.h"
#include "tests/samplers_peer/toy_model.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace fewstep::peer {
namespace {

// Tolerances. Both sides compute in float64 from the same formulas (the
// oracle promotes diffusers' float32 schedule arithmetic to float64), so
// only the order of floating-point operations differs: about 1e-16 relative
// per operation. The worst amplification in these runs is the ε -> x0
// conversion 1/α with α ≥ 2^-12 (zero-terminal-SNR clamp) over ≤ 50 steps,
// i.e. ~1e-16 · 4096 · 50 ≈ 2e-11. The bounds below leave two orders of
// magnitude over that; any algorithmic difference (a wrong coefficient, a
// shifted timestep, a missing corrector) is many orders larger.
//
// Timesteps in training-timestep units: integers must match exactly;
// fractional ones (Euler-family linspace, Karras' sigma -> t inversion) are
// float64 results of the same interpolation.
constexpr double kTimestepTol = 1e-7;
// k-sigma σ/α, relative.
constexpr double kSigmaRelTol = 1e-9;
// Samples: max |fewstep - diffusers| ≤ kSampleRelTol · max(1, max |diffusers|).
constexpr double kSampleRelTol = 1e-9;

Flat to_flat(const at::Tensor& x) {
  at::Tensor c = x.detach().to(at::kDouble).contiguous().reshape({-1});
  return Flat(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

at::Tensor to_tensor(const Flat& v, const std::vector<int64_t>& shape) {
  return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).reshape(shape).clone();
}

std::vector<Flat> flats(const nlohmann::json& j) {
  std::vector<Flat> out;
  for (const auto& row : j) out.push_back(row.get<Flat>());
  return out;
}

PredictionType prediction_from(const std::string& s) {
  if (s == "epsilon") return PredictionType::epsilon;
  if (s == "v_prediction") return PredictionType::v_prediction;
  if (s == "sample") return PredictionType::sample;
  if (s == "flow") return PredictionType::flow;
  throw std::runtime_error("unknown prediction_type '" + s + "' in peer case");
}

SchedulerConfig config_from(const nlohmann::json& j) {
  SchedulerConfig c;
  c.num_train_timesteps = j.at("num_train_timesteps").get<int64_t>();
  c.beta_schedule = j.at("beta_schedule").get<std::string>();
  c.beta_start = j.at("beta_start").get<double>();
  c.beta_end = j.at("beta_end").get<double>();
  c.trained_betas = j.value("trained_betas", std::vector<double>{});
  c.prediction_type = prediction_from(j.at("prediction_type").get<std::string>());
  if (j.contains("timestep_spacing")) c.timestep_spacing = j["timestep_spacing"].get<std::string>();
  if (j.contains("steps_offset")) c.steps_offset = j["steps_offset"].get<int64_t>();
  c.rescale_betas_zero_snr = j.value("rescale_betas_zero_snr", false);
  c.clip_sample = j.value("clip_sample", false);
  c.clip_sample_range = j.value("clip_sample_range", 1.0);
  c.thresholding = j.value("thresholding", false);
  c.dynamic_thresholding_ratio = j.value("dynamic_thresholding_ratio", 0.995);
  c.sample_max_value = j.value("sample_max_value", 1.0);
  c.sigma_spacing = j.value("sigma_spacing", std::string());
  c.final_sigmas_type = j.value("final_sigmas_type", std::string("zero"));
  return c;
}

double max_abs_diff(const Flat& a, const Flat& b, size_t* where) {
  double m = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    const double d = std::abs(a[k] - b[k]);
    if (!(d <= m)) {  // also catches NaN
      m = d;
      *where = k;
      if (std::isnan(d)) return d;
    }
  }
  return m;
}

double max_abs(const Flat& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

// Ill-conditioned cases (e.g. squaredcos_cap_v2's α ≈ 1e-4 at the top with
// noise prediction) amplify rounding beyond the estimate above. The oracle
// measures each case's conditioning: `rounding_floor`, how far diffusers' own
// samples move when its sigmas move by 1e-15 relative (~4.5 ulp). The
// tolerance is at least kFloorFactor times that: still far below any
// algorithmic difference, which moves samples by O(step size).
constexpr double kFloorFactor = 10.0;

// "" when got matches want within the tolerance, else a one-line description.
std::string sample_mismatch(const Flat& want, const Flat& got, double rounding_floor) {
  if (want.size() != got.size())
    return "size " + std::to_string(got.size()) + " != expected " + std::to_string(want.size());
  size_t k = 0;
  const double d = max_abs_diff(want, got, &k);
  const double tol = std::max(kSampleRelTol * std::max(1.0, max_abs(want)), kFloorFactor * rounding_floor);
  if (d <= tol) return "";
  std::ostringstream s;
  s.precision(12);
  s << "max |diff| " << d << " (tolerance " << tol << ") at element " << k << ": expected " << want[k] << ", got "
    << got[k];
  return s.str();
}

// The measured rounding floor of trajectory entry i (0 when not measured).
double floor_at(const PeerCase& c, size_t i) { return i < c.rounding_floor.size() ? c.rounding_floor[i] : 0.0; }

bool all_finite(const Flat& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

}  // namespace

PeerCase parse_case(const nlohmann::json& j, const std::vector<int64_t>& shape) {
  PeerCase c;
  c.id = j.at("id").get<std::string>();
  c.sampler = j.at("sampler").get<std::string>();
  c.diffusers_class = j.at("diffusers_class").get<std::string>();
  c.compare = j.at("compare").get<std::string>();
  c.known_different = j.value("known_different", std::string());
  c.diffusers_error = j.value("diffusers_error", std::string());
  c.note = j.value("note", std::string());
  c.steps = j.at("steps").get<int64_t>();
  c.rounding_floor = j.value("rounding_floor", std::vector<double>{});
  c.noise_seed = j.at("noise_seed").get<uint64_t>();
  c.stochastic = j.at("stochastic").get<bool>();
  c.shape = shape;
  c.config = config_from(j.at("scheduler_config"));
  c.options = j.at("options").get<SamplerOptions>();
  nlohmann::json d = j.at("diffusers_config");
  if (d.contains("trained_betas")) d["trained_betas"] = "[...]";
  c.diffusers_config = d.dump();
  if (!j.at("diffusers_step_kwargs").empty()) c.diffusers_config += " step" + j["diffusers_step_kwargs"].dump();
  c.timesteps = j.at("timesteps").get<std::vector<double>>();
  for (const auto& s : j.at("sigmas")) {
    if (s.is_null())
      c.sigmas.push_back(std::nullopt);  // unknown (LCM's last point)
    else
      c.sigmas.push_back(s.is_string() ? std::stod(s.get<std::string>()) : s.get<double>());  // "inf"
  }
  c.model_timesteps = j.at("model_timesteps").get<std::vector<double>>();
  c.x_init = j.at("x_init").get<Flat>();
  if (j.contains("x_final")) c.x_final = j["x_final"].get<Flat>();
  c.trajectory = flats(j.at("trajectory"));
  const auto compare_steps = static_cast<size_t>(j.value("compare_steps", c.trajectory.size()));
  if (c.trajectory.size() > compare_steps) c.trajectory.resize(compare_steps);
  if (j.contains("trajectory_corrected")) c.trajectory_corrected = flats(j["trajectory_corrected"]);
  if (j.contains("step_noise")) c.step_noise = flats(j["step_noise"]);
  if (j.contains("alternative")) {
    nlohmann::json merged = j;
    for (const char* key : {"alternative", "compare_steps", "x_final", "known_different", "trajectory_corrected"})
      merged.erase(key);
    merged.update(j["alternative"]);
    c.alternatives.push_back(parse_case(merged, shape));
  }
  return c;
}

const PeerCase& expectation_for(const PeerCase& c, int64_t steps) {
  for (const PeerCase& alt : c.alternatives)
    if (static_cast<int64_t>(alt.timesteps.size()) == steps) return alt;
  return c;
}

PeerRun run_fewstep(const PeerCase& c) {
  const SamplerInfo& info = find_sampler(c.sampler);
  const ResolvedOptions resolved = resolve_sampler_options(info, c.options);
  const Schedule schedule = make_schedule(c.config, info, c.steps, resolved);

  PeerRun run;
  run.timesteps = schedule.timesteps.slice(0, 0, schedule.steps());
  run.k_sigmas = schedule.sigmas / schedule.alphas;
  ModelFn model = [&run](const at::Tensor& x, const at::Tensor& timestep) {
    for (int64_t r = 0; r < timestep.size(0); ++r) run.model_timesteps.push_back(timestep[r].item<double>());
    return toy_model(x, timestep);
  };
  std::unique_ptr<Denoiser> denoiser = make_model_denoiser(model, c.config);

  // The production path: the seed's unit noise (seeded_unit_noise, float32),
  // in float64 sampler math, scaled and stepped by sample() itself, whose step
  // noise continues that generator (StepNoise, skip 1). The oracle drew the
  // same values (diffusers_harness.runtime_noise); check that first.
  const at::Tensor unit = seeded_unit_noise(c.shape, c.noise_seed).to(at::kDouble);
  StepNoise noise(c.shape, c.noise_seed, at::kDouble, /*skip=*/1);
  for (size_t i = 0; i < c.step_noise.size() && run.noise_problem.empty(); ++i) {
    size_t k = 0;
    const Flat drawn = to_flat(noise.at_step(static_cast<int64_t>(i)));
    if (drawn.size() != c.step_noise[i].size() || max_abs_diff(drawn, c.step_noise[i], &k) != 0.0)
      run.noise_problem = "StepNoise(seed " + std::to_string(c.noise_seed) +
                          ", float64, skip 1) does not reproduce the oracle's noise at step " + std::to_string(i);
  }
  run.x_start = to_flat(unit * initial_noise_scale(schedule));
  const StepCallback keep = [&run](int64_t, int64_t, const at::Tensor& x) { run.trajectory.push_back(to_flat(x)); };
  const at::Tensor x = sample(info, schedule, *denoiser, unit, resolved, c.noise_seed, keep, {}, nullptr);
  run.x_final = to_flat(x);
  return run;
}

std::vector<std::string> compare_run(const PeerCase& c, const PeerRun& run) {
  std::vector<std::string> problems;
  if (c.compare == "refused") {
    problems.push_back("fewstep ran a configuration it must refuse (" + c.known_different + ")");
    return problems;
  }
  if (c.compare == "runs") {
    if (!all_finite(run.x_final)) problems.push_back("final sample is not finite");
    return problems;
  }
  std::ostringstream s;
  s.precision(12);
  // Schedule: timesteps of points 0..N-1, k-sigmas of points 0..N.
  const auto n = static_cast<int64_t>(c.timesteps.size());
  if (run.timesteps.size(0) != n) {
    s << "schedule has " << run.timesteps.size(0) << " steps, expected " << n << " (final k-sigma "
      << run.k_sigmas[-1].item<double>() << ", expected "
      << (c.sigmas.back() ? std::to_string(*c.sigmas.back()) : std::string("unknown")) << ")";
    problems.push_back(s.str());
    return problems;
  }
  for (int64_t i = 0; i < n; ++i) {
    const double got = run.timesteps[i].item<double>();
    if (!(std::abs(got - c.timesteps[i]) <= kTimestepTol)) {
      s << "timestep at point " << i << ": expected " << c.timesteps[i] << ", got " << got;
      problems.push_back(s.str());
      return problems;  // everything downstream differs too
    }
  }
  for (int64_t i = 0; i <= n; ++i) {
    if (!c.sigmas[i]) continue;
    const double want = *c.sigmas[i], got = run.k_sigmas[i].item<double>();
    if (!(std::abs(got - want) <= kSigmaRelTol * std::max(want, 1e-300) || got == want)) {
      s << "k-sigma (sigma/alpha) at point " << i << ": expected " << want << ", got " << got;
      problems.push_back(s.str());
      return problems;
    }
  }
  if (c.compare == "schedule") return problems;

  if (!run.noise_problem.empty()) {
    problems.push_back(run.noise_problem);
    return problems;
  }
  // The initial sample: sample()'s scaling of the unit noise against the
  // oracle's start (diffusers started there too, in its own coordinates).
  if (!c.x_init.empty()) {
    const std::string m = sample_mismatch(c.x_init, run.x_start, 0.0);
    if (!m.empty()) problems.push_back("initial sample: " + m);
  }
  // The model's timesteps, call by call (this also checks the NFE).
  if (c.compare == "all") {
    if (run.model_timesteps.size() != c.model_timesteps.size()) {
      s << "model called " << run.model_timesteps.size() << " times, diffusers " << c.model_timesteps.size();
      problems.push_back(s.str());
      s.str("");
    }
    for (size_t k = 0; k < std::min(run.model_timesteps.size(), c.model_timesteps.size()); ++k)
      if (!(std::abs(run.model_timesteps[k] - c.model_timesteps[k]) <= kTimestepTol)) {
        s << "model call " << k << " at timestep " << run.model_timesteps[k] << ", diffusers at "
          << c.model_timesteps[k];
        problems.push_back(s.str());
        s.str("");
        break;
      }
  }
  // Trajectory: x after each step. UniPC's diffusers step returns the
  // predictor; fewstep may report the corrected x (trajectory_corrected).
  for (size_t i = 0; i < c.trajectory.size(); ++i) {
    if (i >= run.trajectory.size()) {
      problems.push_back("no callback after step " + std::to_string(i));
      break;
    }
    std::string m = sample_mismatch(c.trajectory[i], run.trajectory[i], floor_at(c, i));
    if (!m.empty() && i < c.trajectory_corrected.size() &&
        sample_mismatch(c.trajectory_corrected[i], run.trajectory[i], floor_at(c, i)).empty())
      m.clear();
    if (!m.empty()) {
      problems.push_back("first divergence after step " + std::to_string(i) + " of " + std::to_string(n) + ": " + m);
      break;
    }
  }
  if (c.compare == "all" && c.x_final) {
    const std::string m =
        sample_mismatch(*c.x_final, run.x_final, c.rounding_floor.empty() ? 0.0 : c.rounding_floor.back());
    if (!m.empty()) problems.push_back("final sample: " + m);
  } else if (!all_finite(run.x_final)) {
    problems.push_back("final sample is not finite");
  }
  return problems;
}

std::string describe(const PeerCase& c) {
  std::ostringstream s;
  s << c.id << " (" << c.diffusers_class << ", steps " << c.steps << ", options {";
  bool first = true;
  for (const auto& [k, v] : c.options) {
    s << (first ? "" : ", ") << k << "=" << v;
    first = false;
  }
  s << "}) diffusers config " << c.diffusers_config;
  return s.str();
}

}  // namespace fewstep::peer
