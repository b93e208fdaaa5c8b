// fewstep fused CPU kernels: GroupNorm (+ shift, + SiLU); see norm_cpu.h.
//
// Per group (Wu & He 2018, eq. 1-2), with v = x + shift[c]:
//   pass 1  μ  = Σ v / n                      (n = channels per group · spatial)
//   pass 2  σ² = Σ (v − μ)² / n               (around the mean: no cancellation)
//   pass 3  out = act(x·a[c] + b[c]),  a[c] = w[c]/√(σ² + eps),
//                                     b[c] = bias[c] − (μ − shift[c])·a[c]
// Passes 1-2 read, pass 3 reads and writes: one write of the output
// instead of GroupNorm's, the add's and SiLU's three. A work item's data
// (a group, or a channels-last chunk) is small enough to stay in L1/L2
// between the passes for the UNets fewstep runs.
#include "kernels/cpu/norm_cpu.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/vec_math.h"

namespace fewstep::cpu {
namespace {

using vec::Bf16;
using vec::kLanes;
using vec::Vec16;

/// Vectors summed in float before the partial sum joins a double.
constexpr int64_t kBlockVectors = 64;

/// Σ (p[i] − m) and Σ (p[i] − m)² over one contiguous row of n elements;
/// each in float over blocks of kBlockVectors vectors, in double across.
template <typename T, bool kSquares>
double row_sum(const T* p, int64_t n, float m) {
  double total = 0.0;
  int64_t i = 0;
  while (i < n) {
    Vec16 acc{};
    const int64_t block_end = std::min(n, i + kBlockVectors * kLanes);
    for (; i + kLanes <= block_end; i += kLanes) {
      const Vec16 d = vec::load(p + i) - m;
      acc += kSquares ? d * d : d;
    }
    if (i < block_end) {  // the tail of the row (zero-padded lanes add (0 − m), removed below)
      const int64_t rest = block_end - i;
      Vec16 d = vec::load_partial(p + i, rest) - m;
      for (int64_t l = rest; l < kLanes; ++l) d[l] = 0.0f;
      acc += kSquares ? d * d : d;
      i = block_end;
    }
    total += static_cast<double>(vec::hsum(acc));
  }
  return total;
}

/// out[i] = act(x[i]·a + b) over one contiguous row of n elements.
template <typename T, FusedActivation kAct>
void row_apply(const T* x, T* out, int64_t n, float a, float b) {
  auto f = [a, b](Vec16 v) {
    const Vec16 y = v * a + b;
    return kAct == FusedActivation::silu ? vec::silu(y) : y;
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) vec::store(out + i, f(vec::load(x + i)));
  if (i < n) vec::store_partial(out + i, f(vec::load_partial(x + i, n - i)), n - i);
}

/// out[c] = act(x[c]·a[c] + b[c]) over one channels-last row segment of n channels.
template <typename T, FusedActivation kAct>
void row_apply_channels(const T* x, T* out, int64_t n, const float* a, const float* b) {
  auto f = [](Vec16 v, Vec16 av, Vec16 bv) {
    const Vec16 y = v * av + bv;
    return kAct == FusedActivation::silu ? vec::silu(y) : y;
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) vec::store(out + i, f(vec::load(x + i), vec::load(a + i), vec::load(b + i)));
  if (i < n) {
    const int64_t rest = n - i;
    vec::store_partial(
        out + i, f(vec::load_partial(x + i, rest), vec::load_partial(a + i, rest), vec::load_partial(b + i, rest)),
        rest);
  }
}

float channel_shift(const GroupNormParams& p, int64_t n, int64_t c) {
  return p.shift != nullptr ? p.shift[n * p.channels + c] : 0.0f;
}

/// a[c], b[c] of pass 3 for channels [c0, c0 + count) of one group.
void affine(const GroupNormParams& p, int64_t n, int64_t c0, int64_t count, double mean, double var, float* a,
            float* b) {
  const double rstd = 1.0 / std::sqrt(var + static_cast<double>(p.eps));
  for (int64_t j = 0; j < count; ++j) {
    const int64_t c = c0 + j;
    const double scale = rstd * (p.weight != nullptr ? p.weight[c] : 1.0f);
    a[j] = static_cast<float>(scale);
    b[j] = static_cast<float>((p.bias != nullptr ? p.bias[c] : 0.0f) - (mean - channel_shift(p, n, c)) * scale);
  }
}

/// One group of a channels-first call: channels_per_group rows of `spatial`.
template <typename T, FusedActivation kAct>
void group_channels_first(const GroupNormParams& p, int64_t item, std::vector<float>& scratch) {
  const int64_t cpg = p.channels / p.groups;
  const int64_t n = item / p.groups;
  const int64_t c0 = (item % p.groups) * cpg;
  const int64_t offset = (n * p.channels + c0) * p.spatial;
  const T* x = static_cast<const T*>(p.x) + offset;
  T* out = static_cast<T*>(p.out) + offset;
  const double count = static_cast<double>(cpg * p.spatial);
  double sum = 0.0;
  for (int64_t j = 0; j < cpg; ++j) {
    sum += row_sum<T, false>(x + j * p.spatial, p.spatial, 0.0f) +
           static_cast<double>(p.spatial) * channel_shift(p, n, c0 + j);
  }
  const double mean = sum / count;
  double m2 = 0.0;
  for (int64_t j = 0; j < cpg; ++j) {
    const auto centre = static_cast<float>(mean - channel_shift(p, n, c0 + j));
    m2 += row_sum<T, true>(x + j * p.spatial, p.spatial, centre);
  }
  scratch.resize(2 * cpg);
  float* a = scratch.data();
  float* b = a + cpg;
  affine(p, n, c0, cpg, mean, m2 / count, a, b);
  for (int64_t j = 0; j < cpg; ++j) row_apply<T, kAct>(x + j * p.spatial, out + j * p.spatial, p.spatial, a[j], b[j]);
}

int64_t chunk_channels(const GroupNormParams& p) {
  const int64_t cpg = p.channels / p.groups;
  const int64_t unit = std::lcm(cpg, kLanes);  // whole groups and whole vectors
  const int64_t chunk = unit * ((kGroupNormChannelsPerItem + unit - 1) / unit);
  return chunk >= p.channels ? p.channels : chunk;
}

/// One chunk of whole groups of a channels-last call: `spatial` rows,
/// each a segment of `width` contiguous channels at a stride of `channels`.
template <typename T, FusedActivation kAct>
void chunk_channels_last(const GroupNormParams& p, int64_t item, std::vector<float>& scratch) {
  const int64_t cpg = p.channels / p.groups;
  const int64_t chunk = chunk_channels(p);
  const int64_t chunks = (p.channels + chunk - 1) / chunk;
  const int64_t n = item / chunks;
  const int64_t c0 = (item % chunks) * chunk;
  const int64_t width = std::min(chunk, p.channels - c0);
  const int64_t groups = width / cpg;
  const int64_t stride = p.channels;
  const T* x = static_cast<const T*>(p.x) + n * p.spatial * stride + c0;
  T* out = static_cast<T*>(p.out) + n * p.spatial * stride + c0;
  const int64_t padded = (width + kLanes - 1) / kLanes * kLanes;
  scratch.assign(4 * padded, 0.0f);
  float* partial = scratch.data();   // float sums of one block of rows, per channel
  float* centre = partial + padded;  // pass 2: μ_g − shift[c]
  float* a = centre + padded;
  float* b = a + padded;
  std::vector<double> total(static_cast<size_t>(width));

  // Passes 1 and 2: per-channel sums over the rows, float within blocks of
  // kBlockVectors rows, double across blocks.
  auto channel_sums = [&](bool squares) {
    std::fill(total.begin(), total.end(), 0.0);
    for (int64_t s0 = 0; s0 < p.spatial; s0 += kBlockVectors) {
      std::fill_n(partial, padded, 0.0f);
      for (int64_t s = s0; s < std::min(p.spatial, s0 + kBlockVectors); ++s) {
        const T* row = x + s * stride;
        for (int64_t c = 0; c < width; c += kLanes) {
          const int64_t lanes = std::min(kLanes, width - c);
          const Vec16 v = lanes == kLanes ? vec::load(row + c) : vec::load_partial(row + c, lanes);
          const Vec16 d = squares ? v - vec::load(centre + c) : v;
          vec::store(partial + c, vec::load(partial + c) + (squares ? d * d : d));
        }
      }
      for (int64_t c = 0; c < width; ++c) total[c] += static_cast<double>(partial[c]);
    }
  };
  channel_sums(false);
  std::vector<double> mean(static_cast<size_t>(groups));
  const double count = static_cast<double>(cpg * p.spatial);
  for (int64_t g = 0; g < groups; ++g) {
    double sum = 0.0;
    for (int64_t j = g * cpg; j < (g + 1) * cpg; ++j) {
      sum += total[j] + static_cast<double>(p.spatial) * channel_shift(p, n, c0 + j);
    }
    mean[g] = sum / count;
    for (int64_t j = g * cpg; j < (g + 1) * cpg; ++j) {
      centre[j] = static_cast<float>(mean[g] - channel_shift(p, n, c0 + j));
    }
  }
  channel_sums(true);  // zero-padded lanes past `width` read centre = 0 and add 0
  for (int64_t g = 0; g < groups; ++g) {
    double m2 = 0.0;
    for (int64_t j = g * cpg; j < (g + 1) * cpg; ++j) m2 += total[j];
    affine(p, n, c0 + g * cpg, cpg, mean[g], m2 / count, a + g * cpg, b + g * cpg);
  }
  for (int64_t s = 0; s < p.spatial; ++s) row_apply_channels<T, kAct>(x + s * stride, out + s * stride, width, a, b);
}

template <typename T, FusedActivation kAct>
void run_items(const GroupNormParams& p, int64_t begin, int64_t end, std::vector<float>& scratch) {
  for (int64_t item = begin; item < end; ++item) {
    if (p.channels_last) {
      chunk_channels_last<T, kAct>(p, item, scratch);
    } else {
      group_channels_first<T, kAct>(p, item, scratch);
    }
  }
}

/// Compiled once per x86-64 ISA level and picked at load time; `flatten`
/// inlines the templates above into each clone.
FEWSTEP_ISA_CLONES void run_clone(
    const GroupNormParams& p, int64_t begin, int64_t end) {
  std::vector<float> scratch;
  const bool silu = p.activation == FusedActivation::silu;
  if (p.dtype == FusedDtype::bf16) {
    silu ? run_items<Bf16, FusedActivation::silu>(p, begin, end, scratch)
         : run_items<Bf16, FusedActivation::none>(p, begin, end, scratch);
  } else {
    silu ? run_items<float, FusedActivation::silu>(p, begin, end, scratch)
         : run_items<float, FusedActivation::none>(p, begin, end, scratch);
  }
}

}  // namespace

int64_t group_norm_work_items(const GroupNormParams& p) {
  if (!p.channels_last) return p.batch * p.groups;
  const int64_t chunk = chunk_channels(p);
  return p.batch * ((p.channels + chunk - 1) / chunk);
}

void group_norm_forward(const GroupNormParams& p, int64_t item_begin, int64_t item_end) {
  run_clone(p, item_begin, item_end);
}

}  // namespace fewstep::cpu
