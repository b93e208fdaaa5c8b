// fewstep attention, CUDA: instantiations for the head-dim group 80.
#include "kernels/cuda/flash_fwd_launch.cuh"

namespace fewstep::cuda {

template cudaError_t run_flash_fwd<__half, 80>(const AttentionParams&, cudaStream_t);
template cudaError_t run_flash_fwd<__nv_bfloat16, 80>(const AttentionParams&, cudaStream_t);

}  // namespace fewstep::cuda
