// fewstep attention: the public C++ entry points of libfewstep_ops.
//
// The op `fewstep::attention(Tensor q, Tensor k, Tensor v, float scale) -> Tensor`
// (and its `.out` overload) is declared in kernels/attention_op.cpp with
// TORCH_LIBRARY; CPU and CUDA implementations register themselves from
// kernels/attention_cpu.cpp and kernels/attention_cuda.cpp. Python reaches it
// after torch.ops.load_library("libfewstep_ops.so") as torch.ops.fewstep.attention.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace torch::jit {
struct Graph;
struct Module;
}  // namespace torch::jit

namespace fewstep {

/// Raised for invalid attention inputs (shapes, dtypes, strides, devices) and
/// unknown --attention values. The message is one line naming the failed
/// constraint, e.g. "fewstep::attention: head dim 512 exceeds the maximum 256".
struct AttentionError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Scaled dot-product attention softmax(scale · q kᵀ) v (Vaswani et al. 2017,
/// eq. 1), computed without materialising the score matrix (FlashAttention-2
/// forward, Dao 2023, Algorithm 1). Calls through the dispatcher, so the CPU
/// or CUDA kernel is chosen by the inputs' device.
///
/// q: [B·H, seq_q, d] or [B, H, seq_q, d]; k and v: [B·H, seq_k, d] or
/// [B, H, seq_k, d] with q's leading dims. Any strides, but the last dim must
/// be contiguous. d is at most 256 (the kernels take multiples of 8; other
/// d are zero-padded to one, which costs copies); seq_k ≥ 1.
/// dtype: float32 or bfloat16 on CPU (bfloat16 computed in float32); float16,
/// bfloat16 or float32 on CUDA (all three the same).
/// scale: usually 1/√d. Returns a new tensor shaped like q (contiguous, q's dtype).
/// Throws AttentionError (one line) when a constraint fails.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale);

/// As attention(), writing into `out` (q's shape, dtype and device; any
/// strides) and returning it. Every element of `out` is overwritten.
at::Tensor& attention_out(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, at::Tensor& out);

/// Rewrites attention in a TorchScript graph into fewstep::attention:
///  - aten::scaled_dot_product_attention with attn_mask None, dropout_p 0,
///    is_causal False and enable_gqa False (scale None becomes 1/√d);
///  - the explicit pattern softmax((q @ kᵀ) · s, dim=-1) @ v, written with
///    matmul or bmm, kᵀ as transpose(k, -2, -1) (or (1, 2) under bmm), the
///    scale as a multiply, a divide or baddbmm(…, beta=0, alpha=s), or absent.
/// Intermediates used elsewhere block the rewrite of that instance. Runs
/// dead-code elimination afterwards. Returns how many attentions were rewritten.
/// Rewrite before the graph first runs (executors cache optimised plans).
int rewrite_attention(const std::shared_ptr<torch::jit::Graph>& graph);

/// rewrite_attention on every method of `module` and of all its submodules
/// (a frozen module has everything inlined into forward). Returns the total count.
int rewrite_attention(torch::jit::Module& module);

/// `--attention native|fused`: native keeps the model's own attention ops,
/// fused rewrites them into fewstep::attention (the default).
enum class AttentionMode { native, fused };

/// Parses "native" or "fused"; throws AttentionError naming --attention otherwise.
AttentionMode parse_attention_mode(std::string_view text);

/// "native" or "fused".
std::string to_string(AttentionMode mode);

}  // namespace fewstep
