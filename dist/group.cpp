// dist::Group on c10d (see group.h): TCPStore rendezvous, heartbeats, and
// the collectives over ProcessGroupGloo (and ProcessGroupNCCL for CUDA
// tensors).
#include "dist/group.h"

#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "dist/backends.h"

namespace fewstep::dist {
namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;
constexpr Ms kHeartbeat{1000};  // heartbeat period
constexpr Ms kPoll{50};         // store polling period while waiting

std::string first_line(const std::exception& e) {
  std::string s = e.what();
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", s);
  return buf;
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

std::string ranks_text(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

/// c10d logs retries and timeouts on stderr; fewstep reports failures in
/// one line itself. TORCH_CPP_LOG_LEVEL, when set, keeps its meaning.
void quiet_c10d_logs() {
  if (std::getenv("TORCH_CPP_LOG_LEVEL") == nullptr) FLAGS_caffe2_log_level = c10::GLOG_FATAL;
}

at::Tensor bytes_tensor(const std::vector<uint8_t>& b, int64_t padded) {
  at::Tensor t = at::zeros({std::max<int64_t>(padded, 1)}, at::kByte);
  if (!b.empty()) std::memcpy(t.data_ptr<uint8_t>(), b.data(), b.size());
  return t;
}

std::vector<uint8_t> tensor_bytes(const at::Tensor& t, int64_t n) {
  const uint8_t* p = t.data_ptr<uint8_t>();
  return {p, p + n};
}

class SingleGroup final : public Group {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string describe() const override { return "one process"; }
  std::vector<std::vector<uint8_t>> allgather_bytes(const std::vector<uint8_t>& mine, const std::string&) override {
    return {mine};
  }
  std::vector<std::vector<uint8_t>> gather_bytes(const std::vector<uint8_t>& mine, const std::string&) override {
    return {mine};
  }
  std::vector<uint8_t> broadcast_bytes(const std::vector<uint8_t>& b, const std::string&) override { return b; }
  at::Tensor allgather_rows(const at::Tensor& local, const std::vector<int64_t>& counts, const std::string&) override {
    return local.narrow(0, 0, counts.at(0));
  }
  at::Tensor exchange(const at::Tensor&, int peer, const std::string& what) override {
    throw DistError("--dist: " + what + ": no rank " + std::to_string(peer) + " in a single process");
  }
  void wait_all(const std::string&) override {}
  void check_peers() override {}
  void report_failure(const std::string&) noexcept override {}
  void finish() override {}
};

class C10dGroup final : public Group {
 public:
  C10dGroup(const DistSettings& s, const std::string& request) : s_(s), env_(s.env) {
    quiet_c10d_logs();
    timeout_ = Ms(static_cast<int64_t>(std::llround(s.timeout_s * 1000.0)));
    stale_ = std::min(timeout_, Ms(10000));
    where_ = env_.master_addr + ":" + std::to_string(env_.master_port);
    host_ = !env_.agent_store && env_.rank == 0;
    connect_store();
    arrive(request);
    start_heartbeat();
    try {
      gloo_ = detail::make_gloo(c10::make_intrusive<c10d::PrefixStore>("gloo", store_), env_, timeout_);
      if (s.backend == Backend::nccl)
        nccl_ = detail::make_nccl(c10::make_intrusive<c10d::PrefixStore>("nccl", store_), env_, timeout_);
    } catch (const DistError&) {
      stop_heartbeat();
      throw;
    } catch (const std::exception& e) {
      stop_heartbeat();
      throw DistError("--dist: cannot create the process group: " + first_line(e));
    }
  }

  ~C10dGroup() override {
    stop_heartbeat();
    if (finished_) return;
    // A failed run: tell the others this rank is gone, let the store's host
    // stay a moment so that they can read why, and leave the backends
    // unjoined (a worker thread may still wait on a stopped peer).
    try {
      store_->set(key("exit", env_.rank), bytes_of("failed"));
      if (host_) wait_for_exits(std::min(stale_, Ms(5000)));
    } catch (...) {
    }
    if (gloo_) gloo_.release();
    if (nccl_) nccl_.release();
  }

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  std::string describe() const override {
    return std::string(nccl_ ? "nccl" : "gloo") + ", " + std::to_string(env_.world_size) + " ranks";
  }

  std::vector<std::vector<uint8_t>> allgather_bytes(const std::vector<uint8_t>& mine,
                                                    const std::string& what) override {
    return timed(what, [&] {
      const std::vector<int64_t> sizes = allgather_sizes(static_cast<int64_t>(mine.size()));
      const int64_t pad = *std::max_element(sizes.begin(), sizes.end());
      std::vector<at::Tensor> in{bytes_tensor(mine, pad)};
      std::vector<std::vector<at::Tensor>> out(1);
      for (int r = 0; r < world_size(); ++r) out[0].push_back(at::empty_like(in[0]));
      gloo_->allgather(out, in)->wait();
      std::vector<std::vector<uint8_t>> res;
      for (int r = 0; r < world_size(); ++r) res.push_back(tensor_bytes(out[0][r], sizes[r]));
      return res;
    });
  }

  std::vector<std::vector<uint8_t>> gather_bytes(const std::vector<uint8_t>& mine, const std::string& what) override {
    return timed(what, [&] {
      const std::vector<int64_t> sizes = allgather_sizes(static_cast<int64_t>(mine.size()));
      const int64_t pad = *std::max_element(sizes.begin(), sizes.end());
      std::vector<at::Tensor> in{bytes_tensor(mine, pad)};
      std::vector<std::vector<at::Tensor>> out;
      if (rank() == 0) {
        out.resize(1);
        for (int r = 0; r < world_size(); ++r) out[0].push_back(at::empty_like(in[0]));
      }
      c10d::GatherOptions opts;
      opts.rootRank = 0;
      gloo_->gather(out, in, opts)->wait();
      std::vector<std::vector<uint8_t>> res;
      if (rank() == 0)
        for (int r = 0; r < world_size(); ++r) res.push_back(tensor_bytes(out[0][r], sizes[r]));
      return res;
    });
  }

  std::vector<uint8_t> broadcast_bytes(const std::vector<uint8_t>& from_rank0, const std::string& what) override {
    return timed(what, [&] {
      std::vector<at::Tensor> size{at::full({1}, static_cast<int64_t>(from_rank0.size()), at::kLong)};
      gloo_->broadcast(size)->wait();
      const int64_t n = size[0].item<int64_t>();
      std::vector<at::Tensor> data{rank() == 0 ? bytes_tensor(from_rank0, n)
                                               : at::zeros({std::max<int64_t>(n, 1)}, at::kByte)};
      gloo_->broadcast(data)->wait();
      return tensor_bytes(data[0], n);
    });
  }

  at::Tensor allgather_rows(const at::Tensor& local, const std::vector<int64_t>& counts,
                            const std::string& what) override {
    return timed(what, [&] {
      TORCH_CHECK(static_cast<int>(counts.size()) == world_size(), "allgather_rows: one count per rank");
      const int64_t pad = std::max<int64_t>(*std::max_element(counts.begin(), counts.end()), 1);
      const bool on_nccl = local.is_cuda() && nccl_;
      c10d::Backend& b = on_nccl ? *nccl_ : *gloo_;
      std::vector<int64_t> shape = local.sizes().vec();
      shape[0] = pad;
      const at::Device dev = on_nccl ? local.device() : at::Device(at::kCPU);
      at::Tensor padded = at::zeros(shape, local.options().device(dev));
      const int64_t mine = counts[static_cast<size_t>(rank())];
      if (mine > 0) padded.narrow(0, 0, mine).copy_(local.narrow(0, 0, mine));
      std::vector<at::Tensor> in{padded};
      std::vector<std::vector<at::Tensor>> out(1);
      for (int r = 0; r < world_size(); ++r) out[0].push_back(at::empty_like(padded));
      b.allgather(out, in)->wait();
      std::vector<at::Tensor> parts;
      for (int r = 0; r < world_size(); ++r)
        if (counts[static_cast<size_t>(r)] > 0) parts.push_back(out[0][r].narrow(0, 0, counts[static_cast<size_t>(r)]));
      return at::cat(parts).to(local.device());
    });
  }

  at::Tensor exchange(const at::Tensor& mine, int peer, const std::string& what) override {
    return timed(what, [&] {
      const bool on_nccl = mine.is_cuda() && nccl_;
      c10d::Backend& b = on_nccl ? *nccl_ : *gloo_;
      std::vector<at::Tensor> out{on_nccl ? mine.contiguous() : mine.cpu().contiguous()};
      std::vector<at::Tensor> in{at::empty_like(out[0])};
      // Lower rank sends first, so that NCCL's blocking send/recv pair up.
      if (rank() < peer) {
        b.send(out, peer, 0)->wait();
        b.recv(in, peer, 0)->wait();
      } else {
        b.recv(in, peer, 0)->wait();
        b.send(out, peer, 0)->wait();
      }
      return in[0].to(mine.device());
    });
  }

  void wait_all(const std::string& name) override {
    const std::string point = "reached/" + std::to_string(wait_count_++) + "/" + name;
    store_->set(point + "/" + std::to_string(rank()), bytes_of("1"));
    std::vector<std::string> keys;
    for (int r = 0; r < world_size(); ++r) keys.push_back(point + "/" + std::to_string(r));
    while (!store_->check(keys)) {
      check_peers();
      std::this_thread::sleep_for(kPoll);
    }
  }

  void check_peers() override {
    if (!failed_.load()) return;
    std::lock_guard<std::mutex> lock(mu_);
    throw DistError(failure_);
  }

  void report_failure(const std::string& message) noexcept override {
    try {
      store_->set(key("failed", rank()), bytes_of(message));
      store_->add("failures", 1);
    } catch (...) {
    }
  }

  void finish() override {
    stop_heartbeat();
    store_->set(key("exit", rank()), bytes_of("ok"));
    if (host_) wait_for_exits(Ms::max());
    finished_ = true;
    nccl_.reset();
    gloo_.reset();
  }

 private:
  static std::string key(const char* what, int r) { return std::string(what) + "/" + std::to_string(r); }

  void connect_store() {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(env_.master_port);
    o.isServer = host_;
    o.numWorkers = static_cast<size_t>(env_.world_size);
    o.waitWorkers = false;
    o.timeout = timeout_;
    c10::intrusive_ptr<c10d::TCPStore> tcp;
    try {
      tcp = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, o);
    } catch (const std::exception& e) {
      if (host_)
        throw DistError("--dist: rank 0 cannot serve the rendezvous store on " + where_ +
                        " (MASTER_ADDR, MASTER_PORT): " + first_line(e));
      throw DistError("--dist: cannot reach the rendezvous store at " + where_ + " (MASTER_ADDR, MASTER_PORT) within " +
                      seconds(s_.timeout_s) + " s (--dist-timeout): is " +
                      (env_.agent_store ? "torchrun's agent" : "rank 0") + " running there?");
    }
    // Keys under the run id and restart count, as PyTorch's elastic agent scopes them.
    prefix_ = "fewstep/" + env_.run_id + "/attempt_" + env_.restart_count;
    tcp_ = tcp;
    store_ = c10::make_intrusive<c10d::PrefixStore>(prefix_, tcp);
  }

  /// Every rank writes its request hash and waits for the others'. The
  /// store's host decides a failure first, writes it as the `verdict` for
  /// the ranks still waiting, and stays until they have read it (at most
  /// 5 s), so that none of them loses the store instead of reading why.
  void arrive(const std::string& request) {
    try {
      arrive_or_throw(request);
    } catch (const DistError&) {
      throw;
    } catch (const std::exception& e) {
      throw DistError("--dist: lost the rendezvous store at " + where_ + " while the ranks met (" +
                      (env_.agent_store ? std::string("torchrun's agent") : std::string("rank 0")) +
                      " hosts it): " + first_line(e));
    }
  }

  void arrive_or_throw(const std::string& request) {
    const std::string hash = fnv1a_hex(request);
    store_->add(key("hb", rank()), 1);
    store_->add("failures", 0);
    store_->set(key("arrived", rank()), bytes_of(hash));
    std::vector<std::string> keys;
    for (int r = 0; r < world_size(); ++r) keys.push_back(key("arrived", r));
    const auto deadline = Clock::now() + timeout_;
    std::string verdict;
    while (!store_->check(keys)) {
      if (store_->check({"verdict"})) {
        const auto v = store_->get("verdict");
        store_->set(key("checked", rank()), bytes_of("1"));
        throw DistError(std::string(v.begin(), v.end()));
      }
      if (Clock::now() >= deadline) {
        std::vector<int> missing;
        for (int r = 0; r < world_size(); ++r)
          if (!store_->check({keys[static_cast<size_t>(r)]})) missing.push_back(r);
        verdict = "--dist: " + ranks_text(missing) + " of WORLD_SIZE=" + std::to_string(world_size()) +
                  " did not arrive within " + seconds(s_.timeout_s) + " s (--dist-timeout) at the store " + where_ +
                  "; were all ranks started with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE?";
        break;
      }
      std::this_thread::sleep_for(kPoll);
    }
    if (verdict.empty()) {
      const std::vector<std::vector<uint8_t>> hashes = store_->multiGet(keys);
      for (int r = 1; r < world_size() && verdict.empty(); ++r)
        if (hashes[static_cast<size_t>(r)] != hashes[0])
          verdict =
              "--dist: rank " + std::to_string(r) + " was started with other arguments than rank 0 (request hash " +
              std::string(hashes[static_cast<size_t>(r)].begin(), hashes[static_cast<size_t>(r)].end()) + " against " +
              std::string(hashes[0].begin(), hashes[0].end()) + "); every rank must run the same command";
    }
    store_->set(key("checked", rank()), bytes_of("1"));
    if (host_) {
      if (!verdict.empty()) store_->set("verdict", bytes_of(verdict));
      // Stay until every rank that arrived has read the hashes or the verdict.
      const auto until = Clock::now() + Ms(5000);
      for (int r = 0; r < world_size(); ++r)
        while (store_->check({key("arrived", r)}) && !store_->check({key("checked", r)}) && Clock::now() < until)
          std::this_thread::sleep_for(kPoll);
    }
    if (!verdict.empty()) throw DistError(verdict);
  }

  void start_heartbeat() {
    hb_store_ = c10::make_intrusive<c10d::PrefixStore>(prefix_, tcp_->clone());
    heartbeat_ = std::thread([this] { heartbeat_loop(); });
  }

  void stop_heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (heartbeat_.joinable()) heartbeat_.join();
  }

  void flag(const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_.load()) return;
    failure_ = message;
    failed_.store(true);
  }

