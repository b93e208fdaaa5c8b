// fewstep fused CPU kernels: GELU and GEGLU over rows. Torch-free: it sees
// only GeluParams.
#pragma once

#include <cstdint>

#include "kernels/fused_params.h"

namespace fewstep::cpu {

/// Computes rows [row_begin, row_end) of `params` (validated by the
/// caller): GELU element-wise, or GEGLU value · gelu(gate) (see
/// GeluParams). Disjoint ranges may run concurrently. In place is allowed
/// for the element-wise form. Accuracy: GELU's normal CDF has an absolute
/// error ≤ 1.5e-7 before float32 rounding (vec_math.h), as LibTorch's.
void gelu_forward(const GeluParams& params, int64_t row_begin, int64_t row_end);

}  // namespace fewstep::cpu
