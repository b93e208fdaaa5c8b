// fewstep attention, CUDA: tile sizes and shared-memory layout per head-dim group.
#pragma once

#include <cstdint>

namespace fewstep::cuda {

/// Head dims are served by a few compiled groups; a call with head dim d runs
/// the smallest group ≥ d and skips the padded 16-column chunks at run time.
/// SD 1.x's 40, 80 and 160 and SDXL's 64 each have a group of their own
/// (40 rounds up to the mma's k = 16 granularity: 48).
inline constexpr int kHeadDimGroups[] = {48, 64, 80, 128, 160, 256};

/// The group that serves head dim d (d ≤ 256).
constexpr int head_dim_group(int64_t d) {
  for (int g : kHeadDimGroups) {
    if (d <= g) return g;
  }
  return 0;
}

/// Query rows per block (16 per warp), keys per inner step and warps.
struct TileConfig {
  int block_m;
  int block_n;
  int warps;
};

/// The one place that chooses the CUDA tiles. Shared memory is
/// (block_m + 4·block_n)·(group + 8)·2 bytes (Q, and K and V double-buffered):
/// 43, 55, 68, 104, 108 and 101 KB for the six groups, within the 163 KB an
/// sm_80 block may use.
/// Register use per thread is dominated by the O accumulator (group/2 floats)
/// plus the score tile (block_n/2 floats).
constexpr TileConfig tile_config(int group) {
  switch (group) {
    case 48:
      return {128, 64, 8};
    case 64:
      return {128, 64, 8};
    case 80:
      return {128, 64, 8};
    case 128:
      return {128, 64, 8};
    case 160:
      return {64, 64, 4};
    default:
      return {64, 32, 4};  // 256
  }
}

/// Compile-time sizes of the kernel for one head-dim group.
template <int kGroup>
struct KernelTraits {
  static constexpr TileConfig kTiles = tile_config(kGroup);
  static constexpr int kHeadDim = kGroup;  // padded head dim, a multiple of 16
  static constexpr int kBlockM = kTiles.block_m;
  static constexpr int kBlockN = kTiles.block_n;
  static constexpr int kWarps = kTiles.warps;
  static constexpr int kThreads = 32 * kWarps;
  /// Shared-memory row stride in elements: 16 bytes of padding make the 8
  /// row addresses of each ldmatrix phase fall into distinct banks.
  static constexpr int kSmemStride = kHeadDim + 8;
  static constexpr int kSmemElems = (kBlockM + 4 * kBlockN) * kSmemStride;
  static constexpr int kSmemBytes = kSmemElems * 2;

  static_assert(kHeadDim % 16 == 0, "head-dim groups are multiples of the mma k=16");
  static_assert(kBlockM == 16 * kWarps, "each warp owns 16 query rows");
  static_assert(kBlockN % 16 == 0, "keys come in 16-key mma chunks");
};

}  // namespace fewstep::cuda
