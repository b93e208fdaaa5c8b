// FLOP formulas (see flops.h).
#include "eval/flops.h"

#include <algorithm>

namespace fewstep {
namespace {

uint64_t product(std::vector<int64_t>::const_iterator b, std::vector<int64_t>::const_iterator e) {
  uint64_t p = 1;
  for (; b != e; ++b) p *= uint64_t(std::max<int64_t>(0, *b));
  return p;
}

}  // namespace

uint64_t matmul_flops(const std::string& name, const std::vector<std::vector<int64_t>>& shapes) {
  const bool batched = name == "aten::bmm" || name == "aten::baddbmm";
  const size_t rank = batched ? 3 : 2;
  for (size_t i = 0; i + 1 < shapes.size(); ++i) {
    const std::vector<int64_t>& a = shapes[i];
    const std::vector<int64_t>& b = shapes[i + 1];
    if (a.size() != rank || b.size() != rank || a[rank - 1] != b[rank - 2]) continue;
    if (batched && a[0] != b[0]) continue;
    // [.., n, k] · [.., k, m]: n·k·m multiply-adds per batch entry.
    return 2 * product(a.begin(), a.end()) * uint64_t(std::max<int64_t>(0, b[rank - 1]));
  }
  return 0;
}

uint64_t conv_flops(const std::vector<std::vector<int64_t>>& shapes, const std::vector<int64_t>& stride,
                    const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, bool transposed) {
  if (shapes.size() < 2) return 0;
  const std::vector<int64_t>& in = shapes[0];
  const std::vector<int64_t>& w = shapes[1];
  if (in.size() < 3 || w.size() != in.size()) return 0;
  const size_t dims = in.size() - 2;
  auto at = [](const std::vector<int64_t>& v, size_t d, int64_t fallback) {
    return v.empty() ? fallback : v[std::min(d, v.size() - 1)];
  };
  uint64_t positions = 1;  // output positions (input positions when transposed)
  for (size_t d = 0; d < dims; ++d) {
    if (transposed) {
      positions *= uint64_t(std::max<int64_t>(0, in[d + 2]));
      continue;
    }
    const int64_t s = at(stride, d, 1), p = at(padding, d, 0), dil = at(dilation, d, 1);
    if (s < 1) return 0;
    const int64_t out = (in[d + 2] + 2 * p - dil * (w[d + 2] - 1) - 1) / s + 1;
    positions *= uint64_t(std::max<int64_t>(0, out));
  }
  return 2 * uint64_t(std::max<int64_t>(0, in[0])) * positions * product(w.begin(), w.end());
}

uint64_t op_flops(const std::string& name, const std::vector<std::vector<int64_t>>& shapes) {
  if (name == "aten::mm" || name == "aten::addmm" || name == "aten::bmm" || name == "aten::baddbmm")
    return matmul_flops(name, shapes);
  // fewstep's kernels' range (the fewstep::attention op around it counts
  // nothing itself, so that the `attention` stage, which is that range,
  // gets the FLOPs whether or not the profiler saw the op's inputs);
  // LibTorch's SDPA and its backends (aten::_scaled_dot_product_flash_attention_for_cpu, ..._math, ...).
  if (name == "attention" || name.rfind("aten::scaled_dot_product_attention", 0) == 0 ||
      name.rfind("aten::_scaled_dot_product_", 0) == 0)
    return attention_flops(shapes);
  return 0;
}

uint64_t attention_flops(const std::vector<std::vector<int64_t>>& shapes) {
  for (size_t i = 0; i + 1 < shapes.size(); ++i) {
    const std::vector<int64_t>& q = shapes[i];
    const std::vector<int64_t>& k = shapes[i + 1];
    if (q.size() < 3 || k.size() != q.size() || k.back() != q.back() ||
        !std::equal(q.begin(), q.end() - 2, k.begin()) ||
        std::any_of(q.begin(), q.end(), [](int64_t s) { return s < 0; }))
      continue;
    // v, when recorded, must match k but for its last dim: this rejects a
    // leading [B, Lq, C] input paired with a 3-D q in cross-attention.
    if (i + 2 < shapes.size() && !shapes[i + 2].empty()) {
      const std::vector<int64_t>& v = shapes[i + 2];
      if (v.size() != k.size() || !std::equal(k.begin(), k.end() - 1, v.begin())) continue;
    }
    return 4 * product(q.begin(), q.end()) * uint64_t(std::max<int64_t>(0, k[k.size() - 2]));
  }
  return 0;
}

}  // namespace fewstep
