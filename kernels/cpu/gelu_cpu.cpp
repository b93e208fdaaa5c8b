// fewstep fused CPU kernels: GELU and GEGLU (see gelu_cpu.h). One pass:
// GEGLU reads a row's value and gate halves and writes the product, where
// chunk + gelu + mul write the gelu of the gate and then the product.
#include "kernels/cpu/gelu_cpu.h"

#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/vec_math.h"

namespace fewstep::cpu {
namespace {

using vec::Bf16;
using vec::kLanes;
using vec::Vec16;

template <typename T, bool kGated, GeluApproximation kApprox>
void rows(const GeluParams& p, int64_t begin, int64_t end) {
  auto f = [](Vec16 value, Vec16 gate) {
    const Vec16 g = kApprox == GeluApproximation::tanh ? vec::gelu_tanh(gate) : vec::gelu(gate);
    return kGated ? value * g : g;
  };
  const int64_t n = p.cols;
  const int64_t gate_offset = kGated ? n : 0;
  for (int64_t r = begin; r < end; ++r) {
    const T* x = static_cast<const T*>(p.x) + r * p.x_row_stride;
    T* out = static_cast<T*>(p.out) + r * p.out_row_stride;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) vec::store(out + i, f(vec::load(x + i), vec::load(x + gate_offset + i)));
    if (i < n) {
      const int64_t rest = n - i;
      vec::store_partial(out + i, f(vec::load_partial(x + i, rest), vec::load_partial(x + gate_offset + i, rest)),
                         rest);
    }
  }
}

template <typename T, bool kGated>
void rows_for(const GeluParams& p, int64_t begin, int64_t end) {
  p.approximate == GeluApproximation::tanh ? rows<T, kGated, GeluApproximation::tanh>(p, begin, end)
                                           : rows<T, kGated, GeluApproximation::none>(p, begin, end);
}

/// Compiled once per x86-64 ISA level and picked at load time; `flatten`
/// inlines the templates into each clone.
FEWSTEP_ISA_CLONES void run_clone(
    const GeluParams& p, int64_t begin, int64_t end) {
  if (p.dtype == FusedDtype::bf16) {
    p.gated ? rows_for<Bf16, true>(p, begin, end) : rows_for<Bf16, false>(p, begin, end);
  } else {
    p.gated ? rows_for<float, true>(p, begin, end) : rows_for<float, false>(p, begin, end);
  }
}

}  // namespace

void gelu_forward(const GeluParams& params, int64_t row_begin, int64_t row_end) {
  run_clone(params, row_begin, row_end);
}

}  // namespace fewstep::cpu
