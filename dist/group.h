// A group of fewstep processes: the one interface through which the rest of
// fewstep talks to other ranks. Only dist/ knows that PyTorch's c10d is
// underneath (TCPStore for the rendezvous, ProcessGroupGloo for CPU
// tensors and bytes, ProcessGroupNCCL for CUDA tensors in CUDA builds).
//
// Every collective must be called by every rank in the same order (as with
// any process group). Failures are one-line DistErrors that name the rank
// at fault where it can be known: a rank that never arrived, one that
// stopped (no heartbeat), one that reported an error, different command
// lines.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/env.h"

namespace fewstep::dist {

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool distributed() const { return world_size() > 1; }
  /// "one process" or "gloo, 2 ranks" (for messages).
  virtual std::string describe() const = 0;

  /// Every rank's bytes, in rank order, on every rank.
  virtual std::vector<std::vector<uint8_t>> allgather_bytes(const std::vector<uint8_t>& mine,
                                                            const std::string& what) = 0;
  /// Every rank's bytes, in rank order, on rank 0; an empty list elsewhere.
  virtual std::vector<std::vector<uint8_t>> gather_bytes(const std::vector<uint8_t>& mine, const std::string& what) = 0;
  /// Rank 0's bytes on every rank (the argument is ignored elsewhere).
  virtual std::vector<uint8_t> broadcast_bytes(const std::vector<uint8_t>& from_rank0, const std::string& what) = 0;
  /// The ranks' rows concatenated along dim 0 in rank order: rank r gives
  /// `local` with counts[r] rows (counts known to every rank; 0 allowed,
  /// then `local` may be any tensor with the right trailing shape). Every
  /// rank's local has the same trailing shape and dtype. CUDA tensors go
  /// through NCCL when the group has it, else through the CPU.
  virtual at::Tensor allgather_rows(const at::Tensor& local, const std::vector<int64_t>& counts,
                                    const std::string& what) = 0;
  /// Sends `mine` to `peer` and returns the peer's tensor, which has the
  /// same shape and dtype (point-to-point, lower rank sends first).
  virtual at::Tensor exchange(const at::Tensor& mine, int peer, const std::string& what) = 0;

  /// Waits with no time limit until every rank has reached a point named
  /// `name` (called in the same order on every rank): the wait ends early,
  /// with a DistError, only when a rank stops (its heartbeat is silent for
  /// min(--dist-timeout, 10 s)) or reports a failure. Use it before a
  /// collective that follows unevenly long work.
  virtual void wait_all(const std::string& name) = 0;
  /// Throws DistError when another rank has stopped or reported a failure.
  virtual void check_peers() = 0;
  /// Records this rank's failure for the other ranks ("rank 1 failed:
  /// <message>"). Never throws.
  virtual void report_failure(const std::string& message) noexcept = 0;
  /// Orderly end of a successful run: waits until every rank is done (so
  /// the store's host leaves last), then disconnects.
  virtual void finish() = 0;
  /// Milliseconds this rank spent in collectives (not in wait_all).
  double collective_ms() const { return collective_ms_; }

 protected:
  double collective_ms_ = 0;
};

/// A group of one process: collectives return this rank's own data.
std::unique_ptr<Group> single_process_group();

/// Connects the ranks described by `s` (s.active()): creates or joins the
/// TCPStore (rank 0 hosts it, or every rank joins torchrun's agent store,
/// keys under fewstep/<run id>/<restart count>), waits up to s.timeout_s
/// for every rank to arrive, compares the ranks' `request` hashes, starts
/// the heartbeat, and creates the backends (Gloo always, for bytes and CPU
/// tensors; NCCL too for s.backend == nccl, on cuda:LOCAL_RANK). Throws
/// DistError with one line: the store cannot be reached or served, ranks
/// missing after the timeout (named), a rank's request differs (named), NCCL
/// asked for in a build without it.
std::unique_ptr<Group> connect_group(const DistSettings& s, const std::string& request);

/// Whether this build has ProcessGroupNCCL (a CUDA build with NCCL's headers).
bool nccl_available();

}  // namespace fewstep::dist
