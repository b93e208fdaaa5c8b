// The launcher's environment and the --dist flags (see env.h).
#include "dist/env.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "common/parse.h"

namespace fewstep::dist {
namespace {

std::string g_command_line, g_rank_label;

int int_var(const std::function<const char*(const char*)>& get, const char* name, int fallback, int64_t lo,
            int64_t hi) {
  const char* v = get(name);
  if (v == nullptr || *v == '\0') return fallback;
  const auto parsed = parse_integer(v);
  if (!parsed || *parsed < lo || *parsed > hi)
    throw DistError(std::string(name) + "='" + v + "': expected an integer from " + std::to_string(lo) + " to " +
                    std::to_string(hi));
  return static_cast<int>(*parsed);
}

}  // namespace

LaunchEnv read_launch_env(const std::function<const char*(const char*)>& getenv) {
  const std::function<const char*(const char*)> get =
      getenv ? getenv : std::function<const char*(const char*)>([](const char* n) { return std::getenv(n); });
  auto str = [&](const char* name, const std::string& fallback) {
    const char* v = get(name);
    return v != nullptr && *v != '\0' ? std::string(v) : fallback;
  };
  LaunchEnv e;
  e.world_size = int_var(get, "WORLD_SIZE", 1, 1, 1 << 20);
  e.rank = int_var(get, "RANK", 0, 0, 1 << 20);
  if (e.rank >= e.world_size)
    throw DistError("RANK=" + std::to_string(e.rank) + " is not below WORLD_SIZE=" + std::to_string(e.world_size));
  e.local_rank = int_var(get, "LOCAL_RANK", 0, 0, 1 << 20);
  e.master_addr = str("MASTER_ADDR", e.master_addr);
  e.master_port = int_var(get, "MASTER_PORT", e.master_port, 1, 65535);
  e.agent_store = str("TORCHELASTIC_USE_AGENT_STORE", "") == "True";  // PyTorch compares with str(True)
  e.run_id = str("TORCHELASTIC_RUN_ID", e.run_id);
  e.restart_count = str("TORCHELASTIC_RESTART_COUNT", e.restart_count);
  e.socket_ifname = str("GLOO_SOCKET_IFNAME", "");
  return e;
}

DistSettings resolve_dist(const DistFlags& flags, const LaunchEnv& env, const std::string& device) {
  if (!(flags.timeout_s > 0) || !std::isfinite(flags.timeout_s))
    throw std::invalid_argument("--dist-timeout: must be a positive number of seconds");
  const bool cuda = device.rfind("cuda", 0) == 0;
  DistSettings s;
  s.env = env;
  s.timeout_s = flags.timeout_s;
  const std::string& m = flags.mode;
  if (m == "off") return s;
  if (m == "nccl" && !cuda)
    throw std::invalid_argument("--dist: nccl runs on CUDA devices; use gloo (or auto) with --device " + device);
  if (m != "auto" && m != "gloo" && m != "nccl")
    throw std::invalid_argument("--dist: '" + m + "' is not one of auto, off, gloo, nccl");
  if (env.world_size <= 1) return s;  // one process: nothing to connect
  if (m == "gloo")
    s.backend = Backend::gloo;
  else if (m == "nccl")
    s.backend = Backend::nccl;
  else
    s.backend = cuda ? Backend::nccl : Backend::gloo;
  return s;
}

std::string fnv1a_hex(const std::string& bytes) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64-bit offset basis and prime
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void set_command_line(int argc, const char* const* argv) {
  g_command_line.clear();
  for (int i = 1; i < argc; ++i) {
    if (i > 1) g_command_line.push_back('\0');
    g_command_line += argv[i];
  }
}

const std::string& command_line() { return g_command_line; }

const std::string& rank_label() { return g_rank_label; }

void set_rank_label(const std::string& label) { g_rank_label = label; }

std::vector<int> balance_by_cost(const std::vector<double>& costs, int world_size) {
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<size_t>(std::max(world_size, 1)), 0.0);
  std::vector<int> owner(costs.size(), 0);
  for (size_t i : order) {
    const auto least = std::min_element(load.begin(), load.end());  // first minimum: the lowest rank
    owner[i] = static_cast<int>(least - load.begin());
    *least += costs[i];
  }
  return owner;
}

std::pair<int64_t, int64_t> contiguous_share(int64_t n, int rank, int world_size) {
  const int64_t w = std::max(world_size, 1), r = rank;
  const int64_t base = n / w, extra = n % w;
  const int64_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

}  // namespace fewstep::dist
