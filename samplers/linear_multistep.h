// fewstep sampler layer: Adams–Bashforth weights shared by the linear
// multistep samplers (pndm, plms, ipndm, ipndm_v, lms) (internal).
#pragma once

#include "samplers/sampler.h"

#include <deque>
#include <functional>
#include <vector>

namespace fewstep::detail {

/// Adams–Bashforth weights for equal steps, newest derivative first
/// (Hairer, Nørsett & Wanner, "Solving Ordinary Differential Equations I",
/// §III.1, Table 1.1): order 1: 1; 2: (3, -1)/2; 3: (23, -16, 5)/12;
/// 4: (55, -59, 37, -9)/24. x_{n+1} = x_n + h·Σ w_j·f_{n-j}. Throws
/// std::invalid_argument outside orders 1..4.
std::vector<double> adams_bashforth_weights(int order);

/// Variable-step Adams–Bashforth weights: w_j = ∫_a^b ℓ_j(u) du / (b - a)
/// with ℓ_j the Lagrange basis polynomial through `nodes` (nodes[0] = a, the
/// newest, then older ones), so that x(b) ≈ x(a) + (b - a)·Σ w_j·f(nodes[j])
/// integrates the interpolating polynomial of f exactly (k-diffusion's
/// linear_multistep_coeff, diffusers' LMSDiscreteScheduler). Computed with
/// 4-point Gauss–Legendre quadrature, exact for the basis' degree ≤ 3.
/// nodes: 1..4 distinct values.
std::vector<double> lagrange_weights(const std::vector<double>& nodes, double a, double b);

/// Σ_j w[j]·d[j]; d holds at least w.size() tensors, newest first.
at::Tensor weighted_sum(const std::vector<double>& w, const std::deque<at::Tensor>& d);

/// Weights (newest first) of one step from τ_i = taus[0] to tau_next, given
/// the history's τ values taus[0..order-1] (newest first).
using MultistepWeights = std::function<std::vector<double>(const std::vector<double>& taus, double tau_next)>;

/// A linear multistep run on the probability-flow ODE in Karras' coordinates
/// (common.h, ode_scale): y = x/c, τ = σ/c, d = (x - c·x0)/σ = dy/dτ, and
///   y_{i+1} = y_i + (τ_{i+1} - τ_i)·Σ_j w_j·d_{i-j},
/// with the order min(max_order, i + 1) and w from `weights`. With
/// `jump_to_x0`, a step to σ = 0 returns the denoiser's x0 (the limit of the
/// update's first-order form there); otherwise it is integrated like any
/// other. One NFE per step.
at::Tensor run_sigma_multistep(SamplerContext& ctx, at::Tensor x, int max_order, bool jump_to_x0,
                               const MultistepWeights& weights);

}  // namespace fewstep::detail
