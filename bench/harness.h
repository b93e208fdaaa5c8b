// fewstep benchmarks: the shared timing harness (header-only).
//
// Method (the device notes' METHOD.md): warm up first, repeat, report the
// median; time GPU work with device events on the current stream, CPU work
// with a steady clock; let the caller rotate among input sets so repeated
// runs do not just measure the cache. Results are rows of named values,
// printed as an aligned table and written as a JSON array.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <malloc.h>
#include <torch/headeronly/version.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fewstep::bench {

/// How many untimed and timed calls.
struct TimingOptions {
  int warmup = 3;
  int repeats = 10;
};

/// Wall time of one call, in milliseconds, over the timed repeats. For CPU
/// work also the process CPU time of one call (all threads together; on a
/// busy machine it is steadier than wall time), median.
struct Timing {
  double median_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
  double cpu_median_ms = 0;
  int repeats = 0;
};

/// Process CPU time (all threads), in milliseconds.
inline double process_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

/// Median of a non-empty sample (sorts it).
inline double median_of(std::vector<double>& x) {
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n % 2 == 1 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/// Times `fn(i)` (i = 0, 1, … over warm-up and repeats; use it to rotate
/// inputs). On a CUDA device each call is bracketed by CUDA events on the
/// current stream (so launch-to-completion GPU time, without host sync gaps);
/// on CPU by std::chrono::steady_clock. Throws std::invalid_argument when
/// repeats < 1.
template <typename F>
Timing time_ms(F&& fn, at::Device device, const TimingOptions& options = {}) {
  if (options.repeats < 1) throw std::invalid_argument("bench: repeats must be at least 1");
  int call = 0;
  for (int i = 0; i < options.warmup; ++i) fn(call++);
  std::vector<double> ms;
  std::vector<double> cpu_ms;
  if (device.is_cuda()) {
    const c10::impl::VirtualGuardImpl guard(c10::DeviceType::CUDA);
    const c10::Stream stream = guard.getStream(device);
    guard.synchronizeStream(stream);
    for (int i = 0; i < options.repeats; ++i) {
      c10::Event start(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
      c10::Event stop(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
      start.record(stream);
      fn(call++);
      stop.record(stream);
      stop.synchronize();
      ms.push_back(start.elapsedTime(stop));
    }
  } else {
    for (int i = 0; i < options.repeats; ++i) {
      const double c0 = process_cpu_ms();
      const auto t0 = std::chrono::steady_clock::now();
      fn(call++);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      cpu_ms.push_back(process_cpu_ms() - c0);
    }
  }
  Timing timing;
  timing.median_ms = median_of(ms);
  timing.min_ms = ms.front();
  timing.max_ms = ms.back();
  timing.cpu_median_ms = cpu_ms.empty() ? 0.0 : median_of(cpu_ms);
  timing.repeats = options.repeats;
  return timing;
}

/// Reads a "Vm…:  N kB" line of /proc/self/status, in bytes (0 if absent).
inline int64_t proc_status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream fields(line.substr(key.size() + 1));
      int64_t kb = 0;
      fields >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

/// Peak resident memory that `fn()` adds to the process, in bytes: free heap
/// memory is first returned to the kernel (malloc_trim) so that reused
/// allocations count, then Linux's high-water mark (VmHWM) is reset to the
/// current RSS by writing 5 to /proc/self/clear_refs, and read after the
/// call. Returns -1 where that interface is unavailable.
template <typename F>
int64_t peak_rss_added_bytes(F&& fn) {
  malloc_trim(0);
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear) return -1;
  clear << "5" << std::flush;
  if (!clear) return -1;
  const int64_t before = proc_status_bytes("VmRSS");
  fn();
  return proc_status_bytes("VmHWM") - before;
}

/// Counts the CPU tensor allocations that go through LibTorch's CPU
/// allocator (every at::empty on the CPU; not oneDNN's own scratch buffers)
/// by wrapping it. install() puts it in place once per process; tensors
/// allocated before keep their own deleters.
class AllocationCounter final : public c10::Allocator {
 public:
  /// The process's counter, installed on first use.
  static AllocationCounter& install() {
    static AllocationCounter* counter = [] {
      auto* c = new AllocationCounter(c10::GetCPUAllocator());
      c10::SetCPUAllocator(c, /*priority=*/100);
      return c;
    }();
    return *counter;
  }

  c10::DataPtr allocate(size_t n) override {
    count_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
    return base_->allocate(n);
  }
  c10::DeleterFnPtr raw_deleter() const override { return base_->raw_deleter(); }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  /// Allocations and bytes so far.
  int64_t count() const { return count_.load(); }
  int64_t bytes() const { return bytes_.load(); }

 private:
  explicit AllocationCounter(c10::Allocator* base) : base_(base) {}
  c10::Allocator* base_;
  std::atomic<int64_t> count_{0}, bytes_{0};
};

/// Today's date in UTC, "YYYY-MM-DD".
inline std::string utc_date() {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d", std::gmtime(&now));
  return buffer;
}

/// The metadata every benchmark records: date, benchmark name, LibTorch
/// version it was built against, intra-op threads. Callers add their own keys.
inline nlohmann::ordered_json run_meta(const std::string& bench) {
  return {{"date", utc_date()},
          {"bench", bench},
          {"torch", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                        std::to_string(TORCH_VERSION_PATCH)},
          {"threads", at::get_num_threads()}};
}

/// Result rows with named columns in first-seen order. Numbers print with
/// four significant digits in the table and in full in the JSON.
class ResultTable {
 public:
  void add(nlohmann::ordered_json row) { rows_.push_back(std::move(row)); }

  const std::vector<nlohmann::ordered_json>& rows() const { return rows_; }

  void print(std::ostream& out = std::cout) const {
    std::vector<std::string> columns;
    for (const auto& row : rows_) {
      for (const auto& [key, value] : row.items()) {
        if (std::find(columns.begin(), columns.end(), key) == columns.end()) columns.push_back(key);
      }
    }
    std::vector<std::vector<std::string>> cells;
    std::vector<size_t> widths;
    for (const auto& c : columns) widths.push_back(c.size());
    for (const auto& row : rows_) {
      std::vector<std::string> line;
      for (size_t i = 0; i < columns.size(); ++i) {
        line.push_back(row.contains(columns[i]) ? format(row.at(columns[i])) : "");
        widths[i] = std::max(widths[i], line.back().size());
      }
      cells.push_back(std::move(line));
    }
    auto print_line = [&](const std::vector<std::string>& line) {
      for (size_t i = 0; i < line.size(); ++i)
        out << (i ? "  " : "") << std::setw(static_cast<int>(widths[i])) << line[i];
      out << "\n";
    };
    print_line(columns);
    for (const auto& line : cells) print_line(line);
    out << std::flush;
  }

  /// Writes the rows as a JSON array (with `meta` as the first element's
  /// sibling: {"meta": meta, "rows": [...]}). Throws std::runtime_error when
  /// the file cannot be written.
  void write_json(const std::string& path, const nlohmann::ordered_json& meta = {}) const {
    std::ofstream file(path);
    if (!file) throw std::runtime_error("bench: cannot write " + path);
    nlohmann::ordered_json doc;
    doc["meta"] = meta;
    doc["rows"] = rows_;
    file << doc.dump(2) << "\n";
  }

  /// print(), then write_json(path, meta), then a line saying where it went.
  void report(const std::string& path, const nlohmann::ordered_json& meta) const {
    print();
    write_json(path, meta);
    std::cout << "wrote " << path << "\n";
  }

 private:
  static std::string format(const nlohmann::ordered_json& value) {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_number_float()) {
      char buffer[32];
      std::snprintf(buffer, sizeof(buffer), "%.4g", value.get<double>());
      return buffer;
    }
    return value.dump();
  }

  std::vector<nlohmann::ordered_json> rows_;
};

}  // namespace fewstep::bench
