// The torch-free CPU attention kernel (kernels/cpu/flash_attention_cpu.h)
// against a plain float64 loop, through its params struct only: no LibTorch,
// so the sanitizer builds run it too. Sizes that do not fit the tiles (head
// dims that are not multiples of 16, sequence lengths around block_q and
// block_k) and strided layouts are included on purpose; every output buffer
// carries guard elements that the kernel must leave alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/flash_attention_cpu.h"

namespace {

using fewstep::AttentionParams;

constexpr float kGuard = 12345.0f;

/// Seed per test (an FNV-style hash of its name; FEWSTEP_TEST_SEED overrides
/// it), printed so that a failure can be reproduced.
uint64_t test_seed() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name = std::string(info->test_suite_name()) + "." + info->name();
  uint64_t seed = 20261206;
  for (unsigned char ch : name) seed = seed * 1099511628211ull + ch;
  if (const char* env = std::getenv("FEWSTEP_TEST_SEED"); env && *env) seed = std::strtoull(env, nullptr, 10);
  std::cout << "[ seed     ] " << name << ": " << seed << " (FEWSTEP_TEST_SEED=" << seed << " reproduces)\n";
  return seed;
}

/// One attention call's shapes and layout. Tensors are stored as
/// [batch, seq, heads, head_dim] when `interleaved` (the layout of a
/// transposed [B, S, H, d] projection, rows strided by heads·head_dim + pad),
/// else as [batch, heads, seq, head_dim] with rows of head_dim + pad.
struct Case {
  int64_t batch, heads, seq_q, seq_k, head_dim;
  bool interleaved = false;
  int64_t pad = 0;  ///< extra elements after every row (guards when in the output)
  std::string name() const {
    std::ostringstream s;
    s << "B" << batch << "H" << heads << "Sq" << seq_q << "Sk" << seq_k << "d" << head_dim
      << (interleaved ? "_bshd" : "_bhsd") << "_pad" << pad;
    return s.str();
  }
};

/// A [batch, heads, seq, head_dim] operand in a case's layout.
struct Operand {
  int64_t batch_stride, head_stride, row_stride;
  std::vector<float> data;
  Operand(const Case& c, int64_t seq) {
    if (c.interleaved) {
      row_stride = c.heads * c.head_dim + c.pad;
      head_stride = c.head_dim;
      batch_stride = seq * row_stride;
    } else {
      row_stride = c.head_dim + c.pad;
      head_stride = seq * row_stride;
      batch_stride = c.heads * head_stride;
    }
    data.assign(static_cast<size_t>(c.batch * batch_stride), kGuard);
  }
  size_t at(int64_t b, int64_t h, int64_t i, int64_t t) const {
    return static_cast<size_t>(b * batch_stride + h * head_stride + i * row_stride + t);
  }
};

/// softmax(scale · q kᵀ) v (Vaswani et al. 2017, eq. 1) in float64, the
/// score row materialised: [batch, heads, seq_q, head_dim] row-major.
std::vector<double> reference(const Case& c, const Operand& q, const Operand& k, const Operand& v, double scale) {
  std::vector<double> out(static_cast<size_t>(c.batch * c.heads * c.seq_q * c.head_dim));
  std::vector<double> s(static_cast<size_t>(c.seq_k));
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.seq_q; ++i) {
        double m = -INFINITY;
        for (int64_t j = 0; j < c.seq_k; ++j) {
          double dot = 0;
          for (int64_t t = 0; t < c.head_dim; ++t) dot += double(q.data[q.at(b, h, i, t)]) * k.data[k.at(b, h, j, t)];
          s[j] = scale * dot;
          m = std::max(m, s[j]);
        }
        double l = 0;
        for (int64_t j = 0; j < c.seq_k; ++j) l += (s[j] = std::exp(s[j] - m));
        for (int64_t t = 0; t < c.head_dim; ++t) {
          double o = 0;
          for (int64_t j = 0; j < c.seq_k; ++j) o += s[j] * v.data[v.at(b, h, j, t)];
          out[static_cast<size_t>(((b * c.heads + h) * c.seq_q + i) * c.head_dim + t)] = o / l;
        }
      }
  return out;
}

