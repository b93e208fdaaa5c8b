// fewstep fused CPU kernels: the torch-free descriptions of one call each.
//
// The kernels (kernels/cpu/norm_cpu.h, kernels/cpu/elementwise_cpu.h) take
// only these structs: raw pointers, element counts and flags. The op wrapper
// (kernels/fused_op.cpp) is the single place that checks tensors, converts
// the small per-channel vectors to float32 and fills them.
#pragma once

#include <cstdint>

namespace fewstep {

/// Element type of the large tensors (activations); per-channel vectors are
/// always float32. bf16 values are computed in float32 and rounded to
/// nearest-even on store.
enum class FusedDtype { f32, bf16 };

/// The activation applied after a normalisation.
enum class FusedActivation { none, silu };

/// GroupNorm (Wu & He 2018, eq. 1-2), optionally preceded by a per-(batch,
/// channel) shift and followed by SiLU (Elfwing et al. 2018):
///   v[n,c,s]   = x[n,c,s] + shift[n,c]                      (shift optional)
///   μ, σ²      = mean and biased variance of v over the channels of c's
///                group and all spatial positions s, per n
///   out[n,c,s] = act((v − μ)/√(σ² + eps) · weight[c] + bias[c])
/// This is the LDM ResBlock's `GroupNorm(h + emb_proj[:, :, None, None])`
/// followed by SiLU, in one read-mostly pass over the group.
///
/// Layout: x and out are contiguous [batch, channels, spatial] (channels
/// first, NCHW) or [batch, spatial, channels] (channels last, NHWC), spatial
/// = the product of all dims after the channel dim (1 for [N, C] inputs).
/// channels % groups == 0.
struct GroupNormParams {
  const void* x = nullptr;
  void* out = nullptr;            ///< may equal x (in place)
  const float* weight = nullptr;  ///< [channels], or null for 1
  const float* bias = nullptr;    ///< [channels], or null for 0
  const float* shift = nullptr;   ///< [batch, channels] contiguous, or null for 0
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t groups = 1;
  int64_t spatial = 1;
  bool channels_last = false;
  float eps = 1e-5f;
  FusedActivation activation = FusedActivation::none;
  FusedDtype dtype = FusedDtype::f32;
};

/// GELU (Hendrycks & Gimpel 2016): x·Φ(x) with the exact normal CDF
/// (`approximate = "none"`) or the tanh approximation (`"tanh"`).
enum class GeluApproximation { none, tanh };

/// Element-wise GELU, or GEGLU (Shazeer 2020, eq. 6) over row pairs:
///   gelu:  out[r, j] = gelu(x[r, j])                                j < cols
///   geglu: out[r, j] = x[r, j] · gelu(x[r, cols + j])               j < cols
/// (GEGLU's input row holds [value, gate], 2·cols wide, as diffusers'
/// `proj(x).chunk(2, dim=-1)` splits it). Rows are `x_row_stride` and
/// `out_row_stride` elements apart; columns are contiguous.
struct GeluParams {
  const void* x = nullptr;
  void* out = nullptr;  ///< may equal x for the element-wise form (in place)
  int64_t rows = 0;
  int64_t cols = 0;  ///< output columns
  int64_t x_row_stride = 0;
  int64_t out_row_stride = 0;
  bool gated = false;  ///< GEGLU instead of GELU
  GeluApproximation approximate = GeluApproximation::none;
  FusedDtype dtype = FusedDtype::f32;
};

}  // namespace fewstep
