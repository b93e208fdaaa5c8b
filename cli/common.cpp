// Shared CLI pieces (see common.h).
#include "cli/common.h"

#include "common/parse.h"
#include "dist/group.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace fewstep::cli {
namespace {
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

void add_shared_flags(CLI::App& cmd, SharedFlags& f, Axis axis) {
  const bool list = axis == Axis::list;
  cmd.add_option("--model,-m", f.model, "model package folder or analytic:<name> (default: the embedded model)");
  cmd.add_option("--prompt,-p", f.prompt, "text prompt (empty = unconditional)");
  cmd.add_option("--negative-prompt,-n", f.negative_prompt, "negative prompt (the CFG unconditional branch)");
  if (list) {
    cmd.add_option("--samplers", f.sampler, "comma-separated sampler names (see `fewstep samplers`)")->required();
    cmd.add_option("--steps", f.steps, "comma-separated step counts, e.g. 1,2,4,8,16,32")->required();
  } else {
    cmd.add_option("--sampler", f.sampler,
                   "sampler name or diffusers class name (default: the model's; see `fewstep samplers`)");
    cmd.add_option("--steps", f.steps, "number of sampling steps (default: the model's)");
  }
  cmd.add_option("--cfg-scale", f.cfg_scale,
                 "classifier-free guidance scale, 1 = no guidance; LCM models: the embedded w (default: the model's)");
  cmd.add_option("--width,-W", f.width, "image width in pixels (default: the model's)");
  cmd.add_option("--height,-H", f.height, "image height in pixels (default: the model's)");
  cmd.add_option("--timestep-spacing", f.timestep_spacing, "leading, trailing or linspace (default: the model's)");
  cmd.add_option("--sampler-option", f.sampler_options,
                 list ? "sampler option key=value, given to the samplers that have it (repeatable)"
                      : "sampler option key=value (repeatable)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  add_runtime_flags(cmd, f.rt);
  cmd.add_option("--dist", f.dist.mode,
                 "across processes started by torchrun/srun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): auto (on "
                 "when WORLD_SIZE > 1; gloo on CPU, nccl on CUDA), off, gloo or nccl")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "off", "gloo", "nccl"}));
  cmd.add_option("--dist-timeout", f.dist.timeout_s,
                 "seconds to wait for the other ranks to arrive and for a collective (a stopped rank is noticed "
                 "after min(this, 10) s)")
      ->capture_default_str();
}

dist::DistSettings dist_settings(const SharedFlags& f) {
  return dist::resolve_dist(f.dist, dist::read_launch_env(), f.rt.device);
}

void run_in_group(const SharedFlags& f, const std::function<void(dist::Group&)>& body) {
  const dist::DistSettings settings = dist_settings(f);
  std::unique_ptr<dist::Group> group = dist::connect_group(settings, dist::command_line());
  try {
    body(*group);
  } catch (const dist::DistError&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    group->report_failure(what.substr(0, what.find('\n')));
    throw;
  }
  group->finish();
}

void add_runtime_flags(CLI::App& cmd, RuntimeOptions& rt) {
  cmd.add_option("--device", rt.device, "cpu or cuda[:N]")->capture_default_str();
  cmd.add_option("--dtype", rt.dtype, "model dtype: fp32, bf16 (CPU: the UNet), fp16 (CUDA), fp64 (analytic models)")
      ->capture_default_str();
  cmd.add_option("--threads", rt.threads, "LibTorch intra-op threads (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--attention", rt.attention, "fused (fewstep's kernels) or native (LibTorch's)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fused", "native"}));
  cmd.add_option("--fusion", rt.fusion,
                 "all (fewstep's fused GroupNorm/SiLU/GELU kernels, channels-last CPU UNet) or none (as exported)")
      ->capture_default_str()
      ->check(CLI::IsMember({"all", "none"}));
}

std::optional<int64_t> single_steps(const SharedFlags& f) {
  if (f.steps.empty()) return std::nullopt;
  const auto v = parse_integer(f.steps);
  if (!v) throw std::invalid_argument("--steps: '" + f.steps + "' is not an integer");
  return v;
}

std::optional<std::string> spacing_of(const SharedFlags& f) {
  if (f.timestep_spacing.empty()) return std::nullopt;
  return f.timestep_spacing;
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
  std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld  %.2fs/it ", label_.c_str(), filled, "##############################",
               kWidth - filled, "", static_cast<long long>(done), static_cast<long long>(total_), rate);
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (!enabled_) return;
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace fewstep::cli