/// The kernel's error bound for one call, derived from its algorithm (see
/// flash_attention_cpu.cpp) with u = 2^-24:
///  - a score c·q·k (c = scale·log2 e) is a two-level sum over head_dim in
///    chunks of 32, so its error is at most (32 + ⌈d/32⌉ + 2)·u·c·Σ|q_t k_t|;
///  - an error δ in the base-2 exponent moves each softmax weight by a
///    factor 2^δ, the output (a convex combination of v's rows) by at most
///    2·ln2·δ·max|v| (numerator and denominator);
///  - the exponential's polynomial (< 1e-8 relative), the row sums and P·V
///    (two-level sums over seq_k in chunks of 32), one rescaling by α per key
///    tile of 128 and the final division add (2 + 2·(32 + ⌈seq_k/32⌉) +
///    ⌈seq_k/128⌉)·u·max|v|.
/// The bound is doubled; a wrong tile, stride or scale errs by ~1e-1·max|v|.
double error_bound(const Case& c, const Operand& q, const Operand& k, double scale, double max_v) {
  const double u = std::ldexp(1.0, -24);
  double max_abs_dot = 0;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.seq_q; ++i)
        for (int64_t j = 0; j < c.seq_k; ++j) {
          double dot = 0;
          for (int64_t t = 0; t < c.head_dim; ++t)
            dot += std::abs(double(q.data[q.at(b, h, i, t)]) * k.data[k.at(b, h, j, t)]);
          max_abs_dot = std::max(max_abs_dot, dot);
        }
  const double chunks_d = std::ceil(c.head_dim / 32.0), chunks_k = std::ceil(c.seq_k / 32.0);
  const double score_error = (32 + chunks_d + 2) * u * scale * M_LOG2E * max_abs_dot;
  const double rest = (2 + 2 * (32 + chunks_k) + std::ceil(c.seq_k / 128.0)) * u + 1e-8;
  return 2 * max_v * (2 * M_LN2 * score_error + rest);
}

