// fewstep attention: the tensor checks and the params filling that the CPU
// and CUDA registrations share (defined in kernels/attention_op.cpp).
#pragma once

#include <ATen/ATen.h>

#include <functional>

#include "kernels/attention_params.h"

namespace fewstep::detail {

/// The backend whose constraints apply (dtypes and alignment differ).
enum class AttentionBackend { cpu, cuda };

/// Runs a torch-free kernel on fully validated params.
using AttentionLauncher = std::function<void(const AttentionParams&)>;

/// Checks q, k, v against every constraint of fewstep::attention for
/// `backend` and throws AttentionError with a one-line message naming the
/// first that fails: rank (3 or 4), matching leading dims, matching head
/// dims, seq_k of k and v, head dim (1 to 256), seq_k ≥ 1,
/// dtype (float32 on CPU; float16/bfloat16/float32 on CUDA; all equal),
/// device (all on the backend's device) and a contiguous last dim.
void check_attention_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, AttentionBackend backend);

/// The op body shared by both backends: checks the inputs and `out`
/// (q's shape, dtype and device), fills AttentionParams and calls `launch`.
/// On CUDA, head dims that are not a multiple of 8 are zero-padded to one
/// (copies of q, k, v and the output; the result is unchanged, see the
/// .cpp); the CPU kernel takes any head dim as it is.
/// When `out` (or, on CUDA with fp16/bf16, an input) does not suit the
/// kernel's layout — last dim not contiguous, rows not 16-byte aligned — it
/// works on a contiguous copy and copies the result into `out`.
at::Tensor& attention_out_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                               at::Tensor& out, AttentionBackend backend, const AttentionLauncher& launch);

/// As attention_out_impl into a new contiguous tensor shaped like q.
at::Tensor attention_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                          AttentionBackend backend, const AttentionLauncher& launch);

}  // namespace fewstep::detail
