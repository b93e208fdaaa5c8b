// ProcessGroupGloo for dist::Group (see backends.h).
//
// ProcessGroupGloo.hpp declares nothing unless USE_C10D_GLOO is defined,
// and it includes Gloo's headers, which the torch wheel does not ship:
// Debian's libgloo-dev provides them (headers only; the symbols come from
// the wheel's libtorch_cpu, whose Gloo is newer). The Gloo types this file
// touches, and why a header/library mismatch cannot bite (dist/README.md):
//   - std::shared_ptr<gloo::transport::Device>: an opaque handle that c10d
//     creates and consumes (createDeviceFor*, Options::devices); this file
//     never calls a Device method or reads its layout.
//   - ProcessGroupGloo and ProcessGroupGloo::Options: c10d classes whose
//     members hold Gloo types only behind shared_ptr/unique_ptr, so their
//     sizes do not depend on Gloo's headers; their key functions (and
//     vtables) live in libtorch_cpu.
// GlooStore (whose virtual set differs between Gloo versions, see
// GLOO_STORE_HAS_STORE_V2) is never instantiated here.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "dist/backends.h"

#ifndef USE_C10D_GLOO
#error "dist/ needs USE_C10D_GLOO (set by dist/CMakeLists.txt)"
#endif

namespace fewstep::dist::detail {

c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                            std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  const std::string& a = env.master_addr;
  const bool loopback = a.rfind("127.", 0) == 0 || a == "localhost" || a == "::1";
  if (!env.socket_ifname.empty())
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(env.socket_ifname));
  else if (loopback)
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  opts->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, opts);
}

}  // namespace fewstep::dist::detail
