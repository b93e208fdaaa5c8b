// fewstep attention, CPU kernel (see flash_attention_cpu.h).
//
// Per work item (one (batch, head) and block_q query rows), for each tile of
// block_k keys (Dao 2023, Algorithm 1, lines 6-10):
//   S   = (c·Q_i) K_j^T                     (block_q × block_k), c = scale·log2(e)
//   m'  = max(m, rowmax(S))
//   P   = 2^(S − m'),   α = 2^(m − m')
//   l   = α·l + rowsum(P),  O = α·O + P V_j
// and finally out = O / l (line 12). Exponentials are base 2 with the log2(e)
// factor folded into the scale, which leaves softmax unchanged.
//
// Layout: the scores are held transposed, Sᵀ = K_j (c·Q_i)ᵀ [keys × query
// rows], so K_j is read in place (no transposition), Q_i is transposed once
// per work item, and the softmax's reductions over keys run down columns,
// vectorised over query rows. The matrix products are register-blocked
// loops over 16-float GCC/Clang vector types; everything else is plain loops
// the compiler vectorises. The block function is compiled once per x86-64
// ISA level (target_clones) and picked at load time.
#include "kernels/cpu/flash_attention_cpu.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/vec_math.h"

namespace fewstep::cpu {
namespace {

constexpr int64_t kRowBlock = 4;     // rows of A per micro-kernel call
constexpr int64_t kColBlock = 32;    // columns of B per micro-kernel call
constexpr int64_t kColAlign = 16;    // packed widths are multiples of this
constexpr int64_t kLanes = 16;       // width of the vertical max/sum reductions
constexpr int64_t kDepthChunk = 32;  // depth of the micro-kernel's inner sums

constexpr int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/// Sixteen floats; GCC/Clang vector extension, lowered to one zmm, two ymm or
/// four xmm registers depending on the clone's ISA.
typedef float Vec16 __attribute__((vector_size(64)));

// Passed by reference: by-value vector arguments change the ABI between clones.
[[gnu::always_inline]] inline void load16(Vec16& v, const float* p) { std::memcpy(&v, p, sizeof(v)); }

[[gnu::always_inline]] inline void store16(float* p, const Vec16& v) { std::memcpy(p, &v, sizeof(v)); }

/// C[MR × 16·NV] = A[MR × depth] · B[depth × 16·NV], with A[r][t] at
/// a[r·a_row + t·a_col] and row strides ldb, ldc. The accumulators stay in
/// vector registers. The depth is summed in chunks of kDepthChunk that are
/// then added up (two-level summation), so rounding error grows with
/// kDepthChunk + depth / kDepthChunk terms instead of depth (Higham 2002,
/// §4.2): at head dim 256 this matches the accuracy of LibTorch's own fp32
/// attention.
template <int64_t MR, int64_t NV>
[[gnu::always_inline]] inline void micro_gemm(const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                                              int64_t depth, float* c, int64_t ldc) {
  Vec16 acc[MR][NV];
  for (int64_t r = 0; r < MR; ++r) {
    for (int64_t u = 0; u < NV; ++u) acc[r][u] = Vec16{};
  }
  for (int64_t t0 = 0; t0 < depth; t0 += kDepthChunk) {
    Vec16 part[MR][NV];
    for (int64_t r = 0; r < MR; ++r) {
      for (int64_t u = 0; u < NV; ++u) part[r][u] = Vec16{};
    }
    const int64_t t1 = std::min(depth, t0 + kDepthChunk);
    for (int64_t t = t0; t < t1; ++t) {
      Vec16 b_t[NV];
      for (int64_t u = 0; u < NV; ++u) load16(b_t[u], b + t * ldb + 16 * u);
      for (int64_t r = 0; r < MR; ++r) {
        const float a_rt = a[r * a_row + t * a_col];
        for (int64_t u = 0; u < NV; ++u) part[r][u] += a_rt * b_t[u];
      }
    }
    for (int64_t r = 0; r < MR; ++r) {
      for (int64_t u = 0; u < NV; ++u) acc[r][u] += part[r][u];
    }
  }
  for (int64_t r = 0; r < MR; ++r) {
    for (int64_t u = 0; u < NV; ++u) store16(c + r * ldc + 16 * u, acc[r][u]);
  }
}

/// C[rows × cols] = A[rows × depth] · B[depth × cols] (A strided as in
/// micro_gemm), cols a multiple of kColAlign, tiled into micro-kernel calls.
[[gnu::always_inline]] inline void gemm(const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                                        int64_t depth, float* c, int64_t ldc, int64_t rows, int64_t cols) {
  auto row_block = [&]<int64_t MR>(int64_t r) {
    int64_t j = 0;
    for (; j + kColBlock <= cols; j += kColBlock) {
      micro_gemm<MR, kColBlock / 16>(a + r * a_row, a_row, a_col, b + j, ldb, depth, c + r * ldc + j, ldc);
    }
    for (; j < cols; j += kColAlign) {
      micro_gemm<MR, 1>(a + r * a_row, a_row, a_col, b + j, ldb, depth, c + r * ldc + j, ldc);
    }
  };
  int64_t r = 0;
  for (; r + kRowBlock <= rows; r += kRowBlock) row_block.template operator()<kRowBlock>(r);
  for (; r < rows; ++r) row_block.template operator()<1>(r);
}

/// 2^x in fp32 for x ≤ 0 (the only range softmax needs), vectorisable.
/// x = n + f with n = round(x), |f| ≤ 1/2; 2^f = e^(f·ln2) by its Taylor
/// series to degree 7 (remainder < 1e-8 relative for |f·ln2| ≤ 0.347), and 2^n
/// is built in the exponent bits. Returns 0 below 2^-126 (and for −∞).
[[gnu::always_inline]] inline float exp2_nonpositive(float x) {
  constexpr float kLn2 = 0.693147180559945309f;
  constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const float xc = x < -126.0f ? -126.0f : x;
  const float n = (xc + kRound) - kRound;
  const float poly = vec::exp_taylor7((xc - n) * kLn2);
  const float two_n = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return x < -126.0f ? 0.0f : poly * two_n;
}

/// Scratch of one worker, sized once per call of flash_attention_forward.
struct Scratch {
  std::vector<float> q_t;     // [head_dim × rows_pad]: (c·Q_i)ᵀ, zero columns past the rows
  std::vector<float> v_pack;  // [block_k × dim_pad]: V_j with zero-padded columns (head dim % 16 ≠ 0)
  std::vector<float> scores;  // [block_k × rows_pad]: Sᵀ, then Pᵀ in place
  std::vector<float> acc;     // [block_q × dim_pad]: O
  std::vector<float> pv;      // [block_q × dim_pad]: P V_j
  std::vector<float> row_max, row_sum, row_alpha, tile;  // [rows_pad]: m (base 2), l, α, a column reduction
};

/// One work item: rows [q0, q0 + rows) of one (batch, head).
FEWSTEP_ISA_CLONES void attend_block(const float* q, int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                                     int64_t v_stride, float* out, int64_t out_stride, int64_t rows, int64_t seq_k,
                                     int64_t head_dim, float scale_log2, int64_t block_k, Scratch& s) {
  const int64_t dim_pad = round_up(head_dim, kColAlign);
  const int64_t rows_pad = round_up(rows, kColAlign);
  float* acc = s.acc.data();
  float* row_max = s.row_max.data();
  float* row_sum = s.row_sum.data();
  float* row_alpha = s.row_alpha.data();
  float* tile = s.tile.data();
  std::fill_n(acc, rows * dim_pad, 0.0f);
  std::fill_n(row_max, rows_pad, -std::numeric_limits<float>::infinity());
  std::fill_n(row_sum, rows_pad, 0.0f);
  // (c·Q_i)ᵀ with c = scale·log2(e), so that scores come out in base-2 exponent units.
  float* q_t = s.q_t.data();
  for (int64_t c = 0; c < head_dim; ++c) {
    for (int64_t r = 0; r < rows_pad; ++r) q_t[c * rows_pad + r] = r < rows ? q[r * q_stride + c] * scale_log2 : 0.0f;
  }

  for (int64_t k0 = 0; k0 < seq_k; k0 += block_k) {
    const int64_t keys = std::min(block_k, seq_k - k0);
    const float* k_j = k + k0 * k_stride;
    // V_j as the B operand: in place when its rows are whole 16-float vectors.
    const float* v_j = v + k0 * v_stride;
    int64_t v_ld = v_stride;
    if (head_dim != dim_pad) {
      float* v_pack = s.v_pack.data();
      for (int64_t j = 0; j < keys; ++j) {
        std::copy_n(v_j + j * v_stride, head_dim, v_pack + j * dim_pad);
        std::fill_n(v_pack + j * dim_pad + head_dim, dim_pad - head_dim, 0.0f);
      }
      v_j = v_pack;
      v_ld = dim_pad;
    }

    // Sᵀ = K_j (c·Q_i)ᵀ (Algorithm 1, line 8).
    float* scores = s.scores.data();
    gemm(k_j, k_stride, 1, q_t, rows_pad, head_dim, scores, rows_pad, keys, rows_pad);

    // Online softmax (lines 9-10), down the columns of Sᵀ: new running max,
    // Pᵀ in place of Sᵀ, row sums (two-level, as in micro_gemm) and α.
    std::copy_n(row_max, rows_pad, tile);
    for (int64_t j = 0; j < keys; ++j) {
      const float* s_j = scores + j * rows_pad;
      for (int64_t r = 0; r < rows_pad; ++r) tile[r] = std::max(tile[r], s_j[r]);
    }
    for (int64_t r = 0; r < rows_pad; ++r) {
      row_alpha[r] = exp2_nonpositive(row_max[r] - tile[r]);
      row_max[r] = tile[r];
      row_sum[r] *= row_alpha[r];
    }
    for (int64_t j0 = 0; j0 < keys; j0 += kDepthChunk) {
      std::fill_n(tile, rows_pad, 0.0f);
      for (int64_t j = j0; j < std::min(keys, j0 + kDepthChunk); ++j) {
        float* p_j = scores + j * rows_pad;
        for (int64_t r = 0; r < rows_pad; ++r) {
          p_j[r] = exp2_nonpositive(p_j[r] - row_max[r]);
          tile[r] += p_j[r];
        }
      }
      for (int64_t r = 0; r < rows_pad; ++r) row_sum[r] += tile[r];
    }

    // O = α·O + P V_j (line 10), P read from Pᵀ. P V_j is summed on its own
    // before it joins O: two-level summation again.
    float* pv = s.pv.data();
    gemm(scores, 1, rows_pad, v_j, v_ld, keys, pv, dim_pad, rows, dim_pad);
    for (int64_t r = 0; r < rows; ++r) {
      float* o = acc + r * dim_pad;
      const float* pv_r = pv + r * dim_pad;
      for (int64_t c = 0; c < dim_pad; ++c) o[c] = row_alpha[r] * o[c] + pv_r[c];
    }
  }

  // out = O / l (line 12).
  for (int64_t r = 0; r < rows; ++r) {
    const float inv = 1.0f / row_sum[r];
    const float* o = acc + r * dim_pad;
    float* out_row = out + r * out_stride;
    for (int64_t c = 0; c < head_dim; ++c) out_row[c] = o[c] * inv;
  }
}

}  // namespace

int64_t flash_attention_work_items(const AttentionParams& p) {
  const int64_t block_q = cpu_tiles(p.head_dim).block_q;
  return p.batch * p.heads * ((p.seq_q + block_q - 1) / block_q);
}

void flash_attention_forward(const AttentionParams& p, int64_t item_begin, int64_t item_end) {
  const CpuTiles tiles = cpu_tiles(p.head_dim);
  const int64_t q_blocks = (p.seq_q + tiles.block_q - 1) / tiles.block_q;
  const int64_t dim_pad = round_up(p.head_dim, kColAlign);
  const int64_t rows_pad = round_up(tiles.block_q, kColAlign);
  Scratch s;
  s.q_t.resize(p.head_dim * rows_pad);
  s.v_pack.resize(tiles.block_k * dim_pad);
  s.scores.resize(tiles.block_k * rows_pad);
  s.acc.resize(tiles.block_q * dim_pad);
  s.pv.resize(tiles.block_q * dim_pad);
  for (auto* column : {&s.row_max, &s.row_sum, &s.row_alpha, &s.tile}) column->resize(rows_pad);

  const float scale_log2 = p.scale * static_cast<float>(M_LOG2E);
  const auto* q = static_cast<const float*>(p.q);
  const auto* k = static_cast<const float*>(p.k);
  const auto* v = static_cast<const float*>(p.v);
  auto* out = static_cast<float*>(p.out);
  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t q_block = item % q_blocks;
    const int64_t bh = item / q_blocks;
    const int64_t b = bh / p.heads;
    const int64_t h = bh % p.heads;
    const int64_t q0 = q_block * tiles.block_q;
    const int64_t rows = std::min(tiles.block_q, p.seq_q - q0);
    attend_block(q + b * p.q_batch_stride + h * p.q_head_stride + q0 * p.q_row_stride, p.q_row_stride,
                 k + b * p.k_batch_stride + h * p.k_head_stride, p.k_row_stride,
                 v + b * p.v_batch_stride + h * p.v_head_stride, p.v_row_stride,
                 out + b * p.out_batch_stride + h * p.out_head_stride + q0 * p.out_row_stride, p.out_row_stride, rows,
                 p.seq_k, p.head_dim, scale_log2, tiles.block_k, s);
  }
}

}  // namespace fewstep::cpu
