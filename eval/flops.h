// FLOP counts of the operators a UNet runs, from their recorded input
// shapes (fewstep's own formulas; `profile` and `sweep` use them). No torch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fewstep {

/// FLOPs of one host operator from its recorded input shapes, 2 per
/// multiply-add; 0 for operators that are not counted. Counted: matrix
/// products (aten::mm, addmm, bmm, baddbmm: 2·n·k·m per batch entry, bias
/// not counted; matmul_flops) and attention ops (attention_flops).
/// Convolutions are counted on aten::convolution by conv_flops. Elementwise
/// ops, normalisation and softmax are not counted. Own formulas, not
/// LibTorch's estimates: when TorchScript calls an op, LibTorch records
/// extra leading inputs and its estimate becomes 0 (for aten::conv2d that
/// lost most of a UNet's convolutions); the formulas below find their
/// operands by shape.
uint64_t op_flops(const std::string& name, const std::vector<std::vector<int64_t>>& shapes);

/// Matrix-product FLOPs: the first adjacent pair of shapes a [.., n, k],
/// b [.., k, m] (rank 2 for mm/addmm, 3 with equal batch for bmm/baddbmm)
/// gives 2·numel(a)·m. 0 when no pair fits.
uint64_t matmul_flops(const std::string& name, const std::vector<std::vector<int64_t>>& shapes);

/// Convolution FLOPs for aten::convolution(input [N, Cin, *S], weight, ...):
/// 2·N·(output positions)·numel(weight), output size per dim
/// floor((S + 2·padding − dilation·(k − 1) − 1) / stride) + 1; transposed:
/// 2·N·(input positions)·numel(weight). stride/padding/dilation with one
/// entry apply to every dim; empty ones mean 1/0/1. 0 when the shapes do
/// not fit.
uint64_t conv_flops(const std::vector<std::vector<int64_t>>& shapes, const std::vector<int64_t>& stride,
                    const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, bool transposed);

/// FLOPs of one attention op from its input shapes: q [..., Lq, d] and
/// k [..., Lk, d] give 4·numel(q)·Lk, the two matrix products Q·Kᵀ and P·V
/// at 2 FLOPs per multiply-add (softmax not counted; Dao 2023,
/// FlashAttention-2, sec. 4.1 counts the same way). q and k are the first
/// two adjacent shapes of at least 3 dims that agree on every dim but Lq/Lk,
/// with v (the next shape, when recorded) equal to k but for its last dim
/// (LibTorch records an extra input before q when TorchScript calls
/// aten::scaled_dot_product_attention). 0 when no pair fits. Applies to
/// events named "attention" (fewstep's kernels: the range that the
/// fewstep::attention op records around them; the op's own event counts 0),
/// "aten::scaled_dot_product_attention" and its backends
/// "aten::_scaled_dot_product_*", for which LibTorch gives no estimate.
uint64_t attention_flops(const std::vector<std::vector<int64_t>>& shapes);

}  // namespace fewstep
