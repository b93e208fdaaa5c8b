// c10d backends behind dist::Group (internal to dist/; not a public interface).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

#include "dist/env.h"

namespace fewstep::dist::detail {

/// ProcessGroupGloo over `store` on the interface GLOO_SOCKET_IFNAME names,
/// else on 127.0.0.1 when MASTER_ADDR is a loopback address, else on the
/// address this host's name resolves to (c10d's default device). Throws the
/// c10d error.
c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                            std::chrono::milliseconds timeout);

/// ProcessGroupNCCL on cuda:LOCAL_RANK (backend_nccl.cpp, CUDA builds with
/// NCCL's headers); elsewhere throws DistError saying the build lacks it.
c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                            std::chrono::milliseconds timeout);

bool have_nccl();

}  // namespace fewstep::dist::detail
