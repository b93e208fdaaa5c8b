// bench/sampler_overhead: what each sampler costs per step outside the model.
//
// The model is a stand-in that returns a precomputed prediction (its own cost,
// measured separately, is subtracted), so the time left is the sampler's:
// schedule lookups, the parameterization wrapper, the update arithmetic and
// noise. It is compared with one step of a tiny UNet on CPU (default 28 ms:
// a 4.4M-parameter SD-style UNet, CFG batch 2 at 32x32, 2 threads, measured
// in /work/shared/ENVIRONMENT.md; pass --unet-step-ms with your own number).
// The budget is 1% of that step. Prints a table; writes JSON (--json).
#include "bench/harness.h"
#include "samplers/denoiser.h"
#include "samplers/registry.h"
#include "samplers/sample.h"
#include "samplers/schedule.h"

#include <CLI/CLI.hpp>
#include <ATen/Parallel.h>
#include <torch/headeronly/version.h>

#include <sstream>

namespace {

using fewstep::bench::ResultTable;
using fewstep::bench::Timing;
using fewstep::bench::TimingOptions;

struct Options {
  int64_t steps = 20;
  std::string shape = "2x4x32x32";
  std::string dtype = "float32";
  int threads = 0;
  int repeats = 15;
  double unet_step_ms = 28.0;
  std::string json = "sampler_overhead.json";
};

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> dims;
  std::stringstream in(s);
  std::string d;
  while (std::getline(in, d, 'x')) dims.push_back(std::stoll(d));
  if (dims.size() != 4) throw std::invalid_argument("--shape must be BxCxHxW");
  return dims;
}

int run(const Options& opt) {
  if (opt.threads > 0) at::set_num_threads(opt.threads);
  const auto dtype = opt.dtype == "float64" ? at::kDouble : at::kFloat;
  const std::vector<int64_t> shape = parse_shape(opt.shape);
  const TimingOptions timing{.warmup = 2, .repeats = opt.repeats};
  fewstep::SchedulerConfig cfg;
  cfg.beta_schedule = "scaled_linear";
  cfg.beta_start = 0.00085;
  cfg.beta_end = 0.012;

  // The stand-in model: a fixed prediction (a stored tensor), cast per call.
  const at::Tensor prediction = at::randn(shape, at::TensorOptions().dtype(dtype)) * 0.1;
  const fewstep::ModelFn model = [&](const at::Tensor& x, const at::Tensor&) {
    return x.size(0) == prediction.size(0) ? prediction : prediction.repeat({x.size(0) / prediction.size(0), 1, 1, 1});
  };
  const at::Tensor noise = at::randn(shape, at::TensorOptions().dtype(dtype));
  const at::Tensor t = at::zeros({shape[0]}, at::kDouble);
  const Timing model_only = fewstep::bench::time_ms([&](int) { (void)model(noise, t); }, at::kCPU, timing);

  ResultTable table;
  struct Variant {
    std::string sampler, label;
    std::optional<fewstep::PicardOptions> picard;
  };
  std::vector<Variant> variants;
  for (const auto& info : fewstep::sampler_registry()) variants.push_back({info.name, info.name, std::nullopt});
  variants.push_back({"ddim", "ddim+picard:window=8", fewstep::PicardOptions{.window = 8, .tol = 1e-3}});
  double worst = 0;
  for (const Variant& v : variants) {
    const fewstep::SamplerInfo& info = fewstep::find_sampler(v.sampler);
    const fewstep::ResolvedOptions resolved = fewstep::resolve_sampler_options(info, {});
    const fewstep::Schedule schedule = fewstep::make_schedule(cfg, info, opt.steps, resolved);
    auto denoiser = fewstep::make_model_denoiser(model, cfg);
    fewstep::SampleStats stats;
    const Timing run_time = fewstep::bench::time_ms(
        [&](int i) {
          (void)fewstep::sample(info, schedule, *denoiser, noise, resolved, static_cast<uint64_t>(i), {}, v.picard,
                                &stats);
        },
        at::kCPU, timing);
    // Per model evaluation (one per point, per row batch), the stand-in's cost removed.
    const double calls = v.picard ? static_cast<double>(stats.picard_rounds) : static_cast<double>(stats.nfe);
    const double per_nfe_ms = (run_time.median_ms - calls * model_only.median_ms) / static_cast<double>(stats.nfe);
    const double pct = 100.0 * per_nfe_ms / opt.unet_step_ms;
    worst = std::max(worst, pct);
    table.add({{"sampler", v.label},
               {"steps", schedule.steps()},
               {"nfe", stats.nfe},
               {"run_ms", run_time.median_ms},
               {"overhead_us_per_nfe", per_nfe_ms * 1e3},
               {"pct_of_unet_step", pct},
               {"within_1pct", pct < 1.0 ? "yes" : "NO"}});
  }
  std::cout << "sampler overhead per model evaluation, shape " << opt.shape << ", " << opt.dtype << ", "
            << at::get_num_threads() << " threads; stand-in model " << model_only.median_ms * 1e3
            << " us/call (subtracted); reference UNet step " << opt.unet_step_ms << " ms\n";
  nlohmann::ordered_json meta = fewstep::bench::run_meta("sampler_overhead");
  meta.update({{"shape", opt.shape}, {"dtype", opt.dtype}, {"unet_step_ms", opt.unet_step_ms}});
  table.report(opt.json, meta);
  std::cout << "worst: " << worst << "% of a UNet step (budget 1%)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"fewstep sampler overhead benchmark"};
  app.add_option("--steps", opt.steps, "sampler steps")->check(CLI::Range(1, 1000));
  app.add_option("--shape", opt.shape, "sample shape BxCxHxW (CFG batch 2, 4x32x32 latents by default)");
  app.add_option("--dtype", opt.dtype, "sampler math dtype")->check(CLI::IsMember({"float32", "float64"}));
  app.add_option("--threads", opt.threads, "intra-op threads (0: LibTorch's default)");
  app.add_option("--repeats", opt.repeats, "timed runs per sampler")->check(CLI::Range(1, 1000));
  app.add_option("--unet-step-ms", opt.unet_step_ms, "the UNet step to compare with, in ms");
  app.add_option("--json", opt.json, "where to write the results");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::cerr << "bench_sampler_overhead: " << e.what() << "\n";
    return 1;
  }
}