  /// Beats every kHeartbeat and watches the peers: a rank whose count has not
  /// moved for stale_ (and that has not exited) stopped; a rank that
  /// reported a failure failed.
  void heartbeat_loop() {
    const int w = world_size();
    std::vector<std::string> keys;
    for (int r = 0; r < w; ++r) keys.push_back(key("hb", r));
    keys.push_back("failures");
    std::vector<std::vector<uint8_t>> last(static_cast<size_t>(w));
    std::vector<Clock::time_point> moved(static_cast<size_t>(w), Clock::now());
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      try {
        hb_store_->add(key("hb", rank()), 1);
        const auto values = hb_store_->multiGet(keys);
        const auto now = Clock::now();
        if (values.back() != bytes_of("0")) {
          for (int r = 0; r < w; ++r)
            if (r != rank() && hb_store_->check({key("failed", r)})) {
              const auto msg = hb_store_->get(key("failed", r));
              flag("--dist: rank " + std::to_string(r) + " failed: " + std::string(msg.begin(), msg.end()));
              break;
            }
        }
        for (int r = 0; r < w; ++r) {
          if (r == rank()) continue;
          if (values[static_cast<size_t>(r)] != last[static_cast<size_t>(r)]) {
            last[static_cast<size_t>(r)] = values[static_cast<size_t>(r)];
            moved[static_cast<size_t>(r)] = now;
          } else if (now - moved[static_cast<size_t>(r)] > stale_ && !hb_store_->check({key("exit", r)})) {
            flag("--dist: rank " + std::to_string(r) + " stopped (no heartbeat for " +
                 seconds(std::chrono::duration<double>(stale_).count()) + " s)");
          }
        }
      } catch (const std::exception& e) {
        flag(host_ ? "--dist: the rendezvous store failed: " + first_line(e)
                   : "--dist: lost the rendezvous store at " + where_ + " (" +
                         (env_.agent_store ? std::string("torchrun's agent") : std::string("rank 0")) +
                         " hosts it): " + (env_.agent_store ? "the launcher stopped" : "rank 0 stopped"));
        lock.lock();
        break;
      }
      lock.lock();
      cv_.wait_for(lock, kHeartbeat, [this] { return stop_; });
    }
  }

  /// The store's host waits until every other rank has left (or stopped).
  void wait_for_exits(Ms limit) {
    const auto start = Clock::now();
    for (int r = 0; r < world_size(); ++r) {
      if (r == rank()) continue;
      while (!store_->check({key("exit", r)})) {
        if (Clock::now() - start > limit) return;
        std::this_thread::sleep_for(kPoll);
        if (failed_.load()) return;  // a stopped rank never exits
      }
    }
  }

  std::vector<int64_t> allgather_sizes(int64_t mine) {
    std::vector<at::Tensor> in{at::full({1}, mine, at::kLong)};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world_size(); ++r) out[0].push_back(at::empty_like(in[0]));
    gloo_->allgather(out, in)->wait();
    std::vector<int64_t> sizes;
    for (const at::Tensor& t : out[0]) sizes.push_back(t.item<int64_t>());
    return sizes;
  }

  /// Runs one collective, adds its time to collective_ms_, and turns a
  /// failure into a DistError that names the rank at fault when the
  /// heartbeat can tell within stale_ + 2 s.
  template <typename F>
  auto timed(const std::string& what, F&& body) -> decltype(body()) {
    check_peers();
    const auto t0 = Clock::now();
    try {
      auto r = body();
      collective_ms_ += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      return r;
    } catch (const DistError&) {
      throw;
    } catch (const std::exception& e) {
      const auto deadline = Clock::now() + stale_ + Ms(2000);
      while (Clock::now() < deadline && !failed_.load()) std::this_thread::sleep_for(Ms(100));
      if (failed_.load()) {
        std::lock_guard<std::mutex> lock(mu_);
        throw DistError(failure_ + ", during " + what);
      }
      throw DistError("--dist: " + what + " failed: " + first_line(e));
    }
  }

  DistSettings s_;
  LaunchEnv env_;
  Ms timeout_{300000}, stale_{10000};
  std::string where_, prefix_;
  bool host_ = false, finished_ = false;
  c10::intrusive_ptr<c10d::TCPStore> tcp_;
  c10::intrusive_ptr<c10d::Store> store_, hb_store_;
  c10::intrusive_ptr<c10d::Backend> gloo_, nccl_;
  int64_t wait_count_ = 0;
  std::thread heartbeat_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> failed_{false};
  std::string failure_;
};

}  // namespace

std::unique_ptr<Group> single_process_group() { return std::make_unique<SingleGroup>(); }

std::unique_ptr<Group> connect_group(const DistSettings& s, const std::string& request) {
  if (!s.active()) return single_process_group();
  set_rank_label("rank " + std::to_string(s.env.rank) + ": ");
  return std::make_unique<C10dGroup>(s, request);
}

bool nccl_available() { return detail::have_nccl(); }

}  // namespace fewstep::dist
