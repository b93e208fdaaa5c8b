// Shared CLI pieces (see common.h).
#include "cli/common.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace fewstep::cli {
namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void add_runtime_flags(CLI::App& cmd, RuntimeOptions& rt) {
  cmd.add_option("--device", rt.device, "cpu or cuda[:N]")->capture_default_str();
  cmd.add_option("--dtype", rt.dtype, "model dtype: fp32, fp16 or bf16 (CUDA), fp64 (analytic models)")
      ->capture_default_str();
  cmd.add_option("--threads", rt.threads, "LibTorch intra-op threads (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--attention", rt.attention, "fused (fewstep's kernels) or native (LibTorch's)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fused", "native"}));
}

SamplerOptions parse_sampler_options(const std::vector<std::string>& items) {
  SamplerOptions out;
  for (const auto& item : items) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw std::invalid_argument("--sampler-option: expected key=value, got '" + item + "'");
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

bool stderr_is_tty() { return isatty(STDERR_FILENO) != 0; }

uint64_t random_seed() {
  std::random_device rd;
  return static_cast<uint64_t>(rd()) & 0xffffffffull;
}

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), start_s_(now_s()) {}

void ProgressBar::update(int64_t done) {
  if (!enabled_ || total_ <= 0) return;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / total_);
  const double elapsed = now_s() - start_s_;
  const double rate = done > 0 ? elapsed / double(done) : 0.0;
  std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld  %.2fs/it ", label_.c_str(), filled,
               "##############################", kWidth - filled, "", static_cast<long long>(done),
               static_cast<long long>(total_), rate);
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (!enabled_) return;
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace fewstep::cli
