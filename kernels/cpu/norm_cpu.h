// fewstep fused CPU kernels: GroupNorm with its neighbours (a per-channel
// shift before, SiLU after) in one kernel. Torch-free: it sees only
// GroupNormParams.
#pragma once

#include <cstdint>

#include "kernels/fused_params.h"

namespace fewstep::cpu {

/// Channels per work item of a channels-last call: at least this many,
/// whole groups, and a multiple of 16 (whole vectors) where the group size
/// allows; all channels when that is not fewer. A work item reads rows of
/// that many contiguous elements; several items let threads share even a
/// batch of one, and keep an item's rows in cache between its passes.
inline constexpr int64_t kGroupNormChannelsPerItem = 64;

/// Number of independent work items of a call. Channels first: batch ·
/// groups (one group's channels × spatial block each). Channels last:
/// batch · ⌈channels / chunk⌉ (chunk: see kGroupNormChannelsPerItem).
int64_t group_norm_work_items(const GroupNormParams& params);

/// Computes work items [item_begin, item_end) of `params` (validated by the
/// caller). Disjoint ranges may run concurrently. Statistics are summed in
/// float over blocks of at most 256 elements per lane and in double across
/// blocks and channels, with the variance taken around the mean (two
/// passes over the group, which stays in cache), so the result's error is
/// a few float32 roundings regardless of the group's size or mean.
void group_norm_forward(const GroupNormParams& params, int64_t item_begin, int64_t item_end);

}  // namespace fewstep::cpu
