// `fewstep profile` (see profile.h).
#include "eval/profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "image/png.h"
#include "io/files.h"
#include "pipeline/tensor_io.h"
#include "pipeline/model_source.h"
#include "samplers/registry.h"

namespace fewstep {
namespace {

namespace prof = torch::profiler::impl;

double ns_to_ms(uint64_t ns) { return double(ns) * 1e-6; }

/// Walks the events of one thread in nesting order (start ascending, longer
/// first) and calls visit(parent_index, child_index) for each direct child.
template <typename Visit>
void for_each_direct_child(const std::vector<const ProfiledEvent*>& evs, Visit&& visit) {
  std::vector<size_t> stack;
  for (size_t i = 0; i < evs.size(); ++i) {
    while (!stack.empty() && evs[stack.back()]->end_ns <= evs[i]->start_ns) stack.pop_back();
    if (!stack.empty()) visit(stack.back(), i);
    stack.push_back(i);
  }
}

std::map<uint64_t, std::vector<const ProfiledEvent*>> by_thread(const std::vector<ProfiledEvent>& events,
                                                                bool (*keep)(const ProfiledEvent&)) {
  std::map<uint64_t, std::vector<const ProfiledEvent*>> out;
  for (const ProfiledEvent& e : events)
    if (keep(e)) out[e.thread].push_back(&e);
  for (auto& [t, v] : out)
    std::sort(v.begin(), v.end(), [](const ProfiledEvent* a, const ProfiledEvent* b) {
      return a->start_ns != b->start_ns ? a->start_ns < b->start_ns : a->end_ns > b->end_ns;
    });
  return out;
}

/// FLOPs to count per host operator: its estimate when no operator around
/// it (same thread) has one, else 0. Indexed like `events`.
std::vector<double> counted_flops(const std::vector<ProfiledEvent>& events) {
  std::vector<double> out(events.size(), 0.0);
  for (auto& [thread, evs] : by_thread(events, [](const ProfiledEvent& e) { return e.op; })) {
    std::vector<const ProfiledEvent*> stack;
    for (const ProfiledEvent* e : evs) {
      while (!stack.empty() && stack.back()->end_ns <= e->start_ns) stack.pop_back();
      const bool covered = std::any_of(stack.begin(), stack.end(), [](const ProfiledEvent* a) { return a->flops > 0; });
      if (!covered) out[size_t(e - events.data())] = double(e->flops);
      stack.push_back(e);
    }
  }
  return out;
}

std::vector<int64_t> int_list(const c10::IValue& v) {
  if (v.isIntList()) return v.toIntVector();
  if (v.isInt()) return {v.toInt()};
  return {};
}

/// aten::convolution(input, weight, bias, stride, padding, dilation,
/// transposed, output_padding, groups): its FLOPs from the recorded shapes
/// and concrete arguments (this op is called from C++, so its inputs are
/// not shifted the way TorchScript-called ops' are).
uint64_t conv_flops_of(const std::vector<std::vector<int64_t>>& shapes,
                       const torch::autograd::profiler::KinetoEvent& k) {
  if (!k.hasConcreteInputs()) return 0;
  const auto args = k.concreteInputs();
  if (args.size() < 7) return 0;
  const bool transposed = args[6].isBool() && args[6].toBool();
  return conv_flops(shapes, int_list(args[3]), int_list(args[4]), int_list(args[5]), transposed);
}

std::vector<ProfiledEvent> convert(const std::vector<torch::autograd::profiler::KinetoEvent>& events) {
  std::vector<ProfiledEvent> out;
  out.reserve(events.size());
  for (const auto& k : events) {
    ProfiledEvent e;
    e.name = k.name();
    e.start_ns = k.startNs();
    e.end_ns = std::max(k.endNs(), k.startNs());
    e.thread = k.startThreadId();
    e.on_device = k.deviceType() != c10::DeviceType::CPU;
    const auto scope = static_cast<at::RecordScope>(k.scope());
    e.user_scope = !e.on_device && scope == at::RecordScope::USER_SCOPE;
    e.op = !e.on_device && scope == at::RecordScope::FUNCTION;
    e.flops = 0;  // only matrix products, convolutions and attention count (see op_flops)
    if (k.hasShapes()) {
      const auto shapes = k.shapes();
      std::vector<std::vector<int64_t>> s(shapes.begin(), shapes.end());
      // fewstep::conv2d_prepacked records aten::convolution's arguments.
      e.flops = e.name == "aten::convolution" || e.name == "fewstep::conv2d_prepacked" ? conv_flops_of(s, k)
                                                                                       : op_flops(e.name, s);
    }
    out.push_back(std::move(e));
  }
  return out;
}

/// Stage events of one thread in nesting order, without those nested in a
/// range of the same stage (the fused attention op may run LibTorch's SDPA
/// inside its own `attention` range: one attention, not two).
std::vector<const ProfiledEvent*> outermost_per_stage(const std::vector<const ProfiledEvent*>& evs) {
  std::vector<const ProfiledEvent*> out, stack;
  for (const ProfiledEvent* e : evs) {
    while (!stack.empty() && stack.back()->end_ns <= e->start_ns) stack.pop_back();
    const std::string stage = stage_of(e->name);
    const bool repeated =
        std::any_of(stack.begin(), stack.end(), [&](const ProfiledEvent* a) { return stage_of(a->name) == stage; });
    stack.push_back(e);
    if (!repeated) out.push_back(e);
  }
  return out;
}

/// Runs fn under the Kineto profiler (host activity, plus CUDA when `cuda`;
/// input shapes on, LibTorch's FLOP estimates off: op_flops counts) and
/// returns its result; *ms gets
/// fn's wall time. The profiler is off again when fn throws.
template <typename Fn>
std::unique_ptr<torch::autograd::profiler::ProfilerResult> profiled(bool cuda, Fn&& fn, double* ms) {
  // Kineto logs an error when a CUDA build finds no GPU; a CPU profile needs none.
  if (!cuda) setenv("KINETO_LOG_LEVEL", "5", /*overwrite=*/0);
  std::set<prof::ActivityType> activities = {prof::ActivityType::CPU};
  if (cuda) activities.insert(prof::ActivityType::CUDA);
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO, /*report_input_shapes=*/true,
                                    /*profile_memory=*/false, /*with_stack=*/false, /*with_flops=*/false);
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    fn();
  } catch (...) {
    torch::autograd::profiler::disableProfiler();
    throw;
  }
  *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return torch::autograd::profiler::disableProfiler();
}

}  // namespace

