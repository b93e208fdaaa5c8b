// ProcessGroupNCCL for dist::Group (see backends.h). Compiled with
// USE_C10D_NCCL in CUDA builds, with NCCL's nccl.h from the wheel's
// nvidia/nccl/include (dist/CMakeLists.txt); without it, make_nccl says
// that this build has no NCCL. NCCL needs one GPU per rank: the rank uses
// cuda:LOCAL_RANK (the only use of LOCAL_RANK in fewstep).
#include "dist/backends.h"

#ifdef FEWSTEP_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace fewstep::dist::detail {

#ifdef FEWSTEP_WITH_NCCL

bool have_nccl() { return true; }

c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                            std::chrono::milliseconds timeout) {
  const int devices = static_cast<int>(c10::cuda::device_count());
  if (env.local_rank >= devices)
    throw DistError("--dist nccl: LOCAL_RANK=" + std::to_string(env.local_rank) + " but this node has " +
                    std::to_string(devices) + " CUDA device(s); NCCL needs one GPU per rank");
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.local_rank));
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, opts);
}

#else

bool have_nccl() { return false; }

c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>&, const LaunchEnv&,
                                            std::chrono::milliseconds) {
  throw DistError(
      "--dist nccl: this fewstep was built without NCCL (a CUDA build with NCCL's headers enables it); use --dist "
      "gloo");
}

#endif

}  // namespace fewstep::dist::detail
