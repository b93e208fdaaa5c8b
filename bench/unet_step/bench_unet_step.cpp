// bench/unet_step: the time of one UNet call, the unit every sampler step
// pays once (twice for Heun), with the CFG batch of 2 rows that guidance
// needs. One row per attention mode (fused = fewstep::attention through the
// TorchScript rewrite; native = the model's own LibTorch attention) and
// fusion mode (all = fewstep's fused kernels and a channels-last CPU UNet,
// kernels = the fused kernels only, none = the graph as exported).
// Also the call's FLOPs (profiled once, pipeline/profile.h), the achieved
// GFLOP/s, and the CPU tensor allocations per call. Prints a table; writes
// JSON (--json). Harness: bench/harness.h.
#include "bench/harness.h"
#include "pipeline/pipeline.h"
#include "eval/profile.h"
#include "eval/sweep.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <CLI/CLI.hpp>

#include <optional>
#include <torch/headeronly/version.h>

namespace {

struct Options {
  std::string model = std::string(FEWSTEP_TEST_MODELS) + "/tiny-blocks";
  std::string device = "cpu", dtype = "fp32", attention = "fused,native", fusion = "all";
  int64_t batch = 2, width = 0, height = 0;
  int threads = 0, warmup = 2, repeats = 10;
  std::string json = "unet_step.json";
};

int run(const Options& opt) {
  fewstep::bench::ResultTable table;
  fewstep::bench::AllocationCounter& allocations = fewstep::bench::AllocationCounter::install();
  std::vector<std::pair<std::string, std::string>> modes;
  for (const std::string& a : fewstep::parse_list("--attention", opt.attention)) {
    for (const std::string& f : fewstep::parse_list("--fusion", opt.fusion)) modes.emplace_back(a, f);
  }
  for (const auto& [mode, fusion] : modes) {
    fewstep::RuntimeOptions rt;
    rt.device = opt.device;
    rt.dtype = opt.dtype;
    rt.threads = opt.threads;
    rt.attention = mode;
    rt.fusion = fusion;
    auto pipe = fewstep::Pipeline::load(opt.model, rt);
    const auto& m = pipe->manifest();
    const int64_t w = opt.width > 0 ? opt.width : m.defaults.width, h = opt.height > 0 ? opt.height : m.defaults.height;
    std::vector<int64_t> shape = pipe->sample_shape(w, h);
    shape[0] = opt.batch;
    const auto on = at::TensorOptions().device(pipe->device()).dtype(pipe->model_dtype());
    // Two input sets, rotated, so repeats do not replay one cached input.
    const std::vector<at::Tensor> xs = {at::randn(shape, on), at::randn(shape, on)};
    const at::Tensor t = at::full({opt.batch}, 500.0, on.dtype(at::kFloat));
    const fewstep::Conditioning c = pipe->encode("a red apple", "");
    at::Tensor ctx;
    if (pipe->conditional()) ctx = c.cond.expand({opt.batch, c.cond.size(1), c.cond.size(2)}).contiguous();
    // FLOPs of one call: the profiled per-row count (pipeline/profile.h) times the rows.
    const fewstep::GenerateRequest one_step = pipe->request_with_defaults("ddim", 1, std::nullopt, w, h);
    const std::optional<double> per_row = fewstep::unet_flops_per_row(*pipe, c, one_step);
    const double gflop = per_row ? *per_row * double(opt.batch) * 1e-9 : 0.0;
    at::NoGradGuard no_grad;
    fewstep::Model& unet = pipe->model();
    const fewstep::bench::Timing tm =
        fewstep::bench::time_ms([&](int i) { unet.forward(xs[size_t(i % 2)], t, ctx); }, pipe->device(),
                                {.warmup = opt.warmup, .repeats = opt.repeats});
    // Allocations of warm calls (the first calls allocate more), untimed.
    constexpr int kCountedCalls = 2;
    const int64_t allocs_before = allocations.count(), bytes_before = allocations.bytes();
    for (int i = 0; i < kCountedCalls; ++i) unet.forward(xs[size_t(i % 2)], t, ctx);
    const double calls = kCountedCalls;
    table.add({{"model", m.name},
               {"device", opt.device},
               {"dtype", opt.dtype},
               {"attention", mode},
               {"fusion", fusion},
               {"batch", opt.batch},
               {"size", std::to_string(w) + "x" + std::to_string(h)},
               {"median_ms", tm.median_ms},
               {"min_ms", tm.min_ms},
               {"cpu_ms", tm.cpu_median_ms},
               {"gflop", gflop},
               {"gflop_per_s", tm.median_ms > 0 ? gflop / (tm.median_ms * 1e-3) : 0.0},
               {"allocs", double(allocations.count() - allocs_before) / calls},
               {"alloc_mb", double(allocations.bytes() - bytes_before) / calls / (1 << 20)}});
  }
  nlohmann::ordered_json meta = fewstep::bench::run_meta("unet_step");
  meta.update({{"model", opt.model}, {"repeats", opt.repeats}});
  table.report(opt.json, meta);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"bench_unet_step: one UNet call, fused against native attention, fused kernels against none"};
  app.add_option("--model", opt.model, "model package folder")->capture_default_str();
  app.add_option("--device", opt.device, "cpu or cuda")->capture_default_str();
  app.add_option("--dtype", opt.dtype, "fp32, bf16, or fp16 (CUDA)")->capture_default_str();
  app.add_option("--attention", opt.attention, "comma list of fused, native")->capture_default_str();
  app.add_option("--fusion", opt.fusion, "comma list of all, kernels, none")->capture_default_str();
  app.add_option("--batch", opt.batch, "rows per call (2 = a CFG pair)")->capture_default_str();
  app.add_option("--width", opt.width, "pixels (default: the model's)");
  app.add_option("--height", opt.height, "pixels (default: the model's)");
  app.add_option("--threads", opt.threads, "intra-op threads (0 = all cores)")->capture_default_str();
  app.add_option("--warmup", opt.warmup, "untimed calls")->capture_default_str();
  app.add_option("--repeats", opt.repeats, "timed calls (median reported)")->capture_default_str();
  app.add_option("--json", opt.json, "JSON output file")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::cerr << "bench_unet_step: error: " << e.what() << "\n";
    return 1;
  }
}
