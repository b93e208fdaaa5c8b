// The launcher's environment and the --dist flags, resolved into one
// settings value. No torch: the torch-free CLI front end and tests use it.
//
// A launcher (torchrun, srun through a wrapper, a script) starts one
// process per rank and sets, as PyTorch's env:// rendezvous defines them:
//   RANK, WORLD_SIZE   the global rank and the number of processes
//   LOCAL_RANK         the rank within this node (picks the GPU, nothing else)
//   MASTER_ADDR, MASTER_PORT   where the TCPStore is served
//   TORCHELASTIC_USE_AGENT_STORE=True   torchrun's agent serves the store on
//                      MASTER_PORT: every rank connects as a client, keys go
//                      under TORCHELASTIC_RUN_ID and TORCHELASTIC_RESTART_COUNT
// Work and seeds are always assigned by RANK, never by LOCAL_RANK.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fewstep::dist {

/// One-line error of the distributed layer (bad environment, unreachable
/// store, a rank that never arrived or stopped, arguments that differ).
struct DistError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The process-group backend.
enum class Backend { off, gloo, nccl };

/// What the launcher set. Absent variables keep these defaults (one process).
struct LaunchEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;         ///< TORCHELASTIC_USE_AGENT_STORE == "True"
  std::string run_id = "none";      ///< TORCHELASTIC_RUN_ID
  std::string restart_count = "0";  ///< TORCHELASTIC_RESTART_COUNT
  std::string socket_ifname;        ///< GLOO_SOCKET_IFNAME (the interface Gloo binds), "" = by address
};

/// Reads the variables through `getenv` (std::getenv by default; tests pass
/// a map). Throws DistError naming the variable when RANK, WORLD_SIZE,
/// LOCAL_RANK or MASTER_PORT is not an integer in range (WORLD_SIZE >= 1,
/// 0 <= RANK < WORLD_SIZE, 0 < MASTER_PORT < 65536).
LaunchEnv read_launch_env(const std::function<const char*(const char*)>& getenv = {});

/// The --dist flags as the user gave them.
struct DistFlags {
  std::string mode = "auto";  ///< auto | off | gloo | nccl
  double timeout_s = 300;     ///< --dist-timeout, seconds (> 0)
};

/// Everything a Group needs to connect, or backend == off for one process.
struct DistSettings {
  Backend backend = Backend::off;
  LaunchEnv env;
  double timeout_s = 300;
  bool active() const { return backend != Backend::off; }
};

/// --dist auto: on when WORLD_SIZE > 1, Gloo for a CPU device and NCCL for
/// a CUDA one; off: one process even under a launcher (every rank then runs
/// the whole command alone). gloo/nccl with WORLD_SIZE 1 run as one process.
/// Throws std::invalid_argument naming --dist or --dist-timeout for an
/// unknown mode, a non-positive timeout, or nccl with a CPU device.
DistSettings resolve_dist(const DistFlags& flags, const LaunchEnv& env, const std::string& device);

/// 64-bit FNV-1a of the bytes (Fowler, Noll & Vo), as 16 hex digits: the
/// request hash that ranks compare at start-up, and the sweep's unit names.
std::string fnv1a_hex(const std::string& bytes);

/// The command line after the program name, joined by NUL bytes: what every
/// rank must share. main() records it once (set_command_line).
void set_command_line(int argc, const char* const* argv);
const std::string& command_line();

/// "rank R: " once this process has joined a distributed group, else "":
/// the CLI starts its error lines with it. Set by connect_group.
const std::string& rank_label();
void set_rank_label(const std::string& label);

/// Cost-balanced assignment (longest processing time first, Graham 1969):
/// items sorted by cost, descending (ties: lower index first), each given to
/// the rank with the least cost so far (ties: lower rank). Deterministic, so
/// every rank computes the same plan. Returns the rank of each item.
std::vector<int> balance_by_cost(const std::vector<double>& costs, int world_size);

/// The contiguous share [begin, end) of `n` items that `rank` takes when n
/// items are split into `world_size` parts whose sizes differ by at most one
/// (the first n % world_size ranks take one more). Empty when n < world_size
/// for the ranks past n.
std::pair<int64_t, int64_t> contiguous_share(int64_t n, int rank, int world_size);

}  // namespace fewstep::dist
