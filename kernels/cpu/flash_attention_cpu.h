// fewstep attention, CPU kernel: FlashAttention-2's forward pass (Dao 2023,
// Algorithm 1) in fp32 with plain, vectorisable loops. Torch-free: it sees
// only AttentionParams.
#pragma once

#include <cstdint>

#include "kernels/attention_params.h"

namespace fewstep::cpu {

/// Tile sizes of the CPU kernel: query rows per work item and keys per inner
/// step. Memory per worker thread is O(block_q · block_k + (block_q + block_k)
/// · head_dim) floats, independent of the sequence lengths.
struct CpuTiles {
  int64_t block_q;
  int64_t block_k;
};

/// The one place that chooses the CPU tile sizes for a head dim.
constexpr CpuTiles cpu_tiles(int64_t head_dim) {
  // Keep the packed key/value tiles (block_k × head_dim floats each) within
  // a few hundred KB of L2 and the score tile within L1/L2.
  return head_dim <= 128 ? CpuTiles{64, 128} : CpuTiles{32, 128};
}

/// Number of independent work items of a call: batch · heads · ⌈seq_q / block_q⌉.
/// Each item owns block_q rows of `out` for one (batch, head).
int64_t flash_attention_work_items(const AttentionParams& params);

/// Computes work items [item_begin, item_end) of `params` (dtype f32 only;
/// the caller has validated the params). Disjoint ranges may run concurrently
/// on different threads. Allocates O(tile) scratch; never materialises the
/// seq_q × seq_k score matrix. Rows of `out` are overwritten, never read.
void flash_attention_forward(const AttentionParams& params, int64_t item_begin, int64_t item_end);

}  // namespace fewstep::cpu