std::optional<double> unet_flops_per_row(Pipeline& pipe, const Conditioning& cond, GenerateRequest req) {
  if (pipe.analytic()) return std::nullopt;
  req.on_step = nullptr;
  GenerateStats stats;
  double ms = 0;
  const auto result = profiled(
      pipe.device().is_cuda(), [&] { stats = pipe.generate(cond, req).stats; }, &ms);
  if (!result || result->events().empty() || stats.unet_rows < 1) return std::nullopt;
  double flops = 0;
  for (const StageRow& r : stage_table(convert(result->events())))
    if (r.name == "unet" || r.name.rfind("unet.", 0) == 0) flops += r.gflop * 1e9;
  if (flops <= 0) return std::nullopt;
  return flops / double(stats.unet_rows);
}

std::string stage_of(const std::string& n) {
  if (n == "text_encoder" || n == "unet" || n == "sampler" || n == "vae_decoder" || n == "attention") return n;
  if (n.rfind("unet.", 0) == 0) return n;
  if (n == "aten::scaled_dot_product_attention") return "attention";
  return "";
}

std::vector<OpRow> op_table(const std::vector<ProfiledEvent>& events, int64_t top) {
  std::map<std::pair<std::string, std::string>, OpRow> rows;
  std::map<std::string, double> device_self;
  auto add = [&](const ProfiledEvent& e, const std::string& device, double self_ms) {
    OpRow& r = rows[{device, e.name}];
    r.name = e.name;
    r.device = device;
    r.calls += 1;
    r.self_ms += self_ms;
    r.total_ms += ns_to_ms(e.end_ns - e.start_ns);
    r.gflop += double(e.flops) * 1e-9;
    device_self[device] += self_ms;
  };
  for (auto& [thread, evs] : by_thread(events, [](const ProfiledEvent& e) { return e.op; })) {
    std::vector<double> self(evs.size());
    for (size_t i = 0; i < evs.size(); ++i) self[i] = ns_to_ms(evs[i]->end_ns - evs[i]->start_ns);
    for_each_direct_child(
        evs, [&](size_t parent, size_t child) { self[parent] -= ns_to_ms(evs[child]->end_ns - evs[child]->start_ns); });
    for (size_t i = 0; i < evs.size(); ++i) add(*evs[i], "CPU", std::max(0.0, self[i]));
  }
  for (const ProfiledEvent& e : events)
    if (e.on_device) add(e, "CUDA", ns_to_ms(e.end_ns - e.start_ns));
  std::vector<OpRow> out;
  for (auto& [key, r] : rows) {
    r.share = device_self[r.device] > 0 ? r.self_ms / device_self[r.device] : 0.0;
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const OpRow& a, const OpRow& b) { return a.self_ms > b.self_ms; });
  if (top >= 0 && out.size() > size_t(top)) out.resize(size_t(top));
  return out;
}

