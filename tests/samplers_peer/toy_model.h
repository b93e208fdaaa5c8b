// The deterministic toy "network" shared with the Python oracle
// (tools/oracles/diffusers_harness.py, toy_model): a closed-form function of
// the sample and the timestep, smooth, cheap and coupling neighbouring
// elements, so samplers are exercised on something that is neither linear nor
// elementwise.
#pragma once

#include <ATen/ATen.h>

namespace fewstep::peer {

/// out[r,k] = tanh(a_r·x[r,k] + 0.3·sin(0.7·k + 2·τ_r)) + 0.1·(1-τ_r)·x[r,(k+1) mod n],
/// a_r = 0.8 + 0.5·cos(3·τ_r), τ_r = timestep[r]/1000.
/// x: [R, C, H, W] (any float dtype; computed in float64), flattened per row
/// to n = C·H·W elements with flat index k; timestep: [R] model timesteps.
/// Returns the raw model output [R, C, H, W] in x's dtype.
inline at::Tensor toy_model(const at::Tensor& x, const at::Tensor& timestep) {
  const int64_t rows = x.size(0);
  const at::Tensor flat = x.reshape({rows, -1}).to(at::kDouble);
  const int64_t n = flat.size(1);
  const at::Tensor tau = (timestep.to(at::kDouble) / 1000.0).reshape({rows, 1});  // [R, 1]
  const at::Tensor k = at::arange(n, at::TensorOptions().dtype(at::kDouble)).reshape({1, n});
  const at::Tensor a = 0.8 + 0.5 * at::cos(3.0 * tau);      // [R, 1]
  const at::Tensor b = 0.3 * at::sin(0.7 * k + 2.0 * tau);  // [R, n]
  const at::Tensor neighbour = at::roll(flat, {-1}, {1});   // neighbour[r,k] = flat[r,(k+1) mod n]
  const at::Tensor out = at::tanh(a * flat + b) + (0.1 * (1.0 - tau)) * neighbour;
  return out.reshape(x.sizes()).to(x.scalar_type());
}

}  // namespace fewstep::peer
