// bench/attention: fewstep::attention against naive attention
// (matmul → softmax → matmul) and LibTorch's scaled_dot_product_attention at
// the SD 1.5 and SDXL shapes of issue 5.
//
// Reports per shape and variant: median milliseconds, TFLOP/s (4·B·H·Sq·Sk·d
// flops: the two matrix products, the convention of Dao 2023, §4), the
// percentage of a matrix-product peak measured in this program with
// at::matmul in the same dtype, and on CPU the process CPU time of a call
// (all threads) and the peak resident memory it adds. Prints a table and
// writes JSON (--json).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <torch/headeronly/version.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#ifdef FEWSTEP_HAS_CUDA_KERNELS
#include <ATen/cuda/CUDAContext.h>
#endif

#include "bench/harness.h"
#include "kernels/attention.h"

namespace fewstep::bench {
namespace {

struct Shape {
  std::string name;
  int64_t batch, heads, seq_q, seq_k, head_dim;
};

/// Issue 5's table (batch × heads = 2 × 8 or 2 × 10: a CFG batch of 2), plus
/// the 8-head 4096 case of the CPU memory goal.
std::vector<Shape> issue_shapes(bool cpu) {
  std::vector<Shape> shapes = {{"SD1.5 self 64x64", 2, 8, 4096, 4096, 40},
                               {"SD1.5 self 32x32", 2, 8, 1024, 1024, 80},
                               {"SD1.5 self 16x16", 2, 8, 256, 256, 160},
                               {"SD1.5 cross 64x64", 2, 8, 4096, 77, 40},
                               {"SDXL self 64x64", 2, 10, 4096, 4096, 64}};
  if (cpu) shapes.push_back({"8 heads 4096 (memory goal)", 1, 8, 4096, 4096, 40});
  return shapes;
}

struct Options {
  std::string device = "auto";
  std::string dtype = "auto";
  int warmup = -1;
  int repeats = -1;
  int threads = 0;
  std::string json = "attention_results.json";
  std::vector<std::string> only;
};

at::Tensor naive_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  const at::Tensor scores = at::matmul(q, k.transpose(-2, -1)).mul_(scale);
  return at::matmul(at::softmax(scores, -1), v);
}

/// Peak TFLOP/s of a square matrix product in `dtype` on `device`
/// (2·n³ flops), rotating over a few operand sets.
double measure_matmul_tflops(at::Device device, at::ScalarType dtype, const TimingOptions& timing) {
  const int64_t n = device.is_cuda() ? 8192 : 2048;
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  std::vector<at::Tensor> a, b;
  for (int i = 0; i < 3; ++i) {
    a.push_back(at::randn({n, n}, options));
    b.push_back(at::randn({n, n}, options));
  }
  const Timing t = time_ms([&](int i) { (void)at::matmul(a[i % 3], b[i % 3]); }, device, timing);
  return 2.0 * n * n * n / (t.median_ms * 1e-3) / 1e12;
}

int64_t input_set_count(at::Device device, int64_t bytes_per_set) {
#ifdef FEWSTEP_HAS_CUDA_KERNELS
  if (device.is_cuda()) {
    // Rotate through ≥ 3× the L2 so repeated calls do not run from cache.
    const int64_t l2 = at::cuda::getCurrentDeviceProperties()->l2CacheSize;
    return std::max<int64_t>(1, std::min<int64_t>(16, (3 * l2 + bytes_per_set - 1) / bytes_per_set));
  }
#endif
  return 1;
}

std::string cpu_model() {
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  while (std::getline(info, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

int run(const Options& opt) {
  const bool cuda = opt.device == "cuda" || (opt.device == "auto" && at::hasCUDA());
  if (opt.device == "cuda" && !at::hasCUDA()) {
    std::cerr << "--device: cuda requested but no CUDA device is present\n";
    return 2;
  }
  const at::Device device = cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  at::ScalarType dtype = cuda ? at::kHalf : at::kFloat;
  if (opt.dtype == "fp32") dtype = at::kFloat;
  if (opt.dtype == "fp16") dtype = at::kHalf;
  if (opt.dtype == "bf16") dtype = at::kBFloat16;
  if (opt.threads > 0) at::set_num_threads(opt.threads);
  const TimingOptions timing{opt.warmup >= 0 ? opt.warmup : (cuda ? 10 : 1),
                             opt.repeats > 0 ? opt.repeats : (cuda ? 50 : 3)};
  const at::InferenceMode inference;

  const double peak_tflops = measure_matmul_tflops(device, dtype, timing);
  std::cout << "device " << (cuda ? "cuda" : "cpu") << ", dtype " << c10::toString(dtype) << ", threads "
            << at::get_num_threads() << ", matmul peak " << peak_tflops << " TFLOP/s\n";

  ResultTable table;
  for (const Shape& s : issue_shapes(!cuda)) {
    if (!opt.only.empty() && std::find(opt.only.begin(), opt.only.end(), s.name) == opt.only.end()) continue;
    const auto options = at::TensorOptions().dtype(dtype).device(device);
    const int64_t set_bytes =
        (2 * s.seq_q + 2 * s.seq_k) * s.batch * s.heads * s.head_dim * static_cast<int64_t>(c10::elementSize(dtype));
    const int64_t sets = input_set_count(device, set_bytes);
    std::vector<at::Tensor> qs, ks, vs;
    for (int64_t i = 0; i < sets; ++i) {
      qs.push_back(at::randn({s.batch, s.heads, s.seq_q, s.head_dim}, options));
      ks.push_back(at::randn({s.batch, s.heads, s.seq_k, s.head_dim}, options));
      vs.push_back(at::randn({s.batch, s.heads, s.seq_k, s.head_dim}, options));
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
    const double flops = 4.0 * s.batch * s.heads * s.seq_q * s.seq_k * s.head_dim;

    using Variant = std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>;
    const std::vector<std::pair<std::string, Variant>> variants = {
        {"fused",
         [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) { return attention(q, k, v, scale); }},
        {"sdpa", [&](const at::Tensor& q, const at::Tensor& k,
                     const at::Tensor& v) { return at::scaled_dot_product_attention(q, k, v, {}, 0.0, false, scale); }},
        {"naive", [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
           return naive_attention(q, k, v, scale);
         }}};
    const at::Tensor sdpa_out = variants[1].second(qs[0], ks[0], vs[0]);
    for (const auto& [variant, fn] : variants) {
      const double max_diff =
          (fn(qs[0], ks[0], vs[0]).to(at::kFloat) - sdpa_out.to(at::kFloat)).abs().max().item<double>();
      const Timing t = time_ms([&](int i) { (void)fn(qs[i % sets], ks[i % sets], vs[i % sets]); }, device, timing);
      const double tflops = flops / (t.median_ms * 1e-3) / 1e12;
      nlohmann::ordered_json row = {{"shape", s.name},
                                    {"B", s.batch},
                                    {"H", s.heads},
                                    {"Sq", s.seq_q},
                                    {"Sk", s.seq_k},
                                    {"d", s.head_dim},
                                    {"variant", variant},
                                    {"ms", t.median_ms},
                                    {"min_ms", t.min_ms},
                                    {"TFLOP/s", tflops},
                                    {"%peak", 100.0 * tflops / peak_tflops},
                                    {"max|Δsdpa|", max_diff}};
      if (!cuda) {
        row["cpu_ms"] = t.cpu_median_ms;
        const int64_t peak = peak_rss_added_bytes([&] { (void)fn(qs[0], ks[0], vs[0]); });
        row["peak_MiB"] = peak >= 0 ? static_cast<double>(peak) / (1 << 20) : -1.0;
      }
      table.add(row);
    }
  }
  nlohmann::ordered_json meta = run_meta("attention");
  meta.update({{"device", cuda ? "cuda" : "cpu"},
               {"cpu", cpu_model()},
               {"dtype", c10::toString(dtype)},
               {"matmul_peak_tflops", peak_tflops},
               {"warmup", timing.warmup},
               {"repeats", timing.repeats}});
#ifdef FEWSTEP_HAS_CUDA_KERNELS
  if (cuda) meta["gpu"] = at::cuda::getCurrentDeviceProperties()->name;
#endif
  table.report(opt.json, meta);
  return 0;
}

}  // namespace
}  // namespace fewstep::bench

int main(int argc, char** argv) {
  fewstep::bench::Options opt;
  CLI::App app{"Times fewstep::attention against naive attention and LibTorch SDPA at issue 5's shapes."};
  app.add_option("--device", opt.device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--dtype", opt.dtype, "auto (fp16 on CUDA, fp32 on CPU), fp16, bf16 or fp32")
      ->check(CLI::IsMember({"auto", "fp16", "bf16", "fp32"}));
  app.add_option("--warmup", opt.warmup, "untimed calls per variant (default 10 CUDA, 1 CPU)");
  app.add_option("--repeats", opt.repeats, "timed calls per variant (default 50 CUDA, 3 CPU)");
  app.add_option("--threads", opt.threads, "CPU threads (default: LibTorch's)");
  app.add_option("--json", opt.json, "where to write the results");
  app.add_option("--only", opt.only, "shape names to run (default all)");
  CLI11_PARSE(app, argc, argv);
  try {
    return fewstep::bench::run(opt);
  } catch (const std::exception& e) {
    std::cerr << "bench_attention: " << e.what() << "\n";
    return 1;
  }
}
