// fewstep sampler layer: the public interface every sampler, the registry and
// the pipeline share. Samplers see a Schedule and a Denoiser, nothing else:
// no TorchScript, no files, no CLI.
#pragma once

#include <ATen/ATen.h>

#include "samplers/config.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fewstep {

/// Inference schedule: values only. N steps visit points 0..N-1 and end at
/// point N. At every point x_t = alphas[i]·x0 + sigmas[i]·ε (the notation of
/// DPM-Solver, Lu et al. 2022, Eq. 2.1); for VP models alphas = sqrt(ᾱ_t),
/// sigmas = sqrt(1-ᾱ_t); for flow models alphas = 1-t, sigmas = t.
/// The k-diffusion/Euler "sigma" is sigmas/alphas.
struct Schedule {
  at::Tensor timesteps;       ///< [N+1] float64: model timestep at each point
  at::Tensor alphas;          ///< [N+1] float64
  at::Tensor sigmas;          ///< [N+1] float64; sigmas[N] is the final sigma (0 by default)
  at::Tensor alphas_cumprod;  ///< [num_train_timesteps] float64 (empty for flow)
  int64_t steps() const { return timesteps.defined() ? timesteps.size(0) - 1 : 0; }
};

/// Noise levels of a batch of rows: each tensor is [R] float64 on CPU.
struct NoiseLevels {
  at::Tensor alpha, sigma, timestep;
};

/// Model output converted to the data and noise predictions, both shaped like x.
struct DenoiserOutput {
  at::Tensor x0, eps;
};

/// The raw model: `x [R, C, H, W]` float (sampler dtype) and `timestep [R]`
/// float64 -> raw prediction shaped like x. The pipeline implements it (CFG
/// batching, device and dtype casts); analytic models implement it directly.
using ModelFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& timestep)>;

/// The one wrapper that converts a model's prediction into (x0, ε); samplers
/// never branch on the parameterization. Counts denoiser evaluations (NFE).
class Denoiser {
 public:
  virtual ~Denoiser() = default;
  /// x: [R, C, H, W]; levels: R rows. Returns x0 and ε, shaped like x.
  virtual DenoiserOutput operator()(const at::Tensor& x, const NoiseLevels& levels) = 0;
  int64_t nfe = 0;   ///< denoiser evaluations (a CFG pair counts once)
  int64_t rows = 0;  ///< rows evaluated, summed over calls
};

/// Per-step Gaussian noise for stochastic samplers, drawn from one seeded CPU
/// generator in step order, so that the same seed gives the same result on
/// any device and Picard can draw all of it up front.
class StepNoise {
 public:
  /// shape: the sample's shape; seed: the generator's seed; skip: float32
  /// draws of `shape` discarded first. With skip = 1 the step noise continues
  /// the stream whose first draw was the initial noise (the pipeline's case),
  /// as diffusers does with one torch.Generator, instead of repeating it.
  StepNoise(std::vector<int64_t> shape, uint64_t seed, at::ScalarType dtype = at::kFloat, int64_t skip = 0);
  /// Noise for step i (draws steps up to i on first use). [shape] on CPU.
  const at::Tensor& at_step(int64_t i);

 private:
  std::vector<int64_t> shape_;
  at::Generator gen_;
  at::ScalarType dtype_;
  std::vector<at::Tensor> drawn_;
};

/// Called after every step with (step index, steps, current x).
using StepCallback = std::function<void(int64_t, int64_t, const at::Tensor&)>;

/// Everything a sampler run sees.
struct SamplerContext {
  const Schedule& schedule;
  Denoiser& denoiser;
  const ResolvedOptions& options;  ///< every option of SamplerInfo::options, typed
  StepNoise* noise = nullptr;      ///< non-null for stochastic samplers
  StepCallback callback;           ///< may be empty
};

/// One step of a sampler in closed form, the shape Picard iteration needs
/// (ParaDiGMS, Shih et al. 2023, Eq. 4-5): x_{i+1} = rule(i, x_i, D(x_i),
/// D(x_{i-1}), z_i). `x` is [B, C, H, W] at point i; `out` is the denoiser's
/// output there; `prev` the output at point i-1 (nullptr at i = 0; used by
/// two-step methods such as DPM-Solver++(2M)); `noise` is the run's StepNoise
/// (the rule draws step i's noise from it when it needs any).
struct StepInput {
  const Schedule& schedule;
  int64_t i;
  const at::Tensor& x;
  const DenoiserOutput& out;
  const DenoiserOutput* prev;
  StepNoise* noise;
  const ResolvedOptions& options;
};
using StepRule = std::function<at::Tensor(const StepInput&)>;

struct SamplerInfo {
  std::string name;
  /// Other names it answers to: diffusers scheduler class names (ending in
  /// "Scheduler"; the first is its diffusers twin, see diffusers_twin()) and
  /// stable-diffusion.cpp's and A1111's names.
  std::vector<std::string> aliases;
  int order = 1;
  bool stochastic = false;
  std::string family;  ///< which diffusers spacing definition: "ddim" | "dpm" | "euler" | "lcm"
  std::vector<SamplerOptionInfo> options;
  std::string help;
  /// Denoiser evaluations of an N-step run, as the docs print it ("N",
  /// "2N-1", "N+1", ...); the registry test checks each against a run.
  std::string nfe = "N";
  /// True when the sampler picks its own steps by error control: the
  /// schedule gives only its end points (point 0 and the final point) and
  /// the step count is ignored; its NFE depends on its tolerance options.
  bool adaptive = false;
  /// Runs the sampler from x at schedule point 0 ([B, C, H, W], already
  /// scaled to the initial noise level); returns the sample at point N.
  std::function<at::Tensor(SamplerContext&, at::Tensor x)> run;
  /// The same sampler as a single-step rule, for Picard-parallel sampling;
  /// empty when the sampler has no such form (then Picard refuses it).
  StepRule step_rule;
};

}  // namespace fewstep
