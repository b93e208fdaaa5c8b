// fewstep fused CPU kernels: the public C++ entry points of libfewstep_ops
// beside attention (kernels/attention.h).
//
// Ops (schemas in kernels/fused_op.cpp, TORCH_LIBRARY_FRAGMENT(fewstep)):
//   fewstep::group_norm(Tensor x, int num_groups, Tensor? weight, Tensor? bias, float eps, Tensor? shift=None) ->
//   Tensor fewstep::group_norm_silu(<the same arguments>) -> Tensor fewstep::gelu_(Tensor(a!) x, str
//   approximate="none") -> Tensor(a!) fewstep::geglu(Tensor x, str approximate="none") -> Tensor
// The CPU implementations run fewstep's torch-free kernels (kernels/cpu/)
// for float32 and bfloat16; every other device, dtype or layout runs the
// same computation with LibTorch's ops, so a rewritten graph stays valid
// anywhere. Python reaches them after torch.ops.load_library("libfewstep_ops.so").
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace torch::jit {
struct Graph;
struct Module;
}  // namespace torch::jit

namespace fewstep {

/// Raised for invalid inputs of the fused ops and unknown --fusion values.
/// The message is one line naming the op (or flag) and the failed constraint.
struct FusedOpError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// GroupNorm (Wu & He 2018, eq. 1-2) of `x + shift`, optionally followed
/// by SiLU (Elfwing et al. 2018): the LDM/diffusers ResBlock's
/// `silu(norm2(h + temb[:, :, None, None]))` in one kernel.
/// x: [N, C, *] float32 or bfloat16 (other dtypes and devices run LibTorch's
/// ops); num_groups divides C; weight, bias: [C] or absent (1, 0); shift:
/// absent, or a tensor that broadcasts against x (the kernel takes
/// [N or 1, C, 1, …, 1] in x's dtype; other shapes are added with LibTorch
/// first, so `x + shift` keeps LibTorch's broadcasting and type promotion).
/// eps > 0 is added to the variance. Returns a new tensor of x's shape,
/// dtype and memory format (channels-last stays channels-last). Throws
/// FusedOpError (one line) for a bad rank, group count or weight size.
at::Tensor group_norm(const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
                      const std::optional<at::Tensor>& bias, double eps, const std::optional<at::Tensor>& shift,
                      bool silu);

/// GELU (Hendrycks & Gimpel 2016) in place: x ← x·Φ(x) (`approximate`
/// "none") or its tanh form ("tanh"); any shape. Returns x. Throws
/// FusedOpError for another `approximate`.
at::Tensor& gelu_(at::Tensor& x, std::string_view approximate);

/// GEGLU (Shazeer 2020, eq. 6): for x [..., 2n] = [value, gate] along the
/// last dim, returns value · gelu(gate) [..., n] (a new contiguous tensor).
/// An odd last dim runs LibTorch's chunk/gelu/mul (which then fail as the
/// unfused graph would).
at::Tensor geglu(const at::Tensor& x, std::string_view approximate);

/// aten::conv2d(x, weight, bias, stride, padding, dilation, groups), with
/// a float32 channels-last weight of a k×k (k > 1) convolution on
/// channels-last float32 CPU input reordered for oneDNN once and cached
/// (LibTorch's mkldnn_prepacked context; the cache is keyed by the weight
/// and bias tensors and their version counters, so in-place changes and
/// freed weights are never served stale); everything else is aten::conv2d.
at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

/// What the fusion pass rewrote (see rewrite_fusion).
struct FusionCounts {
  int group_norm = 0;        ///< aten::group_norm → fewstep::group_norm / group_norm_silu
  int group_norm_silu = 0;   ///< of which with the SiLU that follows
  int group_norm_shift = 0;  ///< of which with the add before (shift)
  int gelu = 0;              ///< aten::gelu on a fresh matmul output → fewstep::gelu_
  int geglu = 0;             ///< chunk(2, -1) + gelu + mul → fewstep::geglu
  int conv2d = 0;            ///< aten::conv2d → fewstep::conv2d (weights reordered once)
  int total() const { return group_norm + gelu + geglu + conv2d; }
};

/// The TorchScript pass that puts the fused ops into a graph. First inlines
/// every call (prim::CallMethod / prim::CallFunction), so that patterns
/// spanning submodules (nn.GroupNorm then F.silu) become visible, then
/// rewrites, in every block:
///  - aten::group_norm(x, G, w, b, eps) → fewstep::group_norm; with the
///    aten::silu that is its only use → fewstep::group_norm_silu; and when
///    x = aten::add(a, s, 1) whose other uses are only shape queries
///    (aten::size, aten::dim, aten::numel, prim::dtype, prim::device), the
///    add is folded in as `shift` (LDM ResBlock: h + emb_proj[:, :, None, None]);
///  - aten::gelu(y) where y comes from a matrix product (aten::linear,
///    matmul, addmm, mm, bmm) and has no other use → fewstep::gelu_(y) in place;
///  - v, g = chunk(y, 2, -1) followed by v · gelu(g) (either order), each
///    intermediate used only there → fewstep::geglu(y);
///  - aten::conv2d → fewstep::conv2d: the same convolution, with a float32
///    channels-last CPU call's weight reordered for oneDNN once and cached
///    (keyed by the weight tensor and its version) instead of every call.
/// Runs dead-code elimination afterwards. Rewrite before the graph first
/// runs. The rewritten graph computes the same function: float32 results
/// differ from LibTorch's by rounding only (tests/kernels/test_fused_*.cpp).
FusionCounts rewrite_fusion(const std::shared_ptr<torch::jit::Graph>& graph);

/// rewrite_fusion on every function of `module`'s compilation unit(s) (all
/// submodules' methods and the free functions they call). Returns the totals.
/// With `root_methods` false, `module`'s own methods are left as they are:
/// a caller that runs only submodules (the block-wise UNet runner) then
/// saves inlining the whole model into the root's forward at load time.
FusionCounts rewrite_fusion(torch::jit::Module& module, bool root_methods = true);

/// `--fusion`: all (the default) rewrites with rewrite_fusion and runs a
/// CPU UNet's activations channels-last; none runs the model as exported;
/// kernels (for measurements) rewrites but keeps the exported NCHW layout.
enum class FusionMode { none, kernels, all };

/// Parses "none", "kernels" or "all"; throws FusedOpError naming --fusion otherwise.
FusionMode parse_fusion_mode(std::string_view text);

/// "none", "kernels" or "all".
std::string to_string(FusionMode mode);

}  // namespace fewstep