/// Runs the kernel on random q, k, v in [-1, 1) (v scaled by `v_scale`),
/// over `splits` disjoint ranges of work items, and checks it against the
/// float64 loop, element by element, and every guard element untouched.
void check_case(const Case& c, uint64_t seed, int splits = 1, float v_scale = 1.0f, float qk_scale = 1.0f) {
  SCOPED_TRACE(c.name());
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> unif(-1.0f, 1.0f);
  Operand q(c, c.seq_q), k(c, c.seq_k), v(c, c.seq_k), out(c, c.seq_q);
  double max_v = 0;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t t = 0; t < c.head_dim; ++t) {
        for (int64_t i = 0; i < c.seq_q; ++i) q.data[q.at(b, h, i, t)] = qk_scale * unif(gen);
        for (int64_t j = 0; j < c.seq_k; ++j) {
          k.data[k.at(b, h, j, t)] = qk_scale * unif(gen);
          v.data[v.at(b, h, j, t)] = v_scale * unif(gen);
          max_v = std::max(max_v, std::abs(double(v.data[v.at(b, h, j, t)])));
        }
      }
  const double scale = 1.0 / std::sqrt(double(c.head_dim));

  AttentionParams p;
  p.q = q.data.data(), p.k = k.data.data(), p.v = v.data.data(), p.out = out.data.data();
  p.batch = c.batch, p.heads = c.heads, p.seq_q = c.seq_q, p.seq_k = c.seq_k, p.head_dim = c.head_dim;
  p.q_batch_stride = q.batch_stride, p.q_head_stride = q.head_stride, p.q_row_stride = q.row_stride;
  p.k_batch_stride = k.batch_stride, p.k_head_stride = k.head_stride, p.k_row_stride = k.row_stride;
  p.v_batch_stride = v.batch_stride, p.v_head_stride = v.head_stride, p.v_row_stride = v.row_stride;
  p.out_batch_stride = out.batch_stride, p.out_head_stride = out.head_stride, p.out_row_stride = out.row_stride;
  p.scale = static_cast<float>(scale);
  const int64_t items = fewstep::cpu::flash_attention_work_items(p);
  const int64_t block_q = fewstep::cpu::cpu_tiles(c.head_dim).block_q;
  ASSERT_EQ(items, c.batch * c.heads * ((c.seq_q + block_q - 1) / block_q));
  for (int s = 0; s < splits; ++s)
    fewstep::cpu::flash_attention_forward(p, items * s / splits, items * (s + 1) / splits);

  const std::vector<double> ref = reference(c, q, k, v, double(p.scale));
  const double bound = error_bound(c, q, k, double(p.scale), max_v);
  double worst = 0;
  int64_t bad = 0;
  std::vector<bool> written(out.data.size(), false);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.seq_q; ++i)
        for (int64_t t = 0; t < c.head_dim; ++t) {
          const size_t o = out.at(b, h, i, t);
          written[o] = true;
          const double err =
              std::abs(out.data[o] - ref[static_cast<size_t>(((b * c.heads + h) * c.seq_q + i) * c.head_dim + t)]);
          if (!(err <= bound) && bad++ < 3)
            ADD_FAILURE() << "out[" << b << "," << h << "," << i << "," << t << "] = " << out.data[o] << ", error "
                          << err << " > bound " << bound;
          worst = std::max(worst, err);
        }
  EXPECT_EQ(bad, 0) << "worst error " << worst << ", bound " << bound;
  int64_t guards_changed = 0;
  for (size_t o = 0; o < out.data.size(); ++o) guards_changed += !written[o] && out.data[o] != kGuard;
  EXPECT_EQ(guards_changed, 0) << "elements outside the output rows were written";
}

TEST(AttentionCpuKernel, MatchesFloat64AcrossTileEdges) {
  const uint64_t seed = test_seed();
  // block_q is 64 (d <= 128) or 32, block_k 128: lengths 1 below, at and 1 above.
  for (const Case& c :
       {Case{1, 1, 1, 1, 8}, Case{2, 3, 63, 127, 40}, Case{1, 2, 64, 128, 64}, Case{1, 1, 65, 129, 72},
        Case{1, 1, 97, 257, 16}, Case{2, 1, 33, 200, 160}, Case{1, 1, 31, 96, 256}, Case{1, 2, 5, 300, 128}})
    check_case(c, seed);
}

TEST(AttentionCpuKernel, StridedLayoutsLeaveGuardsAlone) {
  const uint64_t seed = test_seed();
  for (const Case& c :
       {Case{2, 3, 70, 90, 24, true, 0}, Case{1, 4, 17, 33, 48, true, 5}, Case{2, 2, 65, 130, 80, false, 7}})
    check_case(c, seed);
}

TEST(AttentionCpuKernel, WorkItemRangesCompose) {
  // Disjoint ranges of work items, in any split, give the whole call.
  const uint64_t seed = test_seed();
  check_case(Case{2, 3, 130, 70, 32, false, 3}, seed, /*splits=*/7);
  check_case(Case{1, 5, 40, 50, 200, true, 1}, seed, /*splits=*/3);
}

TEST(AttentionCpuKernel, LargeScoresAndValues) {
  // Peaked softmax (scores of several nats) and values of 1e3: the online
  // rescaling must hold the same relative accuracy.
  const uint64_t seed = test_seed();
  check_case(Case{1, 2, 50, 300, 64}, seed, 1, /*v_scale=*/1000.0f, /*qk_scale=*/4.0f);
}

}  // namespace