std::vector<StageRow> stage_table(const std::vector<ProfiledEvent>& events) {
  std::vector<StageRow> rows;
  std::map<std::string, size_t> index;
  // Counted operator FLOPs per thread, sorted by start time: each range sums
  // the operators that start inside it (found by binary search).
  const std::vector<double> flops = counted_flops(events);
  std::map<uint64_t, std::vector<std::pair<const ProfiledEvent*, double>>> flop_ops;
  for (size_t i = 0; i < events.size(); ++i)
    if (flops[i] > 0) flop_ops[events[i].thread].push_back({&events[i], flops[i]});
  for (auto& [thread, ops] : flop_ops)
    std::sort(ops.begin(), ops.end(),
              [](const auto& a, const auto& b) { return a.first->start_ns < b.first->start_ns; });
  auto flops_within = [&](const ProfiledEvent& range) {
    const auto& ops = flop_ops[range.thread];
    auto it = std::lower_bound(ops.begin(), ops.end(), range.start_ns,
                               [](const auto& op, uint64_t t) { return op.first->start_ns < t; });
    double sum = 0;
    for (; it != ops.end() && it->first->start_ns <= range.end_ns; ++it)
      if (it->first->end_ns <= range.end_ns) sum += it->second;  // the range itself, too
    return sum;
  };
  auto is_stage = [](const ProfiledEvent& e) { return !e.on_device && !stage_of(e.name).empty(); };
  for (auto& [thread, all] : by_thread(events, is_stage)) {
    const std::vector<const ProfiledEvent*> evs = outermost_per_stage(all);
    std::vector<double> excl(evs.size());
    for (size_t i = 0; i < evs.size(); ++i) excl[i] = ns_to_ms(evs[i]->end_ns - evs[i]->start_ns);
    for_each_direct_child(
        evs, [&](size_t parent, size_t child) { excl[parent] -= ns_to_ms(evs[child]->end_ns - evs[child]->start_ns); });
    for (size_t i = 0; i < evs.size(); ++i) {
      const std::string name = stage_of(evs[i]->name);
      auto [it, fresh] = index.try_emplace(name, rows.size());
      if (fresh) {
        StageRow r;
        r.name = name;
        rows.push_back(r);
      }
      StageRow& r = rows[it->second];
      r.calls += 1;
      r.inclusive_ms += ns_to_ms(evs[i]->end_ns - evs[i]->start_ns);
      r.exclusive_ms += std::max(0.0, excl[i]);
      r.gflop += flops_within(*evs[i]) * 1e-9;
    }
  }
  return rows;
}

ProfileReport run_profile(const ProfileOptions& o) {
  if (o.out.empty()) throw std::invalid_argument("--out: an output folder is required");
  if (o.top < 1) throw std::invalid_argument("--top: must be at least 1");
  std::error_code ec;
  const std::filesystem::path trace = o.out / "trace.json";
  if (o.write_trace) {
    std::filesystem::create_directories(o.out, ec);
    if (ec || !std::filesystem::is_directory(o.out))
      throw FileError("--out: cannot create folder " + o.out.string() + (ec ? ": " + ec.message() : ""));
    try {
      check_writable(trace);
    } catch (const FileError& e) {
      throw FileError(std::string("--out: ") + e.what());
    }
  }

  const std::string model = o.model.empty() ? default_model_dir() : o.model;
  std::unique_ptr<Pipeline> pipe = Pipeline::load(model, o.rt);
  GenerateRequest req = pipe->request_with_defaults(o.sampler, o.steps, o.cfg_scale, o.width, o.height);
  req.seed = o.seed;
  req.timestep_spacing = o.timestep_spacing;
  req.sampler_options = o.sampler_options;
  pipe->check(req);
  if (o.prepare && !o.prepare(*pipe, req)) return {};
  const std::string description = pipe->manifest().name + ": " + find_sampler(req.sampler).name + ", " +
                                  std::to_string(req.steps) + " steps, " + std::to_string(req.width) + "x" +
                                  std::to_string(req.height) + ", CFG " + std::to_string(req.cfg_scale).substr(0, 4) +
                                  ", " + pipe->device().str() + ", " + o.rt.dtype + ", attention " + o.rt.attention +
                                  ", fusion " + o.rt.fusion +
                                  (req.cfg_split ? ", CFG halves split across two ranks (this rank's half)" : "");

  // Warm-up: first calls allocate, load kernels and tune; not profiled.
  pipe->generate(pipe->encode(o.prompt, o.negative_prompt), req);

  double total_ms = 0;
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> result = profiled(
      pipe->device().is_cuda(),
      [&] {
        const Conditioning cond = pipe->encode(o.prompt, o.negative_prompt);
        pipe->generate(cond, req);
      },
      &total_ms);
  if (!result || result->events().empty())
    throw std::runtime_error("profile: the profiler recorded no events (is Kineto compiled into this LibTorch?)");

  ProfileReport rep;
  const std::vector<ProfiledEvent> events = convert(result->events());
  rep.events = static_cast<int64_t>(events.size());
  rep.ops = op_table(events, o.top);
  rep.stages = stage_table(events);
  rep.total_ms = total_ms;
  rep.description = description;
  if (!o.write_trace) return rep;
  // ProfilerResult::save writes in place; write beside, then rename, so
  // trace.json is never left half-written.
  const std::filesystem::path tmp = o.out / ".trace.json.tmp";
  register_temporary(tmp);
  result->save(tmp.string());
  std::filesystem::rename(tmp, trace, ec);
  unregister_temporary(tmp);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw FileError(trace.string() + ": cannot write: " + ec.message());
  }
  rep.trace = trace;
  rep.description = description;
  return rep;
}

std::string format_op_table(const std::vector<OpRow>& rows) {
  std::ostringstream s;
  char line[512];
  std::snprintf(line, sizeof(line), "%-48s %-5s %7s %11s %7s %11s %9s\n", "operator / kernel", "dev", "calls",
                "self ms", "share", "total ms", "GFLOP");
  s << line;
  for (const OpRow& r : rows) {
    std::string name = r.name.size() > 48 ? r.name.substr(0, 45) + "..." : r.name;
    char flops[32] = "-";
    if (r.gflop > 0) std::snprintf(flops, sizeof(flops), "%.3f", r.gflop);
    std::snprintf(line, sizeof(line), "%-48s %-5s %7lld %11.3f %6.1f%% %11.3f %9s\n", name.c_str(), r.device.c_str(),
                  static_cast<long long>(r.calls), r.self_ms, 100.0 * r.share, r.total_ms, flops);
    s << line;
  }
  return s.str();
}

std::string format_stage_table(const std::vector<StageRow>& rows, double total_ms) {
  std::ostringstream s;
  char line[256];
  std::snprintf(line, sizeof(line), "%-24s %7s %14s %14s %7s %11s\n", "stage", "calls", "exclusive ms", "inclusive ms",
                "share", "GFLOP");
  s << line;
  double sum = 0;
  for (const StageRow& r : rows) {
    sum += r.exclusive_ms;
    char flops[32] = "-";
    if (r.gflop > 0) std::snprintf(flops, sizeof(flops), "%.4f", r.gflop);
    std::snprintf(line, sizeof(line), "%-24s %7lld %14.3f %14.3f %6.1f%% %11s\n", r.name.c_str(),
                  static_cast<long long>(r.calls), r.exclusive_ms, r.inclusive_ms,
                  total_ms > 0 ? 100.0 * r.exclusive_ms / total_ms : 0.0, flops);
    s << line;
  }
  std::snprintf(line, sizeof(line), "%-24s %7s %14.3f %14s %6.1f%%\n", "(outside stages)", "",
                std::max(0.0, total_ms - sum), "",
                total_ms > 0 ? 100.0 * std::max(0.0, total_ms - sum) / total_ms : 0.0);
  s << line;
  std::snprintf(line, sizeof(line), "%-24s %7s %14.3f\n", "total (wall)", "", total_ms);
  s << line;
  return s.str();
}

}  // namespace fewstep
